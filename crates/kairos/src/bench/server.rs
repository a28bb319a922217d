//! The server under test: a `kairos server` child process on an ephemeral port with a
//! fresh data directory, or an existing server named by `--server`.

use super::BenchArgs;
use anyhow::{Context, anyhow};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the workload sends its requests.
pub struct Target {
    /// Base URL.
    pub base: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
    /// The started server's PostgreSQL database and schema, dropped when it stops.
    database: Option<(String, String)>,
}

impl Target {
    /// Starts a fresh server (or names the existing one).
    pub async fn start(args: &BenchArgs) -> anyhow::Result<Target> {
        if let Some(url) = &args.server {
            return Ok(Target {
                base: url.trim_end_matches('/').to_string(),
                child: None,
                _dir: None,
                database: None,
            });
        }
        let dir = match &args.data_dir {
            Some(parent) => {
                std::fs::create_dir_all(parent)?;
                tempfile::tempdir_in(parent)?
            }
            None => tempfile::tempdir()?,
        };
        let exe = std::env::current_exe().context("finding the kairos binary")?;
        let database = args.database_url.as_ref().map(|url| {
            let schema = format!("kairos_bench_{}", std::process::id());
            (url.clone(), schema)
        });
        let mut command = Command::new(exe);
        command
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path());
        if let Some((url, schema)) = &database {
            command.args(["--database-url", url, "--database-schema", schema]);
        }
        let mut child = command
            .env("KAIROS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting kairos server")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await??;
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .ok_or_else(|| anyhow!("kairos server said {line:?} instead of its address"))?;
        Ok(Target {
            base: format!("http://{addr}"),
            child: Some(child),
            _dir: Some(dir),
            database,
        })
    }

    /// What the numbers were measured on.
    pub fn store_label(&self) -> (&'static str, &'static str) {
        if self.database.is_some() {
            ("postgres", "postgres")
        } else if self.child.is_some() {
            ("embedded", "embedded-fsync")
        } else {
            ("external", "unknown")
        }
    }

    /// Stops a server this command started (SIGTERM, then waits).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    child.kill()?;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if let Some((url, schema)) = self.database.take() {
            kairos_store::postgres::schema::drop_schema(&url, &schema)
                .await
                .with_context(|| format!("dropping the bench schema {schema}"))?;
        }
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
