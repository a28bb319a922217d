//! Durations: parsing never panics, and what parses reads back the same from its
//! canonical form.
#![no_main]

use kairos_core::Duration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = text.parse::<Duration>() {
        let again: Duration = d.to_string().parse().expect("the canonical form parses");
        assert_eq!(again, d);
    }
});
