//! Byte-scanning kernels: the SSE2 and SWAR code of the parser and the response writer, each beside the
//! general code it must agree with.
//!
//! - constants for SSE2 and SWAR code built in the instruction stream ([`opaque`], `splat`);
//! - the LF positions of 64 bytes (framing), the Request-URI byte check (8 bytes a step), the span of URI
//!   text (16 bytes a step), and the bytes of a short header value equal to one of three (16 at a time)
//!   or to the bytes a top Via's annotation needs (64 at a time).
//!
//! On x86_64 the kernels use SSE2, part of the baseline, so they inline into their callers with no
//! run-time dispatch. Elsewhere the byte-by-byte twins in `scalar` stand in; the tests run those twins
//! on x86_64 too and check each kernel against its twin (or against the general function it replaces).
//!
//! # Constants in the instruction stream
//!
//! LLVM loads a vector constant (`_mm_set1_epi8(b',')`, or the vector it makes of a SWAR loop) from a
//! constant pool in the read-only data, and scatters those 16-byte constants over it: a REGISTER that starts
//! with cold caches fetched a data cache line for almost every one (the URI check alone used five, the To
//! tag's hex digits three). Built from a 64-bit immediate instead, a constant is part of the code, which the
//! request path fetches anyway. [`opaque`] is what stops LLVM from folding it back into a pool load: it
//! cannot see through an `asm!` block, so the value is not a known constant any more.

use crate::charclass::URI_TEXT;
use crate::header::span;

// ---------------------------------------------------------------------------------------------
// Constants in the instruction stream

/// `x`, unknown to the optimiser (an empty `asm!` block that "may change" its register). Costs nothing
/// at run time; pure, so it can still be hoisted out of loops and merged with an identical one.
#[inline(always)]
pub fn opaque(x: u64) -> u64 {
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

// ---------------------------------------------------------------------------------------------
// Framing: where the lines end

/// Bit `i` set when `buf[from + i]` is LF, for `i < min(64, buf.len() - from)`; 0 when `from` is at or
/// past the end.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn newline_mask(buf: &[u8], from: usize) -> u64 {
    let Some(s) = buf.get(from..).filter(|s| !s.is_empty()) else {
        return 0;
    };
    if let Some(block) = s.first_chunk::<64>() {
        return lf_mask64(block);
    }
    // The last block: with 64 bytes or more in the buffer, read the final 64 bytes (overlapping the block
    // before) and shift off the ones before `from`, instead of copying the tail (a memcpy call).
    // `start < from` because fewer than 64 bytes follow `from`, so the shift is 1..=63.
    if let Some(start) = buf.len().checked_sub(64) {
        if let Some(block) = buf[start..].first_chunk::<64>() {
            return lf_mask64(block) >> (from - start);
        }
    }
    let mut tail = [0u8; 64];
    tail[..s.len()].copy_from_slice(s);
    lf_mask64(&tail)
}

/// Bit `i` set when `block[i]` is LF.
#[cfg(target_arch = "x86_64")]
#[inline]
fn lf_mask64(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8};
    let p = block.as_ptr().cast::<__m128i>();
    // SAFETY: SSE2 is part of the x86_64 baseline; each unaligned load reads bytes 16k..16k+16 of the
    // 64-byte `block`, in bounds.
    unsafe {
        let lf = splat(b'\n');
        let m = |k: usize| -> u64 {
            u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128(p.add(k)), lf)) as u16)
        };
        m(0) | m(1) << 16 | m(2) << 32 | m(3) << 48
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) use scalar::newline_mask;

// ---------------------------------------------------------------------------------------------
// The Request-URI check (SWAR) and the span of URI text (SSE2)

/// Whether `s` holds a byte `<= SP` or DEL (not allowed in a Request-URI), 8 bytes per step.
#[inline]
pub(crate) fn has_space_or_ctl(s: &[u8]) -> bool {
    if s.len() < 8 {
        return s.iter().any(|&b| b <= b' ' || b == 0x7f);
    }
    let mut i = 0;
    while let Some(w) = s.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        if word_has_space_or_ctl(u64::from_le_bytes(*w)) {
            return true;
        }
        i += 8;
    }
    // The last (overlapping) word covers the tail; `len >= 8` so it exists.
    s.last_chunk::<8>()
        .is_some_and(|w| word_has_space_or_ctl(u64::from_le_bytes(*w)))
}

/// SWAR test (exact for "any byte"): a byte below 0x21, or a byte equal to 0x7f. `x - 0x21..` borrows into
/// the high bit of a byte only when that byte (or one below it, itself a hit) is below 0x21, and `& !x`
/// drops bytes >= 0x80; the DEL test is the same zero-byte test on `x ^ 0x7f..`.
#[inline(always)]
fn word_has_space_or_ctl(x: u64) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let below = x.wrapping_sub(ONES * 0x21) & !x & HIGH;
    let d = x ^ (ONES * 0x7f);
    let del = d.wrapping_sub(ONES) & !d & HIGH;
    (below | del) != 0
}

/// `span(s, URI_TEXT)`, 16 bytes per step: URIs are the longest runs a REGISTER scans (From, To and
/// Contact), and this class is simple enough for SSE2 (baseline on x86_64, so it inlines): a byte is in it
/// when it is above 0x20 (unsigned, so bytes >= 0x80 are in) and none of DEL, `<`, `>`, `"`.
#[inline]
pub(crate) fn span_uri_text(s: &[u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        };
        let mut i = 0;
        while let Some(block) = s.get(i..i + 16) {
            // SAFETY: SSE2 is part of the x86_64 baseline; `block` is 16 readable bytes (unaligned load).
            let outside = unsafe {
                let x = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
                let is = |c: u8| _mm_cmpeq_epi8(x, splat(c));
                // max(x, 0x21) == x  <=>  x >= 0x21 (unsigned): the complement is a control byte or SP.
                let visible = _mm_cmpeq_epi8(_mm_max_epu8(x, splat(0x21)), x);
                let excluded = _mm_or_si128(
                    _mm_or_si128(is(0x7f), is(b'<')),
                    _mm_or_si128(is(b'>'), is(b'"')),
                );
                !_mm_movemask_epi8(visible) & 0xffff | _mm_movemask_epi8(excluded)
            };
            if outside != 0 {
                return i + outside.trailing_zeros() as usize;
            }
            i += 16;
        }
        i + span(&s[i..], URI_TEXT)
    }
    #[cfg(not(target_arch = "x86_64"))]
    span(s, URI_TEXT)
}

// ---------------------------------------------------------------------------------------------
// Short header values: bytes of a set, the top Via's bytes

/// Bit sets over a 64-byte block: `,` `"` `<` (end of the via-parm or general rules), `;`, `v`/`V`.
pub(crate) struct ViaMasks {
    pub(crate) special: u64,
    pub(crate) semi: u64,
    pub(crate) v: u64,
}

#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn via_masks(block: &[u8; 64]) -> ViaMasks {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
    };
    let p = block.as_ptr().cast::<__m128i>();
    let mut m = ViaMasks {
        special: 0,
        semi: 0,
        v: 0,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline; each unaligned load reads bytes 16k..16k+16 of the
    // 64-byte `block`, in bounds.
    unsafe {
        let (comma, quote, angle, semi) = (splat(b','), splat(b'"'), splat(b'<'), splat(b';'));
        let (case, v) = (splat(0x20), splat(b'v'));
        for k in 0..4 {
            let x = _mm_loadu_si128(p.add(k));
            let bits = |eq: __m128i| u64::from(_mm_movemask_epi8(eq) as u16) << (16 * k);
            let special = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(x, comma), _mm_cmpeq_epi8(x, quote)),
                _mm_cmpeq_epi8(x, angle),
            );
            m.special |= bits(special);
            m.semi |= bits(_mm_cmpeq_epi8(x, semi));
            // `b | 0x20 == b'v'` exactly for `v` and `V`.
            m.v |= bits(_mm_cmpeq_epi8(_mm_or_si128(x, case), v));
        }
    }
    m
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) use scalar::via_masks;

/// Offsets of the bytes of a slice that equal one of three given bytes, in order. Short header values
/// are compared 16 bytes at a time: cheaper than a `memchr` call per hit (each call costs ~40
/// instructions of dispatch and setup before it looks at a byte) or a loop over every byte.
pub(crate) struct Hits<'a> {
    text: &'a [u8],
    set: [u8; 3],
    /// Offset of the block `mask` describes.
    base: usize,
    /// Hits of the current block not yet returned (bit i: `text[base + i]`).
    mask: u32,
}

impl<'a> Hits<'a> {
    #[inline]
    pub(crate) fn new(text: &'a [u8], set: [u8; 3]) -> Self {
        Hits {
            text,
            set,
            base: 0,
            mask: block_mask(text, 0, set),
        }
    }

    #[inline]
    pub(crate) fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.base += 16;
            if self.base >= self.text.len() {
                return None;
            }
            self.mask = block_mask(self.text, self.base, self.set);
        }
        let i = self.base + self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(i)
    }
}

/// Bit i set when `text[at + i]` is in `set`, for i < 16 and `at + i < text.len()`.
#[inline]
fn block_mask(text: &[u8], at: usize, set: [u8; 3]) -> u32 {
    let rest = text.get(at..).unwrap_or_default();
    if let Some(block) = rest.first_chunk::<16>() {
        return eq_mask16(block, set);
    }
    if rest.is_empty() {
        return 0;
    }
    // Fewer than 16 bytes left: with 16 or more in `text`, compare its last 16 (overlapping the block
    // before) and shift off the 1..=15 before `at`, instead of copying the tail.
    if let Some(block) = text.last_chunk::<16>() {
        return eq_mask16(block, set) >> (16 - rest.len());
    }
    let mut tail = [0u8; 16];
    tail[..rest.len()].copy_from_slice(rest);
    eq_mask16(&tail, set) & ((1u32 << rest.len()) - 1)
}

/// Bit i set when `block[i]` is in `set`.
#[cfg(target_arch = "x86_64")]
#[inline]
fn eq_mask16(block: &[u8; 16], set: [u8; 3]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline; the unaligned load reads the 16 bytes of `block`.
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        let eq = |b: u8| _mm_cmpeq_epi8(v, splat(b));
        let any = _mm_or_si128(_mm_or_si128(eq(set[0]), eq(set[1])), eq(set[2]));
        _mm_movemask_epi8(any) as u32 & 0xffff
    }
}

#[cfg(not(target_arch = "x86_64"))]
use scalar::eq_mask16;

/// The kernels byte by byte: what runs where SSE2 is not there, and what the tests hold the SSE2 code to.
#[cfg(any(test, not(target_arch = "x86_64")))]
mod scalar {
    /// Bit `i` set when `buf[from + i]` is LF, for `i < min(64, buf.len() - from)`; 0 when `from` is at or
    /// past the end.
    #[inline]
    pub(crate) fn newline_mask(buf: &[u8], from: usize) -> u64 {
        buf.get(from..).map_or(0, |s| {
            s.iter()
                .take(64)
                .enumerate()
                .fold(0, |m, (i, &b)| m | (u64::from(b == b'\n') << i))
        })
    }

    /// Bit sets over a 64-byte block, byte by byte.
    pub(crate) fn via_masks(block: &[u8; 64]) -> super::ViaMasks {
        let mut m = super::ViaMasks {
            special: 0,
            semi: 0,
            v: 0,
        };
        for (i, &b) in block.iter().enumerate() {
            m.special |= u64::from(matches!(b, b',' | b'"' | b'<')) << i;
            m.semi |= u64::from(b == b';') << i;
            m.v |= u64::from(b | 0x20 == b'v') << i;
        }
        m
    }

    /// Bit i set when `block[i]` is in `set`.
    #[inline]
    pub(crate) fn eq_mask16(block: &[u8; 16], set: [u8; 3]) -> u32 {
        block
            .iter()
            .enumerate()
            .fold(0, |m, (i, b)| m | (u32::from(set.contains(b)) << i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    fn want_any(s: &[u8]) -> bool {
        s.iter().any(|&b| b <= b' ' || b == 0x7f)
    }

    #[test]
    fn newline_mask_matches_a_byte_loop_at_every_offset() {
        for len in 0..200usize {
            let buf: Vec<u8> = (0..len)
                .map(|i| if (i * 7 + len) % 5 == 0 { b'\n' } else { b'a' })
                .collect();
            for from in 0..=len + 1 {
                let want = buf.get(from..).map_or(0, |s| {
                    s.iter()
                        .take(64)
                        .enumerate()
                        .fold(0u64, |m, (i, &b)| m | (u64::from(b == b'\n') << i))
                });
                assert_eq!(newline_mask(&buf, from), want, "len {len} from {from}");
                assert_eq!(
                    scalar::newline_mask(&buf, from),
                    want,
                    "len {len} from {from}"
                );
            }
        }
    }

    /// Bytes the masks look for, their case twins and neighbours, and anything.
    fn scan_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(b",\"<;vV\n\r aV;".to_vec()),
                any::<u8>(),
            ],
            0..max,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        #[test]
        fn swar_uri_check_agrees_with_byte_loop(s in proptest::collection::vec(any::<u8>(), 0..40)) {
            let want = s.iter().any(|&b| b <= b' ' || b == 0x7f);
            prop_assert_eq!(has_space_or_ctl(&s), want);
            for k in 0..s.len() {
                prop_assert_eq!(has_space_or_ctl(&s[k..]), want_any(&s[k..]));
            }
        }

        /// The SSE2 URI-text span agrees with the table span at every length and stop position.
        #[test]
        fn span_uri_text_matches_the_table(
            prefix in 0usize..40,
            tail in proptest::collection::vec(proptest::sample::select(vec![
                b'a', b'a', b'a', b'~', b'!', 0x21, 0x20, 0x00, b'\t', 0x7f, 0x80, 0xff, b'<', b'>', b'"',
            ]), 0..40)
        ) {
            let mut s = vec![b'a'; prefix];
            s.extend_from_slice(&tail);
            prop_assert_eq!(span_uri_text(&s), span(&s, URI_TEXT));
        }

        /// The 64-byte masks of a top Via agree with the byte loop.
        #[test]
        fn via_masks_agree_with_byte_loop(bytes in scan_bytes(65)) {
            let mut block = [0u8; 64];
            let n = bytes.len().min(64);
            block[..n].copy_from_slice(&bytes[..n]);
            let (fast, slow) = (via_masks(&block), scalar::via_masks(&block));
            prop_assert_eq!((fast.special, fast.semi, fast.v), (slow.special, slow.semi, slow.v));
        }

        /// The hits of three bytes, 16 at a time, are the matching offsets in order.
        #[test]
        fn hits_agree_with_byte_loop(text in scan_bytes(80), set in proptest::sample::subsequence(b",\"<;vV\n".to_vec(), 1..=3)) {
            let set = [set[0], set[set.len() / 2], set[set.len() - 1]];
            let mut block = [0u8; 16];
            let n = text.len().min(16);
            block[..n].copy_from_slice(&text[..n]);
            prop_assert_eq!(eq_mask16(&block, set), scalar::eq_mask16(&block, set));
            let mut hits = Hits::new(&text, set);
            let found: Vec<usize> = std::iter::from_fn(|| hits.next()).collect();
            let want: Vec<usize> = (0..text.len()).filter(|&i| set.contains(&text[i])).collect();
            prop_assert_eq!(found, want);
        }
    }
}
