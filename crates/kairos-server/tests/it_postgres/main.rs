//! The HTTP contract suite again, on a PostgreSQL-backed server (a schema of its own per
//! test on `KAIROS_TEST_DATABASE_URL`, default the local server): the same modules as
//! `it`, but those about connections and the embedded store, which no store changes.

/// The store this target's servers run on.
const BACKEND: support::Backend = support::Backend::Postgres;

#[path = "../it/auth.rs"]
mod auth;
#[path = "../it/cluster.rs"]
mod cluster;
#[path = "../it/errors.rs"]
mod errors;
#[path = "../it/events.rs"]
mod events;
#[path = "../it/jobs.rs"]
mod jobs;
#[path = "../it/metrics.rs"]
mod metrics;
#[path = "../it/queues.rs"]
mod queues;
#[path = "../it/retention.rs"]
mod retention;
#[path = "../it/schedules.rs"]
mod schedules;
// Shared with `it`, whose raw-socket helpers this target has no use for.
#[allow(dead_code)]
#[path = "../it/support.rs"]
mod support;
#[path = "../it/workers.rs"]
mod workers;
