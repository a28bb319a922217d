//! The client against a real server on an ephemeral port.

mod common;
use common::{job, server};

use kairos_client::{Client, ClientError};
use kairos_core::JobState;
use kairos_core::api::{
    AckItem, AckRequest, HeartbeatItem, HeartbeatRequest, LeaseRequest, ListQuery,
};

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
    let nobody = Client::new("http://127.0.0.1:1")
        .unwrap()
        .with_retry(kairos_client::RetryPolicy::NEVER);
    assert!(matches!(
        nobody.ready().await,
        Err(ClientError::Transport(_))
    ));
}

fn of_kind(kind: &str) -> ListQuery {
    ListQuery {
        kind: Some(kind.into()),
        ..Default::default()
    }
}

/// A TCP front for `server` whose first connection loses its answer: the request reaches
/// the server (and is applied), the reply never reaches the client. Every later
/// connection passes through untouched.
async fn losing_first_answer(server: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = server.trim_start_matches("http://").to_string();
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", front.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut first, _) = front.accept().await.unwrap();
        // One whole request: headers, then as many body bytes as they announce.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let body_from = loop {
            let n = first.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the client sent a whole request");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..body_from]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < body_from + length {
            let n = first.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        let mut up = tokio::net::TcpStream::connect(&upstream).await.unwrap();
        up.write_all(&buf).await.unwrap();
        let n = up.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server answered the first request");
        drop(first); // the answer is lost on the way back
        loop {
            let (mut c, _) = front.accept().await.unwrap();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut up = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
            });
        }
    });
    base
}

#[tokio::test]
async fn an_enqueue_whose_answer_was_lost_is_retried_without_a_second_job() {
    let (direct, _dir, _stop) = server().await;
    let c = Client::new(&losing_first_answer(direct.base()).await).unwrap();
    let made = c.enqueue(&job("once")).await.unwrap();
    let page = direct.list(&of_kind("once")).await.unwrap();
    let ids: Vec<_> = page.jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids, vec![made.id], "the retry answered the first try's job");
}

#[tokio::test]
async fn a_client_that_never_retries_reports_the_lost_answer() {
    let (direct, _dir, _stop) = server().await;
    let c = Client::new(&losing_first_answer(direct.base()).await)
        .unwrap()
        .with_retry(kairos_client::RetryPolicy::NEVER);
    let err = c.enqueue(&job("once")).await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err}");
    // It was applied all the same: the caller cannot tell, which is why retries carry keys.
    let page = direct.list(&of_kind("once")).await.unwrap();
    assert_eq!(page.jobs.len(), 1);
}

#[tokio::test]
async fn a_call_made_before_the_server_listens_succeeds_once_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let c = Client::new(&base).unwrap();
    let call = tokio::spawn({
        let c = c.clone();
        async move { c.enqueue(&job("early")).await }
    });
    // The first try finds nobody answering: its connection is accepted and closed.
    let (first, _) = listener.accept().await.unwrap();
    drop(first);
    let store = kairos_store::SqliteStore::open(&dir.path().join("data")).unwrap();
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        kairos_server::Server::new(std::sync::Arc::new(store)).serve(listener, async {
            let _ = rx.await;
        }),
    );
    let made = call.await.unwrap().unwrap();
    assert_eq!(c.job(made.id).await.unwrap().kind, "early");
}
