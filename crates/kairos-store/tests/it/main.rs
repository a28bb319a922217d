//! Store tests: one conformance suite (`conformance`) that every backend runs, and the
//! SQLite backend's own tests (durability across reopen).

mod conformance;
mod sqlite;
