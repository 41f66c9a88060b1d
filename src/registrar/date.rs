//! The `Date` header value (RFC 3261 §20.17, RFC 1123 format), formatted once per second.

use std::io::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// `Sun, 06 Nov 1994 08:49:37 GMT` is 29 bytes.
const DATE_LEN: usize = 29;

pub struct DateCache {
    unix_s: u64,
    text: [u8; DATE_LEN],
    len: usize,
}

impl DateCache {
    pub fn new() -> Self {
        let mut cache = DateCache {
            unix_s: u64::MAX,
            text: [0; DATE_LEN],
            len: 0,
        };
        cache.refresh(0);
        cache
    }

    /// The date for `unix_s`, reformatted only when the second changed.
    pub fn get(&mut self, unix_s: u64) -> &[u8] {
        if unix_s != self.unix_s {
            self.refresh(unix_s);
        }
        &self.text[..self.len]
    }

    fn refresh(&mut self, unix_s: u64) {
        let when = UNIX_EPOCH + Duration::from_secs(unix_s.min(253_402_300_799)); // httpdate's upper bound: year 9999
        let date = httpdate::HttpDate::from(when);
        let mut cursor = std::io::Cursor::new(&mut self.text[..]);
        // The formatted date is always DATE_LEN bytes: the write cannot overflow.
        let _ = write!(cursor, "{date}");
        self.len = cursor.position() as usize;
        self.unix_s = unix_s;
    }
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc1123() {
        let mut cache = DateCache::new();
        assert_eq!(cache.get(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(cache.get(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
