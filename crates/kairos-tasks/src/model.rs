//! What a task and a notification are, and the rules about them: what a request may
//! say, when a task reminds (`remind_at = due_at - remind_before`), and the reminder job
//! a task's remind time makes (its queue, kind and unique key).

use kairos_core::api::{EnqueueRequest, empty_as_none};
use kairos_core::validate::{Checker, MAX_DELAY, MAX_NAME_LEN, MAX_TAGS};
use kairos_core::{Duration, Invalid, Timestamp};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// The queue reminder jobs go to (reserved: the built-in reminder worker leases it).
pub const REMINDER_QUEUE: &str = "kairos.tasks";
/// The kind of reminder jobs.
pub const REMINDER_KIND: &str = "task.reminder";
/// Longest title, in characters.
pub const MAX_TITLE: usize = 500;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 10_000;
/// Tasks one page holds unless asked.
pub const DEFAULT_PAGE: u32 = 50;
/// Most tasks (or notifications) one page holds.
pub const MAX_PAGE: u32 = 500;

/// A task's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Not done yet: its reminder is scheduled.
    Open,
    /// Completed: no reminder.
    Done,
}

impl TaskStatus {
    /// The stable storage code.
    pub fn code(self) -> i16 {
        match self {
            TaskStatus::Open => 0,
            TaskStatus::Done => 1,
        }
    }

    /// The status stored as `code`.
    pub fn from_code(code: i16) -> Option<TaskStatus> {
        match code {
            0 => Some(TaskStatus::Open),
            1 => Some(TaskStatus::Done),
            _ => None,
        }
    }
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    /// Its id.
    pub id: Uuid,
    /// What to do (1 to 500 characters).
    pub title: String,
    /// More about it.
    pub description: Option<String>,
    /// When it is due.
    pub due_at: Timestamp,
    /// How long before `due_at` its reminder comes (`0s`: at `due_at`).
    pub remind_before: Duration,
    /// When its reminder comes: `due_at - remind_before`.
    pub remind_at: Timestamp,
    /// `open` or `done`.
    pub status: TaskStatus,
    /// Labels.
    pub tags: Vec<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// The job that reminds of it (the latest scheduled; cancelled once the task is
    /// done).
    pub reminder_job_id: Option<Uuid>,
}

/// `POST /v1/tasks` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    /// 1 to 500 characters.
    #[schema(
        min_length = 1,
        max_length = 500,
        example = "Send the quarterly report"
    )]
    pub title: String,
    /// Up to 10,000 characters.
    #[serde(default)]
    #[schema(max_length = 10000)]
    pub description: Option<String>,
    /// When it is due; in the past is allowed (it reminds at once).
    pub due_at: Timestamp,
    /// How long before `due_at` to remind, default `0s`.
    #[serde(default)]
    pub remind_before: Option<Duration>,
    /// Labels, default none (at most 32, each 1 to 128 bytes).
    #[serde(default)]
    #[schema(max_items = 32)]
    pub tags: Option<Vec<String>>,
}

/// `PATCH /v1/tasks/{id}` body: the fields to change (`description: null` clears it).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    /// 1 to 500 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500)]
    pub title: Option<String>,
    /// Up to 10,000 characters; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 10000)]
    pub description: Option<Option<String>>,
    /// A new due time: the reminder moves with it.
    #[serde(default)]
    pub due_at: Option<Timestamp>,
    /// A new lead time: the reminder moves with it.
    #[serde(default)]
    pub remind_before: Option<Duration>,
    /// New labels (replacing the old).
    #[serde(default)]
    #[schema(max_items = 32)]
    pub tags: Option<Vec<String>>,
}

/// A field that may be given as `null`: absent is `None`, `null` is `Some(None)`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn check_title(c: &mut Checker<'_>, title: &str) {
    let n = title.chars().count();
    if n == 0 || n > MAX_TITLE || title.trim().is_empty() {
        c.invalid(
            "title",
            format!("must be 1 to {MAX_TITLE} characters, not only spaces"),
        );
    }
}

fn check_description(c: &mut Checker<'_>, d: Option<&str>) {
    if d.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        c.invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        );
    }
}

fn check_tags(c: &mut Checker<'_>, tags: &[String]) {
    if tags.len() > MAX_TAGS {
        c.invalid("tags", format!("at most {MAX_TAGS} tags"));
    }
    for (i, tag) in tags.iter().enumerate() {
        if tag.is_empty() || tag.len() > MAX_NAME_LEN {
            c.invalid(
                &format!("tags[{i}]"),
                format!("must be 1 to {MAX_NAME_LEN} bytes"),
            );
        }
    }
}

/// `t` to the microsecond, as the stores keep times (a remind time read back must equal
/// the one a reminder was scheduled for).
fn micros(t: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t)
}

/// When a task due at `due_at` reminds, `remind_before` ahead; checks both.
fn remind_at(c: &mut Checker<'_>, due_at: Timestamp, remind_before: Duration) -> Timestamp {
    c.duration("remind_before", remind_before, Duration::ZERO, MAX_DELAY);
    if due_at < Timestamp::UNIX_EPOCH {
        c.invalid("due_at", "must be after 1970-01-01T00:00:00Z");
        return due_at;
    }
    match due_at.checked_sub(remind_before.as_signed()) {
        Ok(at) if at >= Timestamp::UNIX_EPOCH => at,
        _ => {
            c.invalid(
                "remind_before",
                "reminds before 1970-01-01T00:00:00Z: shorten it",
            );
            due_at
        }
    }
}

impl TaskRequest {
    /// The task this asks for, created `now` with id `id`, or what is wrong with it.
    pub fn validate(self, id: Uuid, now: Timestamp) -> Result<Task, Invalid> {
        let mut c = Checker::new("");
        check_title(&mut c, &self.title);
        check_description(&mut c, self.description.as_deref());
        let tags = self.tags.unwrap_or_default();
        check_tags(&mut c, &tags);
        let remind_before = self.remind_before.unwrap_or(Duration::ZERO);
        let due_at = micros(self.due_at);
        let remind_at = remind_at(&mut c, due_at, remind_before);
        c.finish()?;
        Ok(Task {
            id,
            title: self.title,
            description: self.description,
            due_at,
            remind_before,
            remind_at,
            status: TaskStatus::Open,
            tags,
            created_at: now,
            updated_at: now,
            reminder_job_id: None,
        })
    }
}

impl TaskPatch {
    /// `task` with this patch applied at `now`, or what is wrong with the patch.
    pub fn apply(self, task: &Task, now: Timestamp) -> Result<Task, Invalid> {
        let mut c = Checker::new("");
        let mut next = task.clone();
        if let Some(title) = self.title {
            check_title(&mut c, &title);
            next.title = title;
        }
        if let Some(description) = self.description {
            check_description(&mut c, description.as_deref());
            next.description = description;
        }
        if let Some(tags) = self.tags {
            check_tags(&mut c, &tags);
            next.tags = tags;
        }
        next.due_at = self.due_at.map_or(task.due_at, micros);
        next.remind_before = self.remind_before.unwrap_or(task.remind_before);
        next.remind_at = remind_at(&mut c, next.due_at, next.remind_before);
        c.finish()?;
        if next != *task {
            next.updated_at = now;
        }
        Ok(next)
    }
}

impl Task {
    /// Whether this task (open) wants a reminder other than `before`'s: a new task, a
    /// moved remind time, or one reopened.
    pub fn reminds_anew(&self, before: Option<&Task>) -> bool {
        self.status == TaskStatus::Open
            && before.is_none_or(|b| b.status != TaskStatus::Open || b.remind_at != self.remind_at)
    }

    /// The job that reminds of this task at its remind time: unique per (task, remind
    /// time), so a retried create or change never schedules two.
    pub fn reminder(&self) -> EnqueueRequest {
        let payload = Reminder {
            task_id: self.id,
            remind_at: self.remind_at,
        };
        EnqueueRequest {
            queue: Some(REMINDER_QUEUE.to_string()),
            kind: REMINDER_KIND.to_string(),
            payload: serde_json::value::to_raw_value(&payload).ok(),
            run_at: Some(self.remind_at),
            unique_key: Some(payload.unique_key()),
            // The task store may be down when it runs: keep trying for about a day.
            max_attempts: Some(25),
            tags: Some(vec![format!("task:{}", self.id)]),
            ..EnqueueRequest::default()
        }
    }
}

/// A reminder job's payload: which task, for which remind time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reminder {
    /// The task.
    pub task_id: Uuid,
    /// The remind time it was scheduled for; a task since moved is not reminded by it.
    pub remind_at: Timestamp,
}

impl Reminder {
    /// The reminder job's unique key.
    pub fn unique_key(&self) -> String {
        format!("task:{}:{}", self.task_id, self.remind_at.as_microsecond())
    }
}

/// `task.due`'s data: the task whose remind time came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Due {
    /// The task.
    pub task_id: Uuid,
    /// Its title then.
    pub title: String,
    /// When it is due.
    pub due_at: Timestamp,
    /// The remind time that came.
    pub remind_at: Timestamp,
}

/// The type of every notification so far.
pub const TASK_DUE: &str = "task.due";

/// A notification for the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    /// Its id.
    pub id: Uuid,
    /// The task it is about.
    pub task_id: Uuid,
    /// What happened: `task.due`.
    #[serde(rename = "type")]
    #[schema(example = "task.due")]
    pub kind: String,
    /// The task's title.
    pub title: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was read; `null`: unread.
    pub read_at: Option<Timestamp>,
}

/// A page of tasks.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskPage {
    /// Soonest due first.
    pub tasks: Vec<Task>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A page of notifications.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationPage {
    /// Newest first.
    pub notifications: Vec<Notification>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The first `limit` of `rows`, read `limit + 1` at most: one more means a next page,
/// which starts after the last kept (its cursor made by `cursor`).
fn page_of<T>(
    mut rows: Vec<T>,
    limit: u32,
    cursor: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(cursor) } else { None };
    (rows, next)
}

impl TaskPage {
    /// The page of tasks a store read (`limit + 1` asked), soonest due first.
    pub fn of(tasks: Vec<Task>, limit: u32) -> TaskPage {
        let (tasks, next_cursor) = page_of(tasks, limit, task_cursor);
        TaskPage { tasks, next_cursor }
    }
}

impl NotificationPage {
    /// The page of notifications a store read (`limit + 1` asked, each with its
    /// position), newest first.
    pub fn of(rows: Vec<(i64, Notification)>, limit: u32) -> NotificationPage {
        let (rows, next_cursor) = page_of(rows, limit, |(seq, _)| notification_cursor(*seq));
        NotificationPage {
            notifications: rows.into_iter().map(|(_, n)| n).collect(),
            next_cursor,
        }
    }
}

/// A validated task listing.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only tasks of this status.
    pub status: Option<TaskStatus>,
    /// Only tasks due before this.
    pub due_before: Option<Timestamp>,
    /// Page size.
    pub limit: u32,
    /// Continue after this (due_at, id).
    pub after: Option<(Timestamp, Uuid)>,
}

/// A validated notification listing.
#[derive(Debug, Clone, Default)]
pub struct NotificationFilter {
    /// Only unread ones.
    pub unread: bool,
    /// Page size.
    pub limit: u32,
    /// Continue after (before, newest first) this position.
    pub before: Option<i64>,
}

/// `GET /v1/tasks` query parameters, as sent (an empty parameter means "not given").
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    /// `open` or `done`.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(value_type = Option<String>, pattern = "^(open|done)?$")]
    pub status: Option<String>,
    /// Only tasks due before this time (RFC 3339; documented without a format since an
    /// empty parameter means "not given").
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(value_type = Option<String>)]
    pub due_before: Option<Timestamp>,
    /// Page size, default 50, up to 500.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(value_type = Option<String>, pattern = r"^\+?[0-9]*$")]
    pub limit: Option<u32>,
    /// Where the previous page ended (its `next_cursor`).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub cursor: Option<String>,
}

impl TaskQuery {
    /// Checks every parameter.
    pub fn validate(self) -> Result<TaskFilter, Invalid> {
        let mut c = Checker::new("");
        let status = match self.status.as_deref() {
            None => None,
            Some("open") => Some(TaskStatus::Open),
            Some("done") => Some(TaskStatus::Done),
            Some(_) => {
                c.invalid("status", "must be open or done");
                None
            }
        };
        let limit = check_limit(&mut c, self.limit);
        let after = match self.cursor.as_deref().map(parse_task_cursor) {
            Some(None) => {
                c.invalid("cursor", "not a cursor this server made");
                None
            }
            Some(at) => at,
            None => None,
        };
        c.finish()?;
        Ok(TaskFilter {
            status,
            due_before: self.due_before,
            limit,
            after,
        })
    }
}

/// `GET /v1/notifications` query parameters, as sent.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    /// `true`: only unread ones.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(value_type = Option<String>, pattern = "^(true|false)?$")]
    pub unread: Option<bool>,
    /// Page size, default 50, up to 500.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(value_type = Option<String>, pattern = r"^\+?[0-9]*$")]
    pub limit: Option<u32>,
    /// Where the previous page ended (its `next_cursor`).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub cursor: Option<String>,
}

impl NotificationQuery {
    /// Checks every parameter.
    pub fn validate(self) -> Result<NotificationFilter, Invalid> {
        let mut c = Checker::new("");
        let limit = check_limit(&mut c, self.limit);
        let before = match self.cursor.as_deref() {
            None => None,
            Some(s) => match s.strip_prefix('n').and_then(|n| n.parse::<i64>().ok()) {
                Some(seq) if seq > 0 => Some(seq),
                _ => {
                    c.invalid("cursor", "not a cursor this server made");
                    None
                }
            },
        };
        c.finish()?;
        Ok(NotificationFilter {
            unread: self.unread.unwrap_or(false),
            limit,
            before,
        })
    }
}

/// A notification page's cursor: the position it ended at.
pub(crate) fn notification_cursor(seq: i64) -> String {
    format!("n{seq}")
}

/// Checks a page size (`None`: the default).
pub(crate) fn check_limit(c: &mut Checker<'_>, limit: Option<u32>) -> u32 {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        c.invalid("limit", format!("must be from 1 to {MAX_PAGE}"));
    }
    limit
}

/// A task page's cursor: where it ended (`<due_at µs>.<id>`).
pub(crate) fn task_cursor(t: &Task) -> String {
    format!("{}.{}", t.due_at.as_microsecond(), t.id.simple())
}

/// Reads a task page's cursor.
pub(crate) fn parse_task_cursor(s: &str) -> Option<(Timestamp, Uuid)> {
    let (at, id) = s.split_once('.')?;
    let at = Timestamp::from_microsecond(at.parse().ok()?).ok()?;
    Some((at, Uuid::try_parse(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn request(json: &str) -> Result<Task, Invalid> {
        serde_json::from_str::<TaskRequest>(json)
            .unwrap()
            .validate(Uuid::nil(), at("2026-01-01T00:00:00Z"))
    }

    #[test]
    fn a_task_reminds_remind_before_its_due_time() {
        let t = request(r#"{"title":"x","due_at":"2026-02-01T10:00:00Z","remind_before":"15m"}"#)
            .unwrap();
        assert_eq!(t.remind_at, at("2026-02-01T09:45:00Z"));
        assert_eq!(t.status, TaskStatus::Open);
        let t = request(r#"{"title":"x","due_at":"2026-02-01T10:00:00Z"}"#).unwrap();
        assert_eq!(t.remind_at, t.due_at, "remind_before defaults to 0s");
    }

    #[test]
    fn bad_input_names_the_field() {
        let fields = |json: &str| -> Vec<String> {
            request(json)
                .unwrap_err()
                .0
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(
            fields(r#"{"title":"","due_at":"2026-02-01T10:00:00Z"}"#),
            ["title"]
        );
        let long = "é".repeat(501);
        assert_eq!(
            fields(&format!(
                r#"{{"title":"{long}","due_at":"2026-02-01T10:00:00Z"}}"#
            )),
            ["title"]
        );
        assert!(
            request(&format!(
                r#"{{"title":"{}","due_at":"2026-02-01T10:00:00Z"}}"#,
                "é".repeat(500)
            ))
            .is_ok()
        );
        assert_eq!(
            fields(r#"{"title":"x","due_at":"1960-02-01T10:00:00Z"}"#),
            ["due_at"]
        );
        assert_eq!(
            fields(r#"{"title":"x","due_at":"1970-01-01T00:00:01Z","remind_before":"1h"}"#),
            ["remind_before"]
        );
        assert_eq!(
            fields(r#"{"title":"x","due_at":"2026-02-01T10:00:00Z","tags":[""]}"#),
            ["tags[0]"]
        );
    }

    #[test]
    fn a_patch_moves_the_reminder_only_when_the_remind_time_moves() {
        let t = request(r#"{"title":"x","due_at":"2026-02-01T10:00:00Z"}"#).unwrap();
        let later = at("2026-01-02T00:00:00Z");
        let renamed = serde_json::from_str::<TaskPatch>(r#"{"title":"y"}"#)
            .unwrap()
            .apply(&t, later)
            .unwrap();
        assert_eq!(renamed.title, "y");
        assert_eq!(renamed.updated_at, later);
        assert!(!renamed.reminds_anew(Some(&t)));
        let moved = serde_json::from_str::<TaskPatch>(r#"{"remind_before":"1h"}"#)
            .unwrap()
            .apply(&t, later)
            .unwrap();
        assert_eq!(moved.remind_at, at("2026-02-01T09:00:00Z"));
        assert!(moved.reminds_anew(Some(&t)));
        assert_ne!(
            moved.reminder().unique_key,
            t.reminder().unique_key,
            "each remind time has its own reminder"
        );
        let same = serde_json::from_str::<TaskPatch>(r#"{}"#)
            .unwrap()
            .apply(&t, later)
            .unwrap();
        assert_eq!(
            same, t,
            "an empty patch changes nothing, updated_at included"
        );
        let cleared = serde_json::from_str::<TaskPatch>(r#"{"description":null}"#).unwrap();
        assert_eq!(cleared.description, Some(None));
    }

    #[test]
    fn task_cursors_read_back() {
        let t = request(r#"{"title":"x","due_at":"2026-02-01T10:00:00Z"}"#).unwrap();
        assert_eq!(parse_task_cursor(&task_cursor(&t)), Some((t.due_at, t.id)));
        assert_eq!(parse_task_cursor("nonsense"), None);
        assert_eq!(parse_task_cursor("12.zz"), None);
    }
}
