//! A PostgreSQL schema of its own for one test, so tests run in parallel on one server.
//!
//! The server is `KAIROS_TEST_DATABASE_URL` (default: the local one). When none answers,
//! tests are skipped with a message on stderr, unless `KAIROS_REQUIRE_SERVICES=1` (set by
//! `.ci/run`), which makes a missing server a failure.

use std::sync::atomic::{AtomicU32, Ordering};

/// The database URL tests use.
pub fn url() -> String {
    std::env::var("KAIROS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Whether a missing service fails tests instead of skipping them.
pub fn services_required() -> bool {
    std::env::var("KAIROS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A schema made for one test, dropped (with everything in it) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// The server's URL.
    pub url: String,
    /// The schema, unique to this test.
    pub schema: String,
}

impl TestDatabase {
    /// A fresh schema name on the test server, or `None` (after saying why) when no
    /// server answers and services are not required.
    pub async fn create() -> Option<TestDatabase> {
        let url = url();
        match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                drop(client);
            }
            Err(e) if !services_required() => {
                // Straight to the process's stderr: the test harness captures `eprintln!`,
                // and a skip must be seen.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: no PostgreSQL at {url} ({e}); start one, or set \
                     KAIROS_TEST_DATABASE_URL (KAIROS_REQUIRE_SERVICES=1 makes this a failure)"
                );
                return None;
            }
            Err(e) => panic!("no PostgreSQL at {url} and KAIROS_REQUIRE_SERVICES=1: {e}"),
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let schema = format!(
            "kairos_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        );
        Some(TestDatabase { url, schema })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let url = self.url.clone();
        // Bounded: a session the test left holding a lock must not hang the suite.
        let sql = format!(
            "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        );
        // Drop runs outside any runtime's reach: a thread of its own, with its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(conn);
                client.batch_execute(&sql).await.ok()
            })
        })
        .join();
        if !matches!(done, Ok(Some(()))) {
            eprintln!("could not drop the test schema {}", self.schema);
        }
    }
}
