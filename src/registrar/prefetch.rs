//! Read-prefetch hints: the one place of the registrar with `unsafe` code (the x86_64 intrinsic).
//!
//! The AoR lookup runs in steps (see `BindingStore::prefetch_aor`): each step computes the address of the
//! next cache line it will need and asks for it here, so that the load overlaps with other work.

/// Read-prefetch of the cache line holding `value`.
#[inline(always)]
pub fn prefetch_read<T: ?Sized>(value: &T) {
    prefetch_ptr((value as *const T).cast::<u8>());
}

/// Read-prefetch of the cache line at `p`, which need not point to anything: a prefetch never faults, so
/// an address computed without reading memory (an arena slot, see `arena.rs`) can be given.
#[inline(always)]
pub fn prefetch_ptr<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching has no architectural effect: it never faults, reads nothing into the program and
    // writes nothing, whatever the address. SSE is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
