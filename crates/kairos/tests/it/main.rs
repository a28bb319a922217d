//! Tests of the real `kairos` binary: crash safety (`kill -9`), graceful shutdown,
//! damaged data files, a full disk, and `kairos bench`.

mod bench;
mod damaged;
mod disk_full;
mod process;
mod support;
