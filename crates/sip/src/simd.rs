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

#[cfg(test)]
mod tests {
    use super::*;

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
