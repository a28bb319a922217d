//! DST policies on real dates, and properties of fire times.

use super::*;
use proptest::prelude::*;

fn tt(expr: &str, zone: &str, skipped: DstSkipped, repeated: DstRepeated) -> Timetable {
    Timetable::new(
        expr.parse().unwrap(),
        TimeZone::get(zone).unwrap(),
        skipped,
        repeated,
    )
}

fn local(t: &Timetable, ts: &[Timestamp]) -> Vec<String> {
    ts.iter()
        .map(|x| x.to_zoned(t.tz().clone()).strftime("%F %T%:z").to_string())
        .collect()
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn berlin_spring_forward_shift_fires_once_at_the_jump() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST.
    let t = tt(
        "30 2 * * *",
        "Europe/Berlin",
        DstSkipped::Shift,
        DstRepeated::First,
    );
    let got = t.upcoming(at("2026-03-27T12:00:00Z"), 3);
    assert_eq!(
        local(&t, &got),
        [
            "2026-03-28 02:30:00+01:00",
            "2026-03-29 03:00:00+02:00",
            "2026-03-30 02:30:00+02:00"
        ]
    );
    // Every minute of the skipped hour collapses into one fire at 03:00.
    let t = tt(
        "* 2 * * *",
        "Europe/Berlin",
        DstSkipped::Shift,
        DstRepeated::First,
    );
    let got = t.upcoming(at("2026-03-29T00:58:00Z"), 3);
    assert_eq!(
        local(&t, &got),
        [
            "2026-03-29 03:00:00+02:00",
            "2026-03-30 02:00:00+02:00",
            "2026-03-30 02:01:00+02:00"
        ]
    );
}

#[test]
fn berlin_spring_forward_skip_does_not_fire() {
    let t = tt(
        "30 2 * * *",
        "Europe/Berlin",
        DstSkipped::Skip,
        DstRepeated::First,
    );
    let got = t.upcoming(at("2026-03-27T12:00:00Z"), 2);
    assert_eq!(
        local(&t, &got),
        ["2026-03-28 02:30:00+01:00", "2026-03-30 02:30:00+02:00"]
    );
}

#[test]
fn berlin_fall_back_first_last_both() {
    // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    let from = at("2026-10-24T12:00:00Z");
    let first = tt(
        "30 2 * * *",
        "Europe/Berlin",
        DstSkipped::Shift,
        DstRepeated::First,
    );
    assert_eq!(
        local(&first, &first.upcoming(from, 2)),
        ["2026-10-25 02:30:00+02:00", "2026-10-26 02:30:00+01:00"]
    );
    let last = tt(
        "30 2 * * *",
        "Europe/Berlin",
        DstSkipped::Shift,
        DstRepeated::Last,
    );
    assert_eq!(
        local(&last, &last.upcoming(from, 2)),
        ["2026-10-25 02:30:00+01:00", "2026-10-26 02:30:00+01:00"]
    );
    let both = tt(
        "30 2 * * *",
        "Europe/Berlin",
        DstSkipped::Shift,
        DstRepeated::Both,
    );
    assert_eq!(
        local(&both, &both.upcoming(from, 3)),
        [
            "2026-10-25 02:30:00+02:00",
            "2026-10-25 02:30:00+01:00",
            "2026-10-26 02:30:00+01:00"
        ]
    );
    // Every 20 minutes through the repeated hour, both passes, in instant order.
    let every = tt(
        "*/20 2 * * *",
        "Europe/Berlin",
        DstSkipped::Shift,
        DstRepeated::Both,
    );
    assert_eq!(
        local(&every, &every.upcoming(at("2026-10-24T23:30:00Z"), 6)),
        [
            "2026-10-25 02:00:00+02:00",
            "2026-10-25 02:20:00+02:00",
            "2026-10-25 02:40:00+02:00",
            "2026-10-25 02:00:00+01:00",
            "2026-10-25 02:20:00+01:00",
            "2026-10-25 02:40:00+01:00",
        ]
    );
}

#[test]
fn new_york_both_transitions() {
    // 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
    let t = tt(
        "30 2 * * *",
        "America/New_York",
        DstSkipped::Shift,
        DstRepeated::First,
    );
    assert_eq!(
        local(&t, &t.upcoming(at("2026-03-07T12:00:00Z"), 2)),
        ["2026-03-08 03:00:00-04:00", "2026-03-09 02:30:00-04:00"]
    );
    let t = tt(
        "30 1 * * *",
        "America/New_York",
        DstSkipped::Shift,
        DstRepeated::Last,
    );
    assert_eq!(
        local(&t, &t.upcoming(at("2026-10-31T12:00:00Z"), 2)),
        ["2026-11-01 01:30:00-05:00", "2026-11-02 01:30:00-05:00"]
    );
}

#[test]
fn lord_howe_half_hour_shift() {
    // Lord Howe Island: 2026-10-04 02:00 +10:30 jumps to 02:30 +11:00;
    // 2026-04-05 02:00 +11:00 falls back to 01:30 +10:30.
    let t = tt(
        "15 2 * * *",
        "Australia/Lord_Howe",
        DstSkipped::Shift,
        DstRepeated::First,
    );
    assert_eq!(
        local(&t, &t.upcoming(at("2026-10-02T12:00:00Z"), 3)),
        [
            "2026-10-03 02:15:00+10:30",
            "2026-10-04 02:30:00+11:00",
            "2026-10-05 02:15:00+11:00"
        ]
    );
    let t = tt(
        "45 1 * * *",
        "Australia/Lord_Howe",
        DstSkipped::Shift,
        DstRepeated::Both,
    );
    assert_eq!(
        local(&t, &t.upcoming(at("2026-04-04T00:00:00Z"), 3)),
        [
            "2026-04-05 01:45:00+11:00",
            "2026-04-05 01:45:00+10:30",
            "2026-04-06 01:45:00+10:30"
        ]
    );
}

#[test]
fn per_second_schedule_through_both_transitions() {
    // Berlin, every second, across the fall-back with "both": the first pass's last ten
    // minutes, then the repeated hour from 02:00 again, one second apart throughout.
    let t = tt(
        "* * * * * *",
        "Europe/Berlin",
        DstSkipped::Shift,
        DstRepeated::Both,
    );
    let from = at("2026-10-25T00:49:59Z"); // 02:49:59 CEST
    let started = std::time::Instant::now();
    let got = t.upcoming(from, 1300);
    assert!(
        got.windows(2)
            .all(|w| w[1].duration_since(w[0]) == SignedDuration::from_secs(1))
    );
    assert_eq!(
        local(&t, &[got[599], got[600]]),
        ["2026-10-25 02:59:59+02:00", "2026-10-25 02:00:00+01:00"]
    );
    let per_call = started.elapsed() / 1300;
    assert!(
        per_call < std::time::Duration::from_millis(50),
        "bounded per fire time: {per_call:?}"
    );
    // Spring forward: 02:00-02:59 do not exist; with "shift" they collapse into 03:00.
    let t = tt(
        "* * * * * *",
        "Europe/Berlin",
        DstSkipped::Shift,
        DstRepeated::First,
    );
    let got = t.upcoming(at("2026-03-29T00:59:58Z"), 3);
    assert_eq!(
        local(&t, &got),
        [
            "2026-03-29 01:59:59+01:00",
            "2026-03-29 03:00:00+02:00",
            "2026-03-29 03:00:01+02:00"
        ]
    );
}

#[test]
fn between_keeps_the_most_recent() {
    let t = tt("* * * * * *", "UTC", DstSkipped::Shift, DstRepeated::First);
    let got = t.between(at("2030-01-01T00:00:00Z"), at("2030-01-01T00:00:10Z"), 3);
    assert_eq!(
        got,
        vec![
            at("2030-01-01T00:00:08Z"),
            at("2030-01-01T00:00:09Z"),
            at("2030-01-01T00:00:10Z")
        ]
    );
}

#[test]
fn recent_looks_back_without_walking_the_whole_gap() {
    let t = tt("* * * * * *", "UTC", DstSkipped::Shift, DstRepeated::First);
    let started = std::time::Instant::now();
    let got = t.recent(at("2029-01-01T00:00:00Z"), at("2030-01-01T00:00:00Z"), 1000);
    assert_eq!(got.len(), 1000);
    assert_eq!(*got.last().unwrap(), at("2030-01-01T00:00:00Z"));
    assert_eq!(got[0], at("2029-12-31T23:43:21Z"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "bounded work"
    );
    let yearly = tt("@yearly", "UTC", DstSkipped::Shift, DstRepeated::First);
    let got = yearly.recent(at("2020-06-01T00:00:00Z"), at("2030-06-01T00:00:00Z"), 3);
    assert_eq!(
        got,
        vec![
            at("2028-01-01T00:00:00Z"),
            at("2029-01-01T00:00:00Z"),
            at("2030-01-01T00:00:00Z")
        ]
    );
    let few = yearly.recent(at("2028-06-01T00:00:00Z"), at("2030-06-01T00:00:00Z"), 10);
    assert_eq!(
        few,
        vec![at("2029-01-01T00:00:00Z"), at("2030-01-01T00:00:00Z")]
    );
}

proptest! {
    #[test]
    fn fire_times_increase_and_match(
        minute in prop_oneof![Just("*".to_string()), (0u8..60).prop_map(|m| m.to_string()), Just("*/7".to_string())],
        hour in prop_oneof![Just("*".to_string()), (0u8..24).prop_map(|h| h.to_string()), Just("1-3".to_string())],
        dow in prop_oneof![Just("*"), Just("1-5"), Just("SUN")],
        zone in prop_oneof![Just("UTC"), Just("Europe/Berlin"), Just("America/New_York"), Just("Australia/Lord_Howe")],
        start in 1_700_000_000i64..1_900_000_000,
        repeated in prop_oneof![Just(DstRepeated::First), Just(DstRepeated::Last), Just(DstRepeated::Both)],
    ) {
        let expr = format!("{minute} {hour} * * {dow}");
        let t = tt(&expr, zone, DstSkipped::Shift, repeated);
        let from = Timestamp::from_second(start).unwrap();
        let times = t.upcoming(from, 20);
        prop_assert_eq!(times.len(), 20);
        let mut prev = from;
        for x in &times {
            prop_assert!(*x > prev, "strictly increasing: {} then {}", prev, x);
            prev = *x;
            let civil = t.tz().to_datetime(*x);
            // A fire is a match of the expression, or the jump that ends a gap holding one.
            let is_jump = t.tz().preceding(x.checked_add(SignedDuration::from_secs(1)).unwrap())
                .next()
                .is_some_and(|tr| tr.timestamp() == *x);
            prop_assert!(t.cron.matches(civil) || is_jump, "{} ({}) is not a match", x, civil);
        }
    }
}

/// Found by the differential test against croner: an instant just after one transition
/// (within its three-hour look-back) made the next one, months later, go unnoticed, and
/// the fire time kept the old offset.
#[test]
fn a_transition_just_before_does_not_hide_the_next_one() {
    let t = tt(
        "* * * 10 *",
        "Pacific/Chatham",
        DstSkipped::Shift,
        DstRepeated::First,
    );
    assert_eq!(
        t.next_after(at("2026-04-04T15:00:01Z")),
        Some(at("2026-09-30T10:15:00Z")),
        "October 1 00:00 at +13:45"
    );
    let berlin = tt(
        "0 12 1 7 *",
        "Europe/Berlin",
        DstSkipped::Shift,
        DstRepeated::First,
    );
    assert_eq!(
        berlin.next_after(at("2026-10-25T01:30:00Z")),
        Some(at("2027-07-01T10:00:00Z"))
    );
}

fn explained(t: &Timetable, after: &str, count: usize) -> (Vec<String>, Vec<String>) {
    let after = at(after);
    let times = t.upcoming(after, count);
    let (marks, dropped) = t.explain(after, &times);
    assert_eq!(marks.len(), times.len());
    let marks = local(t, &times)
        .into_iter()
        .zip(marks)
        .map(|(l, m)| match m {
            None => l,
            Some(m) => format!("{l} {:?} {}", m.rule, m.wall_time),
        })
        .collect();
    (marks, dropped.iter().map(ToString::to_string).collect())
}

#[test]
fn explain_marks_shifted_times_and_notes_dropped_ones() {
    // Every 20 minutes of 02:xx: the gap's first wall time shifts to the jump, the
    // other two fold into it.
    let shift = tt(
        "*/20 2 * * *",
        "Europe/Berlin",
        DstSkipped::Shift,
        DstRepeated::First,
    );
    assert_eq!(
        explained(&shift, "2026-03-28T12:00:00Z", 2),
        (
            vec![
                "2026-03-29 03:00:00+02:00 Shifted 2026-03-29T02:00:00".to_string(),
                "2026-03-30 02:00:00+02:00".to_string(),
            ],
            vec![
                "2026-03-29T02:20:00".to_string(),
                "2026-03-29T02:40:00".to_string()
            ]
        )
    );
    // Skipping: nothing is marked, all three are dropped (and not counted).
    let skip = tt(
        "*/20 2 * * *",
        "Europe/Berlin",
        DstSkipped::Skip,
        DstRepeated::First,
    );
    let (marks, dropped) = explained(&skip, "2026-03-28T12:00:00Z", 1);
    assert_eq!(marks, ["2026-03-30 02:00:00+02:00"]);
    assert_eq!(
        dropped,
        [
            "2026-03-29T02:00:00",
            "2026-03-29T02:20:00",
            "2026-03-29T02:40:00"
        ]
    );
    // A wall time that matches at the jump itself is not shifted: the gap folds into it.
    let hourly = tt(
        "0 * * * *",
        "Europe/Berlin",
        DstSkipped::Shift,
        DstRepeated::First,
    );
    assert_eq!(
        explained(&hourly, "2026-03-28T23:30:00Z", 2),
        (
            vec![
                "2026-03-29 01:00:00+01:00".to_string(),
                "2026-03-29 03:00:00+02:00".to_string()
            ],
            vec!["2026-03-29T02:00:00".to_string()]
        )
    );
    // Nothing near a transition: nothing to say.
    assert_eq!(
        explained(&skip, "2026-06-01T00:00:00Z", 2).1,
        Vec::<String>::new()
    );
}

#[test]
fn explain_marks_both_occurrences_of_a_repeated_time() {
    let both = tt(
        "30 2 * * *",
        "Europe/Berlin",
        DstSkipped::Shift,
        DstRepeated::Both,
    );
    assert_eq!(
        explained(&both, "2026-10-24T12:00:00Z", 3),
        (
            vec![
                "2026-10-25 02:30:00+02:00 RepeatedFirst 2026-10-25T02:30:00".to_string(),
                "2026-10-25 02:30:00+01:00 RepeatedSecond 2026-10-25T02:30:00".to_string(),
                "2026-10-26 02:30:00+01:00".to_string(),
            ],
            vec![]
        )
    );
    let last = tt(
        "30 2 * * *",
        "Europe/Berlin",
        DstSkipped::Shift,
        DstRepeated::Last,
    );
    assert_eq!(
        explained(&last, "2026-10-24T12:00:00Z", 1).0,
        ["2026-10-25 02:30:00+01:00 RepeatedSecond 2026-10-25T02:30:00"]
    );
}
