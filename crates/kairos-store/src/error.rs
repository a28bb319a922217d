//! Store errors: one closed set, mapped once to HTTP problems at the server's edge.

use kairos_core::TransitionError;

/// Why a store operation failed as a whole.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No such job (or queue).
    #[error("not found")]
    NotFound,
    /// The job's state does not allow this.
    #[error(transparent)]
    Conflict(#[from] TransitionError),
    /// The idempotency key was first used for a different request.
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyMismatch,
    /// The request is invalid (validated against the store's clock, e.g. schedules).
    #[error("invalid request: {0}")]
    Invalid(#[from] kairos_core::Invalid),
    /// The queue holds its `max_depth` of unfinished jobs: nothing of this write was kept.
    #[error(transparent)]
    QueueFull(#[from] kairos_core::QueueFull),
    /// Something with this name already exists.
    #[error("{0}")]
    Duplicate(String),
    /// A listing cursor that this store did not make.
    #[error("invalid cursor")]
    InvalidCursor,
    /// The store is shut down.
    #[error("the store is closed")]
    Closed,
    /// Too many writes are waiting for the store: this one was not queued.
    #[error("too many writes are waiting")]
    Overloaded,
    /// The disk is full: nothing of this write was kept.
    #[error("the disk is full: {0}")]
    Full(String),
    /// The store's files are damaged (found at open, or when a read hit the damage).
    #[error("the store is damaged: {0}")]
    Damaged(String),
    /// The store cannot be reached now (a database server down or cut off): nothing of
    /// this operation was kept, unless it was already on its way to commit when the
    /// connection failed; try again once it is back.
    #[error("the store is unreachable: {0}")]
    Unavailable(String),
    /// The database picked this operation as a deadlock or serialization victim, a row
    /// lock it needed stayed taken past the lock timeout, or what it depended on changed
    /// under it, more often than retries allowed: nothing of
    /// it was kept, and trying again is safe.
    #[error("contended: {0}")]
    Contended(String),
    /// The backend failed (I/O, corruption, a bug).
    #[error("storage failure: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                StoreError::Damaged(e.to_string())
            }
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let Some(db) = e.as_db_error() else {
            // No answer from the server: the connection failed or was closed.
            return StoreError::Unavailable(format!("database: {e}"));
        };
        let message = db.message().to_string();
        match db.code() {
            c if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::LOCK_NOT_AVAILABLE =>
            {
                StoreError::Contended(message)
            }
            c if *c == SqlState::UNIQUE_VIOLATION => StoreError::Duplicate(message),
            c if *c == SqlState::DISK_FULL => StoreError::Full(message),
            c if *c == SqlState::DATA_CORRUPTED || *c == SqlState::INDEX_CORRUPTED => {
                StoreError::Damaged(message)
            }
            _ => StoreError::Backend(format!("database: {message}")),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Backend(format!("stored JSON: {e}"))
    }
}

/// Why one item of an ack or heartbeat was refused; the rest of the request stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// No such job.
    #[error("no such job")]
    NotFound,
    /// Stale token, expired lease, or a different outcome already reported.
    #[error(transparent)]
    Conflict(#[from] TransitionError),
}
