//! `kairos schedule create|list|get|update|pause|resume|trigger|preview|delete`.
//!
//! A schedule is named by its id or by its (unique) name; a name is looked up in the
//! server's list.

use super::job::{job_fields, time};
use super::table::{Table, fields};
use super::{ApiArgs, ClientCommand, Failure, api_name, print};
use kairos_client::Client;
use kairos_core::schedule::{
    JobTemplateRequest, Preview, PreviewRequest, Schedule, SchedulePatch, ScheduleRequest,
};
use kairos_core::timetable::DstRule;
use kairos_core::{Duration, Timestamp};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use uuid::Uuid;

/// Schedules.
#[derive(clap::Args, Debug)]
pub struct ScheduleArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: ScheduleCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ScheduleCommand {
    /// Create a schedule.
    Create(Box<Create>),
    /// Every schedule, with its next fire time.
    List,
    /// One schedule (by id or name).
    Get { schedule: String },
    /// Change a schedule: only the options given change.
    Update(Box<Update>),
    /// Stop a schedule firing.
    Pause { schedule: String },
    /// Let a paused schedule fire again (from now on; missed times follow its misfire
    /// policy).
    Resume { schedule: String },
    /// Make a run now, outside the timetable.
    Trigger { schedule: String },
    /// The next fire times of a cron expression, local and UTC; nothing is created.
    Preview(Preview_),
    /// Delete a schedule (the jobs it made stay).
    Delete { schedule: String },
}

/// The timing options of create and update.
#[derive(clap::Args, Debug)]
struct Timing {
    /// IANA time zone the expression is read in (`Europe/Berlin`; default UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// Local times a spring-forward jump skips: `shift` fires at the jump, `skip` not.
    #[arg(long, value_parser = ["shift", "skip"])]
    dst_skipped: Option<String>,
    /// Local times a fall-back jump repeats: fire at the `first`, `last` or `both`.
    #[arg(long, value_parser = ["first", "last", "both"])]
    dst_repeated: Option<String>,
    /// Fire times missed while down: `skip`, `run_once` (the latest) or `run_all`.
    #[arg(long, value_parser = ["skip", "run_once", "run_all"])]
    misfire: Option<String>,
    /// While the previous run is unfinished: `allow` a new one, or `skip` it.
    #[arg(long, value_parser = ["allow", "skip"])]
    overlap: Option<String>,
    #[arg(long)]
    description: Option<String>,
}

/// The job options of create and update.
#[derive(clap::Args, Debug)]
struct Template {
    /// The queue of each run (default `default`).
    #[arg(long)]
    queue: Option<String>,
    /// The payload of each run, as JSON (default `{}`).
    #[arg(long)]
    payload: Option<String>,
    /// -100 to 100, higher first.
    #[arg(long, allow_hyphen_values = true)]
    priority: Option<i32>,
    /// Attempts per run.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Lease length per attempt (`30s`).
    #[arg(long)]
    timeout: Option<Duration>,
    /// A label of each run (repeat for several).
    #[arg(long = "tag")]
    tags: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct Create {
    /// A unique name (`weekday-report`).
    #[arg(long)]
    name: String,
    /// Five fields (minute hour day month weekday), or six with seconds first.
    #[arg(long)]
    cron: String,
    /// The kind of each run's job.
    #[arg(long)]
    kind: String,
    #[command(flatten)]
    timing: Timing,
    #[command(flatten)]
    template: Template,
    /// Create it paused.
    #[arg(long)]
    paused: bool,
}

#[derive(clap::Args, Debug)]
struct Update {
    /// Its id or name.
    schedule: String,
    /// A new name.
    #[arg(long)]
    name: Option<String>,
    /// A new cron expression.
    #[arg(long)]
    cron: Option<String>,
    /// A new kind for its runs.
    #[arg(long)]
    kind: Option<String>,
    #[command(flatten)]
    timing: Timing,
    #[command(flatten)]
    template: Template,
}

#[derive(clap::Args, Debug)]
struct Preview_ {
    /// The cron expression (quote it: `'0 9 * * 1-5'`).
    cron: String,
    /// IANA time zone (default UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// How many fire times (1 to 100).
    #[arg(long, default_value_t = 5)]
    count: u32,
    /// Start after this time (RFC 3339; default now).
    #[arg(long)]
    after: Option<Timestamp>,
    /// Local times a spring-forward jump skips: `shift` or `skip`.
    #[arg(long, value_parser = ["shift", "skip"])]
    dst_skipped: Option<String>,
    /// Local times a fall-back jump repeats: `first`, `last` or `both`.
    #[arg(long, value_parser = ["first", "last", "both"])]
    dst_repeated: Option<String>,
}

/// A policy option's value as the API spells it (clap has checked it is one).
fn policy<T: DeserializeOwned>(v: Option<String>) -> Option<T> {
    v.map(|s| serde_json::from_value(serde_json::Value::String(s)).expect("clap checked"))
}

fn payload(text: Option<String>) -> Result<Option<Box<RawValue>>, Failure> {
    text.map(|t| {
        RawValue::from_string(t).map_err(|e| Failure::Usage(format!("--payload is not JSON: {e}")))
    })
    .transpose()
}

impl Template {
    fn given(&self) -> bool {
        self.queue.is_some()
            || self.payload.is_some()
            || self.priority.is_some()
            || self.max_attempts.is_some()
            || self.timeout.is_some()
            || !self.tags.is_empty()
    }

    /// The job of each run: these options over `base`.
    fn over(self, kind: String, base: JobTemplateRequest) -> Result<JobTemplateRequest, Failure> {
        Ok(JobTemplateRequest {
            queue: self.queue.or(base.queue),
            kind,
            payload: payload(self.payload)?.or(base.payload),
            priority: self.priority.or(base.priority),
            max_attempts: self.max_attempts.or(base.max_attempts),
            backoff: base.backoff,
            timeout: self.timeout.or(base.timeout),
            tags: if self.tags.is_empty() {
                base.tags
            } else {
                Some(self.tags)
            },
        })
    }
}

/// The id of the schedule named by `key`: an id as given, a name looked up.
async fn resolve(client: &Client, key: &str) -> Result<Uuid, Failure> {
    if let Ok(id) = key.parse() {
        return Ok(id);
    }
    client
        .schedules()
        .await?
        .into_iter()
        .find(|s| s.name == key)
        .map(|s| s.id)
        .ok_or_else(|| Failure::NotFound(format!("no schedule has the id or name {key:?}")))
}

impl ClientCommand for ScheduleArgs {
    fn api(&self) -> &ApiArgs {
        &self.api
    }

    async fn run(self) -> Result<(), Failure> {
        let api = &self.api;
        let client = api.client()?;
        match self.command {
            ScheduleCommand::Create(c) => {
                let c = *c;
                let req = ScheduleRequest {
                    name: c.name,
                    description: c.timing.description,
                    cron: c.cron,
                    timezone: c.timing.timezone,
                    dst_skipped: policy(c.timing.dst_skipped),
                    dst_repeated: policy(c.timing.dst_repeated),
                    job: c.template.over(c.kind, JobTemplateRequest::default())?,
                    active: c.paused.then_some(false),
                    misfire: policy(c.timing.misfire),
                    overlap: policy(c.timing.overlap),
                };
                print(api, &client.create_schedule(&req).await?, schedule_fields);
            }
            ScheduleCommand::List => {
                let schedules = client.schedules().await?;
                let list = serde_json::json!({ "schedules": schedules });
                print(api, &list, |_| schedules_table(&schedules));
            }
            ScheduleCommand::Get { schedule } => {
                let id = resolve(&client, &schedule).await?;
                print(api, &client.schedule(id).await?, schedule_fields);
            }
            ScheduleCommand::Update(u) => {
                let u = *u;
                let id = resolve(&client, &u.schedule).await?;
                // The API replaces a template whole: the options given go over the
                // stored one.
                let job = if u.kind.is_some() || u.template.given() {
                    let current = client.schedule(id).await?.job;
                    let kind = u.kind.unwrap_or_else(|| current.kind.clone());
                    Some(u.template.over(kind, current.into())?)
                } else {
                    None
                };
                let patch = SchedulePatch {
                    name: u.name,
                    description: u.timing.description,
                    cron: u.cron,
                    timezone: u.timing.timezone,
                    dst_skipped: policy(u.timing.dst_skipped),
                    dst_repeated: policy(u.timing.dst_repeated),
                    job,
                    active: None,
                    misfire: policy(u.timing.misfire),
                    overlap: policy(u.timing.overlap),
                };
                print(
                    api,
                    &client.update_schedule(id, &patch).await?,
                    schedule_fields,
                );
            }
            ScheduleCommand::Pause { schedule } => {
                set_active(api, &client, &schedule, false).await?
            }
            ScheduleCommand::Resume { schedule } => {
                set_active(api, &client, &schedule, true).await?
            }
            ScheduleCommand::Trigger { schedule } => {
                let id = resolve(&client, &schedule).await?;
                print(api, &client.trigger_schedule(id).await?, job_fields);
            }
            ScheduleCommand::Preview(p) => {
                let req = PreviewRequest {
                    cron: p.cron,
                    timezone: p.timezone.clone(),
                    dst_skipped: policy(p.dst_skipped),
                    dst_repeated: policy(p.dst_repeated),
                    count: Some(p.count),
                    after: p.after,
                };
                let zone = p.timezone.unwrap_or_else(|| "UTC".into());
                print(api, &client.preview(&req).await?, |v| {
                    preview_table(&zone, v)
                });
            }
            ScheduleCommand::Delete { schedule } => {
                let id = resolve(&client, &schedule).await?;
                client.delete_schedule(id).await?;
                print(api, &serde_json::json!({ "deleted": id }), |_| {
                    format!("deleted schedule {id}\n")
                });
            }
        }
        Ok(())
    }
}

async fn set_active(
    api: &ApiArgs,
    client: &Client,
    key: &str,
    active: bool,
) -> Result<(), Failure> {
    let id = resolve(client, key).await?;
    let patch = SchedulePatch {
        active: Some(active),
        ..SchedulePatch::default()
    };
    print(
        api,
        &client.update_schedule(id, &patch).await?,
        schedule_fields,
    );
    Ok(())
}

fn schedule_fields(s: &Schedule) -> String {
    let mut pairs = vec![
        ("id", s.id.to_string()),
        ("name", s.name.clone()),
        ("cron", s.cron.clone()),
        ("timezone", s.timezone.clone()),
        ("active", s.active.to_string()),
        ("next_run_at", time(s.next_run_at)),
        ("last_run_at", time(s.last_run_at)),
        ("job", format!("{} on {}", s.job.kind, s.job.queue)),
        ("payload", s.job.payload.get().to_string()),
        ("misfire", api_name(&s.misfire)),
        ("overlap", api_name(&s.overlap)),
        (
            "dst",
            format!(
                "skipped: {}, repeated: {}",
                api_name(&s.dst_skipped),
                api_name(&s.dst_repeated)
            ),
        ),
    ];
    if let Some(d) = &s.description {
        pairs.push(("description", d.clone()));
    }
    if let Some(e) = &s.last_error {
        pairs.push(("last_error", e.clone()));
    }
    fields(&pairs)
}

fn schedules_table(schedules: &[Schedule]) -> String {
    let mut t = Table::new(&[
        ("NAME", 22),
        ("CRON", 15),
        ("ZONE", 15),
        ("ACTIVE", 6),
        ("NEXT RUN (UTC)", 16),
    ]);
    for s in schedules {
        t.row(vec![
            s.name.clone(),
            s.cron.clone(),
            s.timezone.clone(),
            if s.active { "yes" } else { "no" }.into(),
            s.next_run_at
                .map_or_else(|| "-".into(), |n| n.strftime("%Y-%m-%d %H:%M").to_string()),
        ]);
    }
    t.render()
}

/// Fire times, local beside UTC, those a daylight-saving rule placed marked, and the
/// local times dropped listed after.
fn preview_table(zone: &str, p: &Preview) -> String {
    let local = format!("LOCAL ({zone})");
    let mut t = Table::new(&[(local.as_str(), 40), ("UTC", 20), ("DAYLIGHT SAVING", 30)]);
    for (i, at) in p.times.iter().enumerate() {
        let note = match p.dst.get(i).cloned().flatten() {
            None => String::new(),
            Some(m) => match m.rule {
                DstRule::Shifted => format!("moved: {} is skipped", clock(&m.wall_time)),
                DstRule::RepeatedFirst => "repeated time, 1st pass".to_string(),
                DstRule::RepeatedSecond => "repeated time, 2nd pass".to_string(),
            },
        };
        t.row(vec![
            p.local_times
                .get(i)
                .map_or_else(String::new, |l| l.replace('T', " ")),
            at.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
            note,
        ]);
    }
    let mut out = t.render();
    for d in &p.dropped {
        out.push_str(&format!(
            "dropped: {} (clocks jump past it; not counted)\n",
            wall(d)
        ));
    }
    out
}

/// `2027-03-28T02:30:00` as `02:30:00`.
fn clock(s: &str) -> &str {
    s.split_once('T').map_or(s, |(_, time)| time)
}

/// `2027-03-28T02:30:00` as `2027-03-28 02:30:00`.
fn wall(s: &str) -> String {
    s.replace('T', " ")
}
