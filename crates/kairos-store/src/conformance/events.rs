//! Conformance cases of the event log: what each change writes, how pages filter and
//! continue, and retention.

use super::*;
use kairos_core::event::{EVENT_SCAN_WINDOW, Event, EventQuery, EventType, NewEvent};

/// Every event from the start, once `n` are readable (a backend may make committed
/// events readable a moment after the commit; its signal says when).
async fn events_once(env: &Env, n: usize) -> Vec<Event> {
    let mut seen = env.store.signals().watch_events();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut all: Vec<Event> = Vec::new();
        let mut after = 0;
        loop {
            let page = env
                .store
                .events(query(after, None, None, 1000))
                .await
                .unwrap();
            let next = page.next_after;
            all.extend(page.events);
            if next == after {
                break;
            }
            after = next;
        }
        if all.len() >= n {
            return all;
        }
        tokio::time::timeout_at(deadline, seen.changed())
            .await
            .unwrap_or_else(|_| panic!("{n} events never became readable (saw {})", all.len()))
            .expect("the store's signals live as long as it");
    }
}

fn query(
    after: u64,
    types: Option<&str>,
    queue: Option<&str>,
    limit: u32,
) -> kairos_core::event::EventFilter {
    EventQuery {
        after: Some(after),
        types: types.map(String::from),
        queue: queue.map(String::from),
        limit: Some(limit),
    }
    .validate()
    .unwrap()
}

fn names(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

fn data(e: &Event) -> serde_json::Value {
    serde_json::from_str(e.data.get()).unwrap()
}

pub async fn every_change_writes_its_events_in_order(env: Env) {
    // A job's whole life: enqueued, started, completed.
    let done = enqueue_one(&env, spec("done")).await;
    let l = env.store.lease(lease_spec(&["default"], 1)).await.unwrap();
    env.store
        .ack(vec![completed(done.id, l[0].lease_token)])
        .await
        .unwrap();
    // A repeated report changes nothing, so writes nothing.
    env.store
        .ack(vec![completed(done.id, l[0].lease_token)])
        .await
        .unwrap();
    // The last attempt failing: job.failed then job.dead; a redrive: job.retried.
    let mut one_try = spec("dies");
    one_try.max_attempts = 1;
    let dies = enqueue_one(&env, one_try).await;
    let l = env.store.lease(lease_spec(&["default"], 1)).await.unwrap();
    env.store
        .ack(vec![failed(dies.id, l[0].lease_token)])
        .await
        .unwrap();
    assert_eq!(env.store.retry_dead("default").await.unwrap(), 1);
    // Cancel and delete.
    env.store.cancel(dies.id).await.unwrap();
    env.store.delete(dies.id).await.unwrap();
    // A lease that lapses is a failed attempt with a retry to come.
    let lapses = enqueue_one(&env, spec("lapses")).await;
    let mut short = lease_spec(&["default"], 1);
    short.lease = Some(Duration::from_secs(5));
    env.store.lease(short).await.unwrap();
    advance(&env, 5);
    assert_eq!(env.store.tick().await.unwrap().expired, 1);
    // A queue paused, paused again (no change, no event), resumed.
    env.store.set_paused("mail", true).await.unwrap();
    env.store.set_paused("mail", true).await.unwrap();
    env.store.set_paused("mail", false).await.unwrap();
    // A batch refused whole writes nothing.
    env.store
        .change_queue("full", limit(Some(1), None, None))
        .await
        .unwrap();
    let refused = env
        .store
        .enqueue(vec![spec_in("full", "a"), spec_in("full", "b")], None)
        .await;
    assert!(matches!(refused, Err(StoreError::QueueFull(_))));
    // A schedule's life: created, updated, a trigger (its run enqueued, then fired),
    // deleted.
    let s = env
        .store
        .create_schedule(schedule_req("nightly", "0 3 * * *"), Limits::default())
        .await
        .unwrap();
    let patch = SchedulePatch {
        description: Some("changed".into()),
        ..Default::default()
    };
    env.store
        .update_schedule(s.id, patch, Limits::default())
        .await
        .unwrap();
    let run = env.store.trigger_schedule(s.id).await.unwrap();
    env.store.delete_schedule(s.id).await.unwrap();

    let events = events_once(&env, 20).await;
    assert_eq!(
        names(&events),
        [
            "job.enqueued",
            "job.started",
            "job.completed",
            "job.enqueued",
            "job.started",
            "job.failed",
            "job.dead",
            "job.retried",
            "job.cancelled",
            "job.deleted",
            "job.enqueued",
            "job.started",
            "job.failed",
            "queue.paused",
            "queue.resumed",
            "schedule.created",
            "schedule.updated",
            "job.enqueued",
            "schedule.fired",
            "schedule.deleted",
        ]
    );
    for pair in events.windows(2) {
        assert!(pair[0].id < pair[1].id, "ids strictly increase");
    }
    assert!(events[0].id >= 1);
    assert_eq!(
        env.store.last_event_id().await.unwrap(),
        events.last().unwrap().id
    );
    // Job events carry the job as it was after the change, without its payload.
    let started = &events[1];
    assert_eq!(started.job_id, Some(done.id));
    assert_eq!(started.queue.as_deref(), Some("default"));
    assert_eq!(started.schedule_id, None);
    assert_eq!(data(started)["state"], "running");
    assert_eq!(data(started)["attempt"], 1);
    assert!(data(started).get("payload").is_none());
    assert_eq!(data(&events[5])["state"], "dead");
    assert_eq!(data(&events[5])["error"], "boom");
    assert_eq!(data(&events[12])["state"], "retryable");
    assert_eq!(data(&events[12])["error"], "lease expired");
    assert_eq!(events[12].job_id, Some(lapses.id));
    assert_eq!(events[13].queue.as_deref(), Some("mail"));
    assert_eq!(events[13].job_id, None);
    assert_eq!(data(&events[13])["queue"], "mail");
    // Schedule events name the schedule; the fire names its run too.
    assert_eq!(events[15].schedule_id, Some(s.id));
    assert_eq!(data(&events[15])["name"], "nightly");
    assert!(
        data(&events[15]).get("job").is_none(),
        "no template payload"
    );
    let fired = &events[18];
    assert_eq!(fired.job_id, Some(run.id));
    assert_eq!(fired.schedule_id, Some(s.id));
    assert_eq!(data(fired)["manual"], true);
    assert_eq!(data(fired)["job_id"], run.id.to_string());
    assert_eq!(events[17].schedule_id, Some(s.id), "a run's events name it");
}

pub async fn event_pages_filter_and_continue(env: Env) {
    for i in 0..6 {
        let queue = if i % 2 == 0 { "mail" } else { "sms" };
        enqueue_one(&env, spec_in(queue, "k")).await;
    }
    let l = env.store.lease(lease_spec(&["mail"], 10)).await.unwrap();
    assert_eq!(l.len(), 3);
    let all = events_once(&env, 9).await;
    // Pages of two continue at the last id, and end.
    let first = env.store.events(query(0, None, None, 2)).await.unwrap();
    assert_eq!(first.events.len(), 2);
    assert_eq!(first.next_after, first.events[1].id);
    let second = env
        .store
        .events(query(first.next_after, None, None, 2))
        .await
        .unwrap();
    assert_eq!(second.events[0].id, all[2].id);
    let last = all.last().unwrap().id;
    let tail = env
        .store
        .events(query(last - 1, None, None, 100))
        .await
        .unwrap();
    assert_eq!(tail.events.len(), 1);
    assert_eq!(tail.next_after, last);
    let past = env
        .store
        .events(query(last, None, None, 100))
        .await
        .unwrap();
    assert!(past.events.is_empty());
    assert_eq!(past.next_after, last, "nothing new: the cursor stays");
    // Filters by type and queue.
    let started = env
        .store
        .events(query(0, Some("job.started"), None, 100))
        .await
        .unwrap();
    assert_eq!(started.events.len(), 3);
    assert!(
        started
            .events
            .iter()
            .all(|e| e.kind == EventType::JobStarted)
    );
    let sms = env
        .store
        .events(query(0, None, Some("sms"), 100))
        .await
        .unwrap();
    assert_eq!(names(&sms.events), ["job.enqueued"; 3]);
    assert!(sms.events.iter().all(|e| e.queue.as_deref() == Some("sms")));
    assert_eq!(sms.next_after, last, "it looked through everything");
    let both = env
        .store
        .events(query(
            0,
            Some("job.started,job.enqueued"),
            Some("mail"),
            100,
        ))
        .await
        .unwrap();
    assert_eq!(both.events.len(), 6);
}

pub async fn a_rare_filter_pages_through_the_log_a_window_at_a_time(env: Env) {
    let many: Vec<NewJob> = (0..EVENT_SCAN_WINDOW + 50)
        .map(|_| spec_in("busy", "k"))
        .collect();
    env.store.enqueue(many, None).await.unwrap();
    enqueue_one(&env, spec_in("rare", "k")).await;
    let all = events_once(&env, EVENT_SCAN_WINDOW as usize + 51).await;
    let first_id = all[0].id;
    let first = env
        .store
        .events(query(0, None, Some("rare"), 10))
        .await
        .unwrap();
    assert!(first.events.is_empty(), "not within the first window");
    assert_eq!(first.next_after, first_id - 1 + EVENT_SCAN_WINDOW);
    let second = env
        .store
        .events(query(first.next_after, None, Some("rare"), 10))
        .await
        .unwrap();
    assert_eq!(second.events.len(), 1);
    assert_eq!(second.events[0].id, all.last().unwrap().id);
}

pub async fn events_go_after_their_retention_and_ids_are_never_reused(env: Env) {
    for _ in 0..3 {
        enqueue_one(&env, spec("k")).await;
    }
    let old = events_once(&env, 3).await;
    advance(&env, 3600);
    enqueue_one(&env, spec("k")).await;
    let cutoff = env.clock_now() - jiff::SignedDuration::from_secs(1800);
    assert_eq!(
        env.store.prune_events(cutoff, 2).await.unwrap(),
        2,
        "a batch"
    );
    assert_eq!(env.store.prune_events(cutoff, 2).await.unwrap(), 1);
    assert_eq!(
        env.store.prune_events(cutoff, 2).await.unwrap(),
        0,
        "the newer one stays"
    );
    let kept = events_once(&env, 1).await;
    assert_eq!(kept.len(), 1);
    assert!(kept[0].id > old[2].id);
    // Everything pruned: the next event still gets a greater id.
    advance(&env, 3600);
    let later = env.clock_now();
    assert_eq!(env.store.prune_events(later, 100).await.unwrap(), 1);
    assert!(events_once(&env, 0).await.is_empty());
    assert_eq!(env.store.last_event_id().await.unwrap(), kept[0].id);
    enqueue_one(&env, spec("k")).await;
    let fresh = events_once(&env, 1).await;
    assert_eq!(fresh[0].id, kept[0].id + 1);
}

/// A reader's cursor is kept per name and only moves forward.
pub async fn event_cursors_are_durable_and_only_move_forward(env: Env) {
    assert_eq!(env.store.cursor("sink:a").await.unwrap(), None);
    env.store.save_cursor("sink:a", 7).await.unwrap();
    env.store.save_cursor("sink:b", 3).await.unwrap();
    assert_eq!(env.store.cursor("sink:a").await.unwrap(), Some(7));
    assert_eq!(env.store.cursor("sink:b").await.unwrap(), Some(3));
    env.store.save_cursor("sink:a", 5).await.unwrap();
    assert_eq!(
        env.store.cursor("sink:a").await.unwrap(),
        Some(7),
        "a late save never moves a cursor back"
    );
    env.store.save_cursor("sink:a", 9).await.unwrap();
    assert_eq!(env.store.cursor("sink:a").await.unwrap(), Some(9));
    assert_eq!(env.store.cursor("sink:b").await.unwrap(), Some(3));
    assert_eq!(env.store.cursor("sink:c").await.unwrap(), None);
}

pub async fn appended_events_follow_the_changes_before_them(env: Env) {
    let job = enqueue_one(&env, spec("remind")).await;
    env.store
        .append_events(vec![
            NewEvent::feature(
                EventType::TaskDue,
                Some("kairos.tasks"),
                Some(job.id),
                &serde_json::json!({"task_id": "t1"}),
            ),
            NewEvent::feature(
                EventType::NotificationCreated,
                None,
                None,
                &serde_json::json!({"id": "n1"}),
            ),
        ])
        .await
        .unwrap();
    let events = events_once(&env, 3).await;
    assert_eq!(
        names(&events),
        ["job.enqueued", "task.due", "notification.created"]
    );
    assert!(events[1].id > events[0].id && events[2].id > events[1].id);
    assert_eq!(events[1].queue.as_deref(), Some("kairos.tasks"));
    assert_eq!(events[1].job_id, Some(job.id));
    assert_eq!(data(&events[1])["task_id"], "t1");
    assert_eq!(events[2].queue, None);
    assert!(
        events[1].at >= events[0].at,
        "stamped by the store's clock, not left at the epoch"
    );
}

/// One commit with more events than a stored batch holds: dense ids in the order given,
/// read back whole in small pages from any point, and by a filter that matches within.
pub async fn a_commit_of_many_events_reads_back_in_order_from_any_point(env: Env) {
    const N: usize = 600;
    let events: Vec<NewEvent> = (0..N)
        .map(|i| {
            let kind = if i % 7 == 3 {
                EventType::TaskDue
            } else {
                EventType::NotificationCreated
            };
            NewEvent::feature(kind, None, None, &serde_json::json!({ "i": i }))
        })
        .collect();
    env.store.append_events(events).await.unwrap();
    let all = events_once(&env, N).await;
    assert_eq!(all.len(), N);
    let first = all[0].id;
    for (i, e) in all.iter().enumerate() {
        assert_eq!(
            (e.id, data(e)["i"].as_u64()),
            (first + i as u64, Some(i as u64))
        );
    }
    // Pages of 37 from an id inside a batch: each continues where the last stopped.
    let mut after = first + 100;
    let mut seen = Vec::new();
    loop {
        let page = env
            .store
            .events(query(after, None, None, 37))
            .await
            .unwrap();
        if page.events.is_empty() {
            break;
        }
        assert!(page.events.len() <= 37);
        seen.extend(page.events.iter().map(|e| e.id));
        after = page.next_after;
    }
    assert_eq!(
        seen,
        ((first + 101)..(first + N as u64)).collect::<Vec<_>>()
    );
    let due = env
        .store
        .events(query(first + 100, Some("task.due"), None, 1000))
        .await
        .unwrap();
    let expected: Vec<u64> = (101..N as u64)
        .filter(|i| i % 7 == 3)
        .map(|i| first + i)
        .collect();
    assert_eq!(
        due.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        expected
    );
}

/// Many writers committing at once (PostgreSQL's concurrent transactions): a reader
/// following the log while they write sees every event, each once, in id order, and each
/// writer's events in the order it committed them.
pub async fn concurrent_writers_events_are_followed_without_gaps(env: Env) {
    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = env.store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..EACH {
                    let out = store
                        .enqueue(vec![spec_in(&format!("w{w}"), "k")], None)
                        .await
                        .unwrap();
                    ids.push(out.jobs[0].0.id);
                }
                ids
            })
        })
        .collect();
    let mut seen: Vec<Event> = Vec::new();
    let mut after = 0;
    let mut signal = env.store.signals().watch_events();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen.len() < WRITERS * EACH {
        let page = env
            .store
            .events(query(after, None, None, 1000))
            .await
            .unwrap();
        after = page.next_after;
        seen.extend(page.events);
        assert!(
            tokio::time::Instant::now() < deadline,
            "followed {} of {} events",
            seen.len(),
            WRITERS * EACH
        );
        // A backend's signal is a hint (PostgreSQL's may be lost): look again soon anyway.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(50), signal.changed()).await;
    }
    let mut written = Vec::new();
    for w in writers {
        written.push(w.await.unwrap());
    }
    let all = events_once(&env, WRITERS * EACH).await;
    let ids = |es: &[Event]| es.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(&seen),
        ids(&all),
        "followed: every event, once, in order"
    );
    assert!(all.windows(2).all(|p| p[0].id < p[1].id));
    for (w, enqueued) in written.iter().enumerate() {
        let queue = format!("w{w}");
        let order: Vec<Uuid> = all
            .iter()
            .filter(|e| e.queue.as_deref() == Some(queue.as_str()))
            .filter_map(|e| e.job_id)
            .collect();
        assert_eq!(&order, enqueued, "writer {w}'s events in its commit order");
    }
}
