//! The cron engine against `croner` (whose DST rules follow Vixie cron), on random
//! expressions, zones and instants, under the default policies (`dst_skipped: shift`,
//! `dst_repeated: first`).
//!
//! Away from daylight-saving transitions the two must agree exactly. Near one they may
//! differ only by the two documented policy differences (docs/architecture.md,
//! "Schedules"):
//!
//! - **a skipped local time**: Kairos fires once at the jump for any expression whose
//!   times fell in the gap; croner does that only for fixed-time expressions and skips
//!   the gap for those with a wildcard or step in seconds, minutes or hours. So when they
//!   differ, Kairos's answer is the transition instant itself, and croner's is later.
//! - **a repeated local time**: Kairos fires at the first occurrence only; croner fires
//!   wildcard and step expressions at both. So when they differ, croner's answer lies in
//!   the second pass of a repeated hour, and Kairos's is later.
//!
//! - **`*/n` in day-of-month or day-of-week**: Kairos (like Vixie cron) counts a field
//!   starting with `*` as unrestricted when deciding whether a day must match both fields
//!   or either; croner counts only a bare `*`. Such expressions are not compared.
//!
//! Anything else is a bug in one of them, and fails here.

use super::*;
use jiff::tz::TimeZone;
use proptest::prelude::*;

const ZONES: [&str; 7] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kolkata",
    "Pacific/Chatham",
];

/// One cron field: `*`, a value, a range, a step or a short list, within `lo..=hi`.
fn field(lo: u32, hi: u32) -> impl Strategy<Value = String> {
    let value = lo..=hi;
    prop_oneof![
        3 => Just("*".to_string()),
        3 => value.clone().prop_map(|v| v.to_string()),
        2 => (value.clone(), value.clone())
            .prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        2 => (1..=(hi - lo + 1).min(15)).prop_map(|s| format!("*/{s}")),
        1 => (value.clone(), 1..=(hi - lo + 1).min(15)).prop_map(|(a, s)| format!("{a}/{s}")),
        1 => proptest::collection::btree_set(value, 2..4).prop_map(|vs| {
            vs.into_iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")
        }),
    ]
}

fn expression() -> impl Strategy<Value = String> {
    (
        proptest::option::of(field(0, 59)),
        field(0, 59),
        field(0, 23),
        field(1, 31),
        field(1, 12),
        field(0, 6),
    )
        .prop_map(|(sec, min, hour, dom, month, dow)| {
            let five = format!("{min} {hour} {dom} {month} {dow}");
            match sec {
                Some(s) => format!("{s} {five}"),
                None => five,
            }
        })
}

/// Transitions of `tz` between `from` and `to` (inclusive), with their size.
fn transitions(tz: &TimeZone, from: Timestamp, to: Timestamp) -> Vec<(Timestamp, SignedDuration)> {
    let start = from.checked_sub(SignedDuration::from_hours(3)).unwrap();
    tz.following(start)
        .take_while(|t| t.timestamp() <= to)
        .map(|t| {
            let before = tz.to_offset(
                t.timestamp()
                    .checked_sub(SignedDuration::from_secs(1))
                    .unwrap(),
            );
            (t.timestamp(), t.offset().duration_since(before))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_croner_but_for_the_documented_dst_policies(
        expr in expression(),
        zone in proptest::sample::select(ZONES.to_vec()),
        // 2026-01-01 to 2027-12-31, to the second; half the time moved to within three
        // hours of one of the zone's transitions, where the policies matter.
        secs in 1_767_225_600i64..1_830_297_600,
        near_transition in proptest::option::of((0usize..8, -10_800i64..10_800)),
    ) {
        let fields: Vec<&str> = expr.split(' ').collect();
        let (dom, dow) = (fields[fields.len() - 3], fields[fields.len() - 1]);
        let starred = |f: &str| f.starts_with("*/");
        if starred(dom) || starred(dow) {
            return Ok(());
        }
        let Ok(cron) = expr.parse::<Cron>() else {
            // Kairos refuses expressions that never fire (`0 0 31 2 *`); nothing to compare.
            return Ok(());
        };
        let tz = TimeZone::get(zone).unwrap();
        let mut secs = secs;
        if let Some((which, offset)) = near_transition {
            let from = Timestamp::from_second(1_767_225_600).unwrap();
            let to = Timestamp::from_second(1_830_297_600).unwrap();
            let all = transitions(&tz, from, to);
            if !all.is_empty() {
                secs = all[which % all.len()].0.as_second() + offset;
            }
        }
        let ours_tt = Timetable::new(cron, tz.clone(), DstSkipped::Shift, DstRepeated::First);
        let after = Timestamp::from_second(secs).unwrap();
        // `a/n` (from a to the end, every n) is Vixie cron's; croner calls it sloppy.
        let theirs_cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .sloppy_ranges(true)
            .build()
            .parse(&expr);
        prop_assert!(theirs_cron.is_ok(), "croner refuses {expr:?}, which Kairos takes: {theirs_cron:?}");
        let theirs_cron = theirs_cron.unwrap();
        let theirs = theirs_cron
            .find_next_occurrence(&after.to_zoned(tz.clone()), false)
            .ok()
            .map(|z| z.timestamp());
        let ours = ours_tt.next_after(after);
        if ours == theirs {
            return Ok(());
        }
        let (Some(o), Some(t)) = (ours, theirs) else {
            return Err(TestCaseError::fail(format!(
                "{expr:?} in {zone} after {after}: Kairos {ours:?}, croner {theirs:?}"
            )));
        };
        let near = transitions(&tz, after, o.max(t));
        let gap_shift = o < t && near.iter().any(|(at, size)| size.is_positive() && *at == o);
        let fold_repeat = t < o
            && near.iter().any(|(at, size)| {
                // The second pass of a repeated hour: from the transition for its size.
                size.is_negative() && t >= *at && t < at.checked_add(size.abs()).unwrap()
            });
        prop_assert!(
            gap_shift || fold_repeat,
            "{expr:?} in {zone} after {after}: Kairos {o}, croner {t}, transitions {near:?}"
        );
    }
}
