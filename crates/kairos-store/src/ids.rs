//! Job ids and lease tokens, made by the store (never by clients): UUIDv7 ids that sort in
//! creation order, random lease tokens. Shared by every backend.

use uuid::Uuid;

/// Job ids and lease tokens without a system call per id: UUIDv7 with a 12-bit counter
/// within each millisecond (so ids made here sort in creation order), random bits from a
/// fast generator seeded by the OS.
#[derive(Default)]
pub(crate) struct IdGen {
    last_ms: u64,
    counter: u16,
}

impl IdGen {
    pub(crate) fn next_v7(&mut self, now_ms: u64) -> Uuid {
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            self.counter = fastrand::u16(..0x400);
        } else if self.counter >= 0xFFF {
            // 4096 ids in one millisecond: borrow the next millisecond.
            self.last_ms += 1;
            self.counter = 0;
        } else {
            self.counter += 1;
        }
        let bits = ((self.last_ms as u128 & 0xFFFF_FFFF_FFFF) << 80)
            | (0x7 << 76)
            | ((self.counter as u128) << 64)
            | (0b10 << 62)
            | (fastrand::u64(..) as u128 & 0x3FFF_FFFF_FFFF_FFFF);
        Uuid::from_u128(bits)
    }
}

/// A random (v4) lease token from the fast generator.
pub(crate) fn lease_token() -> Uuid {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::IdGen;

    #[test]
    fn ids_are_v7_and_increase_within_and_across_milliseconds() {
        let mut ids = IdGen::default();
        let mut last = ids.next_v7(1_000);
        assert_eq!(last.get_version_num(), 7);
        for i in 0..10_000u64 {
            // Many ids in the same millisecond, then the clock moves on.
            let next = ids.next_v7(1_000 + i / 5_000);
            assert!(next > last, "ids increase");
            last = next;
        }
        // A clock that steps back never makes an id go backwards.
        assert!(ids.next_v7(500) > last);
    }
}
