//! The `kairos` binary: `kairos server` runs the job server; `kairos worker --exec` runs
//! a command per job; `kairos bench` measures a server; the client commands (`job`,
//! `queue`, `schedule`, `worker list`, `import`, `export`, in [`cli`]) operate one.

mod bench;
mod cli;
mod token;
mod worker;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kairos_core::Duration;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Kairos: a durable job scheduler and task queue server.
#[derive(Parser, Debug)]
#[command(
    name = "kairos",
    version,
    about,
    after_help = "The client commands (job, queue, schedule, worker list, import, export) take \
                  --server, --token, --output and --full-ids before or after the subcommand."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as `json` (one object per line) or `pretty`; default: pretty on a
    /// terminal, json otherwise.
    #[arg(long, env = "KAIROS_LOG_FORMAT", global = true)]
    log_format: Option<LogFormat>,
    /// The least severe level logged (`error`, `warn`, `info`, `debug`, `trace`), or a
    /// filter such as `info,kairos_store=debug`; `KAIROS_LOG` says the same.
    #[arg(long, env = "KAIROS_LOG", global = true, default_value = "info")]
    log_level: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Json,
    Pretty,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (embedded SQLite store by default).
    Server(Box<ServerArgs>),
    /// Run a command once per job leased from a server (workers in any language), or
    /// list a server's workers (`kairos worker list`).
    Worker(Box<worker::WorkerCommand>),
    /// Measure throughput, latency and timing precision of a server.
    Bench(bench::BenchArgs),
    /// Verify a stopped server's data directory; exits non-zero when it is damaged.
    Check(CheckArgs),
    /// Apply the PostgreSQL schema migrations this binary knows (servers also do at start).
    Migrate(MigrateArgs),
    /// Bearer tokens for the API.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Enqueue, read, list, cancel, retry and delete jobs on a server.
    Job(cli::job::JobArgs),
    /// List queues, pause and resume them, set their limits, retry their dead jobs.
    Queue(cli::queue::QueueArgs),
    /// Create, list, change, pause, trigger and delete schedules; preview cron times.
    Schedule(cli::schedule::ScheduleArgs),
    /// Enqueue a file of JSON lines (one job each) in batches; rerun it to resume.
    Import(cli::import::ImportArgs),
    /// Write jobs by filter as JSON lines.
    Export(cli::export::ExportArgs),
    /// Print a completion script for bash, zsh or fish.
    Completions { shell: clap_complete::Shell },
}

/// Where a PostgreSQL-backed server keeps its data.
#[derive(clap::Args, Debug, Clone)]
struct DatabaseArgs {
    /// Store everything in this PostgreSQL database (`postgres://user:password@host:5432/db`)
    /// instead of the embedded store; several servers on one database form a cluster.
    #[arg(long, env = "KAIROS_DATABASE_URL")]
    database_url: Option<String>,
    /// The schema holding Kairos's tables in that database (created if missing).
    #[arg(long, env = "KAIROS_DATABASE_SCHEMA", default_value = "kairos")]
    database_schema: String,
    /// Most connections this server opens to the database.
    #[arg(long, env = "KAIROS_DATABASE_POOL_SIZE", default_value_t = 16)]
    database_pool_size: usize,
}

impl DatabaseArgs {
    fn options(&self) -> kairos_store::postgres::Options {
        kairos_store::postgres::Options {
            schema: self.database_schema.clone(),
            pool_size: self.database_pool_size,
            ..Default::default()
        }
    }
}

#[derive(clap::Args, Debug)]
struct MigrateArgs {
    #[command(flatten)]
    database: DatabaseArgs,
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// Directory of the embedded store.
    #[arg(long, env = "KAIROS_DATA_DIR", default_value = "./kairos-data")]
    data_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
struct ServerArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "KAIROS_LISTEN", default_value = "127.0.0.1:7676")]
    listen: SocketAddr,
    /// Directory of the embedded store.
    #[arg(long, env = "KAIROS_DATA_DIR", default_value = "./kairos-data")]
    data_dir: PathBuf,
    /// Largest job payload (and ack result) in bytes; larger ones get 413.
    #[arg(long, env = "KAIROS_MAX_PAYLOAD_BYTES", default_value_t = 1024 * 1024)]
    max_payload_bytes: usize,
    /// Largest request body in bytes; larger ones get 413.
    #[arg(long, env = "KAIROS_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Largest request head (request line and headers) in bytes; larger ones get 431.
    #[arg(long, env = "KAIROS_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    max_header_bytes: usize,
    /// A request head must arrive within this of its first byte, or the connection closes.
    #[arg(long, env = "KAIROS_HEADER_READ_TIMEOUT", default_value = "10s")]
    header_read_timeout: Duration,
    /// A request body must arrive within this of its head (else 408).
    #[arg(long, env = "KAIROS_BODY_TIMEOUT", default_value = "30s")]
    body_timeout: Duration,
    /// An answer must be ready within this of its request (else 503); long-poll leases
    /// get this plus their wait.
    #[arg(long, env = "KAIROS_REQUEST_TIMEOUT", default_value = "30s")]
    request_timeout: Duration,
    /// A keep-alive connection without a request for this long is closed.
    #[arg(long, env = "KAIROS_IDLE_TIMEOUT", default_value = "60s")]
    idle_timeout: Duration,
    /// A client that reads none of an answer for this long is cut off.
    #[arg(long, env = "KAIROS_WRITE_TIMEOUT", default_value = "30s")]
    write_timeout: Duration,
    /// Most connections open at once (kept below the file descriptor limit); more are
    /// refused with 503 at once.
    #[arg(long, env = "KAIROS_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Most writes waiting for the store; past it, writes answer 503 overloaded at once.
    #[arg(long, env = "KAIROS_WRITE_QUEUE_LIMIT", default_value_t = 10_000)]
    write_queue_limit: usize,
    /// How long a shutdown waits for requests in flight before dropping them.
    #[arg(long, env = "KAIROS_SHUTDOWN_TIMEOUT", default_value = "30s")]
    shutdown_timeout: Duration,
    /// Start although the data files are damaged, accepting the loss: a missing or
    /// emptied database is set aside (in damaged-<time>/) and a new store begins; a damaged
    /// write-ahead log is copied aside and replayed up to the damage.
    #[arg(long, env = "KAIROS_ACCEPT_DATA_LOSS")]
    accept_data_loss: bool,
    /// Completed and cancelled jobs are deleted this long after they finished.
    #[arg(long, env = "KAIROS_RETENTION_COMPLETED", default_value = "24h")]
    retention_completed: Duration,
    /// Dead jobs are deleted this long after they died.
    #[arg(long, env = "KAIROS_RETENTION_DEAD", default_value = "7d")]
    retention_dead: Duration,
    /// Events are deleted this long after they happened (`GET /v1/events`, the stream and
    /// the sinks read from what is kept).
    #[arg(long, env = "KAIROS_RETENTION_EVENTS", default_value = "24h")]
    retention_events: Duration,
    /// Publish the event log to this broker: `amqp://user:pass@host:5672/%2f` (RabbitMQ,
    /// topic exchange `kairos.events`) or `nats://host:4222` (JetStream stream
    /// `KAIROS_EVENTS`). Repeat for several; each keeps its own cursor.
    #[arg(long = "sink", env = "KAIROS_SINK", value_delimiter = ' ')]
    sinks: Vec<String>,
    /// Publish only these event types to the sinks (comma-separated, e.g.
    /// `job.dead,job.completed`); default: every event.
    #[arg(long, env = "KAIROS_SINK_TYPES")]
    sink_types: Option<String>,
    /// The address other nodes and operators know this node by (`GET /v1/cluster`);
    /// default: the address it listens on.
    #[arg(long, env = "KAIROS_ADVERTISE")]
    advertise: Option<String>,
    /// Requests slower than this get a log line (as do answers of 400 and more); the
    /// rest are logged only at debug level.
    #[arg(long, env = "KAIROS_LOG_SLOW", default_value = "1s")]
    log_slow: Duration,
    /// Verify bearer tokens (HS256) with this secret, at least 32 bytes. Auth is on
    /// whenever a key is set, and a key is required off loopback.
    #[arg(long, env = "KAIROS_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Verify bearer tokens (RS256 or EdDSA) with this PEM public key file instead.
    #[arg(long, env = "KAIROS_JWT_PUBLIC_KEY", conflicts_with = "jwt_secret")]
    jwt_public_key: Option<PathBuf>,
    /// Tokens must carry this `iss`.
    #[arg(long, env = "KAIROS_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Tokens must carry this `aud`.
    #[arg(long, env = "KAIROS_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Serve `/metrics` without a token.
    #[arg(long, env = "KAIROS_METRICS_PUBLIC")]
    metrics_public: bool,
    /// Limit each client (a token's subject, or an address without auth) to this rate,
    /// e.g. `1000/s`, `100/m`; past it: 429 with Retry-After.
    #[arg(long, env = "KAIROS_RATE_LIMIT")]
    rate_limit: Option<kairos_core::rate::Rate>,
    /// Requests a client may send at once (default: one second's worth of the rate).
    #[arg(long, env = "KAIROS_RATE_LIMIT_BURST", requires = "rate_limit")]
    rate_limit_burst: Option<u32>,
    /// A proxy whose X-Forwarded-For names the client (repeat, or separate with commas).
    #[arg(
        long = "trusted-proxy",
        env = "KAIROS_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// Turn off metrics, request ids and the request log (only to measure their cost).
    #[arg(long, hide = true)]
    no_instrumentation: bool,
    #[command(flatten)]
    database: DatabaseArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_from(cli::hoist(std::env::args_os().collect()));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .with_context(|| format!("--log-level {:?} is not a level or filter", cli.log_level))?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        Some(LogFormat::Json) => logs.json().init(),
        Some(LogFormat::Pretty) => logs.with_ansi(terminal).init(),
        None if terminal => logs.with_ansi(true).init(),
        None => logs.json().init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server(*args)),
        Command::Worker(w) => match w.list {
            Some(worker::WorkerSubcommand::List(args)) => client_command(&runtime, args),
            None => runtime.block_on(worker::run(w.run)),
        },
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Check(args) => check(args),
        Command::Migrate(args) => runtime.block_on(migrate(args)),
        Command::Token(cmd) => token::run(cmd),
        Command::Job(args) => client_command(&runtime, args),
        Command::Queue(args) => client_command(&runtime, args),
        Command::Schedule(args) => client_command(&runtime, args),
        Command::Import(args) => client_command(&runtime, args),
        Command::Export(args) => client_command(&runtime, args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kairos", &mut script);
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(())
        }
    }
}

/// Runs a client command and exits with its code (0, or the failure's after printing
/// it).
fn client_command(
    runtime: &tokio::runtime::Runtime,
    command: impl cli::ClientCommand,
) -> anyhow::Result<()> {
    let server = command.api().server.clone();
    match runtime.block_on(command.run()) {
        Ok(()) => Ok(()),
        Err(f) => std::process::exit(f.report(&server)),
    }
}

/// The token check the flags ask for; refuses a server off loopback without one.
fn auth(
    args: &ServerArgs,
) -> anyhow::Result<Option<kairos_server::http::layers::auth::AuthConfig>> {
    use kairos_server::http::layers::auth::{AuthConfig, TokenKey};
    let key = match (&args.jwt_secret, &args.jwt_public_key) {
        (Some(secret), _) => Some(TokenKey::Secret(secret.as_bytes().to_vec())),
        (None, Some(path)) => Some(TokenKey::PublicKeyPem(
            std::fs::read(path)
                .with_context(|| format!("reading the JWT public key {}", path.display()))?,
        )),
        (None, None) => None,
    };
    let Some(key) = key else {
        anyhow::ensure!(
            args.listen.ip().is_loopback(),
            "refusing to listen on {} without auth: anyone who can reach it could enqueue,              read and delete jobs. Set --jwt-secret (or KAIROS_JWT_SECRET; at least 32 bytes,              e.g. from `openssl rand -hex 32`) or --jwt-public-key, then mint tokens with              `kairos token create --role …`; or listen on 127.0.0.1",
            args.listen
        );
        return Ok(None);
    };
    Ok(Some(AuthConfig {
        key,
        issuer: args.jwt_issuer.clone(),
        audience: args.jwt_audience.clone(),
        metrics_public: args.metrics_public,
    }))
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let auth = auth(&args)?;
    if let Some(a) = &auth {
        // A bad key is refused here, before anything is opened.
        kairos_server::http::layers::auth::Verifier::new(a)?;
    }
    let auth_said = match &auth {
        Some(a) => match a.key {
            kairos_server::http::layers::auth::TokenKey::Secret(_) => "auth on: HS256 tokens",
            kairos_server::http::layers::auth::TokenKey::PublicKeyPem(_) => {
                "auth on: RS256/EdDSA tokens"
            }
        },
        None => "auth off: loopback only, every request allowed",
    };
    let max_connections = connection_limit(args.max_connections);
    let config = kairos_server::Config {
        max_payload_bytes: args.max_payload_bytes,
        max_body_bytes: args.max_body_bytes.max(args.max_payload_bytes + 64 * 1024),
        max_header_bytes: args.max_header_bytes.max(8 * 1024),
        header_read_timeout: args.header_read_timeout.as_std(),
        body_timeout: args.body_timeout.as_std(),
        request_timeout: args.request_timeout.as_std(),
        idle_timeout: args.idle_timeout.as_std(),
        write_timeout: args.write_timeout.as_std(),
        max_connections,
        shutdown_timeout: args.shutdown_timeout.as_std(),
        retention: kairos_core::Retention {
            completed: args.retention_completed,
            dead: args.retention_dead,
            events: args.retention_events,
        },
        advertise: args.advertise.clone(),
        log_slow: args.log_slow.as_std(),
        auth,
        rate_limit: args.rate_limit.map(|rate| {
            kairos_server::http::layers::limit::RateLimitConfig {
                rate,
                burst: args.rate_limit_burst,
                trusted_proxies: args.trusted_proxies.clone(),
            }
        }),
        instrument: !args.no_instrumentation,
        sinks: args
            .sinks
            .iter()
            .map(|url| kairos_server::sink::SinkConfig::new(url, args.sink_types.as_deref()))
            .collect::<Result<_, _>>()?,
    };
    type Stores = (
        std::sync::Arc<dyn kairos_store::Store>,
        std::sync::Arc<dyn kairos_tasks::store::TaskStore>,
        String,
    );
    let (store, tasks, place): Stores = match &args.database.database_url {
        Some(url) => {
            let options = args.database.options();
            let task_options = kairos_store::postgres::Options {
                pool_size: TASK_POOL_SIZE,
                ..options.clone()
            };
            let tasks = kairos_tasks::store::PostgresTasks::connect(url, &task_options)
                .await
                .with_context(|| format!("opening the tasks' tables in {}", redacted(url)))?;
            let store = kairos_store::PostgresStore::connect(url, options)
                .await
                .with_context(|| format!("opening the store in {}", redacted(url)))?;
            let place = format!(
                "data in {}, schema {}",
                redacted(url),
                args.database.database_schema
            );
            (
                std::sync::Arc::new(store),
                std::sync::Arc::new(tasks),
                place,
            )
        }
        None => {
            let options = kairos_store::sqlite::Options {
                write_queue_limit: args.write_queue_limit,
                accept_data_loss: args.accept_data_loss,
                ..Default::default()
            };
            let store = kairos_store::SqliteStore::open_with(&args.data_dir, options)
                .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
            let file = args.data_dir.join(TASKS_FILE);
            let tasks = kairos_tasks::store::SqliteTasks::open(&file)
                .with_context(|| format!("opening the tasks' file {}", file.display()))?;
            let place = format!("data in {}", args.data_dir.display());
            (
                std::sync::Arc::new(store),
                std::sync::Arc::new(tasks),
                place,
            )
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal()?;
    // Scripts and tests read this line as "ready" (and to find the port when --listen
    // asks for port 0): it comes only once the store is open and the port is bound.
    println!("kairos listening on http://{addr} ({place}; {auth_said})");
    kairos_server::Server::new(store)
        .config(config)
        .feature(kairos_tasks::Tasks::new(tasks))
        .serve(listener, shutdown)
        .await
        .context("stopping the server")?;
    Ok(())
}

/// The tasks feature's SQLite file, in the data directory beside the engine's.
const TASKS_FILE: &str = "tasks.sqlite3";
/// Connections the tasks feature opens to PostgreSQL (beside the engine's pool).
const TASK_POOL_SIZE: usize = 8;

/// Descriptors kept free for everything but client connections: the store's files and
/// reader connections, stdio, the runtime's own.
const RESERVED_FDS: u64 = 128;

/// Raises the soft limit on open files to the hard limit (logging both), and answers the
/// connection limit: `wanted`, lowered to stay below the descriptor limit.
fn connection_limit(wanted: usize) -> usize {
    let Some((soft, hard)) = fd_limit::raise() else {
        return wanted;
    };
    tracing::info!(soft, hard, "open file limit");
    let room = soft.saturating_sub(RESERVED_FDS).max(1) as usize;
    if wanted > room {
        tracing::warn!(
            max_connections = room,
            asked = wanted,
            "lowering the connection limit below the open file limit"
        );
        room
    } else {
        wanted
    }
}

mod fd_limit {
    /// Raises the soft `RLIMIT_NOFILE` to the hard limit; answers `(soft, hard)` after.
    #[cfg(unix)]
    pub fn raise() -> Option<(u64, u64)> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return None;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim = raised;
                }
            }
        }
        Some((lim.rlim_cur, lim.rlim_max))
    }

    #[cfg(not(unix))]
    pub fn raise() -> Option<(u64, u64)> {
        None
    }
}

/// A database URL fit for logs: the password, if any, replaced.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// `kairos migrate`: brings a PostgreSQL schema up to date.
async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let Some(url) = &args.database.database_url else {
        anyhow::bail!("kairos migrate needs --database-url (or KAIROS_DATABASE_URL)");
    };
    let (applied, version) = kairos_store::PostgresStore::migrate(url, args.database.options())
        .await
        .with_context(|| format!("migrating {}", redacted(url)))?;
    if applied.is_empty() {
        println!(
            "schema {} is up to date (version {version})",
            args.database.database_schema
        );
    } else {
        println!(
            "schema {}: applied {} migration(s), now at version {version}",
            args.database.database_schema,
            applied.len()
        );
    }
    Ok(())
}

/// `kairos check`: verifies a data directory; an error (and exit code 1) when damaged.
fn check(args: CheckArgs) -> anyhow::Result<()> {
    let report = kairos_store::SqliteStore::check(&args.data_dir)
        .with_context(|| format!("checking {}", args.data_dir.display()))?;
    println!(
        "{}: sound (store {}, schema version {}, {} jobs)",
        args.data_dir.display(),
        report.store_id.map_or_else(
            || "without an identity yet".to_string(),
            |id| id.to_string()
        ),
        report.schema_version,
        report.jobs
    );
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled, so a signal right after the listening line is not
/// lost to the default action (an abrupt exit).
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
