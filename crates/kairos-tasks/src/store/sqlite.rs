//! The tasks feature's SQLite file (`tasks.sqlite3` beside the engine's): WAL, every
//! write committed with `synchronous = FULL` before it is answered, one writer
//! connection and a few readers. All of the feature's SQLite SQL lives here.

use super::{Notified, TaskStore};
use crate::model::{
    Due, Notification, NotificationFilter, NotificationPage, TASK_DUE, Task, TaskFilter, TaskPage,
    TaskStatus,
};
use async_trait::async_trait;
use kairos_core::{Duration, Timestamp};
use kairos_store::StoreError;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use std::path::Path;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// The schema version this build writes.
const VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    id BLOB PRIMARY KEY,
    title TEXT NOT NULL,
    description TEXT,
    due_at INTEGER NOT NULL,
    remind_before_ms INTEGER NOT NULL,
    remind_at INTEGER NOT NULL,
    status INTEGER NOT NULL,
    tags TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    reminder_job_id BLOB
);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (due_at, id);
CREATE TABLE IF NOT EXISTS task_notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id BLOB NOT NULL UNIQUE,
    task_id BLOB NOT NULL,
    type TEXT NOT NULL,
    title TEXT NOT NULL,
    remind_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    read_at INTEGER,
    announced INTEGER NOT NULL DEFAULT 0,
    UNIQUE (task_id, remind_at)
);
CREATE INDEX IF NOT EXISTS task_notifications_unread ON task_notifications (seq) WHERE read_at IS NULL;
";

const TASK_COLUMNS: &str = "id, title, description, due_at, remind_before_ms, remind_at, \
    status, tags, created_at, updated_at, reminder_job_id";
const NOTIFICATION_COLUMNS: &str = "seq, id, task_id, type, title, created_at, read_at, announced";

/// Notifications marked read per commit by `read_all`.
const READ_ALL_BATCH: u64 = 1_000;

/// Readers opened beside the writer.
const READERS: usize = 4;

/// The feature's tables in a SQLite file.
pub struct SqliteTasks {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
}

fn us(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn ts(us: i64) -> rusqlite::Result<Timestamp> {
    Timestamp::from_microsecond(us).map_err(|e| bad(e.to_string()))
}

fn bad(m: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, m.into())
}

fn uuid(b: Vec<u8>) -> rusqlite::Result<Uuid> {
    Uuid::from_slice(&b).map_err(|e| bad(e.to_string()))
}

fn task_from(r: &Row<'_>) -> rusqlite::Result<Task> {
    let status: i16 = r.get(6)?;
    let tags: String = r.get(7)?;
    Ok(Task {
        id: uuid(r.get(0)?)?,
        title: r.get(1)?,
        description: r.get(2)?,
        due_at: ts(r.get(3)?)?,
        remind_before: Duration::from_millis(r.get::<_, i64>(4)?.max(0) as u64),
        remind_at: ts(r.get(5)?)?,
        status: TaskStatus::from_code(status)
            .ok_or_else(|| bad(format!("unknown task status {status}")))?,
        tags: serde_json::from_str(&tags).map_err(|e| bad(e.to_string()))?,
        created_at: ts(r.get(8)?)?,
        updated_at: ts(r.get(9)?)?,
        reminder_job_id: r.get::<_, Option<Vec<u8>>>(10)?.map(uuid).transpose()?,
    })
}

/// A notification row: its position, the notification, whether it is announced.
fn notification_from(r: &Row<'_>) -> rusqlite::Result<(i64, Notification, bool)> {
    Ok((
        r.get(0)?,
        Notification {
            id: uuid(r.get(1)?)?,
            task_id: uuid(r.get(2)?)?,
            kind: r.get(3)?,
            title: r.get(4)?,
            created_at: ts(r.get(5)?)?,
            read_at: r.get::<_, Option<i64>>(6)?.map(ts).transpose()?,
        },
        r.get(7)?,
    ))
}

fn task_params(t: &Task) -> [Value; 11] {
    [
        Value::Blob(t.id.as_bytes().to_vec()),
        Value::Text(t.title.clone()),
        t.description.clone().map_or(Value::Null, Value::Text),
        Value::Integer(us(t.due_at)),
        Value::Integer(t.remind_before.as_millis().min(i64::MAX as u64) as i64),
        Value::Integer(us(t.remind_at)),
        Value::Integer(i64::from(t.status.code())),
        Value::Text(serde_json::to_string(&t.tags).unwrap_or_else(|_| "[]".into())),
        Value::Integer(us(t.created_at)),
        Value::Integer(us(t.updated_at)),
        t.reminder_job_id
            .map_or(Value::Null, |id| Value::Blob(id.as_bytes().to_vec())),
    ]
}

fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

impl SqliteTasks {
    /// Opens (creating, or upgrading) the feature's file at `path`. Refuses a file
    /// written by a newer Kairos, or one whose integrity check fails.
    pub fn open(path: &Path) -> Result<SqliteTasks, StoreError> {
        let writer = open_connection(path, OpenFlags::default())?;
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{}: journal mode {mode}, not WAL",
                path.display()
            )));
        }
        writer.pragma_update(None, "synchronous", "FULL")?;
        let check: String = writer.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Damaged(format!("{}: {check}", path.display())));
        }
        let version: i64 = writer.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > VERSION {
            return Err(StoreError::Backend(format!(
                "{} has schema version {version}; this Kairos knows up to {VERSION}: \
                 run a newer Kairos",
                path.display()
            )));
        }
        writer.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {VERSION}; COMMIT;"
        ))?;
        let readers = (0..READERS)
            .map(|_| {
                open_connection(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map(Mutex::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SqliteTasks {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(readers),
        })
    }

    /// Runs `f` on the writer, in a transaction committed before this answers.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(|e| e.into_inner());
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a task store write panicked: {e}")))?
    }

    /// Runs `f` on a free reader (or waits for one).
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let start = fastrand::usize(..readers.len());
            let conn = (0..readers.len())
                .find_map(|i| readers[(start + i) % readers.len()].try_lock().ok())
                .unwrap_or_else(|| readers[start].lock().unwrap_or_else(|e| e.into_inner()));
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a task store read panicked: {e}")))?
    }
}

fn one_task(conn: &Connection, id: Uuid) -> Result<Option<Task>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([id.as_bytes().as_slice()], task_from)
        .optional()?)
}

fn one_notification(
    conn: &Connection,
    id: Uuid,
) -> Result<Option<(i64, Notification, bool)>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM task_notifications WHERE id = ?1"
        ))?
        .query_row([id.as_bytes().as_slice()], notification_from)
        .optional()?)
}

#[async_trait]
impl TaskStore for SqliteTasks {
    async fn insert_task(&self, task: &Task) -> Result<(), StoreError> {
        let params = task_params(task);
        self.write(move |tx| {
            tx.prepare_cached(&format!(
                "INSERT INTO tasks ({TASK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?
            .execute(rusqlite::params_from_iter(params))?;
            Ok(())
        })
        .await
    }

    async fn task(&self, id: Uuid) -> Result<Option<Task>, StoreError> {
        self.read(move |conn| one_task(conn, id)).await
    }

    async fn save_task(&self, task: &Task) -> Result<(), StoreError> {
        let params = task_params(task);
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE tasks SET title = ?2, description = ?3, due_at = ?4, \
                     remind_before_ms = ?5, remind_at = ?6, status = ?7, tags = ?8, \
                     created_at = ?9, updated_at = ?10, reminder_job_id = ?11 WHERE id = ?1",
                )?
                .execute(rusqlite::params_from_iter(params))?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn delete_task(&self, id: Uuid) -> Result<Option<Task>, StoreError> {
        self.write(move |tx| {
            let Some(task) = one_task(tx, id)? else {
                return Ok(None);
            };
            let key = id.as_bytes().as_slice();
            tx.prepare_cached("DELETE FROM task_notifications WHERE task_id = ?1")?
                .execute([key])?;
            tx.prepare_cached("DELETE FROM tasks WHERE id = ?1")?
                .execute([key])?;
            Ok(Some(task))
        })
        .await
    }

    async fn tasks(&self, f: &TaskFilter) -> Result<TaskPage, StoreError> {
        let f = f.clone();
        self.read(move |conn| {
            let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1");
            let mut args: Vec<Value> = Vec::new();
            if let Some(s) = f.status {
                args.push(Value::Integer(i64::from(s.code())));
                sql.push_str(&format!(" AND status = ?{}", args.len()));
            }
            if let Some(before) = f.due_before {
                args.push(Value::Integer(us(before)));
                sql.push_str(&format!(" AND due_at < ?{}", args.len()));
            }
            if let Some((at, id)) = f.after {
                args.push(Value::Integer(us(at)));
                args.push(Value::Blob(id.as_bytes().to_vec()));
                sql.push_str(&format!(
                    " AND (due_at, id) > (?{}, ?{})",
                    args.len() - 1,
                    args.len()
                ));
            }
            args.push(Value::Integer(i64::from(f.limit) + 1));
            sql.push_str(&format!(" ORDER BY due_at, id LIMIT ?{}", args.len()));
            let tasks: Vec<Task> = conn
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(args), task_from)?
                .collect::<Result<_, _>>()?;
            Ok(TaskPage::of(tasks, f.limit))
        })
        .await
    }

    async fn notify(
        &self,
        due: &Due,
        id: Uuid,
        now: Timestamp,
    ) -> Result<Option<Notified>, StoreError> {
        let due = due.clone();
        self.write(move |tx| {
            let task = due.task_id.as_bytes().as_slice();
            let made: Option<(Vec<u8>,)> = tx
                .prepare_cached(
                    "SELECT id FROM task_notifications WHERE task_id = ?1 AND remind_at = ?2",
                )?
                .query_row(params![task, us(due.remind_at)], |r| Ok((r.get(0)?,)))
                .optional()?;
            let id = match made {
                Some((made,)) => uuid(made)?,
                None => {
                    let n = tx
                        .prepare_cached(
                            "INSERT INTO task_notifications (id, task_id, type, title, remind_at, created_at) \
                             SELECT ?1, id, ?3, title, remind_at, ?4 FROM tasks \
                             WHERE id = ?2 AND status = ?5 AND remind_at = ?6",
                        )?
                        .execute(params![
                            id.as_bytes().as_slice(),
                            task,
                            TASK_DUE,
                            us(now),
                            TaskStatus::Open.code(),
                            us(due.remind_at),
                        ])?;
                    if n == 0 {
                        return Ok(None);
                    }
                    id
                }
            };
            Ok(one_notification(tx, id)?.map(|(_, notification, announced)| Notified {
                notification,
                unannounced: !announced,
            }))
        })
        .await
    }

    async fn announced(&self, id: Uuid) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.prepare_cached("UPDATE task_notifications SET announced = 1 WHERE id = ?1")?
                .execute([id.as_bytes().as_slice()])?;
            Ok(())
        })
        .await
    }

    async fn notifications(&self, f: &NotificationFilter) -> Result<NotificationPage, StoreError> {
        let f = f.clone();
        self.read(move |conn| {
            let mut sql =
                format!("SELECT {NOTIFICATION_COLUMNS} FROM task_notifications WHERE 1 = 1");
            let mut args: Vec<Value> = Vec::new();
            if f.unread {
                sql.push_str(" AND read_at IS NULL");
            }
            if let Some(before) = f.before {
                args.push(Value::Integer(before));
                sql.push_str(&format!(" AND seq < ?{}", args.len()));
            }
            args.push(Value::Integer(i64::from(f.limit) + 1));
            sql.push_str(&format!(" ORDER BY seq DESC LIMIT ?{}", args.len()));
            let rows: Vec<(i64, Notification, bool)> = conn
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(args), notification_from)?
                .collect::<Result<_, _>>()?;
            Ok(NotificationPage::of(
                rows.into_iter().map(|(seq, n, _)| (seq, n)).collect(),
                f.limit,
            ))
        })
        .await
    }

    async fn read(&self, id: Uuid, now: Timestamp) -> Result<Option<Notification>, StoreError> {
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE task_notifications SET read_at = ?2 WHERE id = ?1 AND read_at IS NULL",
            )?
            .execute(params![id.as_bytes().as_slice(), us(now)])?;
            Ok(one_notification(tx, id)?.map(|(_, n, _)| n))
        })
        .await
    }

    async fn read_all(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            // A batch per commit: the writer is never held for long, however many.
            let n = self
                .write(move |tx| {
                    let n = tx
                        .prepare_cached(
                            "UPDATE task_notifications SET read_at = ?1 WHERE seq IN \
                             (SELECT seq FROM task_notifications WHERE read_at IS NULL LIMIT ?2)",
                        )?
                        .execute(params![us(now), READ_ALL_BATCH as i64])?;
                    Ok(n as u64)
                })
                .await?;
            total += n;
            if n < READ_ALL_BATCH {
                return Ok(total);
            }
        }
    }
}
