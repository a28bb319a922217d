//! The sinks against the real RabbitMQ and NATS on localhost (`.ci/run` starts them):
//! every event arrives, in order, carrying its id; a broker that is down at start is
//! caught up with once it is up.

use crate::support::TestServer;
use futures_util::StreamExt;
use kairos_server::sink::SinkConfig;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use serde_json::{Value, json};
use std::time::Duration;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const NATS: &str = "nats://127.0.0.1:4222";

/// A bound on a broken test, not a synchronisation.
const GUARD: Duration = Duration::from_secs(20);

/// A queue name no other test uses (tests share the brokers).
fn unique_queue() -> String {
    format!("sink-{}", uuid::Uuid::new_v4().simple())
}

/// A RabbitMQ queue bound to `queue`'s events on the sink's exchange.
async fn amqp_consumer(queue: &str) -> (lapin::Connection, lapin::Consumer) {
    let conn = lapin::Connection::connect(AMQP, Default::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (.ci/run starts it)");
    let ch = conn.create_channel().await.unwrap();
    // Declared as the sink declares it, so binding works whoever comes first.
    ch.exchange_declare(
        kairos_server::sink::EXCHANGE.into(),
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
        kairos_server::sink::EXCHANGE.into(),
        format!("{queue}.#").into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let consumer = ch
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
    (conn, consumer)
}

/// The next `n` messages: (routing key, message id, body).
async fn amqp_take(consumer: &mut lapin::Consumer, n: usize) -> Vec<(String, String, Value)> {
    let mut got = Vec::new();
    while got.len() < n {
        let d = tokio::time::timeout(GUARD, consumer.next())
            .await
            .expect("a message within 20 s")
            .expect("the consumer lives")
            .unwrap();
        let id = d.properties.message_id().as_ref().unwrap().to_string();
        assert_eq!(d.properties.delivery_mode(), &Some(2), "persistent");
        got.push((
            d.routing_key.to_string(),
            id,
            serde_json::from_slice(&d.data).unwrap(),
        ));
    }
    got
}

fn sink(url: &str) -> SinkConfig {
    SinkConfig::new(url, None).unwrap()
}

/// A job's life: enqueued, started, completed.
async fn run_a_job(s: &TestServer, queue: &str) -> String {
    let job = s.enqueue(json!({"queue": queue, "kind": "k"})).await;
    let leased = s.lease(queue, 1).await;
    s.ack(&leased[0], json!({"outcome": "completed"})).await;
    job["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn events_reach_rabbitmq_in_order_with_their_ids() {
    let queue = unique_queue();
    let (_conn, mut consumer) = amqp_consumer(&queue).await;
    let Some(s) = TestServer::start_with(|c| c.sinks = vec![sink(AMQP)]).await else {
        return;
    };
    let job = run_a_job(&s, &queue).await;
    let got = amqp_take(&mut consumer, 3).await;
    let keys: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(
        keys,
        [
            format!("{queue}.job.enqueued"),
            format!("{queue}.job.started"),
            format!("{queue}.job.completed")
        ]
    );
    let mut last = 0;
    for (_, id, body) in &got {
        assert_eq!(body["job_id"], job.as_str());
        assert_eq!(id, &body["id"].to_string(), "message_id is the event id");
        let n = body["id"].as_u64().unwrap();
        assert!(n > last, "in order");
        last = n;
    }
}

#[tokio::test]
async fn events_reach_nats_jetstream_with_their_ids() {
    let queue = unique_queue();
    let client = async_nats::connect(NATS)
        .await
        .expect("NATS on 127.0.0.1:4222 (.ci/run starts it)");
    let mut sub = client
        .subscribe(format!("kairos.events.{queue}.>"))
        .await
        .unwrap();
    let Some(s) = TestServer::start_with(|c| c.sinks = vec![sink(NATS)]).await else {
        return;
    };
    let job = run_a_job(&s, &queue).await;
    let mut subjects = Vec::new();
    for _ in 0..3 {
        let m = tokio::time::timeout(GUARD, sub.next())
            .await
            .expect("a message within 20 s")
            .unwrap();
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(body["job_id"], job.as_str());
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_string());
        assert_eq!(
            id,
            Some(body["id"].to_string()),
            "Nats-Msg-Id is the event id"
        );
        subjects.push(m.subject.to_string());
    }
    assert_eq!(
        subjects,
        [
            format!("kairos.events.{queue}.job.enqueued"),
            format!("kairos.events.{queue}.job.started"),
            format!("kairos.events.{queue}.job.completed")
        ]
    );
    // The stream holds them too (a consumer that was not listening reads them there).
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(kairos_server::sink::NATS_STREAM)
        .await
        .unwrap();
    assert!(stream.info().await.unwrap().state.messages >= 3);
}

/// A forwarder from `listener` to RabbitMQ: the broker "coming up" on the sink's port.
async fn forward(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5672").await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// The lag the metrics show for `label`.
async fn lag(s: &TestServer, label: &str) -> Option<u64> {
    let resp = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let prefix = format!("kairos_sink_lag_events{{sink=\"{label}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_broker_down_at_start_is_caught_up_with_once_it_is_up() {
    // A port nothing listens on yet: the "broker" is down.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let label = format!("amqp://127.0.0.1:{port}/%2f");
    let queue = unique_queue();
    let (_conn, mut consumer) = amqp_consumer(&queue).await;
    let Some(s) = TestServer::start_with(|c| c.sinks = vec![sink(&url)]).await else {
        return;
    };
    let job = run_a_job(&s, &queue).await;
    // The queue works on while the sink is down, and the lag shows what waits.
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        if lag(&s, &label).await.is_some_and(|l| l >= 3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lag never showed the waiting events"
        );
        // The gauge is set by the sink's reconnect loop; look again shortly.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(forward(listener));
    let got = amqp_take(&mut consumer, 3).await;
    assert!(got.iter().all(|g| g.2["job_id"] == job.as_str()));
    assert_eq!(got[2].0, format!("{queue}.job.completed"));
}
