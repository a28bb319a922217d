//! The client against a real server on an ephemeral port.

use kairos_client::{Client, ClientError};
use kairos_core::api::{
    AckItem, AckRequest, EnqueueRequest, HeartbeatItem, HeartbeatRequest, LeaseRequest, ListQuery,
};
use kairos_core::{JobState, RawValue};

async fn server() -> (Client, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let store = kairos_store::SqliteStore::open(&dir.path().join("data")).unwrap();
    let server = kairos_server::Server::new(std::sync::Arc::new(store));
    tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    (Client::new(&base).unwrap(), dir, tx)
}

fn job(kind: &str) -> EnqueueRequest {
    EnqueueRequest {
        queue: Some("q".into()),
        kind: kind.into(),
        payload: Some(RawValue::from_string(r#"{"x":1}"#.into()).unwrap()),
        ..Default::default()
    }
}

fn lease_req(max: u32) -> LeaseRequest {
    LeaseRequest {
        queues: vec!["q".into()],
        worker: "w".into(),
        max: Some(max),
        ..Default::default()
    }
}

fn done(id: uuid::Uuid, token: uuid::Uuid) -> AckItem {
    AckItem::completed(id, token)
}

#[tokio::test]
async fn a_job_round_trip() {
    let (c, _dir, _stop) = server().await;
    c.ready().await.unwrap();
    let j = c.enqueue(&job("a")).await.unwrap();
    assert_eq!(j.state, JobState::Available);
    assert_eq!(j.payload.get(), r#"{"x":1}"#);
    let first = c.enqueue_with_key(&job("b"), Some("key-1")).await.unwrap();
    let again = c.enqueue_with_key(&job("b"), Some("key-1")).await.unwrap();
    assert!(first.created && again.created);
    assert_eq!(first.job.id, again.job.id);
    let batch = c.enqueue_batch(&[job("c"), job("d")], None).await.unwrap();
    assert_eq!(batch.len(), 2);
    assert_eq!(c.job(j.id).await.unwrap().id, j.id);
    let page = c
        .list(&ListQuery {
            queue: Some("q".into()),
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.jobs.len(), 2);
    assert!(page.next_cursor.is_some());

    let leased = c.lease(&lease_req(10)).await.unwrap();
    assert_eq!(leased.len(), 4);
    assert_eq!(leased[0].job.payload.get(), r#"{"x":1}"#);
    let hb = c
        .heartbeat(&HeartbeatRequest {
            worker: "w".into(),
            leases: vec![HeartbeatItem {
                id: leased[0].job.id,
                lease_token: leased[0].lease_token,
                extend: None,
            }],
        })
        .await
        .unwrap();
    assert!(hb[0].ok);
    let results = c
        .ack(&AckRequest {
            worker: "w".into(),
            results: leased
                .iter()
                .map(|l| done(l.job.id, l.lease_token))
                .collect(),
        })
        .await
        .unwrap();
    assert!(
        results
            .iter()
            .all(|r| r.ok && r.state == Some(JobState::Completed))
    );
    let stale = c
        .ack(&AckRequest {
            worker: "w".into(),
            results: vec![done(j.id, uuid::Uuid::new_v4())],
        })
        .await
        .unwrap();
    assert_eq!(stale[0].error.as_ref().unwrap().status, 409);

    let q = c.queue("q").await.unwrap();
    assert_eq!(q.counts.completed, 4);
    assert_eq!(c.queues().await.unwrap().len(), 1);
    assert!(c.set_paused("q", true).await.unwrap().paused);
    assert_eq!(c.retry_dead("q").await.unwrap(), 0);
    let r = c.retry(j.id).await.unwrap();
    assert_eq!(r.state, JobState::Available);
    let x = c.cancel(j.id).await.unwrap();
    assert_eq!(x.state, JobState::Cancelled);
    c.delete(j.id).await.unwrap();
}

#[tokio::test]
async fn refusals_carry_the_problem() {
    let (c, _dir, _stop) = server().await;
    match c.job(uuid::Uuid::now_v7()).await {
        Err(ClientError::Api(p)) => assert_eq!(p.status, 404),
        other => panic!("expected a 404 problem, got {other:?}"),
    }
    let err = c.enqueue(&job("bad kind")).await.unwrap_err();
    assert_eq!(err.status(), Some(422));
    match err {
        ClientError::Api(p) => assert_eq!(p.errors[0].field, "kind"),
        other => panic!("expected a problem, got {other:?}"),
    }
    assert!(matches!(
        Client::new("localhost:1"),
        Err(ClientError::BaseUrl(_))
    ));
    let nobody = Client::new("http://127.0.0.1:1").unwrap();
    assert!(matches!(
        nobody.ready().await,
        Err(ClientError::Transport(_))
    ));
}
