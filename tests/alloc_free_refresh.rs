//! The refresh path (parse + handle + response) performs zero heap allocations once warm.
//! A counting global allocator wraps the system allocator for this test binary only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use corereg::registrar::{Now, Outcome, Registrar, RegistrarConfig};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds GlobalAlloc's
// contract; counting touches only an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[path = "support/sample_register.rs"]
mod sample;
use sample::sample_register as register;

#[test]
fn refresh_path_allocates_nothing() {
    let source: SocketAddr = "192.0.2.7:5060".parse().expect("addr");
    let mut reg = Registrar::new(RegistrarConfig::default(), Now::from_secs(1_700_000_000));
    let mut out = Vec::with_capacity(2048);
    let users = 64u32;
    for u in 0..users {
        let r = reg.handle(
            &register(u, 1),
            source,
            Now::from_secs(1_700_000_000),
            &mut out,
        );
        assert!(matches!(r, Outcome::Reply { status: 200, .. }), "{r:?}");
    }
    // Warm-up refresh (the date cache reformats, scratch buffers reach their size).
    let warm: Vec<Vec<u8>> = (0..users).map(|u| register(u, 2)).collect();
    for (u, req) in warm.iter().enumerate() {
        let r = reg.handle(
            req,
            source,
            Now::from_secs(1_700_000_001 + u as u64 % 2),
            &mut out,
        );
        assert!(matches!(r, Outcome::Reply { status: 200, .. }), "{r:?}");
    }
    let refreshes: Vec<Vec<u8>> = (0..users).map(|u| register(u, 3)).collect();
    let before = ALLOCS.load(Ordering::SeqCst);
    for req in &refreshes {
        let r = reg.handle(req, source, Now::from_secs(1_700_000_002), &mut out);
        assert!(
            matches!(
                r,
                Outcome::Reply {
                    status: 200,
                    bindings_changed: true
                }
            ),
            "{r:?}"
        );
    }
    let after = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(after - before, 0, "heap allocations on {users} refreshes");
    assert_eq!(reg.binding_count(), users as usize);
}
