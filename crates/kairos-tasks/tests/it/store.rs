//! One suite for the feature's store, run on SQLite and PostgreSQL alike.

use crate::support::Place;
use kairos_core::{Duration, Timestamp};
use kairos_store::StoreError;
use kairos_tasks::model::{Due, NotificationFilter, Task, TaskFilter, TaskRequest, TaskStatus};
use uuid::Uuid;

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let place = crate::support::Place::open(crate::support::Backend::Sqlite).await.unwrap();
                    super::$case(place).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    if let Some(place) = crate::support::Place::open(crate::support::Backend::Postgres).await {
                        super::$case(place).await;
                    }
                }
            )*
        }
    };
}

on_both!(
    tasks_are_kept_changed_and_deleted,
    task_pages_filter_and_continue,
    a_notification_is_made_once_per_task_and_remind_time,
    notifications_page_newest_first_and_are_read,
);

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn task(title: &str, due_at: &str) -> Task {
    let req: TaskRequest =
        serde_json::from_value(serde_json::json!({"title": title, "due_at": due_at})).unwrap();
    req.validate(Uuid::now_v7(), at("2026-01-01T00:00:00.123456Z"))
        .unwrap()
}

fn due(t: &Task) -> Due {
    Due {
        task_id: t.id,
        title: t.title.clone(),
        due_at: t.due_at,
        remind_at: t.remind_at,
    }
}

async fn tasks_are_kept_changed_and_deleted(p: Place) {
    let mut t = task("write the report", "2026-02-01T10:00:00.654321Z");
    t.description = Some("quarterly".into());
    t.tags = vec!["finance".into(), "q1".into()];
    t.remind_before = Duration::from_secs(900);
    t.remind_at = at("2026-02-01T09:45:00.654321Z");
    t.reminder_job_id = Some(Uuid::now_v7());
    p.tasks.insert_task(&t).await.unwrap();
    assert_eq!(
        p.tasks.task(t.id).await.unwrap(),
        Some(t.clone()),
        "read back whole"
    );
    let mut done = t.clone();
    done.status = TaskStatus::Done;
    done.description = None;
    done.tags = vec![];
    done.updated_at = at("2026-01-02T00:00:00Z");
    p.tasks.save_task(&done).await.unwrap();
    assert_eq!(p.tasks.task(t.id).await.unwrap(), Some(done.clone()));
    assert_eq!(p.tasks.delete_task(t.id).await.unwrap(), Some(done.clone()));
    assert_eq!(p.tasks.task(t.id).await.unwrap(), None);
    assert_eq!(p.tasks.delete_task(t.id).await.unwrap(), None);
    assert!(matches!(
        p.tasks.save_task(&done).await,
        Err(StoreError::NotFound)
    ));
}

async fn task_pages_filter_and_continue(p: Place) {
    let mut all = Vec::new();
    for (i, day) in ["05", "01", "03", "02", "04"].iter().enumerate() {
        let mut t = task(&format!("t{i}"), &format!("2026-03-{day}T00:00:00Z"));
        if i % 2 == 1 {
            t.status = TaskStatus::Done;
        }
        p.tasks.insert_task(&t).await.unwrap();
        all.push(t);
    }
    // Two tasks due at the same time page by id.
    let mut twin = task("twin", "2026-03-03T00:00:00Z");
    twin.id = Uuid::now_v7();
    p.tasks.insert_task(&twin).await.unwrap();
    all.push(twin);
    let mut expected = all.clone();
    expected.sort_by_key(|t| (t.due_at, t.id));

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = p
            .tasks
            .tasks(&TaskFilter {
                limit: 2,
                after,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.tasks.len() <= 2);
        seen.extend(page.tasks.clone());
        match page.next_cursor {
            Some(c) => {
                let (due, id) = c.split_once('.').unwrap();
                after = Some((
                    Timestamp::from_microsecond(due.parse().unwrap()).unwrap(),
                    Uuid::try_parse(id).unwrap(),
                ));
            }
            None => break,
        }
    }
    assert_eq!(seen, expected, "soonest due first, each once");

    let open = p
        .tasks
        .tasks(&TaskFilter {
            status: Some(TaskStatus::Open),
            due_before: Some(at("2026-03-04T00:00:00Z")),
            limit: 50,
            after: None,
        })
        .await
        .unwrap();
    let want: Vec<Task> = expected
        .iter()
        .filter(|t| t.status == TaskStatus::Open && t.due_at < at("2026-03-04T00:00:00Z"))
        .cloned()
        .collect();
    assert_eq!(open.tasks, want);
    assert_eq!(open.next_cursor, None);
}

async fn a_notification_is_made_once_per_task_and_remind_time(p: Place) {
    let t = task("call back", "2026-04-01T12:00:00Z");
    p.tasks.insert_task(&t).await.unwrap();
    let now = at("2026-04-01T12:00:00.010Z");
    let first = p
        .tasks
        .notify(&due(&t), Uuid::now_v7(), now)
        .await
        .unwrap()
        .unwrap();
    assert!(first.unannounced);
    assert_eq!(first.notification.task_id, t.id);
    assert_eq!(first.notification.kind, "task.due");
    assert_eq!(first.notification.title, "call back");
    assert_eq!(first.notification.created_at, now);
    assert_eq!(first.notification.read_at, None);
    // The same remind time again (a reminder that ran twice): the same notification.
    let again = p
        .tasks
        .notify(&due(&t), Uuid::now_v7(), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, first);
    p.tasks.announced(first.notification.id).await.unwrap();
    let announced = p
        .tasks
        .notify(&due(&t), Uuid::now_v7(), now)
        .await
        .unwrap()
        .unwrap();
    assert!(!announced.unannounced);
    assert_eq!(announced.notification, first.notification);

    // A remind time the task no longer has: stale, nothing made.
    let mut moved = due(&t);
    moved.remind_at = at("2026-04-01T11:00:00Z");
    assert_eq!(
        p.tasks.notify(&moved, Uuid::now_v7(), now).await.unwrap(),
        None
    );
    // A done task: nothing made.
    let mut done = task("done already", "2026-04-01T12:00:00Z");
    done.status = TaskStatus::Done;
    p.tasks.insert_task(&done).await.unwrap();
    assert_eq!(
        p.tasks
            .notify(&due(&done), Uuid::now_v7(), now)
            .await
            .unwrap(),
        None
    );
    // A deleted task: nothing made, and its notifications go with it.
    p.tasks.delete_task(t.id).await.unwrap();
    assert_eq!(
        p.tasks.notify(&due(&t), Uuid::now_v7(), now).await.unwrap(),
        None
    );
    let page = p
        .tasks
        .notifications(&NotificationFilter {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.notifications.is_empty());
}

async fn notifications_page_newest_first_and_are_read(p: Place) {
    let mut made = Vec::new();
    for i in 0..3 {
        let t = task(&format!("n{i}"), "2026-05-01T00:00:00Z");
        p.tasks.insert_task(&t).await.unwrap();
        let n = p
            .tasks
            .notify(&due(&t), Uuid::now_v7(), at("2026-05-01T00:00:01Z"))
            .await
            .unwrap()
            .unwrap();
        made.push(n.notification);
    }
    let newest_first: Vec<Uuid> = made.iter().rev().map(|n| n.id).collect();
    let first = p
        .tasks
        .notifications(&NotificationFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let cursor = first.next_cursor.clone().expect("a second page");
    let before: i64 = cursor.strip_prefix('n').unwrap().parse().unwrap();
    let second = p
        .tasks
        .notifications(&NotificationFilter {
            limit: 2,
            before: Some(before),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(second.next_cursor, None);
    let ids: Vec<Uuid> = first
        .notifications
        .iter()
        .chain(&second.notifications)
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, newest_first);

    let read_at = at("2026-05-02T00:00:00Z");
    let read = p.tasks.read(made[1].id, read_at).await.unwrap().unwrap();
    assert_eq!(read.read_at, Some(read_at));
    let later = p
        .tasks
        .read(made[1].id, at("2026-05-03T00:00:00Z"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(later.read_at, Some(read_at), "read once, when first read");
    assert_eq!(p.tasks.read(Uuid::now_v7(), read_at).await.unwrap(), None);
    let unread = p
        .tasks
        .notifications(&NotificationFilter {
            unread: true,
            limit: 50,
            before: None,
        })
        .await
        .unwrap();
    let ids: Vec<Uuid> = unread.notifications.iter().map(|n| n.id).collect();
    assert_eq!(ids, [made[2].id, made[0].id]);
    assert_eq!(p.tasks.read_all(read_at).await.unwrap(), 2);
    assert_eq!(p.tasks.read_all(read_at).await.unwrap(), 0);
}
