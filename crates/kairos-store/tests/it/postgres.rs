//! The PostgreSQL backend: the conformance suite on a real server, one schema per test,
//! plus what only a database shared by many nodes needs (migrations racing, a schema
//! newer than the binary).

use kairos_core::ManualClock;
use kairos_store::conformance::database::TestDatabase;
use kairos_store::conformance::{Env, start};
use kairos_store::postgres::{Options, PostgresStore};
use std::sync::Arc;

fn options(db: &TestDatabase, clock: Option<Arc<ManualClock>>) -> Options {
    Options {
        schema: db.schema.clone(),
        clock: clock.map(|c| c as _),
        ..Options::default()
    }
}

async fn make_env() -> Option<Env> {
    let db = TestDatabase::create().await?;
    let clock = Arc::new(ManualClock::new(start()));
    let store = PostgresStore::connect(&db.url, options(&db, Some(clock.clone())))
        .await
        .unwrap();
    Some(Env {
        store: Arc::new(store),
        clock,
        _guard: Box::new(db),
    })
}

kairos_store::conformance_suite!(make_env);
