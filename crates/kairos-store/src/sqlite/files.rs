//! The data directory: its lock, its identity, and the checks that refuse to open a store
//! known to be damaged.
//!
//! - **Lock**: an exclusive OS lock (`flock`) on the directory itself, held while the
//!   store is open. A lock file could be deleted away under a running server; the
//!   directory cannot be while the server's files are in it.
//! - **Identity**: `kairos.id` is written once the store is first created, and names the
//!   store (`store_id`, also kept inside the database). A directory that has one but whose
//!   database is missing, empty, or another store's, was damaged or tampered with: it is
//!   refused rather than opened as a new, empty store.
//! - **Checks before SQLite opens the files**: the WAL is read ([`super::wal`]) so that a
//!   damaged WAL is refused instead of being silently cut short; **after**: `PRAGMA
//!   quick_check` while the database is small.
//!
//! `Options::accept_data_loss` is the operator's way past a refusal they have judged: a
//! missing or emptied database is set aside and a new store begins; a damaged WAL is
//! copied aside and SQLite keeps what it can read of it. Damage inside the database
//! itself is never served (restore a backup, or recover it with `sqlite3 .recover`).

use super::wal::{self, WalState};
use crate::StoreError;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "kairos.db";
/// The identity file's name inside the data directory.
pub const ID_FILE: &str = "kairos.id";
/// `PRAGMA quick_check` runs at open while the database is at most this large; larger
/// stores are checked on demand (`kairos check`), since the check reads every page.
pub const QUICK_CHECK_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// What `kairos.id` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    /// The layout of this file.
    pub format: u32,
    /// The store's identity, also kept in the database's `store_meta` table.
    pub store_id: Uuid,
    /// When the store was created.
    pub created_at: Timestamp,
}

/// Takes the exclusive lock on `dir` (created if missing).
pub(crate) fn lock(dir: &Path) -> Result<File, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
    let handle = File::open(dir)
        .map_err(|e| StoreError::Backend(format!("opening {}: {e}", dir.display())))?;
    handle.try_lock().map_err(|_| {
        StoreError::Backend(format!(
            "another Kairos server (or `kairos check`) is using {}",
            dir.display()
        ))
    })?;
    Ok(handle)
}

fn damaged(dir: &Path, what: String, remedy: &str) -> StoreError {
    StoreError::Damaged(format!("{}: {what}. {remedy}", dir.display()))
}

const RESTORE_OR_ACCEPT: &str = "Restore the directory from a backup (docs/operations.md, \
    \"Backups\"), or, to accept the loss, start once with --accept-data-loss";

/// Reads `kairos.id`, if the directory has one.
pub(crate) fn identity(dir: &Path) -> Result<Option<Identity>, StoreError> {
    match std::fs::read(dir.join(ID_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            damaged(
                dir,
                format!("{ID_FILE} is unreadable ({e})"),
                "Restore it from a backup, or delete it to adopt the database as it is",
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Backend(format!("reading {ID_FILE}: {e}"))),
    }
}

/// Writes `kairos.id` durably (a temporary file, fsync, rename, fsync of the directory).
pub(crate) fn write_identity(dir: &Path, id: &Identity) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Backend(format!("writing {ID_FILE}: {e}"));
    let tmp = dir.join(format!("{ID_FILE}.tmp"));
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(&serde_json::to_vec_pretty(id)?).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, dir.join(ID_FILE)).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

/// The database file's size, `None` when it does not exist.
fn db_size(db: &Path) -> Result<Option<u64>, StoreError> {
    match std::fs::metadata(db) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Backend(format!(
            "reading {}: {e}",
            db.display()
        ))),
    }
}

/// A directory beside the store's files where damaged ones are set aside.
fn aside(dir: &Path) -> Result<PathBuf, StoreError> {
    let to = dir.join(format!("damaged-{}", Timestamp::now().as_second()));
    std::fs::create_dir_all(&to)
        .map_err(|e| StoreError::Backend(format!("creating {}: {e}", to.display())))?;
    Ok(to)
}

/// The checks before SQLite opens the files. With `accept_loss`, what they refuse is set
/// aside (logged) instead. Answers the identity the store must have, if any.
pub(crate) fn before_open(dir: &Path, accept_loss: bool) -> Result<Option<Identity>, StoreError> {
    let db = dir.join(DB_FILE);
    let id = identity(dir)?;
    if let Some(known) = &id {
        let gone = match db_size(&db)? {
            None => Some("is missing"),
            Some(0) => Some("is empty (0 bytes)"),
            Some(_) => None,
        };
        if let Some(how) = gone {
            let what = format!(
                "the store {} created {} has no database: {DB_FILE} {how}",
                known.store_id, known.created_at
            );
            if !accept_loss {
                return Err(damaged(dir, what, RESTORE_OR_ACCEPT));
            }
            let to = aside(dir)?;
            for suffix in ["", "-wal", "-shm"] {
                let name = format!("{DB_FILE}{suffix}");
                let _ = std::fs::rename(dir.join(&name), to.join(&name));
            }
            let _ = std::fs::rename(dir.join(ID_FILE), to.join(ID_FILE));
            tracing::warn!(%what, set_aside = %to.display(), "accepting the loss: starting a new, empty store");
            return Ok(None);
        }
    }
    match wal::verify(&db).map_err(|e| StoreError::Backend(format!("reading the WAL: {e}")))? {
        WalState::Damaged(why) => {
            let what = format!("the write-ahead log {DB_FILE}-wal is damaged: {why}");
            if !accept_loss {
                return Err(damaged(dir, what, RESTORE_OR_ACCEPT));
            }
            let to = aside(dir)?;
            let name = format!("{DB_FILE}-wal");
            std::fs::copy(dir.join(&name), to.join(&name))
                .map_err(|e| StoreError::Backend(format!("copying the WAL aside: {e}")))?;
            tracing::warn!(%what, copied_to = %to.display(), "accepting the loss: keeping what the WAL holds up to the damage");
        }
        WalState::Sound { frames } => {
            tracing::info!(frames, "replaying the write-ahead log");
        }
        WalState::Empty => {}
    }
    Ok(id)
}

/// `PRAGMA quick_check` (or the full `integrity_check`): the problems it lists, none when
/// the database is sound.
pub(crate) fn integrity(conn: &Connection, full: bool) -> Result<Vec<String>, StoreError> {
    let pragma = if full {
        "PRAGMA integrity_check(100)"
    } else {
        "PRAGMA quick_check(100)"
    };
    let rows: Vec<String> = conn
        .prepare(pragma)?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()
        .map_err(StoreError::from)?;
    Ok(rows.into_iter().filter(|r| r != "ok").collect())
}

/// The checks once SQLite has the files open and the schema is current: the database is
/// the identified store's, and sound while small enough to check at open. Answers the
/// identity to write when the directory has none yet.
pub(crate) fn after_open(
    dir: &Path,
    conn: &Connection,
    known: Option<Identity>,
    was_new: bool,
    accept_loss: bool,
) -> Result<Option<Identity>, StoreError> {
    let size = db_size(&dir.join(DB_FILE))?.unwrap_or(0);
    if size <= QUICK_CHECK_MAX_BYTES {
        let problems = integrity(conn, false)?;
        if !problems.is_empty() {
            return Err(damaged(
                dir,
                format!("{DB_FILE} is damaged: {}", summary(&problems)),
                "Restore it from a backup, or recover what it holds with `sqlite3 kairos.db \
                 .recover` into a new kairos.db (docs/operations.md, \"Damaged files\")",
            ));
        }
    } else {
        tracing::info!(
            bytes = size,
            "the database is too large to check at every start; run `kairos check` to verify it"
        );
    }
    let stored: Option<String> = conn
        .query_row(
            "SELECT value FROM store_meta WHERE key = 'store_id'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let stored = stored.and_then(|s| s.parse::<Uuid>().ok());
    match (&known, stored) {
        (Some(k), Some(s)) if k.store_id != s => Err(damaged(
            dir,
            format!(
                "{DB_FILE} belongs to store {s}, but this directory is store {}",
                k.store_id
            ),
            "Put the right database back, or delete kairos.id to adopt this one",
        )),
        (Some(_), Some(_)) => Ok(None),
        (Some(k), None) if was_new && !accept_loss => Err(damaged(
            dir,
            format!(
                "{DB_FILE} is a new, empty database, but this directory is store {} created {}",
                k.store_id, k.created_at
            ),
            RESTORE_OR_ACCEPT,
        )),
        (Some(k), None) => {
            // A database from before identities (or a new one whose loss was accepted):
            // it takes the directory's identity.
            set_store_id(conn, k.store_id)?;
            Ok(None)
        }
        (None, Some(s)) => Ok(Some(Identity {
            format: 1,
            store_id: s,
            created_at: Timestamp::now(),
        })),
        (None, None) => {
            let id = Uuid::now_v7();
            set_store_id(conn, id)?;
            Ok(Some(Identity {
                format: 1,
                store_id: id,
                created_at: Timestamp::now(),
            }))
        }
    }
}

/// Free and total bytes of the filesystem holding `dir`, for an unprivileged user.
#[cfg(unix)]
pub(crate) fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct it is given and reads the C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let block = st.f_frsize as u64;
    Some((st.f_bavail as u64 * block, st.f_blocks as u64 * block))
}

#[cfg(not(unix))]
pub(crate) fn disk_space(_dir: &Path) -> Option<(u64, u64)> {
    None
}

/// After a full disk, writes count as resumed (and readiness returns) once this much is
/// free: 64 MiB, or 5% of a smaller filesystem. A few kilobytes freed by a deleted job
/// would otherwise flip readiness back and forth on every small write.
pub(crate) fn room_to_resume(total: u64) -> u64 {
    (64 * 1024 * 1024).min(total / 20)
}

/// The first few problems of an integrity check, for a message.
pub(crate) fn summary(problems: &[String]) -> String {
    let shown: Vec<&str> = problems
        .iter()
        .flat_map(|p| p.lines())
        .map(str::trim)
        .take(5)
        .collect();
    let all = problems.iter().flat_map(|p| p.lines()).count();
    if all > shown.len() {
        format!("{} (and {} more)", shown.join("; "), all - shown.len())
    } else {
        shown.join("; ")
    }
}

fn set_store_id(conn: &Connection, id: Uuid) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO store_meta (key, value) VALUES ('store_id', ?1)",
        [id.to_string()],
    )?;
    Ok(())
}
