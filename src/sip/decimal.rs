//! Decimal numbers for responses and AoRs (ports, expiry seconds, status codes, header values).
//!
//! Why not the `itoa` crate, used before: its 200-byte table of digit pairs spans three or four cache
//! lines of read-only data, and a REGISTER that starts with cold caches fetched two or three of them for
//! its port and `expires` numbers. Here the divisions are multiplies by constants of the code, eight digits
//! at a time, with nothing to fetch.

/// The digits of a `u64`, most significant first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decimal {
    buf: [u8; 20],
    /// Where the digits start in `buf` (they end at its end).
    start: usize,
}

impl Decimal {
    /// Out of line: one copy of the code for the three numbers of a 200 (port, expires, ...).
    #[inline(never)]
    #[cfg_attr(target_os = "linux", link_section = ".text.hot.corereg")]
    pub(crate) fn new(n: u64) -> Self {
        match u32::try_from(n) {
            Ok(small) if small < 100_000_000 => Self::eight(small),
            _ => Self::general(n),
        }
    }

    /// Numbers below 10^8 (every port, expiry and status code): the eight digits at once, by halving the
    /// number into lanes of one word (4 + 4 digits, then pairs, then digits), each division a multiply
    /// and shift by a constant that is exact in its range; then the leading zeros are skipped.
    #[inline(always)]
    fn eight(n: u32) -> Self {
        let x = u64::from(n);
        let hi = x / 10_000;
        let four = hi | (x - hi * 10_000) << 32; // 32-bit lanes: digits 0-3, 4-7 (each < 10^4)
        let hundreds = ((four * 10_486) >> 20) & 0x0000_007f_0000_007f; // v / 100 for v < 10^4
        let two = hundreds | (four - hundreds * 100) << 16; // 16-bit lanes: pairs (each < 100)
        let tens = ((two * 103) >> 10) & 0x000f_000f_000f_000f; // v / 10 for v < 100
        let one = tens | (two - tens * 10) << 8; // 8-bit lanes: the digits, most significant first
        let leading_zeros = ((one.trailing_zeros() / 8) as usize).min(7);
        let mut buf = [0; 20];
        buf[12..].copy_from_slice(&(one + 0x3030_3030_3030_3030).to_le_bytes());
        Decimal {
            buf,
            start: 12 + leading_zeros,
        }
    }

    #[cold]
    fn general(mut n: u64) -> Self {
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
        fn matches_display_below_10_8(n in 0u64..100_000_000) {
            let (ours, std) = (Decimal::new(n), n.to_string());
            proptest::prop_assert_eq!(ours.as_bytes(), std.as_bytes());
        }

        #[test]
        fn matches_display(n in proptest::prelude::any::<u64>()) {
            let (ours, std) = (Decimal::new(n), n.to_string());
            proptest::prop_assert_eq!(ours.as_bytes(), std.as_bytes());
        }
    }

    #[test]
    fn every_number_below_10_5_and_a_stride_to_10_8() {
        for n in (0..100_000).chain((100_000..100_000_000).step_by(9_973)) {
            assert_eq!(Decimal::new(n).as_bytes(), n.to_string().as_bytes(), "{n}");
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
