//! Start-up spreading: each registrant's first REGISTER is delayed by an offset within a window, a pure
//! function of its key, so that thousands of accounts loaded at once do not all register in the same
//! second (OpenSIPS hashes its registrants into buckets over `timer_interval` for the same reason).
//!
//! The hash is fixed (FNV-1a, then a 64-bit finaliser), not seeded per process: a registrant starts at
//! the same offset after every restart, which keeps an upstream's load the same shape from one restart
//! to the next and lets tests check the offsets.

/// FNV-1a over `bytes`, finished with splitmix64's mixer (FNV alone spreads short keys poorly in the
/// low bits).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// splitmix64's finaliser: a bijection of u64 that spreads every input bit over the output.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The delay, in milliseconds, before the first REGISTER of the registrant with this key, within
/// `window_ms` (0: none).
pub fn start_offset_ms(key: &[u8], window_ms: u64) -> u64 {
    if window_ms == 0 {
        return 0;
    }
    stable_hash(key) % window_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stable_and_within_the_window() {
        assert_eq!(start_offset_ms(b"k", 0), 0);
        let a = start_offset_ms(b"sip:a@x|sip:a@h|sip:r", 100_000);
        assert_eq!(a, start_offset_ms(b"sip:a@x|sip:a@h|sip:r", 100_000));
        assert!(a < 100_000);
        assert_ne!(a, start_offset_ms(b"sip:b@x|sip:b@h|sip:r", 100_000));
    }
}
