//! The write operations of the PostgreSQL backend. Each is one transaction ([`Tx`]): it
//! loads the jobs it needs with row locks, asks the core state machine for each
//! transition, and writes the answers back. All SQL of a write lives here or in
//! [`super::rows`].
//!
//! Row locks are taken in `seq` order (`ORDER BY seq FOR UPDATE`) so two operations on
//! overlapping jobs queue up instead of deadlocking; leasing and maintenance pass over
//! rows someone else holds (`SKIP LOCKED`): a busy job is simply not theirs to take.

use super::Inner;
use super::read;
use super::rows::{self, NewRows, StoredJob};
use super::tx::{BEGIN, BEGIN_INDEX_ORDER, Tx};
use crate::ids::lease_token;
use crate::limits::LimitColumns;
use crate::states::statement;
use crate::{
    Enqueued, Extended, FIRE_CHUNK, IdempotencyKey, ItemError, MAINTENANCE_CHUNK, RETRY_DEAD_CHUNK,
    RetriedChunk, StoreError, StoredAnswer, Tick, visible,
};
use kairos_core::api::{AckReport, Extension, LeaseSpec, LeasedJob};
use kairos_core::event::{EventType, NewEvent};
use kairos_core::machine::Happened;
use kairos_core::rate::Bucket;
use kairos_core::schedule::{Schedule, SchedulePatch, ScheduleRequest};
use kairos_core::{
    AckEffect, Cutoffs, Held, Job, JobState, Limits, NewJob, Queue, QueueChange, QueueLimits,
    Timestamp,
};
use std::collections::{HashMap, HashSet};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The leased queues whose leasing is limited, locked in name order: the nodes take
/// turns leasing from such a queue (unlimited queues are not locked). The row read after
/// the lock is the latest: a limit removed meanwhile drops it.
const LOCK_LIMITED: &str = "SELECT name, concurrency, rate, rate_tokens, rate_at FROM queues \
     WHERE name = ANY($1) AND NOT paused AND (concurrency IS NOT NULL OR rate IS NOT NULL) \
     ORDER BY name FOR UPDATE";
statement!(
    /// Running jobs of the leased queues that have a `concurrency`, read after their
    /// lock (a statement of its own, so its snapshot holds every lease committed before).
    /// The uncorrelated `EXISTS` is a one-time filter: when no leased queue has a
    /// `concurrency` (the common case) the counts and their deltas are never scanned,
    /// which every lease otherwise paid (about 0.6 ms of the database's CPU under W2).
    RUNNING_LIMITED = "SELECT queue, sum(n)::bigint FROM \
     (SELECT queue, n FROM queue_counts WHERE state = {running} AND queue = ANY($1) \
      UNION ALL SELECT queue, n FROM queue_count_deltas WHERE state = {running} \
      AND queue = ANY($1)) AS c \
     WHERE queue IN (SELECT name FROM queues WHERE name = ANY($1) AND concurrency IS NOT NULL) \
     AND EXISTS (SELECT 1 FROM queues WHERE name = ANY($1) AND concurrency IS NOT NULL) \
     GROUP BY queue"
);
/// The rate buckets as spent by a lease.
const SAVE_BUCKETS: &str = "UPDATE queues SET rate_tokens = b.tokens, rate_at = b.at \
     FROM unnest($1::text[], $2::float8[], $3::timestamptz[]) AS b(name, tokens, at) \
     WHERE queues.name = b.name";
/// The enqueued-to queues that have a `max_depth`, locked in name order: enqueues to
/// such a queue take turns, so none passes it.
const LOCK_DEPTH: &str = "SELECT name, max_depth FROM queues \
     WHERE name = ANY($1) AND max_depth IS NOT NULL ORDER BY name FOR UPDATE";
statement!(
    /// Unfinished jobs of these queues (those with a `max_depth`, read after their lock).
    UNFINISHED_IN = "SELECT queue, sum(n)::bigint FROM \
     (SELECT queue, n FROM queue_counts WHERE state IN {unfinished} AND queue = ANY($1) \
      UNION ALL SELECT queue, n FROM queue_count_deltas WHERE state IN {unfinished} \
      AND queue = ANY($1)) AS c GROUP BY queue"
);
statement!(
    LEASE_CANDIDATES = concat!(
        "SELECT j.* FROM (SELECT q FROM unnest($1::text[]) AS q \
         WHERE NOT EXISTS (SELECT 1 FROM queues WHERE name = q AND paused)) AS open \
         CROSS JOIN LATERAL (SELECT ",
        job_columns!("payload"),
        " FROM jobs WHERE state = {available} AND queue = open.q \
         ORDER BY priority DESC, run_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED) AS j"
    )
);
statement!(
    /// Due waiting jobs of the leased queues. It waits for rows another transaction
    /// holds (the leader promoting them, another leaser) rather than skipping them: a
    /// job whose time has come must be leasable by the next lease, and once the holder
    /// commits, the row no longer matches and the lease's next statement sees it
    /// available.
    DUE_IN_QUEUES = concat!(
        "SELECT ",
        job_columns!("'null'"),
        " FROM jobs WHERE state IN {waiting} AND run_at <= kairos_now() AND queue = ANY($1) \
         ORDER BY run_at LIMIT $2 FOR UPDATE"
    )
);
statement!(
    DUE_WAITING = concat!(
        "SELECT ",
        job_columns!("'null'"),
        " FROM jobs WHERE state IN {waiting} AND run_at <= kairos_now() \
         ORDER BY run_at LIMIT $1 FOR UPDATE SKIP LOCKED"
    )
);
statement!(
    LAPSED_LEASES = concat!(
        "SELECT ",
        job_columns!("'null'"),
        " FROM jobs WHERE state = {running} AND lease_expires_at <= kairos_now() \
         ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED"
    )
);
statement!(
    UNIQUE_HOLDERS = concat!(
        "SELECT ",
        job_columns!("payload"),
        " FROM jobs WHERE (queue, unique_key) IN \
         (SELECT * FROM unnest($1::text[], $2::text[])) AND state IN {unfinished}"
    )
);
statement!(
    OTHER_UNIQUE_HOLDER = "SELECT seq FROM jobs WHERE queue = $1 AND unique_key = $2 \
     AND state IN {unfinished} AND seq <> $3"
);
statement!(
    DEAD_CHUNK = concat!(
        "SELECT ",
        job_columns!("'null'"),
        " FROM jobs WHERE queue = $1 AND state = {dead} AND seq > $2 AND seq <= $3 \
         ORDER BY seq LIMIT $4 FOR UPDATE"
    )
);
statement!(
    NEXT_DUE = "SELECT least((SELECT min(run_at) FROM jobs WHERE state IN {waiting}), \
     (SELECT min(lease_expires_at) FROM jobs WHERE state = {running}), \
     (SELECT min(next_due) FROM schedules WHERE next_due IS NOT NULL))"
);
statement!(
    /// Which of these schedules have an unfinished run, for `overlap: skip`.
    UNFINISHED_RUNS = "SELECT DISTINCT schedule_id FROM jobs \
     WHERE schedule_id = ANY($1) AND state IN {unfinished}"
);
/// Which of these (schedule, slot) pairs have their run already.
const EXISTING_RUNS: &str = "SELECT schedule_id, scheduled_for FROM jobs \
     WHERE (schedule_id, scheduled_for) IN \
     (SELECT * FROM unnest($1::uuid[], $2::timestamptz[]))";
statement!(
    /// An unfinished run of a schedule, for `overlap: skip`.
    UNFINISHED_RUN = "SELECT 1 FROM jobs WHERE schedule_id = $1 AND state IN {unfinished} LIMIT 1"
);

const BY_ID_FOR_UPDATE: &str = concat!(
    "SELECT ",
    job_columns!("payload"),
    " FROM jobs WHERE id = $1 FOR UPDATE"
);
const BY_IDS_FOR_UPDATE: &str = concat!(
    "SELECT ",
    job_columns!("'null'"),
    " FROM jobs WHERE id = ANY($1) ORDER BY seq FOR UPDATE"
);

fn stored(rows: &[tokio_postgres::Row]) -> Result<Vec<StoredJob>, StoreError> {
    rows.iter().map(rows::job_from_row).collect()
}

/// Runs `body` in a transaction opened with `first` (an optional query, its rows in
/// `rows`), or with `begin` and a list of queries (their rows in `rows`, one list each);
/// commits when it succeeds, then announces what changed.
macro_rules! in_tx {
    ($inner:expr, $first:expr, |$tx:ident, $rows:ident| $body:block) => {{
        let first: Option<super::tx::Query<'_>> = $first;
        let opening: Vec<super::tx::Query<'_>> = first.into_iter().collect();
        in_tx!($inner, BEGIN, &opening, |$tx, opened| {
            let $rows = opened.into_iter().next().unwrap_or_default();
            $body
        })
    }};
    ($inner:expr, $begin:expr, $queries:expr, |$tx:ident, $rows:ident| $body:block) => {{
        let (mut $tx, $rows) = Tx::open($inner, $begin, $queries).await?;
        let result: Result<_, StoreError> = async { $body }.await;
        match result {
            Ok(value) => {
                let effects = $tx.commit().await?;
                $inner.announce(effects);
                Ok(value)
            }
            Err(e) => {
                $tx.rollback().await;
                Err(e)
            }
        }
    }};
}

/// Inserts `jobs`; a job whose unique key (or schedule slot) is held is not inserted.
/// Answers the `seq` of each inserted job by id.
async fn insert(
    inner: &Inner,
    tx: &mut Tx,
    jobs: &[Job],
) -> Result<HashMap<Uuid, i64>, StoreError> {
    let mut rows = NewRows::default();
    // Queues no commit of this node has seen yet get their row (queues are never
    // deleted, so one seen stays known).
    let mut unknown: Vec<String> = Vec::new();
    for j in jobs {
        rows.push(j)?;
        if !unknown.contains(&j.queue)
            && !tx.effects.new_queues.contains(&j.queue)
            && !inner.knows_queue(&j.queue)
        {
            unknown.push(j.queue.clone());
        }
    }
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    if !unknown.is_empty() {
        let now = tx.now;
        tx.execute(
            "INSERT INTO queues (name, created_at) SELECT unnest($1::text[]), $2 \
             ON CONFLICT (name) DO NOTHING",
            &[&unknown, &now],
        )
        .await?;
        tx.effects.new_queues.extend(unknown);
    }
    let inserted: HashMap<Uuid, i64> = tx
        .query(rows::INSERT_JOBS, &rows.params())
        .await?
        .iter()
        .map(|r| Ok((r.try_get(1)?, r.try_get(0)?)))
        .collect::<Result<_, StoreError>>()?;
    for j in jobs {
        if inserted.contains_key(&j.id) {
            tx.account(&j.queue, None, Some(j));
            let now = tx.now;
            tx.effects.changes.enqueued(j, now);
        }
    }
    Ok(inserted)
}

pub(crate) async fn enqueue(
    inner: &Inner,
    jobs: Vec<NewJob>,
    idempotency: Option<IdempotencyKey>,
) -> Result<Enqueued, StoreError> {
    let mut queues: Vec<String> = jobs.iter().map(|j| j.queue.clone()).collect();
    queues.sort_unstable();
    queues.dedup();
    let args: [&(dyn ToSql + Sync); 1] = [&queues];
    let opening = [(LOCK_DEPTH, &args[..])];
    in_tx!(inner, BEGIN, &opening, |tx, opened| {
        // Queues with a max_depth, and how many unfinished jobs each holds: counted only
        // when there are some (a round trip more then; none for unlimited queues).
        let mut depth: HashMap<String, (u64, u64)> = HashMap::new();
        for r in opened.first().map_or(&[][..], |rows| &rows[..]) {
            let max: i64 = r.try_get(1)?;
            depth.insert(r.try_get(0)?, (max.max(0) as u64, 0));
        }
        if !depth.is_empty() {
            let limited: Vec<&String> = depth.keys().collect();
            let counted = tx.query(&UNFINISHED_IN, &[&limited]).await?;
            for r in &counted {
                let n: Option<i64> = r.try_get(1)?;
                if let Some(d) = depth.get_mut(&r.try_get::<_, String>(0)?) {
                    d.1 = n.unwrap_or(0).max(0) as u64;
                }
            }
        }
        if let Some(key) = &idempotency {
            // Requests with the same key take turns, so the second finds the first's answer.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&key.key],
            )
            .await?;
            let found = tx
                .query(
                    "SELECT fingerprint, created_at, answer FROM idempotency_keys WHERE key = $1",
                    &[&key.key],
                )
                .await?;
            let found = match found.first() {
                Some(row) => Some(crate::StoredKey {
                    fingerprint: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                    answer: row.try_get(2)?,
                }),
                None => None,
            };
            if let Some(first) = crate::replay(key, found, tx.now)? {
                return Ok(first);
            }
        }
        let now = tx.now;
        let made: Vec<Job> = jobs
            .into_iter()
            .map(|spec| Job::new(spec, inner.next_id(now), now))
            .collect();
        let inserted = insert(inner, &mut tx, &made).await?;
        if !depth.is_empty() {
            let mut adding: HashMap<&str, u64> = HashMap::new();
            for j in made.iter().filter(|j| inserted.contains_key(&j.id)) {
                *adding.entry(j.queue.as_str()).or_default() += 1;
            }
            for (queue, n) in adding {
                if let Some(&(max, unfinished)) = depth.get(queue) {
                    let limits = QueueLimits {
                        max_depth: Some(max),
                        ..QueueLimits::default()
                    };
                    limits.admit(queue, unfinished, n)?;
                }
            }
        }
        // Jobs not inserted lost to an unfinished job holding their unique key (one of
        // this batch, or one committed by anyone): that job is the answer.
        let (lost_queues, lost_keys): (Vec<String>, Vec<String>) = made
            .iter()
            .filter(|j| !inserted.contains_key(&j.id))
            .filter_map(|j| Some((j.queue.clone(), j.unique_key.clone()?)))
            .unzip();
        let holders: HashMap<(String, String), Job> = if lost_keys.is_empty() {
            HashMap::new()
        } else {
            stored(
                &tx.query(&UNIQUE_HOLDERS, &[&lost_queues, &lost_keys])
                    .await?,
            )?
            .into_iter()
            .filter_map(|s| Some(((s.job.queue.clone(), s.job.unique_key.clone()?), s.job)))
            .collect()
        };
        let mut out = Vec::with_capacity(made.len());
        for job in made {
            if inserted.contains_key(&job.id) {
                out.push((job, true));
                continue;
            }
            let holder = job
                .unique_key
                .as_ref()
                .and_then(|k| holders.get(&(job.queue.clone(), k.clone())));
            match holder {
                Some(h) => out.push((visible(h.clone(), now), false)),
                // The holder finished between the insert and the look-up: try again.
                None => return Err(StoreError::Contended("a unique key changed hands".into())),
            }
        }
        if let Some(key) = idempotency {
            let (jobs, created): (Vec<Job>, Vec<bool>) = out.iter().cloned().unzip();
            let answer = serde_json::to_string(&StoredAnswer { created, jobs })?;
            tx.execute(
                "INSERT INTO idempotency_keys (key, fingerprint, created_at, answer) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET \
                 fingerprint = excluded.fingerprint, created_at = excluded.created_at, \
                 answer = excluded.answer",
                &[&key.key, &(key.fingerprint as i64), &now, &answer],
            )
            .await?;
        }
        Ok(Enqueued {
            jobs: out,
            replayed: false,
        })
    })
}

/// Makes `due` (waiting jobs whose time has come) available.
fn promote(tx: &mut Tx, due: Vec<StoredJob>) -> u64 {
    let mut n = 0;
    for mut s in due {
        if s.job.promote(tx.now) {
            // Waiting → available is no event: the job's run_at says when.
            tx.save(s, Happened::NOTHING);
            n += 1;
        }
    }
    n
}

pub(crate) async fn lease(inner: &Inner, spec: LeaseSpec) -> Result<Vec<LeasedJob>, StoreError> {
    let max = spec.max as i64;
    let queues = spec.queues.clone();
    let one: [&(dyn ToSql + Sync); 1] = [&queues];
    let due_args: [&(dyn ToSql + Sync); 2] = [&queues, &MAINTENANCE_CHUNK];
    let candidate_args: [&(dyn ToSql + Sync); 2] = [&queues, &max];
    // One round trip: the limited queues' locks first (so every transaction that locks a
    // queue and its jobs does so in that order), then what they need, the due jobs to
    // promote and the candidates. The common case needs no second look.
    let opening = [
        (LOCK_LIMITED, &one[..]),
        (RUNNING_LIMITED.as_str(), &one[..]),
        (DUE_IN_QUEUES.as_str(), &due_args[..]),
        (LEASE_CANDIDATES.as_str(), &candidate_args[..]),
    ];
    in_tx!(inner, BEGIN_INDEX_ORDER, &opening, |tx, opened| {
        let mut opened = opened.into_iter();
        let (locked, running, due, found) = (
            opened.next().unwrap_or_default(),
            opened.next().unwrap_or_default(),
            opened.next().unwrap_or_default(),
            opened.next().unwrap_or_default(),
        );
        // Waiting jobs of these queues whose time has come are leasable now, not only
        // after the next maintenance pass.
        let promoted = promote(&mut tx, stored(&due)?);
        let found = if promoted > 0 {
            tx.flush().await?;
            tx.query(&LEASE_CANDIDATES, &candidate_args).await?
        } else {
            found
        };
        let rooms = lease_rooms(&tx, &locked, &running)?;
        let mut candidates = stored(&found)?;
        // Each queue answered its best, a limited one no more than its room; merged in
        // lease order. Rows locked beyond are released at commit, untouched.
        let mut kept: HashMap<&str, u32> = HashMap::new();
        candidates.retain(|s| match rooms.get(s.job.queue.as_str()) {
            None => true,
            Some(room) => {
                let n = kept.entry(room.queue.as_str()).or_default();
                *n += 1;
                *n <= room.room
            }
        });
        candidates.sort_by(|a, b| {
            b.job
                .priority
                .cmp(&a.job.priority)
                .then(a.job.run_at.cmp(&b.job.run_at))
                .then(a.seq.cmp(&b.seq))
        });
        candidates.truncate(spec.max as usize);
        let mut out = Vec::with_capacity(candidates.len());
        for mut s in candidates {
            let token = lease_token();
            let happened = s.job.lease(&spec.worker, token, spec.lease, tx.now)?;
            let expires = s.job.lease.as_ref().map_or(tx.now, |l| l.expires_at);
            out.push(LeasedJob {
                job: s.job.clone(),
                lease_token: token,
                lease_expires_at: expires,
            });
            tx.save(s, happened);
        }
        let mut buckets: (Vec<String>, Vec<f64>, Vec<Timestamp>) = Default::default();
        for room in rooms.values() {
            inner.signals.hold(&room.queue, room.held);
            if let Some(mut bucket) = room.bucket {
                let taken = out.iter().filter(|l| l.job.queue == room.queue).count();
                bucket.spend(taken as u32);
                buckets.0.push(room.queue.clone());
                buckets.1.push(bucket.tokens);
                buckets.2.push(bucket.at);
            }
        }
        if !buckets.0.is_empty() {
            tx.execute(SAVE_BUCKETS, &[&buckets.0, &buckets.1, &buckets.2])
                .await?;
        }
        Ok(out)
    })
}

/// A limited queue's share of one lease.
struct Room {
    queue: String,
    /// Most jobs this lease may take from it.
    room: u32,
    /// Why none, when none.
    held: Option<Held>,
    /// Its rate bucket refilled to now, to spend what is taken.
    bucket: Option<Bucket>,
}

/// The room of each limited queue a lease locked (`locked`: their rows; `running`: their
/// running jobs), by the rules of [`QueueLimits::lease_room`].
fn lease_rooms(
    tx: &Tx,
    locked: &[tokio_postgres::Row],
    running: &[tokio_postgres::Row],
) -> Result<HashMap<String, Room>, StoreError> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for r in running {
        let n: Option<i64> = r.try_get(1)?;
        counts.insert(r.try_get(0)?, n.unwrap_or(0).max(0) as u64);
    }
    let mut rooms = HashMap::new();
    for r in locked {
        let queue: String = r.try_get(0)?;
        let limits = LimitColumns {
            max_depth: None,
            concurrency: r.try_get(1)?,
            rate: r.try_get(2)?,
        }
        .limits()?;
        let kept = match (r.try_get::<_, Option<f64>>(3)?, r.try_get(4)?) {
            (Some(tokens), Some(at)) => Some(Bucket { tokens, at }),
            _ => None,
        };
        let bucket = limits.rate.map(|rate| Bucket::refilled(kept, rate, tx.now));
        let running = counts.get(&queue).copied().unwrap_or(0);
        let (room, held) = match limits.lease_room(running, bucket.as_ref()) {
            Ok(room) => (room, None),
            Err(held) => (0, Some(held)),
        };
        rooms.insert(
            queue.clone(),
            Room {
                queue,
                room,
                held,
                bucket,
            },
        );
    }
    Ok(rooms)
}

/// The jobs of `ids`, locked, by id.
fn by_id(rows: &[tokio_postgres::Row]) -> Result<HashMap<Uuid, StoredJob>, StoreError> {
    Ok(stored(rows)?.into_iter().map(|s| (s.job.id, s)).collect())
}

pub(crate) async fn ack(
    inner: &Inner,
    reports: Vec<AckReport>,
) -> Result<Vec<Result<JobState, ItemError>>, StoreError> {
    let ids: Vec<Uuid> = reports.iter().map(|r| r.id).collect();
    let first: [&(dyn ToSql + Sync); 1] = [&ids];
    in_tx!(inner, Some((BY_IDS_FOR_UPDATE, &first)), |tx, rows| {
        let found = by_id(&rows)?;
        let mut out = Vec::with_capacity(reports.len());
        for report in reports {
            let Some(s) = found.get(&report.id) else {
                out.push(Err(ItemError::NotFound));
                continue;
            };
            let mut s = tx.current(s.clone());
            match s
                .job
                .ack(report.lease_token, report.outcome, tx.now, fastrand::f64())
            {
                Ok(effect) => {
                    out.push(Ok(s.job.effective_state(tx.now)));
                    if let AckEffect::Applied(_) = effect {
                        tx.save(s, effect.happened());
                    }
                }
                Err(e) => out.push(Err(ItemError::Conflict(e))),
            }
        }
        Ok(out)
    })
}

pub(crate) async fn heartbeat(
    inner: &Inner,
    extensions: Vec<Extension>,
) -> Result<Vec<Result<Extended, ItemError>>, StoreError> {
    let ids: Vec<Uuid> = extensions.iter().map(|e| e.id).collect();
    let first: [&(dyn ToSql + Sync); 1] = [&ids];
    in_tx!(inner, Some((BY_IDS_FOR_UPDATE, &first)), |tx, rows| {
        let found = by_id(&rows)?;
        let mut out = Vec::with_capacity(extensions.len());
        for ext in extensions {
            let Some(s) = found.get(&ext.id) else {
                out.push(Err(ItemError::NotFound));
                continue;
            };
            let mut s = tx.current(s.clone());
            match s.job.heartbeat(ext.lease_token, ext.extend, tx.now) {
                Ok(until) => {
                    out.push(Ok(Extended {
                        lease_expires_at: until,
                        cancel_requested: s.job.cancel_requested,
                    }));
                    tx.save(s, Happened::NOTHING);
                }
                Err(e) => out.push(Err(ItemError::Conflict(e))),
            }
        }
        Ok(out)
    })
}

/// The one job of `rows` (loaded by id), or not found.
fn one(rows: &[tokio_postgres::Row]) -> Result<StoredJob, StoreError> {
    rows.first()
        .map(rows::job_from_row)
        .transpose()?
        .ok_or(StoreError::NotFound)
}

pub(crate) async fn cancel(inner: &Inner, id: Uuid) -> Result<Job, StoreError> {
    let first: [&(dyn ToSql + Sync); 1] = [&id];
    in_tx!(inner, Some((BY_ID_FOR_UPDATE, &first)), |tx, rows| {
        let mut s = one(&rows)?;
        let happened = s.job.cancel(tx.now)?;
        let job = visible(s.job.clone(), tx.now);
        tx.save(s, happened);
        Ok(job)
    })
}

/// Whether another unfinished job of the queue holds `s`'s unique key (a finished job
/// brought back to life must not make two unfinished jobs share one).
async fn unique_key_taken(tx: &Tx, s: &StoredJob) -> Result<bool, StoreError> {
    let Some(key) = s.job.unique_key_to_reclaim() else {
        return Ok(false);
    };
    let rows = tx
        .query(&OTHER_UNIQUE_HOLDER, &[&s.job.queue, &key, &s.seq])
        .await?;
    Ok(!rows.is_empty())
}

fn unique_key_held() -> StoreError {
    StoreError::Duplicate("an unfinished job of this queue holds the same unique_key".to_string())
}

pub(crate) async fn retry(inner: &Inner, id: Uuid) -> Result<Job, StoreError> {
    let first: [&(dyn ToSql + Sync); 1] = [&id];
    in_tx!(inner, Some((BY_ID_FOR_UPDATE, &first)), |tx, rows| {
        let mut s = one(&rows)?;
        if unique_key_taken(&tx, &s).await? {
            return Err(unique_key_held());
        }
        s.job.promote(tx.now);
        let happened = s.job.retry(tx.now)?;
        let job = s.job.clone();
        tx.save(s, happened);
        // A concurrent retry of another job with the same key would trip the unique
        // index at commit; write now so that shows as a duplicate, not a failure.
        tx.flush().await.map_err(|e| match e {
            StoreError::Duplicate(_) => unique_key_held(),
            other => other,
        })?;
        Ok(job)
    })
}

pub(crate) async fn delete(inner: &Inner, id: Uuid) -> Result<(), StoreError> {
    let first: [&(dyn ToSql + Sync); 1] = [&id];
    in_tx!(inner, Some((BY_ID_FOR_UPDATE, &first)), |tx, rows| {
        let s = one(&rows)?;
        let happened = s.job.check_delete()?;
        tx.execute("DELETE FROM jobs WHERE seq = $1", &[&s.seq])
            .await?;
        tx.account(&s.job.queue, Some(s.stored_state), None);
        let now = tx.now;
        tx.effects.changes.happened(happened, &s.job, now);
        Ok(())
    })
}

/// Appends `events` (see [`crate::Store::append_events`]).
pub(crate) async fn append_events(inner: &Inner, events: Vec<NewEvent>) -> Result<(), StoreError> {
    in_tx!(inner, None, |tx, _rows| {
        for mut e in events {
            e.at = tx.now;
            tx.event(e);
        }
        Ok(())
    })
}

pub(crate) async fn change_queue(
    inner: &Inner,
    name: String,
    change: QueueChange,
) -> Result<Queue, StoreError> {
    in_tx!(inner, None, |tx, _rows| {
        let now = tx.now;
        // The row, locked: two changes of one queue take turns, neither undoing the other.
        tx.execute(
            "INSERT INTO queues (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &now],
        )
        .await?;
        tx.execute("SELECT 1 FROM queues WHERE name = $1 FOR UPDATE", &[&name])
            .await?;
        let mut queue = read::queues_in(&tx, Some(&name))
            .await?
            .pop()
            .unwrap_or_else(|| Queue::new(&name));
        let was_paused = queue.paused;
        change.apply(&mut queue);
        if let Some(kind) = queue.pause_event(was_paused) {
            let now = tx.now;
            tx.event(NewEvent::queue(kind, &name, now));
        }
        let limits = LimitColumns::of(&queue.limits);
        tx.execute(
            "UPDATE queues SET paused = $2, max_depth = $3, concurrency = $4, rate = $5, \
             rate_tokens = CASE WHEN $6 THEN NULL ELSE rate_tokens END, \
             rate_at = CASE WHEN $6 THEN NULL ELSE rate_at END WHERE name = $1",
            &[
                &name,
                &queue.paused,
                &limits.max_depth,
                &limits.concurrency,
                &limits.rate,
                &change.changes_rate(),
            ],
        )
        .await?;
        // Waiting leases, on every node, look again: it may have been resumed, or a
        // limit raised or removed.
        if !queue.paused {
            tx.effects.resumed.push(name.clone());
        }
        tx.effects.new_queues.push(name.clone());
        Ok(queue)
    })
}

pub(crate) async fn retry_dead(
    inner: &Inner,
    queue: String,
    after: i64,
    last: i64,
) -> Result<RetriedChunk, StoreError> {
    let first: [&(dyn ToSql + Sync); 4] = [&queue, &after, &last, &RETRY_DEAD_CHUNK];
    in_tx!(inner, Some((&DEAD_CHUNK, &first)), |tx, rows| {
        let dead = stored(&rows)?;
        let next = (dead.len() as i64 == RETRY_DEAD_CHUNK).then(|| dead[dead.len() - 1].seq);
        let mut retried = 0;
        for mut s in dead {
            // A dead job whose unique key an unfinished job now holds stays dead.
            if unique_key_taken(&tx, &s).await? {
                continue;
            }
            let happened = s.job.retry(tx.now)?;
            tx.save(s, happened);
            retried += 1;
        }
        Ok(RetriedChunk { retried, next })
    })
}

pub(crate) async fn tick(inner: &Inner) -> Result<Tick, StoreError> {
    // Other tasks commit while this pass looks: what they announce must survive it.
    inner.signals.mark_due();
    let first: [&(dyn ToSql + Sync); 1] = [&MAINTENANCE_CHUNK];
    let opening = Some((DUE_WAITING.as_str(), &first[..]));
    let opening: Vec<super::tx::Query<'_>> = opening.into_iter().collect();
    let (promoted, expired) = in_tx!(inner, BEGIN_INDEX_ORDER, &opening, |tx, opened| {
        let promoted = promote(&mut tx, stored(&opened[0])?);
        let lapsed = stored(&tx.query(&LAPSED_LEASES, &[&MAINTENANCE_CHUNK]).await?)?;
        let mut expired = 0;
        for mut s in lapsed {
            if let Ok(happened) = s.job.expire(tx.now, fastrand::f64()) {
                tx.save(s, happened);
                expired += 1;
            }
        }
        Ok((promoted, expired))
    })?;
    let fired = fire_schedules(inner).await?;
    fold_counts(inner).await?;
    let next_due = read::next_due(inner, &NEXT_DUE).await?;
    inner.signals.set_next_due_after(next_due);
    Ok(Tick {
        promoted,
        expired,
        fired,
        next_due,
    })
}

/// Folds the count deltas into `queue_counts`, in one statement (so a read, which sums
/// both tables in one snapshot, sees every delta exactly once).
async fn fold_counts(inner: &Inner) -> Result<(), StoreError> {
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached(
            "WITH folded AS (DELETE FROM queue_count_deltas RETURNING queue, state, n) \
             INSERT INTO queue_counts (queue, state, n) \
             SELECT queue, state, sum(n) FROM folded GROUP BY queue, state \
             ON CONFLICT (queue, state) DO UPDATE SET n = queue_counts.n + excluded.n",
        )
        .await?;
    client.execute(&stmt, &[]).await?;
    Ok(())
}

/// Deletes up to `limit` finished jobs past their retention, passing over rows someone
/// else holds.
pub(crate) async fn prune_finished(
    inner: &Inner,
    cutoffs: Cutoffs,
    limit: u32,
) -> Result<u64, StoreError> {
    static DELETE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "DELETE FROM jobs WHERE seq IN ({} FOR UPDATE SKIP LOCKED) RETURNING queue, state",
            crate::prunable('$', &crate::states::render("state IN {finished}"))
        )
    });
    let limit = limit as i64;
    let first: [&(dyn ToSql + Sync); 3] = [&cutoffs.completed_before, &cutoffs.dead_before, &limit];
    in_tx!(inner, Some((&DELETE, &first)), |tx, gone| {
        for row in &gone {
            let queue: String = row.try_get(0)?;
            let code: i16 = row.try_get(1)?;
            if let Some(state) = u8::try_from(code).ok().and_then(JobState::from_code) {
                tx.account(&queue, Some(state), None);
            }
        }
        Ok(gone.len() as u64)
    })
}

pub(crate) async fn prune_idempotency_keys(
    inner: &Inner,
    before: Timestamp,
) -> Result<u64, StoreError> {
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached("DELETE FROM idempotency_keys WHERE created_at < $1")
        .await?;
    Ok(client.execute(&stmt, &[&before]).await?)
}

/// Saves a schedule and tells the timer its next fire time (`next_run_at` is already
/// `None` for an inactive schedule: the core keeps it so).
async fn save_schedule(tx: &mut Tx, s: &Schedule) -> Result<(), StoreError> {
    let body = serde_json::to_string(s)?;
    tx.execute(
        "INSERT INTO schedules (id, name, next_due, body) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, next_due = excluded.next_due, \
         body = excluded.body",
        &[&s.id, &s.name, &s.next_run_at, &body],
    )
    .await
    .map_err(|e| match e {
        StoreError::Duplicate(_) => duplicate(&s.name),
        other => other,
    })?;
    if let Some(at) = s.next_run_at {
        tx.due_at(at);
    }
    Ok(())
}

async fn name_taken(tx: &Tx, name: &str, except: Option<Uuid>) -> Result<bool, StoreError> {
    let rows = tx
        .query("SELECT id FROM schedules WHERE name = $1", &[&name])
        .await?;
    let owner: Option<Uuid> = rows.first().map(|r| r.try_get(0)).transpose()?;
    Ok(owner.is_some_and(|o| except.is_none_or(|e| o != e)))
}

fn duplicate(name: &str) -> StoreError {
    StoreError::Duplicate(format!("a schedule named {name:?} already exists"))
}

pub(crate) async fn create_schedule(
    inner: &Inner,
    req: ScheduleRequest,
    limits: Limits,
) -> Result<Schedule, StoreError> {
    in_tx!(inner, None, |tx, _rows| {
        let s = req.validate(inner.next_id(tx.now), tx.now, &limits)?;
        if name_taken(&tx, &s.name, None).await? {
            return Err(duplicate(&s.name));
        }
        save_schedule(&mut tx, &s).await?;
        let now = tx.now;
        tx.event(NewEvent::schedule(EventType::ScheduleCreated, &s, now));
        Ok(s)
    })
}

const SCHEDULE_FOR_UPDATE: &str = "SELECT body FROM schedules WHERE id = $1 FOR UPDATE";

fn schedule_from(rows: &[tokio_postgres::Row]) -> Result<Schedule, StoreError> {
    let row = rows.first().ok_or(StoreError::NotFound)?;
    Ok(serde_json::from_str(row.try_get(0)?)?)
}

pub(crate) async fn update_schedule(
    inner: &Inner,
    id: Uuid,
    patch: SchedulePatch,
    limits: Limits,
) -> Result<Schedule, StoreError> {
    let first: [&(dyn ToSql + Sync); 1] = [&id];
    in_tx!(inner, Some((SCHEDULE_FOR_UPDATE, &first)), |tx, rows| {
        let current = schedule_from(&rows)?;
        let next = current.patch(patch, tx.now, &limits)?;
        if next.name != current.name && name_taken(&tx, &next.name, Some(id)).await? {
            return Err(duplicate(&next.name));
        }
        save_schedule(&mut tx, &next).await?;
        let now = tx.now;
        tx.event(NewEvent::schedule(EventType::ScheduleUpdated, &next, now));
        Ok(next)
    })
}

pub(crate) async fn delete_schedule(inner: &Inner, id: Uuid) -> Result<(), StoreError> {
    let first: [&(dyn ToSql + Sync); 1] = [&id];
    in_tx!(inner, Some((SCHEDULE_FOR_UPDATE, &first)), |tx, rows| {
        let s = schedule_from(&rows)?;
        tx.execute("DELETE FROM schedules WHERE id = $1", &[&id])
            .await?;
        let now = tx.now;
        tx.event(NewEvent::schedule(EventType::ScheduleDeleted, &s, now));
        Ok(())
    })
}

/// Makes the run of `s` for `scheduled_for` unless it exists, or the schedule's overlap
/// rule forbids it (`manual`: a trigger, outside the rule). Returns the job when made.
async fn make_run(
    inner: &Inner,
    tx: &mut Tx,
    s: &Schedule,
    scheduled_for: Timestamp,
    manual: bool,
) -> Result<Option<Job>, StoreError> {
    let unfinished =
        s.overlap_applies(manual) && !tx.query(&UNFINISHED_RUN, &[&s.id]).await?.is_empty();
    if !s.admits_run(manual, || Ok::<_, StoreError>(unfinished))? {
        return Ok(None);
    }
    let job = Job::new(s.run(scheduled_for), inner.next_id(tx.now), tx.now);
    // The slot's unique index answers "already made" (by anyone, ever) by not inserting.
    let inserted = insert(inner, tx, std::slice::from_ref(&job)).await?;
    Ok(inserted.contains_key(&job.id).then_some(job))
}

/// Fires due schedules (per their misfire and overlap policies), the most overdue first,
/// up to [`FIRE_CHUNK`]; a schedule another node is firing is passed over. Returns the
/// runs made.
async fn fire_schedules(inner: &Inner) -> Result<u64, StoreError> {
    let first: [&(dyn ToSql + Sync); 1] = [&FIRE_CHUNK];
    in_tx!(
        inner,
        Some((
            "SELECT body FROM schedules WHERE next_due IS NOT NULL AND next_due <= kairos_now() \
             ORDER BY next_due LIMIT $1 FOR UPDATE SKIP LOCKED",
            &first
        )),
        |tx, rows| {
            let mut schedules = rows
                .iter()
                .map(|r| Ok(serde_json::from_str(r.try_get(0)?)?))
                .collect::<Result<Vec<Schedule>, StoreError>>()?;
            // The whole chunk in a few statements, not a few per schedule: its due slots,
            // which of them have their run already and which schedules have an
            // unfinished run (asked once each), then one insert and one save.
            let slots: Vec<Vec<Timestamp>> = schedules
                .iter_mut()
                .map(|s| s.fire(tx.now, inner.up_since()))
                .collect();
            let (ids, fors): (Vec<Uuid>, Vec<Timestamp>) = schedules
                .iter()
                .zip(&slots)
                .flat_map(|(s, slots)| slots.iter().map(move |t| (s.id, *t)))
                .unzip();
            let existing: HashSet<(Uuid, Timestamp)> = if ids.is_empty() {
                HashSet::new()
            } else {
                tx.query(EXISTING_RUNS, &[&ids, &fors])
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<_, StoreError>>()?
            };
            let asking: Vec<Uuid> = schedules
                .iter()
                .filter(|s| s.overlap_applies(false))
                .map(|s| s.id)
                .collect();
            let busy: HashSet<Uuid> = if asking.is_empty() {
                HashSet::new()
            } else {
                tx.query(&UNFINISHED_RUNS, &[&asking])
                    .await?
                    .iter()
                    .map(|r| Ok(r.try_get(0)?))
                    .collect::<Result<_, StoreError>>()?
            };
            let mut runs: Vec<(usize, Timestamp, Job)> = Vec::new();
            for (i, (s, slots)) in schedules.iter().zip(&slots).enumerate() {
                let mut unfinished = busy.contains(&s.id);
                for slot in slots {
                    if existing.contains(&(s.id, *slot))
                        || !s.admits_run(false, || Ok::<_, StoreError>(unfinished))?
                    {
                        continue;
                    }
                    runs.push((
                        i,
                        *slot,
                        Job::new(s.run(*slot), inner.next_id(tx.now), tx.now),
                    ));
                    // The run just made is unfinished: `overlap: skip` holds the rest back.
                    unfinished = true;
                }
            }
            let jobs: Vec<Job> = runs.iter().map(|(_, _, j)| j.clone()).collect();
            let inserted = insert(inner, &mut tx, &jobs).await?;
            let mut made = 0;
            for (i, slot, job) in &runs {
                if inserted.contains_key(&job.id) {
                    made += 1;
                    schedules[*i].record_run(*slot);
                    let now = tx.now;
                    tx.event(NewEvent::fired(&schedules[*i], job, *slot, false, now));
                }
            }
            for s in &schedules {
                if let Some(why) = &s.last_error
                    && !s.active
                {
                    tracing::warn!(schedule = %s.id, name = %s.name, error = %why, "schedule deactivated");
                }
            }
            save_fired(&mut tx, &schedules).await?;
            Ok(made)
        }
    )
}

/// Saves fired schedules (timing and body only: their names did not change), in one
/// statement.
async fn save_fired(tx: &mut Tx, schedules: &[Schedule]) -> Result<(), StoreError> {
    if schedules.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(schedules.len());
    let mut next = Vec::with_capacity(schedules.len());
    let mut bodies = Vec::with_capacity(schedules.len());
    for s in schedules {
        ids.push(s.id);
        next.push(s.next_run_at);
        bodies.push(serde_json::to_string(s)?);
        if let Some(at) = s.next_run_at {
            tx.due_at(at);
        }
    }
    tx.execute(
        "UPDATE schedules SET next_due = u.next_due, body = u.body \
         FROM unnest($1::uuid[], $2::timestamptz[], $3::text[]) AS u(id, next_due, body) \
         WHERE schedules.id = u.id",
        &[&ids, &next, &bodies],
    )
    .await?;
    Ok(())
}

pub(crate) async fn trigger_schedule(inner: &Inner, id: Uuid) -> Result<Job, StoreError> {
    let first: [&(dyn ToSql + Sync); 1] = [&id];
    in_tx!(inner, Some((SCHEDULE_FOR_UPDATE, &first)), |tx, rows| {
        let mut s = schedule_from(&rows)?;
        for at in Schedule::trigger_instants(tx.now) {
            if let Some(job) = make_run(inner, &mut tx, &s, at, true).await? {
                s.record_run(at);
                save_schedule(&mut tx, &s).await?;
                let now = tx.now;
                tx.event(NewEvent::fired(&s, &job, at, true, now));
                return Ok(job);
            }
        }
        Err(crate::triggers_exhausted())
    })
}

/// Saves sightings of workers in one statement, merged as `Sighting::merge` says (in
/// SQL). Rows are written in name order, so two nodes saving the same workers never
/// wait on each other in a cycle.
pub(crate) async fn save_workers(
    inner: &Inner,
    mut workers: Vec<kairos_core::worker::Sighting>,
) -> Result<(), StoreError> {
    workers.sort_by(|a, b| a.name.cmp(&b.name));
    workers.dedup_by(|a, b| a.name == b.name);
    let mut names = Vec::with_capacity(workers.len());
    let mut queues = Vec::with_capacity(workers.len());
    let (mut hosts, mut versions) = (Vec::new(), Vec::new());
    let (mut started, mut seen) = (Vec::new(), Vec::new());
    for w in workers {
        queues.push(serde_json::to_string(&w.queues)?);
        names.push(w.name);
        hosts.push(w.hostname);
        versions.push(w.version);
        started.push(w.started_at);
        seen.push(w.last_seen_at);
    }
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO workers (name, queues, hostname, version, started_at, last_seen_at)
             SELECT n, ARRAY(SELECT jsonb_array_elements_text(q::jsonb)), h, v, s, l
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                         $5::timestamptz[], $6::timestamptz[]) AS w(n, q, h, v, s, l)
             ORDER BY n
             ON CONFLICT (name) DO UPDATE SET
               queues = CASE WHEN cardinality(excluded.queues) > 0
                   AND (excluded.last_seen_at >= workers.last_seen_at
                        OR cardinality(workers.queues) = 0)
                   THEN excluded.queues ELSE workers.queues END,
               hostname = CASE WHEN excluded.hostname IS NOT NULL
                   AND (excluded.last_seen_at >= workers.last_seen_at OR workers.hostname IS NULL)
                   THEN excluded.hostname ELSE workers.hostname END,
               version = CASE WHEN excluded.version IS NOT NULL
                   AND (excluded.last_seen_at >= workers.last_seen_at OR workers.version IS NULL)
                   THEN excluded.version ELSE workers.version END,
               started_at = least(workers.started_at, excluded.started_at),
               last_seen_at = greatest(workers.last_seen_at, excluded.last_seen_at)",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[&names, &queues, &hosts, &versions, &started, &seen],
        )
        .await?;
    Ok(())
}

/// Forgets workers unseen since `before`, and all but the `keep` seen last.
pub(crate) async fn forget_workers(
    inner: &Inner,
    before: Timestamp,
    keep: usize,
) -> Result<u64, StoreError> {
    let client = inner.connection().await?;
    let stmt = client
        .prepare_cached(
            "DELETE FROM workers WHERE last_seen_at < $1 OR name NOT IN
               (SELECT name FROM workers ORDER BY last_seen_at DESC LIMIT $2)",
        )
        .await?;
    Ok(client.execute(&stmt, &[&before, &(keep as i64)]).await?)
}
