//! `kairos import FILE`: bulk-enqueues a file of JSON lines, each one job as
//! `POST /v1/jobs` takes it, in batches.
//!
//! Resumable: each batch carries an `Idempotency-Key` made of the file's SHA-256 and the
//! batch's first job, and the batches are cut the same way on every run (by job count
//! and bytes, fixed here), so a rerun after a crash gets the first answers of the
//! batches that landed and creates only the rest; two different files never share a
//! key. The server keeps keys 24 hours: a resume must come within that window.
//!
//! The whole file is read and checked first (JSON shape and every field rule but the
//! server's size limits), so a mistake on line 90,000 is found before line 1 is sent:
//! fixing it changes the file's hash, and a half-imported file could not be resumed.

use super::{ApiArgs, ClientCommand, Failure, print};
use indicatif::{ProgressBar, ProgressStyle};
use kairos_client::{ClientError, RetryPolicy};
use kairos_core::api::EnqueueRequest;
use kairos_core::validate::Limits;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};

/// Most jobs in one batch (the API takes up to 1,000).
const BATCH_JOBS: usize = 500;
/// A batch closes once its lines hold this many bytes (well under the default 32 MiB
/// body limit).
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Most line errors printed when the file is refused.
const SHOWN_ERRORS: usize = 20;
/// Part of every key: a change to how batches are cut must change it, so a resume by
/// another version never matches a key to a different batch.
const KEY_SCHEME: &str = "import-v1";

/// `kairos import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// A file of JSON lines, one job each (blank lines are skipped). Run the same
    /// command again after a crash: what landed is not created twice.
    file: PathBuf,
}

/// One batch as sent: its jobs and the line number of each.
struct Batch {
    first: usize,
    lines: Vec<usize>,
    jobs: Vec<EnqueueRequest>,
    bytes: usize,
}

impl Batch {
    fn new(first: usize) -> Batch {
        Batch {
            first,
            lines: Vec::new(),
            jobs: Vec::new(),
            bytes: 0,
        }
    }
}

/// A pass over the file's non-blank lines, numbered from 1; `seen` gets every byte read
/// (blank lines and line ends included), so the first pass hashes as it checks.
fn lines<'a>(
    path: &Path,
    mut seen: impl FnMut(&[u8]) + 'a,
) -> Result<impl Iterator<Item = Result<(usize, String), Failure>> + 'a, Failure> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Failure::Usage(format!("{shown}: {e}")))?;
    let mut reader = BufReader::new(file);
    let mut n = 0;
    let mut buf = Vec::new();
    Ok(std::iter::from_fn(move || {
        loop {
            buf.clear();
            n += 1;
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => return None,
                Ok(_) => seen(&buf),
                Err(e) => return Some(Err(Failure::Usage(format!("{shown}: line {n}: {e}")))),
            }
            let text = match std::str::from_utf8(&buf) {
                Ok(t) => t.trim_end_matches(['\n', '\r']),
                Err(e) => {
                    return Some(Err(Failure::Usage(format!(
                        "{shown}: line {n} is not UTF-8: {e}"
                    ))));
                }
            };
            if !text.trim().is_empty() {
                return Some(Ok((n, text.to_string())));
            }
        }
    }))
}

/// The first pass: the file's hash and its job count, or every line's mistakes.
fn check(path: &Path) -> Result<(String, usize), Failure> {
    // Size limits are the server's to say (they are configurable); everything else is
    // checked here, by the same rules the server applies.
    let limits = Limits {
        max_payload_bytes: usize::MAX,
    };
    let mut jobs = 0;
    let mut errors = Vec::new();
    let mut hasher = Sha256::new();
    for line in lines(path, |bytes| hasher.update(bytes))? {
        let (n, text) = line?;
        match serde_json::from_str::<EnqueueRequest>(&text) {
            Err(e) => errors.push(format!("line {n}: {e}")),
            Ok(req) => match req.validate("", &limits) {
                Ok(_) => jobs += 1,
                Err(invalid) => errors.extend(
                    invalid
                        .0
                        .iter()
                        .map(|f| format!("line {n}: {}: {}", f.field, f.message)),
                ),
            },
        }
    }
    let hash: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !errors.is_empty() {
        let more = errors.len().saturating_sub(SHOWN_ERRORS);
        let mut text = format!(
            "{}: nothing was sent; {} mistake(s):",
            path.display(),
            errors.len()
        );
        for e in errors.iter().take(SHOWN_ERRORS) {
            text.push_str("\n  ");
            text.push_str(e);
        }
        if more > 0 {
            text.push_str(&format!("\n  … and {more} more"));
        }
        return Err(Failure::Usage(text));
    }
    if jobs == 0 {
        return Err(Failure::Usage(format!("{}: holds no jobs", path.display())));
    }
    Ok((hash, jobs))
}

/// Field names of a refused batch (`jobs[3].kind`) as the file's line numbers.
fn with_lines(e: ClientError, batch: &Batch) -> ClientError {
    match e {
        ClientError::Api(mut p) => {
            for f in &mut p.errors {
                let index = f
                    .field
                    .strip_prefix("jobs[")
                    .and_then(|rest| rest.split_once(']'))
                    .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)));
                if let Some((i, rest)) = index
                    && let Some(line) = batch.lines.get(i)
                {
                    f.field = format!("line {line}: {}", rest.trim_start_matches('.'));
                }
            }
            ClientError::Api(p)
        }
        other => other,
    }
}

impl ClientCommand for ImportArgs {
    fn api(&self) -> &ApiArgs {
        &self.api
    }

    async fn run(self) -> Result<(), Failure> {
        let (hash, total) = check(&self.file)?;
        // A bulk load rides out a restart or a full queue: every retry carries its
        // batch's key, so none duplicates.
        let client = self.api.client()?.with_retry(RetryPolicy::default());
        let terminal = std::io::stderr().is_terminal();
        let bar = if terminal {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} jobs, {per_sec}, {eta} left")
                    .expect("a valid template"),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        let mut sent = 0;
        let mut batches = 0;
        let mut batch = Batch::new(0);
        let mut lines = lines(&self.file, |_| {})?;
        loop {
            let next = lines.next().transpose()?;
            if let Some((n, text)) = &next {
                let req: EnqueueRequest = serde_json::from_str(text).map_err(|e| {
                    Failure::Usage(format!("line {n} changed while importing: {e}"))
                })?;
                batch.bytes += text.len();
                batch.lines.push(*n);
                batch.jobs.push(req);
            }
            let full = batch.jobs.len() == BATCH_JOBS || batch.bytes >= BATCH_BYTES;
            if full || (next.is_none() && !batch.jobs.is_empty()) {
                let key = format!("{KEY_SCHEME}-{hash}-{}", batch.first);
                client
                    .enqueue_batch_ids(&batch.jobs, Some(&key))
                    .await
                    .map_err(|e| with_lines(e, &batch))?;
                sent += batch.jobs.len();
                batches += 1;
                bar.set_position(sent as u64);
                if !terminal {
                    eprintln!("kairos: imported {sent} of {total} jobs");
                }
                batch = Batch::new(sent);
            }
            if next.is_none() {
                break;
            }
        }
        bar.finish_and_clear();
        let file = self.file.display().to_string();
        print(
            &self.api,
            &serde_json::json!({ "file": file, "jobs": sent, "batches": batches, "sha256": hash }),
            |_| format!("imported {sent} jobs from {file} in {batches} batches\n"),
        );
        Ok(())
    }
}
