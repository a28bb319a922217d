//! The sinks across `kill -9`: a server killed while it publishes (batches enqueued in a
//! tight loop, the kill right after each) loses no event on RabbitMQ or NATS once it is
//! back: every committed event arrives, first deliveries in id order, re-deliveries
//! recognisable by their id.

use crate::support::Kairos;
use futures_util::StreamExt;
use kairos_client::Client;
use kairos_core::api::EnqueueRequest;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use std::collections::BTreeSet;
use std::time::Duration;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const NATS: &str = "nats://127.0.0.1:4222";
const ROUNDS: usize = 5;
const BATCH: usize = 200;

/// Ids as they arrive, first deliveries and re-deliveries alike.
async fn amqp_ids(queue: &str) -> (lapin::Connection, tokio::sync::mpsc::UnboundedReceiver<u64>) {
    let conn = lapin::Connection::connect(AMQP, Default::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (.ci/run starts it)");
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "kairos.events".into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.queue_bind(
        q.name().clone(),
        "kairos.events".into(),
        format!("{queue}.#").into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            q.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let id = d.properties.message_id().as_ref().unwrap().as_str().parse();
            if tx.send(id.unwrap()).is_err() {
                return;
            }
        }
    });
    (conn, rx)
}

async fn nats_ids(queue: &str) -> tokio::sync::mpsc::UnboundedReceiver<u64> {
    let client = async_nats::connect(NATS)
        .await
        .expect("NATS on 127.0.0.1:4222 (.ci/run starts it)");
    let mut sub = client
        .subscribe(format!("kairos.events.{queue}.>"))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        while let Some(m) = sub.next().await {
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .unwrap()
                .as_str()
                .parse();
            if tx.send(id.unwrap()).is_err() {
                return;
            }
        }
    });
    rx
}

/// Every event id of `queue` in the log.
async fn logged(client: &Client, queue: &str) -> Vec<u64> {
    let (mut ids, mut after) = (Vec::new(), 0u64);
    loop {
        let query = kairos_core::event::EventQuery {
            after: Some(after),
            queue: Some(queue.to_string()),
            limit: Some(1000),
            ..Default::default()
        };
        let page = client.events(&query).await.unwrap();
        ids.extend(page.events.iter().map(|e| e.id));
        if page.next_after == after {
            return ids;
        }
        after = page.next_after;
    }
}

/// Reads `rx` until every id in `want` arrived; asserts first deliveries come in order.
async fn all_arrive(what: &str, rx: &mut tokio::sync::mpsc::UnboundedReceiver<u64>, want: &[u64]) {
    let mut seen = BTreeSet::new();
    let mut last_first = 0;
    let missing = |seen: &BTreeSet<u64>| want.iter().filter(|i| !seen.contains(i)).count();
    while missing(&seen) > 0 {
        let id = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: {} events never arrived", missing(&seen)))
            .unwrap();
        if seen.insert(id) {
            assert!(
                id > last_first,
                "{what}: event {id} first arrived after {last_first}"
            );
            last_first = id;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_before_a_kill_9_all_reach_both_brokers() {
    let queue = format!("crash-{}", uuid::Uuid::new_v4().simple());
    let (_conn, mut from_amqp) = amqp_ids(&queue).await;
    let mut from_nats = nats_ids(&queue).await;
    let dir = tempfile::tempdir().unwrap();
    let sinks = ["--sink", AMQP, "--sink", NATS];
    let batch: Vec<EnqueueRequest> = (0..BATCH)
        .map(|_| EnqueueRequest {
            queue: Some(queue.clone()),
            kind: "k".into(),
            ..Default::default()
        })
        .collect();
    for _ in 0..ROUNDS {
        let k = Kairos::try_start(dir.path(), &sinks).unwrap();
        let client = Client::new(&k.base).unwrap();
        // Committed (answered 2xx), then killed while the sinks publish them.
        client.enqueue_batch_ids(&batch, None).await.unwrap();
        k.kill9();
    }
    let k = Kairos::try_start(dir.path(), &sinks).unwrap();
    let want = logged(&Client::new(&k.base).unwrap(), &queue).await;
    assert_eq!(want.len(), ROUNDS * BATCH, "every enqueue made its event");
    all_arrive("RabbitMQ", &mut from_amqp, &want).await;
    all_arrive("NATS", &mut from_nats, &want).await;
}
