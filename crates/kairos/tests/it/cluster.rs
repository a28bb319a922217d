//! Three `kairos server` processes on one PostgreSQL schema, workers spread over them,
//! and the leader killed with `kill -9` mid-load.

use crate::support::Kairos;
use kairos_store::conformance::database::TestDatabase;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    call(client, reqwest::Method::POST, url, Some(body)).await
}

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    call(client, reqwest::Method::GET, url, None).await
}

/// The id of the node `node` says leads, if one does.
async fn leader_seen_by(client: &reqwest::Client, node: &Kairos) -> Option<String> {
    let (status, body) = get(client, format!("{}/v1/cluster", node.base)).await;
    if status != 200 {
        return None;
    }
    body["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["leader"] == true)
        .map(|n| n["address"].as_str().unwrap_or_default().to_string())
}

/// A worker on one node: leases `work` jobs and completes them, until told to stop.
async fn work(base: String, stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let client = reqwest::Client::new();
    let mut done = 0;
    while !*stop.borrow() {
        let (status, body) = post(
            &client,
            format!("{base}/v1/lease"),
            json!({"queues": ["work"], "worker": base, "max": 20, "wait": "200ms"}),
        )
        .await;
        if status != 200 {
            // This node is gone (killed): this worker is done with it.
            if status == 0 {
                return done;
            }
            continue;
        }
        let jobs = body["jobs"].as_array().cloned().unwrap_or_default();
        if jobs.is_empty() {
            continue;
        }
        let results: Vec<Value> = jobs
            .iter()
            .map(
                |j| json!({"id": j["id"], "lease_token": j["lease_token"], "outcome": "completed"}),
            )
            .collect();
        let (status, _) = post(
            &client,
            format!("{base}/v1/ack"),
            json!({"worker": base, "results": results}),
        )
        .await;
        if status == 200 {
            done += jobs.len();
        }
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_the_leader_being_killed() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let args = ["--database-url", &db.url, "--database-schema", &db.schema];
    let mut nodes: Vec<Option<Kairos>> = Vec::new();
    for d in &dirs {
        let node = Kairos::try_start(d.path(), &args).unwrap_or_else(|r| panic!("{r:?}"));
        nodes.push(Some(node));
    }
    let client = reqwest::Client::new();
    let base = |i: usize, nodes: &[Option<Kairos>]| nodes[i].as_ref().unwrap().base.clone();

    // A per-second schedule, made through node 0.
    let (status, schedule) = post(
        &client,
        format!("{}/v1/schedules", base(0, &nodes)),
        json!({"name": "every second", "cron": "* * * * * *", "overlap": "allow",
               "job": {"queue": "cron", "kind": "tick"}}),
    )
    .await;
    assert_eq!(status, 201, "{schedule}");
    let schedule_id = schedule["id"].as_str().unwrap().to_string();

    // Exactly one leader, the same for everyone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        let mut seen = HashSet::new();
        for n in nodes.iter().flatten() {
            seen.insert(leader_seen_by(&client, n).await);
        }
        if seen.len() == 1 && seen.iter().next().unwrap().is_some() {
            break seen.into_iter().next().unwrap().unwrap();
        }
        assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let leader_index = nodes
        .iter()
        .position(|n| n.as_ref().unwrap().base.ends_with(&leader))
        .expect("the leader is one of the three");

    // A job leased through the leader with a short lease, never acked: its worker dies
    // with the leader.
    let (status, orphan) = post(
        &client,
        format!("{}/v1/jobs", base(leader_index, &nodes)),
        json!({"queue": "orphan", "kind": "k"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, leased) = post(
        &client,
        format!("{}/v1/lease", base(leader_index, &nodes)),
        json!({"queues": ["orphan"], "worker": "doomed", "lease": "2s"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(leased["jobs"][0]["id"], orphan["id"]);

    // Workers on every node; jobs enqueued through all three.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers: Vec<_> = (0..3)
        .map(|i| tokio::spawn(work(base(i, &nodes), stop_rx.clone())))
        .collect();
    let mut ids = HashSet::new();
    let mut killed_at = None;
    for round in 0..6 {
        for i in 0..3 {
            if nodes[i].is_none() {
                continue;
            }
            let jobs: Vec<Value> = (0..50)
                .map(|k| json!({"queue": "work", "kind": format!("r{round}n{i}k{k}")}))
                .collect();
            let (status, body) = post(
                &client,
                format!("{}/v1/jobs/batch", base(i, &nodes)),
                json!({"jobs": jobs}),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            for j in body["jobs"].as_array().unwrap() {
                ids.insert(j["id"].as_str().unwrap().to_string());
            }
        }
        if round == 2 {
            // Mid-load: the leader dies.
            nodes[leader_index].take().unwrap().kill9();
            killed_at = Some(jiff::Timestamp::now());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let survivors: Vec<usize> = (0..3).filter(|i| nodes[*i].is_some()).collect();

    // Another node leads within 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = leader_seen_by(&client, nodes[survivors[0]].as_ref().unwrap()).await;
        if seen.as_ref().is_some_and(|l| *l != leader) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader after the old one died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let killed_at = killed_at.unwrap();
    let led_again_at = jiff::Timestamp::now();

    // Every enqueued job completes.
    let count_url = format!("{}/v1/queues/work", base(survivors[0], &nodes));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, q) = get(&client, count_url.clone()).await;
        if q["counts"]["completed"] == ids.len() {
            break;
        }
        assert!(Instant::now() < deadline, "not every job completed: {q}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The orphan's lease ran out and the new leader made it leasable again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, again) = post(
            &client,
            format!("{}/v1/lease", base(survivors[0], &nodes)),
            json!({"queues": ["orphan"], "worker": "rescuer", "wait": "1s"}),
        )
        .await;
        assert_eq!(status, 200);
        if let Some(j) = again["jobs"].as_array().and_then(|a| a.first()) {
            assert_eq!(j["id"], orphan["id"]);
            assert_eq!(j["attempt"], 2, "its second attempt");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the orphaned job was never leased again"
        );
    }

    // One run for every second of the test: before, during and after the failover.
    // Runs are looked at until one exists for a slot 2 s after the new leader took over.
    let runs_url = format!(
        "{}/v1/jobs?schedule_id={schedule_id}&limit=500",
        base(survivors[0], &nodes)
    );
    let until = led_again_at + jiff::SignedDuration::from_secs(2);
    let deadline = Instant::now() + Duration::from_secs(15);
    let per_slot = loop {
        let (_, runs) = get(&client, runs_url.clone()).await;
        let mut per_slot: BTreeMap<jiff::Timestamp, usize> = BTreeMap::new();
        for r in runs["jobs"].as_array().unwrap() {
            let slot = r["scheduled_for"].as_str().unwrap().parse().unwrap();
            *per_slot.entry(slot).or_default() += 1;
        }
        if per_slot
            .keys()
            .next_back()
            .is_some_and(|last| *last >= until)
        {
            break per_slot;
        }
        assert!(
            Instant::now() < deadline,
            "the schedule stopped firing: {per_slot:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let slots: Vec<jiff::Timestamp> = per_slot.keys().copied().collect();
    assert!(
        slots[0] < killed_at,
        "runs before the failover: {per_slot:?}"
    );
    assert!(
        per_slot.values().all(|n| *n == 1),
        "a slot ran twice: {per_slot:?}"
    );
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1].duration_since(pair[0]),
            jiff::SignedDuration::from_secs(1),
            "a second without its run: {per_slot:?}"
        );
    }

    stop_tx.send_replace(true);
    for i in survivors {
        let acked = (&mut workers[i]).await.unwrap();
        assert!(acked > 0, "node {i}'s worker got work too");
    }
}
