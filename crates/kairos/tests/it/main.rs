//! Tests of the real `kairos` binary: crash safety (`kill -9`) and graceful shutdown.

mod process;
mod support;
