//! The command-line client: `kairos job …` and `kairos queue …` call a server's API
//! through `kairos-client` and print what it answers, as a table on a terminal or JSON
//! when piped (`--output`). Exit codes scripts can rely on: 0 ok, 1 the server said no
//! (its problem printed with the fields it names), 2 usage or input refused before
//! sending, 3 the server could not be reached.

pub mod job;
pub mod queue;
mod table;

use kairos_client::{Client, ClientError, RetryPolicy};
use std::io::IsTerminal;

/// Where the API is and how to print its answers; accepted before or after the
/// subcommand (`kairos job --output json list` and `kairos job list --output json`).
#[derive(clap::Args, Debug, Clone)]
pub struct ApiArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "KAIROS_SERVER",
        default_value = "http://127.0.0.1:7676",
        global = true
    )]
    pub server: String,
    /// A bearer token, for a server with auth on.
    #[arg(long, env = "KAIROS_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// `table` or `json`; default: a table on a terminal, JSON otherwise.
    #[arg(long, global = true)]
    pub output: Option<Output>,
    /// Print ids whole in tables (they are shortened to fit 80 columns).
    #[arg(long, global = true)]
    pub full_ids: bool,
}

/// How answers are printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

impl ApiArgs {
    /// A client for the server, trying once: a command line answers at once and lets
    /// the caller retry.
    fn client(&self) -> Result<Client, Failure> {
        let client = Client::new(&self.server)
            .map_err(|e| Failure::Usage(format!("--server {}: {e}", self.server)))?
            .with_retry(RetryPolicy::NEVER);
        Ok(match &self.token {
            Some(t) => client.with_token(t),
            None => client,
        })
    }

    fn output(&self) -> Output {
        self.output.unwrap_or(if std::io::stdout().is_terminal() {
            Output::Table
        } else {
            Output::Json
        })
    }
}

/// Why a command did not succeed, and its exit code.
#[derive(Debug)]
pub enum Failure {
    /// Refused before sending (exit 2).
    Usage(String),
    /// The server answered no (exit 1).
    Refused(ClientError),
    /// The server could not be reached (exit 3).
    Unreachable(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        match e {
            ClientError::Transport(t) => Failure::Unreachable(t.to_string()),
            other => Failure::Refused(other),
        }
    }
}

impl Failure {
    /// Prints the failure on stderr and answers the exit code.
    pub fn report(self, server: &str) -> i32 {
        match self {
            Failure::Usage(m) => {
                eprintln!("kairos: {m}");
                2
            }
            Failure::Unreachable(m) => {
                eprintln!("kairos: cannot reach {server}: {m}");
                3
            }
            Failure::Refused(ClientError::Api(p)) => {
                if p.errors.is_empty() {
                    eprintln!("kairos: {} {}: {}", p.status, p.title, p.detail);
                } else {
                    eprintln!("kairos: {} {}", p.status, p.title);
                }
                for f in &p.errors {
                    eprintln!("  {}: {}", f.field, f.message);
                }
                1
            }
            Failure::Refused(e) => {
                eprintln!("kairos: {e}");
                1
            }
        }
    }
}

/// Prints `value` as pretty JSON, or as the table `render` makes.
fn print<T: serde::Serialize>(args: &ApiArgs, value: &T, render: impl FnOnce(&T) -> String) {
    match args.output() {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).expect("answers serialize")
        ),
        Output::Table => print!("{}", render(value)),
    }
}

/// Shortens an id for a table unless `--full-ids`.
fn short_id(args: &ApiArgs, id: &uuid::Uuid) -> String {
    let s = id.to_string();
    if args.full_ids {
        s
    } else {
        s[s.len() - 12..].to_string()
    }
}
