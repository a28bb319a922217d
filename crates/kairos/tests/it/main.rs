//! Tests of the real `kairos` binary: crash safety (`kill -9`) and graceful shutdown.

mod bench;
mod process;
mod support;
