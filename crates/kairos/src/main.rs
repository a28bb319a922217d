//! The `kairos` binary: `kairos server` runs the job server; `kairos bench` measures one.
//! Later commands (`worker`, client commands) join as subcommands here.

mod bench;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Kairos: a durable job scheduler and task queue server.
#[derive(Parser, Debug)]
#[command(name = "kairos", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (embedded SQLite store by default).
    Server(ServerArgs),
    /// Measure throughput, latency and timing precision of a server.
    Bench(bench::BenchArgs),
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KAIROS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server(args)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
    }
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let mut config = kairos_server::Config::new(args.data_dir.clone());
    config.max_payload_bytes = args.max_payload_bytes;
    config.max_body_bytes = args.max_body_bytes.max(args.max_payload_bytes + 64 * 1024);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port when --listen asks for port 0.
    println!(
        "kairos listening on http://{addr} (data in {})",
        args.data_dir.display()
    );
    kairos_server::run(listener, config, shutdown_signal())
        .await
        .context("running the server")?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
