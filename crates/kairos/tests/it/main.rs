//! Tests of the real `kairos` binary: crash safety (`kill -9`), graceful shutdown,
//! damaged data files, a full disk, a three-node cluster on PostgreSQL, `kairos worker
//! --exec`, workers and servers killed under each other, `kairos bench`, and the
//! dashboard in a real Chromium.

mod auth;
mod bench;
mod chaos;
mod cli;
mod cluster;
mod damaged;
mod dashboard;
mod disk_full;
mod events;
mod outage;
mod process;
mod sink_crash;
mod support;
mod worker;
