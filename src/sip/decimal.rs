//! Decimal numbers for responses and AoRs (ports, expiry seconds, status codes, header values).
//!
//! Why not the `itoa` crate, used before: its 200-byte table of digit pairs spans three or four cache
//! lines of read-only data, and a REGISTER that starts with cold caches fetched two or three of them for
//! its port and `expires` numbers. One digit per step costs a multiply by a constant of the code (the
//! division by 10) and nothing to fetch; the numbers here have at most five digits in practice.

/// The digits of a `u64`, most significant first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decimal {
    buf: [u8; 20],
    /// Where the digits start in `buf` (they end at its end).
    start: usize,
}

impl Decimal {
    #[inline]
    pub(crate) fn new(mut n: u64) -> Self {
        let mut d = Decimal {
            buf: [0; 20],
            start: 20,
        };
        // u64::MAX has 20 digits, so `start` never underflows.
        loop {
            d.start -= 1;
            d.buf[d.start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return d;
            }
        }
    }

    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn matches_display(n in proptest::prelude::any::<u64>()) {
            let (ours, std) = (Decimal::new(n), n.to_string());
            proptest::prop_assert_eq!(ours.as_bytes(), std.as_bytes());
        }
    }

    #[test]
    fn edges() {
        for n in [
            0,
            9,
            10,
            99,
            100,
            5060,
            65535,
            86400,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            assert_eq!(Decimal::new(n).as_bytes(), n.to_string().as_bytes());
        }
    }
}
