//! `kairos token create`: mints a bearer token for the API, signed (HS256) with the
//! server's secret, for operators handing tokens to producers, workers and readers.

use anyhow::Context;
use kairos_core::Duration;
use kairos_server::http::access::Role;
use kairos_server::http::layers::auth::{Claims, mint};

/// `kairos token …`.
#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Print a new token (HS256, signed with --jwt-secret / KAIROS_JWT_SECRET).
    Create(CreateArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// `admin`, `producer`, `worker` or `reader`.
    #[arg(long)]
    role: Role,
    /// Limit the token to these queues (names, or patterns where `*` matches any run of
    /// characters: `email.*`); repeat or separate with commas. Default: every queue.
    #[arg(long = "queues", value_delimiter = ',')]
    queues: Vec<String>,
    /// How long the token is valid (`30d`, `12h`).
    #[arg(long, default_value = "30d")]
    ttl: Duration,
    /// Who the token is for (rate limits and idempotency keys are per subject).
    #[arg(long, default_value = "kairos-token")]
    subject: String,
    /// The `iss` to put in it (when the server checks one).
    #[arg(long, env = "KAIROS_JWT_ISSUER")]
    issuer: Option<String>,
    /// The `aud` to put in it (when the server checks one).
    #[arg(long, env = "KAIROS_JWT_AUDIENCE")]
    audience: Option<String>,
    /// The server's secret.
    #[arg(long, env = "KAIROS_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
}

pub fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Create(args) = cmd;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let claims = Claims {
        sub: args.subject,
        role: args.role.as_str().to_string(),
        queues: (!args.queues.is_empty()).then_some(args.queues),
        exp: now + args.ttl.as_std().as_secs(),
        nbf: None,
        iat: Some(now),
        iss: args.issuer,
        aud: args.audience,
    };
    println!("{}", mint(args.jwt_secret.as_bytes(), &claims)?);
    Ok(())
}
