//! Constants for the request path's SSE2 and SWAR code, kept in the instruction stream.
//!
//! LLVM loads a vector constant (`_mm_set1_epi8(b',')`, or the vector it makes of a SWAR loop) from a
//! constant pool in the read-only data, and scatters those 16-byte constants over it: a REGISTER that starts
//! with cold caches fetched a data cache line for almost every one (the URI check alone used five, the To
//! tag's hex digits three). Built from a 64-bit immediate instead, a constant is part of the code, which the
//! request path fetches anyway. [`opaque`] is what stops LLVM from folding it back into a pool load: it
//! cannot see through an `asm!` block, so the value is not a known constant any more.

/// `x`, unknown to the optimiser (an empty `asm!` block that "may change" its register). Costs nothing
/// at run time; pure, so it can still be hoisted out of loops and merged with an identical one.
#[inline(always)]
pub(crate) fn opaque(x: u64) -> u64 {
    let mut x = x;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the block is empty: it reads and writes nothing but the register holding `x`, unchanged.
    unsafe {
        std::arch::asm!("/* {0} */", inout(reg) x, options(pure, nomem, nostack, preserves_flags));
    }
    x
}

/// `b` in every byte of a word, as an immediate of the code.
#[inline(always)]
pub(crate) fn splat_u64(b: u8) -> u64 {
    opaque(u64::from(b) * 0x0101_0101_0101_0101)
}

/// `_mm_set1_epi8(b)` without a constant-pool load: a 64-bit immediate moved into the register and
/// duplicated (three instructions, no memory).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn splat(b: u8) -> std::arch::x86_64::__m128i {
    // SAFETY: SSE2 is part of the x86_64 baseline.
    unsafe { std::arch::x86_64::_mm_set1_epi64x(splat_u64(b) as i64) }
}

/// ASCII letters of `w` to lower case, every other byte unchanged: `u8::to_ascii_lowercase` on each of
/// the eight bytes.
#[inline(always)]
pub(crate) fn lower_word(w: u64) -> u64 {
    let h = w & splat_u64(0x7f);
    // Top bit of each byte: h >= 'A', and h > 'Z' (h <= 0x7f, so no byte carries into the next).
    let from_a = h.wrapping_add(splat_u64(0x80 - b'A'));
    let past_z = h.wrapping_add(splat_u64(0x80 - b'Z' - 1));
    // An upper-case letter: in range, and an ASCII byte (top bit of `w` clear). Bit 7 -> bit 5 (0x20).
    let upper = from_a & !past_z & !w & splat_u64(0x80);
    w | upper >> 2
}

/// The bytes of `s` (at most 8) as a little-endian word, zero-padded. Shorter slices are read as two
/// overlapping halves (or first, middle and last byte): no loop, so no jump table or vector code for the
/// compiler to make of one.
#[inline(always)]
fn word(s: &[u8]) -> u64 {
    debug_assert!(s.len() <= 8);
    let n = s.len();
    if let Some(w) = s.first_chunk::<8>() {
        return u64::from_le_bytes(*w);
    }
    if let (Some(lo), Some(hi)) = (s.first_chunk::<4>(), s.last_chunk::<4>()) {
        // The overlapping bytes are the same in both halves, so OR keeps them.
        return u64::from(u32::from_le_bytes(*lo))
            | u64::from(u32::from_le_bytes(*hi)) << (8 * (n - 4));
    }
    match s {
        [] => 0,
        [first, ..] => {
            u64::from(*first)
                | u64::from(s[n / 2]) << (8 * (n / 2))
                | u64::from(s[n - 1]) << (8 * (n - 1))
        }
    }
}

/// `a.eq_ignore_ascii_case(b)`, eight bytes per step. The request path's version: std's compares
/// longer slices with SSE code whose case-folding constants sat on three lines of the constant pool.
#[inline]
pub(crate) fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while let (Some(x), Some(y)) = (a.get(i..i + 8), b.get(i..i + 8)) {
        if lower_word(word(x)) != lower_word(word(y)) {
            return false;
        }
        i += 8;
    }
    lower_word(word(&a[i..])) == lower_word(word(&b[i..]))
}

/// `name.eq_ignore_ascii_case(lower)` for a lower-case literal `lower` (a parameter name the registrar
/// looks for). Always inlined: the literal's words then become immediates of the code, where a call of
/// [`eq_ignore_case`] reads the literal from the read-only data, a cache line per literal when a REGISTER
/// starts with cold caches.
#[inline(always)]
pub(crate) fn eq_literal(name: &[u8], lower: &'static [u8]) -> bool {
    debug_assert!(!lower.iter().any(u8::is_ascii_uppercase));
    if name.len() != lower.len() {
        return false;
    }
    let mut i = 0;
    while let (Some(x), Some(y)) = (name.get(i..i + 8), lower.get(i..i + 8)) {
        if lower_word(word(x)) != word(y) {
            return false;
        }
        i += 8;
    }
    lower_word(word(&name[i..])) == word(&lower[i..])
}

/// `s.make_ascii_lowercase()`, eight bytes per step (std's version uses pool constants too).
#[inline]
pub(crate) fn make_lowercase(s: &mut [u8]) {
    for chunk in s.chunks_mut(8) {
        let lower = lower_word(word(chunk)).to_le_bytes();
        chunk.copy_from_slice(&lower[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            proptest::prop_oneof![
                proptest::sample::select(b"@AZ[`az{ \x7f\x80\xc1\xda\xffsSiIpP".to_vec()),
                proptest::prelude::any::<u8>(),
            ],
            0..40,
        )
    }

    proptest::proptest! {
        #[test]
        fn word_reads_short_slices(a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..=8)) {
            let mut padded = [0u8; 8];
            padded[..a.len()].copy_from_slice(&a);
            proptest::prop_assert_eq!(word(&a), u64::from_le_bytes(padded));
        }

        #[test]
        fn lower_word_matches_bytewise(w in proptest::prelude::any::<u64>()) {
            let want = u64::from_le_bytes(w.to_le_bytes().map(|b| b.to_ascii_lowercase()));
            proptest::prop_assert_eq!(lower_word(w), want);
        }

        #[test]
        fn eq_ignore_case_matches_std(a in bytes(), b in bytes(), flip in 0usize..40) {
            proptest::prop_assert_eq!(eq_ignore_case(&a, &b), a.eq_ignore_ascii_case(&b));
            // Equal up to case, and one byte changed: both must agree on those too.
            let mut c = a.to_ascii_uppercase();
            proptest::prop_assert!(eq_ignore_case(&a, &c));
            if let Some(x) = c.get_mut(flip) {
                *x ^= 0x01;
                proptest::prop_assert_eq!(eq_ignore_case(&a, &c), a.eq_ignore_ascii_case(&c));
            }
        }

        #[test]
        fn eq_literal_matches_std(a in bytes(), upper in proptest::prelude::any::<bool>()) {
            for lit in [&b"received"[..], b"rport", b"expires", b"q", b"+sip.instance", b"reg-id", b""] {
                let name = if upper { lit.to_ascii_uppercase() } else { a.clone() };
                proptest::prop_assert_eq!(eq_literal(&name, lit), name.eq_ignore_ascii_case(lit));
            }
        }

        #[test]
        fn make_lowercase_matches_std(a in bytes()) {
            let mut ours = a.clone();
            make_lowercase(&mut ours);
            proptest::prop_assert_eq!(ours, a.to_ascii_lowercase());
        }
    }

    #[test]
    fn opaque_is_the_identity() {
        for x in [0, 1, 0x2020_2020_2020_2020, u64::MAX] {
            assert_eq!(opaque(x), x);
        }
        assert_eq!(splat_u64(b';'), 0x3b3b_3b3b_3b3b_3b3b);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn splat_matches_set1() {
        use std::arch::x86_64::{__m128i, _mm_set1_epi8, _mm_storeu_si128};
        let bytes = |v: __m128i| {
            let mut out = [0u8; 16];
            // SAFETY: SSE2 baseline; `out` is 16 writable bytes.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), v) };
            out
        };
        for b in [0u8, b'\n', b'"', 0x7f, 0x80, 0xff] {
            // SAFETY: SSE2 baseline.
            assert_eq!(bytes(splat(b)), bytes(unsafe { _mm_set1_epi8(b as i8) }));
        }
    }
}
