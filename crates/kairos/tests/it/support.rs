//! Starting and stopping real `kairos server` processes on ephemeral ports.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `kairos server` child process.
pub struct Kairos {
    pub child: Child,
    pub base: String,
}

/// A `kairos server` that did not start: how it exited and what it said.
#[derive(Debug)]
pub struct Refused {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Kairos {
    /// Starts `kairos server` on 127.0.0.1:0 with `data_dir`, and waits for its address.
    pub fn start(data_dir: &Path) -> Kairos {
        Self::try_start(data_dir, &[]).unwrap_or_else(|r| panic!("kairos did not start: {r:?}"))
    }

    /// Starts `kairos server` with `data_dir` on `listen` (an address it had before, say),
    /// and waits for it.
    pub fn start_at(data_dir: &Path, listen: &str) -> Kairos {
        Self::try_start_at(data_dir, listen, &[])
            .unwrap_or_else(|r| panic!("kairos did not start: {r:?}"))
    }

    /// Starts `kairos server` with extra arguments; `Err` with its exit and output when it
    /// exits instead of printing its listening line.
    pub fn try_start(data_dir: &Path, extra: &[&str]) -> Result<Kairos, Refused> {
        Self::try_start_at(data_dir, "127.0.0.1:0", extra)
    }

    pub fn try_start_at(data_dir: &Path, listen: &str, extra: &[&str]) -> Result<Kairos, Refused> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kairos"))
            .args(["server", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("KAIROS_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kairos starts");
        // Drained all along, so the server never blocks on a full pipe.
        let mut stderr = child.stderr.take().unwrap();
        let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = said.clone();
        let drain = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stderr, &mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                eprint!("{text}");
                sink.lock().unwrap().push_str(&text);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("reading kairos's stdout");
        if line.is_empty() {
            let status = child.wait().unwrap();
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
            // The drain ends when the process's stderr closes.
            drain.join().unwrap();
            return Err(Refused {
                status,
                stdout: rest,
                stderr: said.lock().unwrap().clone(),
            });
        }
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Ok(Kairos {
            child,
            base: format!("http://{addr}"),
        })
    }

    /// SIGKILL, and reap.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends `signal` (e.g. "TERM") and waits up to 30 s for the exit status.
    pub fn signal_and_wait(mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kairos did not exit after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Kairos {
    /// The address it listens on (`127.0.0.1:PORT`).
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }
}

impl Drop for Kairos {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kairos token create ARGS`, signed with `secret`, as an operator would mint it.
pub fn mint(secret: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["token", "create"])
        .args(args)
        .env("KAIROS_JWT_SECRET", secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
