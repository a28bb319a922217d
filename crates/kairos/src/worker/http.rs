//! `kairos worker --http URL`: each leased job is POSTed to the URL as JSON (the object
//! `POST /v1/lease` answers), and the answer says what became of it: 2xx completes the
//! job (a JSON body is the result, any other body is kept as a string, none is no
//! result; over 64 KiB fails the attempt), 429 and 503 fail the attempt to be retried
//! after `Retry-After` (else by the backoff), any other answer fails the attempt with its
//! status and the start of its body. The job's `timeout` bounds the call.

use super::exec::{MAX_STDOUT, result_of};
use kairos_client::worker::{JobContext, JobError, JobResult};
use std::time::Duration;

/// How much of a refusal's body goes into the attempt's error.
const ERROR_BODY: usize = 1024;

/// Where jobs are delivered.
pub(super) struct Target {
    url: String,
    http: reqwest::Client,
}

impl Target {
    pub(super) fn new(url: &str) -> anyhow::Result<Target> {
        anyhow::ensure!(
            url.starts_with("http://") || url.starts_with("https://"),
            "--http {url:?} is not an http:// or https:// URL"
        );
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Target {
            url: url.to_string(),
            http,
        })
    }

    /// Posts one job and reads what the answer says about it.
    pub(super) async fn deliver(&self, job: JobContext) -> JobResult {
        let body = serde_json::to_vec(&job.leased())
            .map_err(|e| JobError::retry(format!("the job does not serialise: {e}")))?;
        let mut call = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Kairos-Job-Id", job.job.id.to_string())
            .timeout(job.job.timeout.as_std());
        // The producer's trace continues at the endpoint.
        if let Some(t) = job.trace() {
            call = call.header("traceparent", &t.traceparent);
            if let Some(state) = &t.tracestate {
                call = call.header("tracestate", state);
            }
        }
        let call = call.body(body).send();
        let resp = tokio::select! {
            r = call => r.map_err(|e| JobError::retry(format!("{}: {e}", self.url)))?,
            _ = job.cancelled() => return Err(JobError::retry(super::STOPPED)),
        };
        let status = resp.status().as_u16();
        let retry_after = kairos_client::retry_after(resp.headers());
        let (body, more) = read_head(resp, MAX_STDOUT).await?;
        match status {
            200..=299 if more => Err(JobError::retry(format!(
                "{} answered more than {} KiB (a result is at most that)",
                self.url,
                MAX_STDOUT / 1024
            ))),
            200..=299 => Ok(result_of(&body)),
            429 | 503 => {
                let why = format!("{} answered {status}", self.url);
                Err(match retry_after {
                    Some(d) => JobError::retry_in(why, d),
                    None => JobError::retry(why),
                })
            }
            _ => {
                let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY)])
                    .trim()
                    .to_string();
                Err(JobError::retry(format!(
                    "{} answered {status}: {text}",
                    self.url
                )))
            }
        }
    }
}

/// The first `limit` bytes of an answer's body, and whether there was more (not read).
async fn read_head(mut resp: reqwest::Response, limit: usize) -> Result<(Vec<u8>, bool), JobError> {
    let mut kept = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| JobError::retry(format!("reading the answer: {e}")))?
    {
        if kept.len() + chunk.len() > limit {
            return Ok((kept, true));
        }
        kept.extend_from_slice(&chunk);
    }
    Ok((kept, false))
}
