//! The RabbitMQ sink (AMQP 0-9-1, by lapin): events go to the durable topic exchange
//! `kairos.events` with routing key `<queue>.<type>`, as persistent JSON messages whose
//! `message_id` is the event id and `type` the event type, on a channel in confirm mode.

use super::{EXCHANGE, SinkError, routing_key};
use kairos_core::event::Event;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

/// AMQP's persistent delivery mode: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// A connection with a channel in confirm mode.
pub(super) struct Amqp {
    // Kept open for as long as the channel is used.
    _connection: Connection,
    channel: Channel,
}

fn broker(context: &str) -> impl Fn(lapin::Error) -> SinkError + '_ {
    move |e| SinkError::Broker(format!("{context}: {e}"))
}

impl Amqp {
    /// Connects, opens a channel in confirm mode and declares the exchange.
    pub(super) async fn connect(url: &str) -> Result<Amqp, SinkError> {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .map_err(broker("connect"))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(broker("open a channel"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(broker("confirm mode"))?;
        channel
            .exchange_declare(
                EXCHANGE.into(),
                lapin::ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(broker("declare the exchange"))?;
        Ok(Amqp {
            _connection: connection,
            channel,
        })
    }

    /// Publishes every event, then waits for the broker's confirm of each.
    pub(super) async fn publish(&mut self, events: &[Event]) -> Result<(), SinkError> {
        let mut confirms = Vec::with_capacity(events.len());
        for e in events {
            let body = serde_json::to_vec(e).map_err(|e| SinkError::Broker(e.to_string()))?;
            let properties = BasicProperties::default()
                .with_delivery_mode(PERSISTENT)
                .with_content_type("application/json".into())
                .with_message_id(e.id.to_string().into())
                .with_type(e.kind.as_str().into())
                .with_timestamp(e.at.as_second().max(0) as u64);
            let confirm = self
                .channel
                .basic_publish(
                    EXCHANGE.into(),
                    routing_key(e).into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await
                .map_err(broker("publish"))?;
            confirms.push((e.id, confirm));
        }
        for (id, confirm) in confirms {
            match confirm.await.map_err(broker("confirm"))? {
                Confirmation::Ack(_) => {}
                Confirmation::Nack(_) => {
                    return Err(SinkError::Broker(format!(
                        "the broker refused event {id} (nack)"
                    )));
                }
                Confirmation::NotRequested => {
                    return Err(SinkError::Broker(
                        "the channel is not in confirm mode".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}
