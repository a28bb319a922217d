//! Enqueue bodies (one job, a batch, a schedule): decoding and validation never panic,
//! and what validates respects the limits.
#![no_main]

use kairos_core::api::{BatchRequest, EnqueueRequest};
use kairos_core::schedule::ScheduleRequest;
use kairos_core::{Limits, Timestamp, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_payload_bytes: 4096,
    };
    if let Ok(req) = serde_json::from_slice::<EnqueueRequest>(data)
        && let Ok(job) = req.validate("", &limits)
    {
        assert!(job.payload.get().len() <= limits.max_payload_bytes);
        assert!(validate::json_depth(job.payload.get()) <= validate::MAX_JSON_DEPTH);
        assert!(validate::PRIORITY_RANGE.contains(&job.priority));
    }
    if let Ok(req) = serde_json::from_slice::<BatchRequest>(data)
        && let Ok(jobs) = req.validate(&limits)
    {
        assert!(!jobs.is_empty() && jobs.len() <= validate::MAX_BATCH);
    }
    if let Ok(req) = serde_json::from_slice::<ScheduleRequest>(data) {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let _ = req.validate(uuid_from(data), now, &limits);
    }
});

fn uuid_from(data: &[u8]) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    for (b, d) in bytes.iter_mut().zip(data) {
        *b = *d;
    }
    uuid::Uuid::from_bytes(bytes)
}
