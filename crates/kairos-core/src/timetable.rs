//! A schedule's timetable: the instants a cron expression fires in a time zone, with an
//! explicit policy for daylight-saving jumps.
//!
//! - A local time that a spring-forward jump skips: [`DstSkipped::Shift`] fires once at
//!   the first valid instant after the gap (the moment the clocks jump), however many
//!   matching times fell in the gap; [`DstSkipped::Skip`] does not fire.
//! - A local time that a fall-back jump repeats: [`DstRepeated::First`] fires at its first
//!   occurrence, [`DstRepeated::Last`] at its second, [`DstRepeated::Both`] at both.
//!
//! Away from transitions, civil time maps one-to-one onto instants at a fixed offset, and
//! the next fire time is one cron step. Within a transition's size (1 h in most zones,
//! 30 min on Lord Howe) of a transition the mapping folds or jumps, so the candidates of
//! that window are mapped one by one and the earliest wins. For a per-second expression
//! that costs a few milliseconds per fire time during the two hours around a transition.

use crate::cron::Cron;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// What happens to a local time skipped by a spring-forward jump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DstSkipped {
    /// Fire once at the first valid instant after the gap.
    #[default]
    Shift,
    /// Do not fire.
    Skip,
}

/// What happens to a local time repeated by a fall-back jump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DstRepeated {
    /// Fire at the first occurrence.
    #[default]
    First,
    /// Fire at the second occurrence.
    Last,
    /// Fire at both.
    Both,
}

/// How a daylight-saving rule placed one fire time (see [`Timetable::explain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DstRule {
    /// The wall time fell in a spring-forward gap; it fires at the jump instead.
    Shifted,
    /// The wall time happens twice (fall-back); this is its first occurrence.
    RepeatedFirst,
    /// The wall time happens twice (fall-back); this is its second occurrence.
    RepeatedSecond,
}

/// A fire time a daylight-saving rule placed, and the wall time the expression named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DstMark {
    /// What the rule did.
    pub rule: DstRule,
    /// The local wall time the expression named, without an offset
    /// (`2027-03-28T02:30:00`).
    #[cfg_attr(feature = "openapi", schema(example = "2027-03-28T02:30:00"))]
    pub wall_time: String,
}

/// No time zone moves its clocks by more than this in one transition: transitions this
/// close to a candidate are looked at.
const MARGIN: SignedDuration = SignedDuration::from_hours(3);

/// The fire times of a cron expression in a zone, under DST policies.
#[derive(Debug, Clone)]
pub struct Timetable {
    cron: Cron,
    tz: TimeZone,
    skipped: DstSkipped,
    repeated: DstRepeated,
}

impl Timetable {
    /// A timetable of `cron` in `tz`.
    pub fn new(cron: Cron, tz: TimeZone, skipped: DstSkipped, repeated: DstRepeated) -> Self {
        Timetable {
            cron,
            tz,
            skipped,
            repeated,
        }
    }

    /// The time zone.
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// The first fire time strictly after `after`, if the expression fires again.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let offset = self.tz.to_offset(after);
        let civil = offset.to_datetime(after);
        let candidate = offset.to_timestamp(self.cron.next_after(civil)?).ok()?;
        // Every transition from a margin before `after` to a margin past the candidate:
        // the candidate's offset is `after`'s, which is wrong past any of them (there may
        // be several: a yearly expression crosses two a year).
        let window_start = after.checked_sub(MARGIN).ok()?;
        let window_end = candidate.checked_add(MARGIN).ok()?;
        let mut widest: Option<SignedDuration> = None;
        for jump in self
            .tz
            .following(window_start)
            .take_while(|t| t.timestamp() <= window_end)
        {
            // Only civil times within the jump's size of it map out of order or not at all.
            let before = self.tz.to_offset(
                jump.timestamp()
                    .checked_sub(SignedDuration::from_secs(1))
                    .ok()?,
            );
            let size = before.duration_since(jump.offset()).abs();
            let near = jump.timestamp() >= after.checked_sub(size).ok()?
                && jump.timestamp() <= candidate.checked_add(size).ok()?;
            if !size.is_zero() && near {
                widest = Some(widest.map_or(size, |w| w.max(size)));
            }
        }
        match widest {
            None => Some(candidate),
            Some(size) => self.next_near_transition(after, civil, size),
        }
    }

    /// The next `count` fire times after `after`.
    pub fn upcoming(&self, after: Timestamp, count: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(count);
        let mut t = after;
        while out.len() < count {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// Explains `times`, the fire times [`Timetable::upcoming`] gave after `after`: for
    /// each, how a daylight-saving rule placed it (`None` for a wall time that happened
    /// once); and, oldest first, the wall times the expression names in that span that
    /// fire nothing of their own (skipped by a spring-forward jump, or folded into the
    /// one shifted fire of their gap).
    pub fn explain(
        &self,
        after: Timestamp,
        times: &[Timestamp],
    ) -> (Vec<Option<DstMark>>, Vec<DateTime>) {
        let Some(end) = times.iter().map(|t| self.tz.to_datetime(*t)).max() else {
            return (Vec::new(), Vec::new());
        };
        // The named wall times in a gap, with the instant of the jump that ends it.
        let mut gapped: Vec<(DateTime, Option<Timestamp>)> = Vec::new();
        let mut c = self.tz.to_datetime(after);
        while let Some(next) = self.cron.next_after(c).filter(|n| *n <= end) {
            c = next;
            if let AmbiguousOffset::Gap { after: offset, .. } =
                self.tz.to_ambiguous_timestamp(c).offset()
            {
                let jump = offset
                    .to_timestamp(c)
                    .ok()
                    .and_then(|probe| self.tz.following(probe).next())
                    .map(|j| j.timestamp());
                gapped.push((c, jump));
            }
        }
        let mut shifted_from = Vec::new();
        let marks = times
            .iter()
            .map(|&t| {
                let wall = self.tz.to_datetime(t);
                if self.cron.matches(wall) {
                    return match self.tz.to_ambiguous_timestamp(wall).offset() {
                        AmbiguousOffset::Fold { before, .. } => Some(DstMark {
                            rule: if self.tz.to_offset(t) == before {
                                DstRule::RepeatedFirst
                            } else {
                                DstRule::RepeatedSecond
                            },
                            wall_time: wall.to_string(),
                        }),
                        _ => None,
                    };
                }
                // Not a named wall time: the shifted fire of a gap, named by the gap's
                // first wall time.
                let (from, _) = gapped.iter().find(|(_, jump)| *jump == Some(t))?;
                shifted_from.push(*from);
                Some(DstMark {
                    rule: DstRule::Shifted,
                    wall_time: from.to_string(),
                })
            })
            .collect();
        let dropped = gapped
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| !shifted_from.contains(c))
            .collect();
        (marks, dropped)
    }

    /// Every fire time in `(after, until]`, oldest first, at most `limit` of the most
    /// recent ones.
    pub fn between(&self, after: Timestamp, until: Timestamp, limit: usize) -> Vec<Timestamp> {
        let mut out = std::collections::VecDeque::new();
        let mut t = after;
        while let Some(next) = self.next_after(t) {
            if next > until {
                break;
            }
            if out.len() == limit {
                out.pop_front();
            }
            out.push_back(next);
            t = next;
        }
        out.into()
    }

    /// The most recent `limit` fire times in `(after, until]`, oldest first. Looks back
    /// from `until` over a window that doubles until it holds `limit` times or reaches
    /// `after`, so a per-second schedule that was idle for a year costs about `limit`
    /// steps, not 31 million.
    pub fn recent(&self, after: Timestamp, until: Timestamp, limit: usize) -> Vec<Timestamp> {
        let mut span = SignedDuration::from_secs(1);
        loop {
            let from = until
                .checked_sub(span)
                .ok()
                .filter(|f| *f > after)
                .unwrap_or(after);
            let got = self.between(from, until, limit);
            if got.len() >= limit || from == after {
                return got;
            }
            span = span.checked_mul(2).unwrap_or(SignedDuration::MAX);
        }
    }

    /// The earliest fire time after `after` when a transition of `size` is near: maps the
    /// candidates from `size` before `after`'s civil time to `size` past the best found.
    fn next_near_transition(
        &self,
        after: Timestamp,
        civil: DateTime,
        size: SignedDuration,
    ) -> Option<Timestamp> {
        let mut best: Option<Timestamp> = None;
        let mut best_civil_limit: Option<DateTime> = None;
        let mut c = civil.checked_sub(size).ok()?;
        let mut found = Vec::with_capacity(2);
        loop {
            c = self.cron.next_after(c)?;
            if best_civil_limit.is_some_and(|limit| c > limit) {
                return best;
            }
            found.clear();
            self.instants(c, &mut found);
            for &t in &found {
                if t > after && best.is_none_or(|b| t < b) {
                    best = Some(t);
                    best_civil_limit = self.tz.to_datetime(t).checked_add(size).ok();
                }
            }
        }
    }

    /// The instants civil time `c` fires at, under the policies.
    fn instants(&self, c: DateTime, out: &mut Vec<Timestamp>) {
        match self.tz.to_ambiguous_timestamp(c).offset() {
            AmbiguousOffset::Unambiguous { offset } => out.extend(offset.to_timestamp(c).ok()),
            AmbiguousOffset::Gap { after, .. } => {
                if self.skipped == DstSkipped::Shift {
                    // `c` read with the new offset lands just before the jump; the jump
                    // itself is the first valid instant after the gap.
                    if let Ok(probe) = after.to_timestamp(c)
                        && let Some(jump) = self.tz.following(probe).next()
                    {
                        out.push(jump.timestamp());
                    }
                }
            }
            AmbiguousOffset::Fold { before, after } => {
                if self.repeated != DstRepeated::Last {
                    out.extend(before.to_timestamp(c).ok());
                }
                if self.repeated != DstRepeated::First {
                    out.extend(after.to_timestamp(c).ok());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod differential;
