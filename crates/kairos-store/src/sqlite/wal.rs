//! Verifying the write-ahead log before SQLite replays it.
//!
//! SQLite's recovery keeps the WAL's frames up to the first one whose checksum fails and
//! silently drops the rest, even when the rest holds committed transactions. So before
//! opening, this module reads the WAL (and the wal-index in `-shm`) the way SQLite's
//! recovery does, and calls the WAL damaged when committed frames would be dropped:
//!
//! - the wal-index (written after each commit's fsync, so never ahead of what is durable)
//!   records more committed frames than the WAL's valid prefix holds: frames were cut
//!   off (a truncated WAL) or scribbled over;
//! - or, past the first invalid frame, frames of the same WAL generation (same salts)
//!   hold two or more commits: at most the last transaction can be torn by a crash, so an
//!   earlier, fsync'd one is being dropped.
//!
//! A crash mid-commit leaves at most one torn transaction at the end: that is not damage
//! (that transaction was never acknowledged). The format is SQLite's documented WAL
//! format (<https://sqlite.org/fileformat.html#the_write_ahead_log>) and wal-index header.

use std::path::Path;

const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;
const WAL_MAGIC: u32 = 0x377f_0682;
const WAL_VERSION: u32 = 3_007_000;
/// The wal-index header: 48 bytes, stored twice at the start of `-shm`.
const INDEX_HEADER: usize = 48;

/// What reading the WAL found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WalState {
    /// No WAL, or an empty one.
    Empty,
    /// Every committed frame is readable; `frames` of them will be replayed.
    Sound {
        /// Frames up to the last valid commit.
        frames: u32,
    },
    /// Committed frames would be dropped; says why.
    Damaged(String),
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// SQLite's WAL checksum: over `data` (a multiple of 8 bytes), as u32 words in the
/// checksum's byte order, continuing from `s`.
fn checksum(big_endian: bool, data: &[u8], s: (u32, u32)) -> (u32, u32) {
    let (mut s1, mut s2) = s;
    for pair in data.chunks_exact(8) {
        let word = |b: &[u8]| {
            let b: [u8; 4] = b.try_into().expect("4 bytes");
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        s1 = s1.wrapping_add(word(&pair[..4])).wrapping_add(s2);
        s2 = s2.wrapping_add(word(&pair[4..])).wrapping_add(s1);
    }
    (s1, s2)
}

/// The wal-index header's record of the WAL, when the header is intact: (last committed
/// frame, salts).
fn index_record(shm: &[u8]) -> Option<(u32, [u8; 8])> {
    if shm.len() < 2 * INDEX_HEADER {
        return None;
    }
    let (a, b) = (&shm[..INDEX_HEADER], &shm[INDEX_HEADER..2 * INDEX_HEADER]);
    // Native byte order: the wal-index is shared memory, never moved between machines.
    let ne32 = |at: usize| u32::from_ne_bytes(a[at..at + 4].try_into().expect("4 bytes"));
    if a != b || ne32(0) != WAL_VERSION || a[12] != 1 {
        return None;
    }
    let native_big = cfg!(target_endian = "big");
    let sum = checksum(native_big, &a[..40], (0, 0));
    if sum != (ne32(40), ne32(44)) {
        return None;
    }
    let mut salts = [0u8; 8];
    // Salts are copied byte for byte from the WAL header.
    salts.copy_from_slice(&a[32..40]);
    Some((ne32(16), salts))
}

/// Reads the WAL of the database at `db` (and its `-shm`) and says whether replaying it
/// would drop committed frames.
pub(crate) fn verify(db: &Path) -> std::io::Result<WalState> {
    let wal_path = with_suffix(db, "-wal");
    let wal = match std::fs::read(&wal_path) {
        Ok(w) => w,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(WalState::Empty),
        Err(e) => return Err(e),
    };
    let index = match std::fs::read(with_suffix(db, "-shm")) {
        Ok(shm) => index_record(&shm),
        Err(_) => None,
    };
    Ok(check(&wal, index))
}

fn with_suffix(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// The verdict on a WAL's bytes, given the wal-index's record of it.
fn check(wal: &[u8], index: Option<(u32, [u8; 8])>) -> WalState {
    let indexed = index.filter(|(frames, _)| *frames > 0);
    if wal.len() < WAL_HEADER {
        return match indexed {
            Some((frames, _)) if wal.is_empty() => WalState::Damaged(format!(
                "the WAL is empty but its index records {frames} committed frames"
            )),
            _ => WalState::Empty,
        };
    }
    let magic = be32(wal, 0);
    let page = be32(wal, 8) as usize;
    let big_endian = magic & 1 == 1;
    let header_ok = magic & !1 == WAL_MAGIC
        && be32(wal, 4) == WAL_VERSION
        && page.is_power_of_two()
        && (512..=65536).contains(&page)
        && checksum(big_endian, &wal[..24], (0, 0)) == (be32(wal, 24), be32(wal, 28));
    if !header_ok {
        return match indexed {
            Some((frames, _)) => WalState::Damaged(format!(
                "the WAL's header is damaged, and its index records {frames} committed frames"
            )),
            None => WalState::Empty,
        };
    }
    let salts: [u8; 8] = wal[16..24].try_into().expect("8 bytes");
    let frame_size = FRAME_HEADER + page;
    let frames = (wal.len() - WAL_HEADER) / frame_size;
    let frame = |i: usize| &wal[WAL_HEADER + i * frame_size..WAL_HEADER + (i + 1) * frame_size];
    // The valid prefix, as SQLite's recovery reads it.
    let mut sum = (be32(wal, 24), be32(wal, 28));
    let mut last_commit = 0u32;
    let mut valid = 0usize;
    while valid < frames {
        let f = frame(valid);
        if f[8..16] != salts || be32(f, 0) == 0 {
            break;
        }
        let next = checksum(
            big_endian,
            &f[FRAME_HEADER..],
            checksum(big_endian, &f[..8], sum),
        );
        if next != (be32(f, 16), be32(f, 20)) {
            break;
        }
        sum = next;
        valid += 1;
        if be32(f, 4) != 0 {
            last_commit = valid as u32;
        }
    }
    if let Some((recorded, index_salts)) = indexed
        && index_salts == salts
        && recorded > last_commit
    {
        return WalState::Damaged(format!(
            "the WAL holds {last_commit} readable committed frames, but {recorded} were committed \
             (frames after {last_commit} are cut off or damaged)"
        ));
    }
    // Past the break: commits of this generation that replay would drop.
    let later_commits = (valid..frames)
        .map(frame)
        .filter(|f| f[8..16] == salts && be32(f, 0) != 0 && be32(f, 4) != 0)
        .count();
    if later_commits >= 2 {
        return WalState::Damaged(format!(
            "frame {} of the WAL is damaged, and {later_commits} committed transactions follow it",
            valid + 1
        ));
    }
    if last_commit == 0 {
        WalState::Empty
    } else {
        WalState::Sound {
            frames: last_commit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 512;

    /// A WAL of `commits` one-frame transactions, as SQLite writes it (little-endian sums).
    fn wal(commits: u32) -> Vec<u8> {
        let mut w = vec![0u8; WAL_HEADER];
        w[..4].copy_from_slice(&WAL_MAGIC.to_be_bytes());
        w[4..8].copy_from_slice(&WAL_VERSION.to_be_bytes());
        w[8..12].copy_from_slice(&(PAGE as u32).to_be_bytes());
        w[16..24].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut sum = checksum(false, &w[..24], (0, 0));
        w[24..28].copy_from_slice(&sum.0.to_be_bytes());
        w[28..32].copy_from_slice(&sum.1.to_be_bytes());
        for i in 0..commits {
            let mut f = vec![0u8; FRAME_HEADER + PAGE];
            f[..4].copy_from_slice(&(i + 1).to_be_bytes());
            f[4..8].copy_from_slice(&(i + 1).to_be_bytes());
            f[8..16].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
            for (j, b) in f[FRAME_HEADER..].iter_mut().enumerate() {
                *b = (i as usize * 7 + j) as u8;
            }
            sum = checksum(false, &f[FRAME_HEADER..], checksum(false, &f[..8], sum));
            f[16..20].copy_from_slice(&sum.0.to_be_bytes());
            f[20..24].copy_from_slice(&sum.1.to_be_bytes());
            w.extend_from_slice(&f);
        }
        w
    }

    const SALTS: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

    #[test]
    fn an_intact_wal_is_sound() {
        assert_eq!(check(&wal(5), None), WalState::Sound { frames: 5 });
        assert_eq!(
            check(&wal(5), Some((5, SALTS))),
            WalState::Sound { frames: 5 }
        );
        assert_eq!(check(&[], None), WalState::Empty);
    }

    #[test]
    fn a_torn_last_transaction_is_not_damage() {
        let mut w = wal(5);
        let last = w.len() - 10;
        w[last] ^= 0xFF;
        assert_eq!(check(&w, Some((4, SALTS))), WalState::Sound { frames: 4 });
        let cut = w.len() - 100;
        assert_eq!(check(&w[..cut], None), WalState::Sound { frames: 4 });
    }

    #[test]
    fn dropped_commits_are_damage() {
        let w = wal(6);
        // Cut off: the index knows of six commits.
        let cut = WAL_HEADER + 3 * (FRAME_HEADER + PAGE);
        assert!(matches!(
            check(&w[..cut], Some((6, SALTS))),
            WalState::Damaged(_)
        ));
        // Scribbled in the middle, no index: commits follow the bad frame.
        let mut s = w.clone();
        s[WAL_HEADER + FRAME_HEADER + PAGE + 100] ^= 0x55;
        assert!(matches!(check(&s, None), WalState::Damaged(_)));
        // A damaged header while the index knows of commits.
        let mut h = w.clone();
        h[20] ^= 1;
        assert!(matches!(check(&h, Some((6, SALTS))), WalState::Damaged(_)));
        // An index of another generation says nothing about this WAL.
        assert_eq!(
            check(&w[..cut], Some((6, [9; 8]))),
            WalState::Sound { frames: 3 }
        );
    }
}
