//! HTTP integration tests: each starts the real server (real SQLite file in a temp dir)
//! on an ephemeral port and drives the v1 contract over HTTP. The `it_postgres` target
//! runs the same contract modules on a PostgreSQL-backed server.

/// The store this target's servers run on.
const BACKEND: support::Backend = support::Backend::Sqlite;

mod auth;
mod cluster;
mod connections;
mod engine;
mod errors;
mod events;
mod jobs;
mod metrics;
mod openapi;
mod queues;
mod retention;
mod schedules;
mod sinks;
mod sqlite;
mod support;
mod ui;
mod workers;
