//! Tests of the real `kairos` binary: crash safety (`kill -9`), graceful shutdown,
//! damaged data files, a full disk, a three-node cluster on PostgreSQL, `kairos worker
//! --exec`, and `kairos bench`.

mod bench;
mod cluster;
mod damaged;
mod disk_full;
mod outage;
mod process;
mod support;
mod worker;
