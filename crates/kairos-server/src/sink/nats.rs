//! The NATS sink (JetStream, by async-nats): events go to subject
//! `kairos.events.<queue>.<type>` as JSON, with `Nats-Msg-Id` set to the event id (so
//! JetStream drops a re-publish within its duplicate window), into the stream
//! `KAIROS_EVENTS` on `kairos.events.>`, created when missing.

use super::{EXCHANGE, NATS_STREAM, SinkError, routing_key};
use async_nats::jetstream::{self, Context};
use kairos_core::event::Event;

/// A JetStream context on one connection.
pub(super) struct Nats {
    js: Context,
}

fn broker(context: &'static str) -> impl Fn(&dyn std::fmt::Display) -> SinkError {
    move |e| SinkError::Broker(format!("{context}: {e}"))
}

impl Nats {
    /// Connects and makes sure the stream exists.
    pub(super) async fn connect(url: &str) -> Result<Nats, SinkError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(super::CONNECT_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| broker("connect")(&e))?;
        let js = jetstream::new(client);
        js.get_or_create_stream(jetstream::stream::Config {
            name: NATS_STREAM.to_string(),
            subjects: vec![format!("{EXCHANGE}.>")],
            ..Default::default()
        })
        .await
        .map_err(|e| broker("find or create the stream")(&e))?;
        Ok(Nats { js })
    }

    /// Publishes every event, then waits for JetStream's ack of each.
    pub(super) async fn publish(&mut self, events: &[Event]) -> Result<(), SinkError> {
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let body = serde_json::to_vec(e).map_err(|e| SinkError::Broker(e.to_string()))?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                e.id.to_string().as_str(),
            );
            let subject = format!("{EXCHANGE}.{}", routing_key(e));
            let ack = self
                .js
                .publish_with_headers(subject, headers, body.into())
                .await
                .map_err(|e| broker("publish")(&e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| broker("ack")(&e))?;
        }
        Ok(())
    }
}
