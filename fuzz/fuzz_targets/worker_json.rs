//! The worker protocol's bodies (lease, ack, heartbeat): decoding and validation never
//! panic, and a validated lease names at most the allowed queues, without repeats.
#![no_main]

use kairos_core::api::{AckRequest, HeartbeatRequest, LeaseRequest};
use kairos_core::{Limits, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<LeaseRequest>(data)
        && let Ok(spec) = req.validate()
    {
        assert!(!spec.queues.is_empty() && spec.queues.len() <= validate::MAX_LEASE_QUEUES);
        let unique: std::collections::HashSet<_> = spec.queues.iter().collect();
        assert_eq!(unique.len(), spec.queues.len());
    }
    if let Ok(req) = serde_json::from_slice::<AckRequest>(data) {
        let _ = req.validate(&Limits::default());
    }
    if let Ok(req) = serde_json::from_slice::<HeartbeatRequest>(data) {
        let _ = req.validate();
    }
});
