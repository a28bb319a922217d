//! The command-line client: `kairos job|queue|schedule|worker list|import|export` call a
//! server's API through `kairos-client` and print what it answers, as a table on a
//! terminal or JSON when piped (`--output`). Exit codes scripts can rely on: 0 ok, 1 the server said no
//! (its problem printed with the fields it names), 2 usage or input refused before
//! sending, 3 the server could not be reached.

pub mod export;
pub mod import;
pub mod job;
pub mod queue;
pub mod schedule;
mod table;
pub mod workers;

use kairos_client::{Client, ClientError, RetryPolicy};
use std::ffi::OsString;
use std::io::IsTerminal;

/// Where the API is and how to print its answers; accepted before or after the
/// subcommand (`kairos --output json job list`, `kairos job --output json list` and
/// `kairos job list --output json`; see [`hoist`] for the first).
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

/// A command that calls a server's API.
pub trait ClientCommand {
    /// Where it talks to and how it prints.
    fn api(&self) -> &ApiArgs;
    /// Runs the command.
    async fn run(self) -> Result<(), Failure>;
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
    /// What was named is not on the server (exit 1).
    NotFound(String),
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
            Failure::NotFound(m) => {
                eprintln!("kairos: {m}");
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

/// A value as the API spells it (`online`, `run_once`).
fn api_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// The client flags that take a value, and the one that takes none.
const CLIENT_FLAGS: [&str; 3] = ["--server", "--token", "--output"];
const CLIENT_SWITCH: &str = "--full-ids";
/// The binary's own flags that take a value (they stay where they are).
const TOP_FLAGS: [&str; 2] = ["--log-format", "--log-level"];

/// Moves client flags written before the subcommand (`kairos --server X job list`) to
/// after it (`kairos job list --server X`), where every client command takes them: clap
/// cannot take an option on the binary and on a subcommand under one name, and
/// `kairos worker` and `kairos bench` have their own `--server`. Flags after a `--` and
/// everything from the subcommand on are left as they are.
pub fn hoist(args: Vec<OsString>) -> Vec<OsString> {
    let mut front = Vec::with_capacity(args.len());
    let mut moved = Vec::new();
    let mut rest = args.into_iter();
    front.extend(rest.next());
    let mut rest = rest.peekable();
    while let Some(a) = rest.peek().and_then(|a| a.to_str()).map(str::to_string) {
        if !a.starts_with("--") || a == "--" {
            break;
        }
        let arg = rest.next().expect("peeked");
        let name = a.split('=').next().unwrap_or_default();
        let valued = !a.contains('=');
        if CLIENT_FLAGS.contains(&name) {
            moved.push(arg);
            if valued {
                moved.extend(rest.next());
            }
        } else if a == CLIENT_SWITCH {
            moved.push(arg);
        } else {
            front.push(arg);
            if TOP_FLAGS.contains(&name) && valued {
                front.extend(rest.next());
            }
        }
    }
    let rest: Vec<OsString> = rest.collect();
    let end = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    let (command, after) = rest.split_at(end);
    front.extend_from_slice(command);
    front.extend(moved);
    front.extend_from_slice(after);
    front
}

#[cfg(test)]
mod tests {
    use super::hoist;

    fn run(args: &str) -> String {
        let args = args.split(' ').map(Into::into).collect();
        hoist(args)
            .iter()
            .map(|a| a.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn client_flags_before_the_subcommand_move_after_it() {
        assert_eq!(
            run("kairos --server http://x --output=json --full-ids job list --queue q"),
            "kairos job list --queue q --server http://x --output=json --full-ids"
        );
        // The binary's own flags stay, with their values.
        assert_eq!(
            run("kairos --log-level debug --token t worker --exec cmd --queue q"),
            "kairos --log-level debug worker --exec cmd --queue q --token t"
        );
        // Nothing to move, nothing changes; flags after the subcommand are its own.
        assert_eq!(
            run("kairos job list --server a"),
            "kairos job list --server a"
        );
        // A `--` keeps what follows it last.
        assert_eq!(
            run("kairos --server a bench -- --server b"),
            "kairos bench --server a -- --server b"
        );
    }
}
