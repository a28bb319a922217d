//! `/v1/schedules`: the resource, preview, trigger, and a 1-second schedule end to end.

use crate::support::{TestServer, assert_problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn berlin_report() -> Value {
    json!({
        "name": "weekday-report",
        "description": "09:00 in Berlin on weekdays",
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Berlin",
        "job": {"queue": "reports", "kind": "daily-report", "payload": {"format": "pdf"}}
    })
}

#[tokio::test]
async fn create_read_change_and_delete() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let a = s.post("/v1/schedules", berlin_report()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let sched = a.body;
    for f in [
        "id",
        "name",
        "description",
        "cron",
        "timezone",
        "dst_skipped",
        "dst_repeated",
        "job",
        "active",
        "misfire",
        "overlap",
        "last_run_at",
        "next_run_at",
        "created_at",
        "updated_at",
    ] {
        assert!(sched.get(f).is_some(), "{f} present: {sched}");
    }
    assert_eq!(
        (
            sched["dst_skipped"].as_str(),
            sched["dst_repeated"].as_str()
        ),
        (Some("shift"), Some("first"))
    );
    assert_eq!(
        (sched["misfire"].as_str(), sched["overlap"].as_str()),
        (Some("run_once"), Some("allow"))
    );
    assert_eq!(sched["active"], true);
    assert_eq!(sched["last_run_at"], Value::Null);
    assert_eq!(sched["job"]["max_attempts"], 3);
    let next: jiff::Timestamp = sched["next_run_at"].as_str().unwrap().parse().unwrap();
    let local = next.to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
    assert_eq!((local.hour(), local.minute()), (9, 0));
    assert!(next > jiff::Timestamp::now());

    assert_problem(&s.post("/v1/schedules", berlin_report()).await, 409, None);
    let id = sched["id"].as_str().unwrap();
    assert_eq!(s.get(&format!("/v1/schedules/{id}")).await.body, sched);
    let list = s.get("/v1/schedules").await.body;
    assert_eq!(list["schedules"].as_array().unwrap().len(), 1);

    let p = s
        .call(
            Method::PATCH,
            &format!("/v1/schedules/{id}"),
            Some(json!({"cron": "30 * * * *", "timezone": "UTC"})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let next: jiff::Timestamp = p.body["next_run_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(next.to_zoned(jiff::tz::TimeZone::UTC).minute(), 30);
    assert_eq!(p.body["name"], "weekday-report");
    let off = s
        .call(
            Method::PATCH,
            &format!("/v1/schedules/{id}"),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(off.body["next_run_at"], Value::Null);
    assert_problem(
        &s.call(
            Method::PATCH,
            &format!("/v1/schedules/{id}"),
            Some(json!({"cron": "nope"})),
        )
        .await,
        422,
        Some("cron"),
    );
    assert_problem(
        &s.call(
            Method::PATCH,
            &format!("/v1/schedules/{id}"),
            Some(json!({"colour": 1})),
        )
        .await,
        422,
        Some("colour"),
    );

    let t = s
        .post(&format!("/v1/schedules/{id}/trigger"), json!({}))
        .await;
    assert_eq!(t.status, StatusCode::CREATED);
    assert_eq!(t.body["schedule_id"], sched["id"]);
    assert!(t.body["scheduled_for"].is_string());
    assert_eq!(
        (t.body["queue"].as_str(), t.body["kind"].as_str()),
        (Some("reports"), Some("daily-report"))
    );
    let runs = s.get(&format!("/v1/jobs?schedule_id={id}")).await.body;
    assert_eq!(runs["jobs"].as_array().unwrap().len(), 1);
    assert_problem(
        &s.get("/v1/jobs?schedule_id=nope").await,
        422,
        Some("schedule_id"),
    );

    let d = s
        .call(Method::DELETE, &format!("/v1/schedules/{id}"), None)
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert_problem(&s.get(&format!("/v1/schedules/{id}")).await, 404, None);
    assert_problem(
        &s.post(&format!("/v1/schedules/{id}/trigger"), json!({}))
            .await,
        404,
        None,
    );
    assert_problem(
        &s.call(Method::DELETE, &format!("/v1/schedules/{id}"), None)
            .await,
        404,
        None,
    );
    let job = s
        .get(&format!("/v1/jobs/{}", t.body["id"].as_str().unwrap()))
        .await;
    assert_eq!(job.status, StatusCode::OK, "jobs a schedule made stay");
    s.stop().await;
}

#[tokio::test]
async fn bad_schedules_are_422_naming_the_field() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let with = |patch: Value| {
        let mut b = berlin_report();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases = [
        (with(json!({"cron": "61 * * * *"})), "cron"),
        (with(json!({"cron": "* * *"})), "cron"),
        (with(json!({"cron": "0 0 30 2 *"})), "cron"),
        (with(json!({"timezone": "Europe/Atlantis"})), "timezone"),
        (with(json!({"name": ""})), "name"),
        (with(json!({"name": "x".repeat(201)})), "name"),
        (with(json!({"name": "line\nbreak"})), "name"),
        (with(json!({"cron": "5/4294967295 * * * *"})), "cron"),
        (with(json!({"cron": "3/4294967295 * * * * *"})), "cron"),
        (with(json!({"misfire": "sometimes"})), "misfire"),
        (with(json!({"dst_skipped": "maybe"})), "dst_skipped"),
        (with(json!({"dst_repeated": "twice"})), "dst_repeated"),
        (
            with(json!({"job": {"kind": "k", "delay": "5s"}})),
            "job.delay",
        ),
        (with(json!({"job": {"kind": "bad kind"}})), "job.kind"),
        (
            with(json!({"job": {"kind": "k", "priority": 500}})),
            "job.priority",
        ),
        (json!({"cron": "* * * * *", "job": {"kind": "k"}}), "name"),
        (json!({"name": "x", "job": {"kind": "k"}}), "cron"),
        (json!({"name": "x", "cron": "* * * * *"}), "job"),
    ];
    for (body, field) in cases {
        assert_problem(&s.post("/v1/schedules", body).await, 422, Some(field));
    }
    assert_eq!(s.get("/v1/schedules").await.body, json!({"schedules": []}));
    s.stop().await;
}

#[tokio::test]
async fn preview_shows_fire_times_in_utc_and_local() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let a = s
        .post(
            "/v1/schedules/preview",
            json!({"cron": "30 2 * * *", "timezone": "Europe/Berlin", "count": 3, "after": "2026-03-27T12:00:00Z"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body["times"],
        json!([
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z"
        ])
    );
    assert_eq!(
        a.body["local_times"],
        json!([
            "2026-03-28T02:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00"
        ])
    );
    let skip = s
        .post(
            "/v1/schedules/preview",
            json!({"cron": "30 2 * * *", "timezone": "Europe/Berlin", "dst_skipped": "skip", "count": 2, "after": "2026-03-27T12:00:00Z"}),
        )
        .await;
    assert_eq!(
        skip.body["times"],
        json!(["2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"])
    );
    let default = s
        .post("/v1/schedules/preview", json!({"cron": "@hourly"}))
        .await;
    assert_eq!(default.body["times"].as_array().unwrap().len(), 5);
    assert_problem(
        &s.post(
            "/v1/schedules/preview",
            json!({"cron": "@hourly", "count": 101}),
        )
        .await,
        422,
        Some("count"),
    );
    assert_problem(
        &s.post("/v1/schedules/preview", json!({"cron": "bad"}))
            .await,
        422,
        Some("cron"),
    );
    assert_problem(
        &s.post(
            "/v1/schedules/preview",
            json!({"cron": "@daily", "timezone": "Nowhere"}),
        )
        .await,
        422,
        Some("timezone"),
    );
    assert_eq!(
        s.get("/v1/schedules").await.body,
        json!({"schedules": []}),
        "preview creates nothing"
    );
    s.stop().await;
}

/// A 1-second schedule makes a run every second, which a waiting worker leases.
#[tokio::test]
async fn every_second_schedule_feeds_a_worker() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let a = s
        .post(
            "/v1/schedules",
            json!({"name": "tick", "cron": "* * * * * *", "job": {"queue": "ticks", "kind": "tick"}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let mut slots = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while slots.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "runs did not arrive every second: {slots:?}"
        );
        let l = s
            .post(
                "/v1/lease",
                json!({"queues": ["ticks"], "worker": "w", "max": 10, "wait": "2s"}),
            )
            .await;
        for job in l.body["jobs"].as_array().unwrap() {
            let slot = job["scheduled_for"].as_str().unwrap().to_string();
            assert!(!slot.contains('.'), "a whole second: {slot}");
            assert!(slots.insert(slot), "each slot runs once");
            s.ack(job, json!({"outcome": "completed"})).await;
        }
    }
    let sched = s
        .get(&format!("/v1/schedules/{}", a.body["id"].as_str().unwrap()))
        .await
        .body;
    assert!(sched["last_run_at"].is_string());
    s.stop().await;
}

#[tokio::test]
async fn schedule_names_are_display_names_and_unique() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let body = |name: &str| json!({"name": name, "cron": "0 9 * * *", "job": {"kind": "email"}});
    let a = s
        .post("/v1/schedules", body("Daily Email Notification"))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["name"], "Daily Email Notification");
    let long = "é".repeat(200);
    assert_eq!(
        s.post("/v1/schedules", body(&long)).await.status,
        StatusCode::CREATED
    );
    assert_problem(
        &s.post("/v1/schedules", body("Daily Email Notification"))
            .await,
        409,
        None,
    );
    s.stop().await;
}

#[tokio::test]
async fn health_answers_like_readiness() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let a = s.get("/health").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, json!({"status": "ok"}));
    s.stop().await;
}
