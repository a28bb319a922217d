//! HTTP integration tests: each starts the real server (real SQLite file in a temp dir)
//! on an ephemeral port and drives the v1 contract over HTTP.

mod connections;
mod engine;
mod errors;
mod jobs;
mod queues;
mod schedules;
mod support;
mod workers;
