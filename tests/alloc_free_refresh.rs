//! The refresh path (parse + handle + response) performs zero heap allocations once warm.
//! A counting global allocator wraps the system allocator for this test binary only.

use std::net::SocketAddr;

use corereg::registrar::{Now, Outcome, Registrar, RegistrarConfig};

#[path = "support/counting_alloc.rs"]
mod counting;
use counting::allocations;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

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
    let before = allocations();
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
    let after = allocations();
    assert_eq!(after - before, 0, "heap allocations on {users} refreshes");
    assert_eq!(reg.binding_count(), users as usize);
}
