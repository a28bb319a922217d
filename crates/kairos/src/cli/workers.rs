//! `kairos worker list`: the workers a server heard from in the last day.

use super::table::Table;
use super::{ApiArgs, ClientCommand, Failure, api_name, print};
use kairos_core::api::{WorkerInfo, WorkerList};

/// `kairos worker list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    api: ApiArgs,
}

impl ClientCommand for ListArgs {
    fn api(&self) -> &ApiArgs {
        &self.api
    }

    async fn run(self) -> Result<(), Failure> {
        let workers = self.api.client()?.workers().await?;
        let list = WorkerList { workers };
        print(&self.api, &list, |l| workers_table(&l.workers));
        Ok(())
    }
}

fn workers_table(workers: &[WorkerInfo]) -> String {
    let mut t = Table::new(&[
        ("WORKER", 22),
        ("STATE", 7),
        ("RUNNING", 7),
        ("QUEUES", 16),
        ("LAST SEEN (UTC)", 19),
    ]);
    for w in workers {
        t.row(vec![
            w.name.clone(),
            api_name(&w.state),
            w.running.to_string(),
            w.queues.join(","),
            w.last_seen_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        ]);
    }
    t.render()
}
