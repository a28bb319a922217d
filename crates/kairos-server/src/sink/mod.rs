//! Sinks: the event log leaving the server for a broker (RabbitMQ over AMQP 0-9-1, NATS
//! JetStream), at least once and in order.
//!
//! Each sink is a durable subscriber of the bus (its cursor is named after the broker's
//! address, credentials left out) and a [`Publisher`] for its broker. It reads a page of
//! events, publishes them all, waits until the broker confirms every one, and only then
//! commits its cursor: a crash anywhere between a commit in the store and the broker's
//! confirm publishes those events again after the restart (each message carries the
//! event id for de-duplication). A broker that is down slows nothing else: events wait in
//! the log, the sink reconnects with backoff, and `kairos_sink_lag_events{sink}` says how
//! far behind it is. On a shared store only the node leading the background duties
//! publishes, so a cluster publishes each event once (twice only across a change of
//! leader).

#[cfg(feature = "amqp")]
mod amqp;
#[cfg(feature = "nats")]
mod nats;

use crate::engine::Engine;
use crate::metrics::Metrics;
use kairos_core::Backoff;
use kairos_core::event::{Event, EventFilter, EventQuery, MAX_EVENTS_PAGE};
use std::sync::Arc;
use std::time::Duration;

/// The exchange (RabbitMQ) or subject prefix (NATS) events are published under.
pub const EXCHANGE: &str = "kairos.events";
/// The JetStream stream a NATS sink publishes into (created when missing).
pub const NATS_STREAM: &str = "KAIROS_EVENTS";
/// The routing key's (subject's) queue part for an event without a queue.
pub const NO_QUEUE: &str = "_";

/// How long connecting (TCP, TLS, the broker's handshake, declaring the exchange or
/// finding the stream) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one publish (a page of events and its confirms) may take before the
/// connection is given up as broken.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// One configured sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The broker's URL (`amqp://`, `amqps://`, `nats://`).
    pub url: String,
    /// Which events it publishes.
    pub filter: EventFilter,
    kind: SinkKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkKind {
    Amqp,
    Nats,
}

/// Why a sink could not be configured, connected to, or published to.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The URL or the type filter is not usable.
    #[error("{0}")]
    Config(String),
    /// The broker refused, failed or did not answer in time.
    #[error("{0}")]
    Broker(String),
}

impl SinkConfig {
    /// A sink for `url`, publishing only the comma-separated event `types` (`None`:
    /// every event). Refuses a scheme this binary was built without.
    pub fn new(url: &str, types: Option<&str>) -> Result<SinkConfig, SinkError> {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        let kind = match scheme {
            "amqp" | "amqps" => SinkKind::Amqp,
            "nats" | "tls" => SinkKind::Nats,
            _ => {
                return Err(SinkError::Config(format!(
                    "sink {:?}: the URL must start with amqp://, amqps:// or nats://",
                    label(url)
                )));
            }
        };
        let built = match kind {
            SinkKind::Amqp => cfg!(feature = "amqp"),
            SinkKind::Nats => cfg!(feature = "nats"),
        };
        if !built {
            return Err(SinkError::Config(format!(
                "sink {:?}: this binary was built without the {scheme} sink",
                label(url)
            )));
        }
        let filter = EventQuery {
            types: types.map(String::from),
            limit: Some(MAX_EVENTS_PAGE),
            ..EventQuery::default()
        }
        .validate()
        .map_err(|e| SinkError::Config(format!("--sink-types: {e}")))?;
        Ok(SinkConfig {
            url: url.to_string(),
            filter,
            kind,
        })
    }

    /// The sink's name in logs, metrics and its cursor: the URL without credentials.
    pub fn label(&self) -> String {
        label(&self.url)
    }
}

/// `url` without its user information (`amqp://guest:guest@h/` → `amqp://h/`).
fn label(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

/// The routing key (RabbitMQ) or subject suffix (NATS) of `event`: `<queue>.<type>`.
pub fn routing_key(event: &Event) -> String {
    let queue = event.queue.as_deref().unwrap_or(NO_QUEUE);
    format!("{queue}.{}", event.kind.as_str())
}

/// A connection to a broker that publishes pages of events.
enum Publisher {
    #[cfg(feature = "amqp")]
    Amqp(amqp::Amqp),
    #[cfg(feature = "nats")]
    Nats(nats::Nats),
}

impl Publisher {
    async fn connect(config: &SinkConfig) -> Result<Publisher, SinkError> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_now(config))
            .await
            .unwrap_or_else(|_| {
                Err(SinkError::Broker(format!(
                    "no connection within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            })
    }

    async fn connect_now(config: &SinkConfig) -> Result<Publisher, SinkError> {
        match config.kind {
            #[cfg(feature = "amqp")]
            SinkKind::Amqp => Ok(Publisher::Amqp(amqp::Amqp::connect(&config.url).await?)),
            #[cfg(feature = "nats")]
            SinkKind::Nats => Ok(Publisher::Nats(nats::Nats::connect(&config.url).await?)),
            #[allow(unreachable_patterns)]
            _ => Err(SinkError::Config("this sink was not built in".into())),
        }
    }

    /// Publishes `events` in order and resolves once the broker has confirmed them all.
    async fn publish(&mut self, events: &[Event]) -> Result<(), SinkError> {
        match self {
            #[cfg(feature = "amqp")]
            Publisher::Amqp(p) => p.publish(events).await,
            #[cfg(feature = "nats")]
            Publisher::Nats(p) => p.publish(events).await,
            #[allow(unreachable_patterns)]
            _ => {
                let _ = events;
                Ok(())
            }
        }
    }
}

/// Reconnection delays: 200 ms doubling to 30 s, jittered.
/// Starts every configured sink on `engine`; each ends at shutdown.
pub fn start(engine: &Engine, sinks: &[SinkConfig], metrics: Arc<Metrics>) {
    for config in sinks {
        engine.spawn(run(engine.clone(), config.clone(), metrics.clone()));
    }
}

/// Publishes the log to one sink until shutdown: while this node leads, subscribe,
/// connect and publish; on any failure, wait the backoff and start over from the cursor.
async fn run(engine: Engine, config: SinkConfig, metrics: Arc<Metrics>) {
    let label = config.label();
    let name = format!("sink:{label}");
    let mut shutdown = engine.shutting_down();
    let mut leading = engine.leading();
    let backoff = Backoff::reconnect();
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            _ = leading.wait_for(|l| *l) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        // Shutdown ends a connection at any point, a publish waiting on its confirms
        // included: what was not committed is published again after the restart.
        let outcome = tokio::select! {
            outcome = publish_while_leading(&engine, &config, &name, &label, &metrics) => outcome,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match outcome {
            Ok(Ended::Shutdown) => return,
            Ok(Ended::Resigned) => {
                failures = 0;
                continue;
            }
            Ok(Ended::Failed { published, error }) => {
                if published {
                    failures = 0;
                }
                failures = failures.saturating_add(1);
                // Once per outage, then quietly until it recovers.
                if failures == 1 {
                    tracing::warn!(sink = %label, error = %error, "sink failed; reconnecting with backoff");
                } else {
                    tracing::debug!(sink = %label, error = %error, attempt = failures, "sink still failing");
                }
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(sink = %label, error = %error, "sink could not read the event log; retrying");
                }
            }
        }
        show_lag(&engine, &name, &label, &metrics, None).await;
        let delay = backoff.delay(failures, fastrand::f64()).as_std();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// How a sink's connection ended.
enum Ended {
    Shutdown,
    /// Another node leads now.
    Resigned,
    /// The broker failed (after publishing something, or not).
    Failed {
        published: bool,
        error: SinkError,
    },
}

async fn publish_while_leading(
    engine: &Engine,
    config: &SinkConfig,
    name: &str,
    label: &str,
    metrics: &Metrics,
) -> Result<Ended, crate::engine::EngineError> {
    let mut sub = engine.subscribe(name, config.filter.clone()).await?;
    let mut publisher = match Publisher::connect(config).await {
        Ok(p) => p,
        Err(error) => {
            return Ok(Ended::Failed {
                published: false,
                error,
            });
        }
    };
    tracing::info!(sink = %label, after = sub.committed(), "sink connected");
    let mut leading = engine.leading();
    let mut published = false;
    loop {
        show_lag(engine, name, label, metrics, Some(sub.committed())).await;
        let events = tokio::select! {
            next = sub.next() => next,
            _ = leading.wait_for(|l| !*l) => return Ok(Ended::Resigned),
        };
        let events = match events {
            None => return Ok(Ended::Shutdown),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(events)) => events,
        };
        let sent = tokio::time::timeout(PUBLISH_TIMEOUT, publisher.publish(&events)).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Ok(Ended::Failed { published, error }),
            Err(_) => {
                let error =
                    SinkError::Broker(format!("no confirm within {}s", PUBLISH_TIMEOUT.as_secs()));
                return Ok(Ended::Failed { published, error });
            }
        }
        sub.commit().await?;
        published = true;
    }
}

/// Sets the lag gauge: how far the log's head is past `committed` (`None`: the
/// sink's stored cursor, read here, as when it is disconnected).
async fn show_lag(
    engine: &Engine,
    name: &str,
    label: &str,
    metrics: &Metrics,
    committed: Option<u64>,
) {
    let store = engine.store();
    let committed = match committed {
        Some(c) => c,
        None => match store.cursor(name).await {
            Ok(c) => c.unwrap_or(0),
            Err(_) => return,
        },
    };
    if let Ok(head) = store.last_event_id().await {
        metrics.sink_lag(label, head.saturating_sub(committed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_leave_credentials_out() {
        assert_eq!(
            label("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(label("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(label("nats://tok@h:1"), "nats://h:1");
    }

    #[test]
    fn unknown_schemes_and_types_are_refused() {
        assert!(SinkConfig::new("http://x", None).is_err());
        assert!(SinkConfig::new("amqp://h", Some("job.nope")).is_err());
        let c = SinkConfig::new("amqp://h", Some("job.dead,job.completed")).unwrap();
        assert_eq!(c.filter.types.len(), 2);
    }
}
