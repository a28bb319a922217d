//! W4, cron: 1,000 schedules firing every second for 10 s (by default; `--schedules`,
//! `--cron`, `--cron-secs`). Each run's lag is its start time minus its intended fire
//! time (`scheduled_for`); every (schedule, fire time) in the measured window must run
//! exactly once.

use super::BenchArgs;
use super::pool::now_ms;
use super::report::{Record, progress};
use kairos_client::Client;
use kairos_core::RawValue;
use kairos_core::api::{AckItem, AckRequest, LeaseRequest};
use kairos_core::schedule::{JobTemplateRequest, SchedulePatch, ScheduleRequest};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const QUEUE: &str = "bench-w4";
/// Schedule creations in flight at once.
const CREATE_CONCURRENCY: usize = 16;

#[derive(serde::Deserialize)]
struct Payload {
    s: usize,
}

/// Runs W4.
pub async fn run(client: &Client, args: &BenchArgs) -> anyhow::Result<Record> {
    let n = args.schedules;
    let secs = args.cron_secs;
    let cron: kairos_core::cron::Cron = args
        .cron
        .parse()
        .map_err(|e| anyhow::anyhow!("--cron {:?}: {e}", args.cron))?;
    let timetable = kairos_core::timetable::Timetable::new(
        cron,
        jiff::tz::TimeZone::UTC,
        Default::default(),
        Default::default(),
    );
    // Create the schedules, a few requests at a time.
    let mut ids = vec![None; n];
    for chunk in (0..n).collect::<Vec<_>>().chunks(CREATE_CONCURRENCY) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let client = client.clone();
            let cron_text = args.cron.clone();
            set.spawn(async move {
                let req = ScheduleRequest {
                    name: format!("bench-w4-{i}"),
                    cron: cron_text.clone(),
                    job: JobTemplateRequest {
                        queue: Some(QUEUE.into()),
                        kind: "noop".into(),
                        payload: Some(RawValue::from_string(format!("{{\"s\":{i}}}"))?),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                anyhow::Ok((i, client.create_schedule(&req).await?.id))
            });
        }
        while let Some(r) = set.join_next().await {
            let (i, id) = r??;
            ids[i] = Some(id);
        }
    }
    // The measured window: whole seconds from the next full second on, and the fire
    // times in it.
    let start_s = (now_ms() / 1000.0).floor() as i64 + 2;
    let end_s = start_s + secs as i64;
    let second = |s: i64| jiff::Timestamp::from_second(s).expect("a time near now");
    let slots = timetable
        .between(second(start_s - 1), second(end_s - 1), usize::MAX)
        .len();
    if slots == 0 {
        for id in ids.iter().flatten() {
            client.delete_schedule(*id).await?;
        }
        anyhow::bail!(
            "--cron {:?} does not fire in a window of {secs} s: raise --cron-secs",
            args.cron
        );
    }
    let bar = progress((n * slots) as u64, "W4 cron");
    // (schedule, second) -> runs seen; and the lag of each run in the window.
    let seen: Arc<Mutex<HashMap<(usize, i64), u32>>> = Arc::default();
    let lags: Arc<Mutex<Vec<f64>>> = Arc::default();
    let stop = tokio::sync::watch::channel(false).0;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..super::lease_loops(args).0 {
        let (client, seen, lags, bar) = (client.clone(), seen.clone(), lags.clone(), bar.clone());
        let mut stop = stop.subscribe();
        let req = LeaseRequest {
            queues: vec![QUEUE.into()],
            worker: format!("bench-w4-{w}"),
            max: Some(args.lease_batch as u32),
            wait: Some("1s".parse().expect("duration")),
            lease: None,
        };
        workers.spawn(async move {
            loop {
                let leased = tokio::select! {
                    r = client.lease(&req) => r?,
                    _ = stop.wait_for(|s| *s) => return anyhow::Ok(()),
                };
                let started = now_ms();
                let mut items = Vec::with_capacity(leased.len());
                for l in &leased {
                    let p: Payload = serde_json::from_str(l.job.payload.get())?;
                    let due = l
                        .job
                        .scheduled_for
                        .map_or(0.0, |t| t.as_millisecond() as f64);
                    let second = (due / 1000.0).floor() as i64;
                    if (start_s..end_s).contains(&second) {
                        *seen.lock().expect("lock").entry((p.s, second)).or_default() += 1;
                        lags.lock().expect("lock").push(started - due);
                        bar.inc(1);
                    }
                    items.push(AckItem::completed(l.job.id, l.lease_token));
                }
                if !items.is_empty() {
                    client
                        .ack(&AckRequest {
                            worker: req.worker.clone(),
                            results: items,
                        })
                        .await?;
                }
            }
        });
    }
    // Let the window pass, stop the schedules, and drain what they made.
    // Two seconds of slack so a late tick still fires the last slot before we stop.
    let until = Duration::from_millis(((end_s as f64) * 1000.0 - now_ms()).max(0.0) as u64 + 2_000);
    tokio::time::sleep(until).await;
    for id in ids.iter().flatten() {
        let off = SchedulePatch {
            active: Some(false),
            ..Default::default()
        };
        client.update_schedule(*id, &off).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client.queue(QUEUE).await?.counts.available + client.queue(QUEUE).await?.counts.running
        > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send_replace(true);
    while let Some(r) = workers.join_next().await {
        r??;
    }
    for id in ids.iter().flatten() {
        client.delete_schedule(*id).await?;
    }
    bar.finish_and_clear();
    let seen = seen.lock().expect("lock");
    let expected = n * slots;
    let mut r = Record::new("W4", expected);
    r.completed = seen.len();
    r.duplicates = seen.values().map(|c| (*c as usize).saturating_sub(1)).sum();
    r.lost = expected.saturating_sub(seen.len());
    r.ok = r.lost == 0 && r.duplicates == 0;
    r.latencies(&lags.lock().expect("lock"));
    r.total_s = Some(secs as f64);
    Ok(r)
}
