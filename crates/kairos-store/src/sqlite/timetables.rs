//! Schedules as parsed for firing, kept by the writer between fires: without them a
//! per-second schedule has its JSON body parsed and its cron compiled at every fire,
//! more than a fifth of a fire's work.
//!
//! A parse is kept with the exact body text it came from and used only for that text,
//! so no invalidation is needed: an update (committed or rolled back) changes the text
//! and the next fire parses it afresh.

use crate::StoreError;
use kairos_core::schedule::Schedule;
use kairos_core::timetable::Timetable;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Most schedules kept; past it the cache starts over (a bound on its memory, about
/// 2 KB a schedule).
const MOST: usize = 16_384;

/// A schedule parsed from its body, with its timetable built.
pub(crate) struct Parsed {
    /// As its body holds it (timing as of its last whole save).
    pub schedule: Schedule,
    /// `schedule.timetable()`: `None` when its cron or zone no longer parses.
    pub timetable: Option<Timetable>,
}

/// Parsed schedules by id, each with the body it was parsed from.
#[derive(Default)]
pub(crate) struct Timetables {
    by_id: RefCell<HashMap<Uuid, (String, Arc<Parsed>)>>,
}

impl Timetables {
    /// The schedule `id` whose body is `body`, parsed (or as parsed before from the same
    /// text).
    pub fn parse(&self, id: Uuid, body: &str) -> Result<Arc<Parsed>, StoreError> {
        let mut by_id = self.by_id.borrow_mut();
        if let Some((text, parsed)) = by_id.get(&id)
            && text == body
        {
            return Ok(parsed.clone());
        }
        let schedule: Schedule = serde_json::from_str(body)?;
        let timetable = schedule.timetable();
        let parsed = Arc::new(Parsed {
            schedule,
            timetable,
        });
        if by_id.len() >= MOST && !by_id.contains_key(&id) {
            by_id.clear();
        }
        by_id.insert(id, (body.to_string(), parsed.clone()));
        Ok(parsed)
    }

    /// Drops what is kept of schedule `id` (deleted: only memory is at stake).
    pub fn forget(&self, id: Uuid) {
        self.by_id.borrow_mut().remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::schedule::{JobTemplateRequest, ScheduleRequest};

    fn body(cron: &str) -> String {
        let s = ScheduleRequest {
            name: "s".into(),
            cron: cron.into(),
            job: JobTemplateRequest {
                kind: "k".into(),
                ..Default::default()
            },
            ..Default::default()
        }
        .validate(
            Uuid::nil(),
            "2030-01-01T00:00:00Z".parse().unwrap(),
            &Default::default(),
        )
        .unwrap();
        serde_json::to_string(&s).unwrap()
    }

    #[test]
    fn a_parse_serves_only_the_body_it_came_from() {
        let t = Timetables::default();
        let (hourly, daily) = (body("0 * * * *"), body("0 0 * * *"));
        let first = t.parse(Uuid::nil(), &hourly).unwrap();
        assert!(Arc::ptr_eq(&first, &t.parse(Uuid::nil(), &hourly).unwrap()));
        let changed = t.parse(Uuid::nil(), &daily).unwrap();
        assert_eq!(changed.schedule.cron, "0 0 * * *");
        assert!(changed.timetable.is_some());
        t.forget(Uuid::nil());
        assert!(!Arc::ptr_eq(
            &changed,
            &t.parse(Uuid::nil(), &daily).unwrap()
        ));
    }
}
