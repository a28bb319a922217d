//! A worker for `welcome` jobs on the `email` queue: `cargo run -p kairos-client --example
//! worker` (reads `KAIROS_SERVER`, default `http://127.0.0.1:7676`; stops on Ctrl-C).

use kairos_client::Client;
use kairos_client::worker::{JobContext, JobError, Worker};

#[tokio::main]
async fn main() -> Result<(), kairos_client::ClientError> {
    let server = std::env::var("KAIROS_SERVER").unwrap_or("http://127.0.0.1:7676".into());
    let report = Worker::new(Client::new(&server)?, "example-mailer")
        .queue("email")
        .concurrency(4)
        .handle("welcome", |job: JobContext| async move {
            let payload: serde_json::Value = job.payload()?;
            let Some(to) = payload["to"].as_str() else {
                return Err(JobError::fatal("no \"to\" address")); // dead at once
            };
            Ok(Some(serde_json::json!({ "sent": to })))
        })
        .run()
        .await?;
    println!("{report:?}");
    Ok(())
}
