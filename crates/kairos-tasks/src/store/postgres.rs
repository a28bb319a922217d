//! The tasks feature's tables in PostgreSQL, beside the engine's in its schema (so every
//! node of a cluster shares them), created and upgraded under a transaction-level
//! advisory lock so nodes starting together take turns. All of the feature's PostgreSQL
//! SQL lives here.

use super::{Notified, TaskStore};
use crate::model::{
    Due, Notification, NotificationFilter, NotificationPage, TASK_DUE, Task, TaskFilter, TaskPage,
    TaskStatus,
};
use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use kairos_core::{Duration, Timestamp};
use kairos_store::StoreError;
use kairos_store::postgres::Options;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The schema version this build writes.
const VERSION: i32 = 1;

/// Taken (per transaction) while the tables are created or upgraded.
const MIGRATION_LOCK: i64 = 0x6b61_6972_6f73_7461; // "kairosta"

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS task_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id uuid PRIMARY KEY,
    title text NOT NULL,
    description text,
    due_at timestamptz NOT NULL,
    remind_before_ms bigint NOT NULL,
    remind_at timestamptz NOT NULL,
    status smallint NOT NULL,
    tags text[] NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    reminder_job_id uuid
);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (due_at, id);
CREATE TABLE IF NOT EXISTS task_notifications (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    task_id uuid NOT NULL,
    type text NOT NULL,
    title text NOT NULL,
    remind_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    read_at timestamptz,
    announced boolean NOT NULL DEFAULT false,
    UNIQUE (task_id, remind_at)
);
CREATE INDEX IF NOT EXISTS task_notifications_unread ON task_notifications (seq)
    WHERE read_at IS NULL;
";

const TASK_COLUMNS: &str = "id, title, description, due_at, remind_before_ms, remind_at, \
    status, tags, created_at, updated_at, reminder_job_id";
const NOTIFICATION_COLUMNS: &str = "seq, id, task_id, type, title, created_at, read_at, announced";

/// Notifications marked read per statement by `read_all`.
const READ_ALL_BATCH: i64 = 1_000;

/// The feature's tables in a PostgreSQL database.
pub struct PostgresTasks {
    pool: Pool,
}

fn bad(m: impl std::fmt::Display) -> StoreError {
    StoreError::Damaged(format!("a task row does not read back: {m}"))
}

fn task_from(r: &Row) -> Result<Task, StoreError> {
    let status: i16 = r.try_get(6)?;
    let remind_before: i64 = r.try_get(4)?;
    Ok(Task {
        id: r.try_get(0)?,
        title: r.try_get(1)?,
        description: r.try_get(2)?,
        due_at: r.try_get(3)?,
        remind_before: Duration::from_millis(remind_before.max(0) as u64),
        remind_at: r.try_get(5)?,
        status: TaskStatus::from_code(status)
            .ok_or_else(|| bad(format!("unknown task status {status}")))?,
        tags: r.try_get(7)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
        reminder_job_id: r.try_get(10)?,
    })
}

fn notification_from(r: &Row) -> Result<(i64, Notification, bool), StoreError> {
    Ok((
        r.try_get(0)?,
        Notification {
            id: r.try_get(1)?,
            task_id: r.try_get(2)?,
            kind: r.try_get(3)?,
            title: r.try_get(4)?,
            created_at: r.try_get(5)?,
            read_at: r.try_get(6)?,
        },
        r.try_get(7)?,
    ))
}

/// A task's columns as statement parameters (in [`TASK_COLUMNS`]' order).
struct TaskRow {
    remind_before_ms: i64,
    status: i16,
}

impl TaskRow {
    fn of(t: &Task) -> TaskRow {
        TaskRow {
            remind_before_ms: t.remind_before.as_millis().min(i64::MAX as u64) as i64,
            status: t.status.code(),
        }
    }

    fn params<'a>(&'a self, t: &'a Task) -> [&'a (dyn ToSql + Sync); 11] {
        [
            &t.id,
            &t.title,
            &t.description,
            &t.due_at,
            &self.remind_before_ms,
            &t.remind_at,
            &self.status,
            &t.tags,
            &t.created_at,
            &t.updated_at,
            &t.reminder_job_id,
        ]
    }
}

impl PostgresTasks {
    /// Connects to `url` with the engine's session settings (`options`: its schema, which
    /// holds these tables too, and this pool's size), and creates or upgrades the tables.
    /// Refuses tables written by a newer Kairos.
    pub async fn connect(url: &str, options: &Options) -> Result<Self, StoreError> {
        let pool = kairos_store::postgres::connection_pool(url, options)?;
        let store = PostgresTasks { pool };
        store.migrate(&options.schema).await?;
        Ok(store)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        kairos_store::postgres::connection(&self.pool).await
    }

    async fn migrate(&self, schema: &str) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{}\"",
            schema.replace('"', "\"\"")
        ))
        .await?;
        tx.batch_execute(SCHEMA).await?;
        let version: Option<i32> = tx
            .query_opt("SELECT max(version) FROM task_schema", &[])
            .await?
            .and_then(|r| r.get(0));
        match version {
            Some(v) if v > VERSION => {
                return Err(StoreError::Backend(format!(
                    "the tasks tables have schema version {v}; this Kairos knows up to \
                     {VERSION}: run a newer Kairos"
                )));
            }
            Some(v) if v == VERSION => {}
            _ => {
                tx.execute("DELETE FROM task_schema", &[]).await?;
                tx.execute("INSERT INTO task_schema (version) VALUES ($1)", &[&VERSION])
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl TaskStore for PostgresTasks {
    async fn insert_task(&self, task: &Task) -> Result<(), StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!(
                "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ))
            .await?;
        let row = TaskRow::of(task);
        c.execute(&stmt, &row.params(task)).await?;
        Ok(())
    }

    async fn task(&self, id: Uuid) -> Result<Option<Task>, StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
            .await?;
        c.query_opt(&stmt, &[&id])
            .await?
            .as_ref()
            .map(task_from)
            .transpose()
    }

    async fn save_task(&self, task: &Task) -> Result<(), StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "UPDATE tasks SET title = $2, description = $3, due_at = $4, \
                 remind_before_ms = $5, remind_at = $6, status = $7, tags = $8, \
                 created_at = $9, updated_at = $10, reminder_job_id = $11 WHERE id = $1",
            )
            .await?;
        let row = TaskRow::of(task);
        if c.execute(&stmt, &row.params(task)).await? == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_task(&self, id: Uuid) -> Result<Option<Task>, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let row = tx
            .query_opt(
                &format!("DELETE FROM tasks WHERE id = $1 RETURNING {TASK_COLUMNS}"),
                &[&id],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        tx.execute("DELETE FROM task_notifications WHERE task_id = $1", &[&id])
            .await?;
        tx.commit().await?;
        task_from(&row).map(Some)
    }

    async fn tasks(&self, f: &TaskFilter) -> Result<TaskPage, StoreError> {
        let c = self.client().await?;
        let status = f.status.map(TaskStatus::code);
        let (after_at, after_id) = match f.after {
            Some((at, id)) => (Some(at), Some(id)),
            None => (None, None),
        };
        let limit = i64::from(f.limit) + 1;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks \
                 WHERE ($1::smallint IS NULL OR status = $1) \
                 AND ($2::timestamptz IS NULL OR due_at < $2) \
                 AND ($3::timestamptz IS NULL OR (due_at, id) > ($3, $4::uuid)) \
                 ORDER BY due_at, id LIMIT $5"
            ))
            .await?;
        let rows = c
            .query(
                &stmt,
                &[&status, &f.due_before, &after_at, &after_id, &limit],
            )
            .await?;
        let tasks = rows.iter().map(task_from).collect::<Result<Vec<_>, _>>()?;
        Ok(TaskPage::of(tasks, f.limit))
    }

    async fn notify(
        &self,
        due: &Due,
        id: Uuid,
        now: Timestamp,
    ) -> Result<Option<Notified>, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The task's row is locked while it is checked, so a change of it waits for
        // this insert or goes first (and then the check sees it).
        tx.execute(
            "INSERT INTO task_notifications (id, task_id, type, title, remind_at, created_at) \
             SELECT $1, id, $3, title, remind_at, $4 FROM tasks \
             WHERE id = $2 AND status = $5 AND remind_at = $6 FOR SHARE \
             ON CONFLICT (task_id, remind_at) DO NOTHING",
            &[
                &id,
                &due.task_id,
                &TASK_DUE,
                &now,
                &TaskStatus::Open.code(),
                &due.remind_at,
            ],
        )
        .await?;
        let row = tx
            .query_opt(
                &format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM task_notifications \
                     WHERE task_id = $1 AND remind_at = $2"
                ),
                &[&due.task_id, &due.remind_at],
            )
            .await?;
        tx.commit().await?;
        Ok(row
            .as_ref()
            .map(notification_from)
            .transpose()?
            .map(|(_, notification, announced)| Notified {
                notification,
                unannounced: !announced,
            }))
    }

    async fn announced(&self, id: Uuid) -> Result<(), StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached("UPDATE task_notifications SET announced = true WHERE id = $1")
            .await?;
        c.execute(&stmt, &[&id]).await?;
        Ok(())
    }

    async fn notifications(&self, f: &NotificationFilter) -> Result<NotificationPage, StoreError> {
        let c = self.client().await?;
        let limit = i64::from(f.limit) + 1;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM task_notifications \
                 WHERE (NOT $1 OR read_at IS NULL) AND ($2::bigint IS NULL OR seq < $2) \
                 ORDER BY seq DESC LIMIT $3"
            ))
            .await?;
        let rows = c.query(&stmt, &[&f.unread, &f.before, &limit]).await?;
        let rows = rows
            .iter()
            .map(notification_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NotificationPage::of(
            rows.into_iter().map(|(seq, n, _)| (seq, n)).collect(),
            f.limit,
        ))
    }

    async fn read(&self, id: Uuid, now: Timestamp) -> Result<Option<Notification>, StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "UPDATE task_notifications SET read_at = $2 WHERE id = $1 AND read_at IS NULL",
            )
            .await?;
        c.execute(&stmt, &[&id, &now]).await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM task_notifications WHERE id = $1"
            ))
            .await?;
        c.query_opt(&stmt, &[&id])
            .await?
            .as_ref()
            .map(|r| notification_from(r).map(|(_, n, _)| n))
            .transpose()
    }

    async fn read_all(&self, now: Timestamp) -> Result<u64, StoreError> {
        let c = self.client().await?;
        // A batch per statement: no transaction holds many rows' locks for long.
        let stmt = c
            .prepare_cached(
                "UPDATE task_notifications SET read_at = $1 WHERE seq IN \
                 (SELECT seq FROM task_notifications WHERE read_at IS NULL LIMIT $2 \
                 FOR UPDATE SKIP LOCKED)",
            )
            .await?;
        let mut total = 0;
        loop {
            let n = c.execute(&stmt, &[&now, &READ_ALL_BATCH]).await?;
            total += n;
            if n < READ_ALL_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    async fn close(&self) {
        self.pool.close();
    }
}
