//! `kairos export`: jobs by filter as JSON lines on stdout, page by page (newest first),
//! so any number of jobs streams in bounded memory. `--as-import` writes each job as
//! the enqueue request that recreates it, for `kairos import` on another server.

use super::job::Filter;
use super::{ApiArgs, ClientCommand, Failure};
use kairos_core::api::EnqueueRequest;
use std::io::Write;

/// Jobs per page asked of the server (its most).
const PAGE: u32 = 500;

/// `kairos export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    filter: Filter,
    /// Stop after this many jobs.
    #[arg(long)]
    limit: Option<u64>,
    /// Write each job as the request that enqueues it again (queue, kind, payload,
    /// priority, attempts, backoff, timeout, unique key, tags), for `kairos import`.
    #[arg(long)]
    as_import: bool,
}

impl ClientCommand for ExportArgs {
    fn api(&self) -> &ApiArgs {
        &self.api
    }

    async fn run(self) -> Result<(), Failure> {
        let client = self.api.client()?;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut cursor = None;
        let mut left = self.limit.unwrap_or(u64::MAX);
        while left > 0 {
            let limit = PAGE.min(u32::try_from(left).unwrap_or(PAGE));
            let query = self.filter.query(Some(limit), cursor.take());
            let page = client.list(&query).await?;
            for job in page.jobs {
                let line = if self.as_import {
                    serde_json::to_string(&EnqueueRequest::recreating(job))
                } else {
                    serde_json::to_string(&job)
                }
                .expect("jobs serialize");
                // A closed pipe (`| head`) ends the export quietly.
                if writeln!(out, "{line}").is_err() {
                    return Ok(());
                }
                left -= 1;
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let _ = out.flush();
        Ok(())
    }
}
