//! Store tests: the SQLite backend runs the conformance suite
//! (`kairos_store::conformance`, feature `conformance`), plus its own tests (durability
//! across reopen, the write queue, misfires across restarts).

mod postgres;
mod sqlite;
