//! Handing requests to their owner allocates nothing per message once warm: a turn's datagrams are copied
//! into a batch taken from the sender's pool of spares, and the owner returns the emptied batch to it.
//! A counting global allocator wraps the system allocator for this test binary only.

use std::net::SocketAddr;

use corereg::shard::mesh;

#[path = "support/counting_alloc.rs"]
mod counting;
use counting::allocations;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

#[path = "support/sample_register.rs"]
mod sample;
use sample::sample_register as register;

#[test]
fn handing_over_and_applying_batches_allocates_nothing_once_warm() {
    let mut links = mesh::mesh(3, 1024).expect("mesh").into_iter();
    let (mut out0, _in0) = links.next().expect("shard 0").split();
    let (_out1, in1) = links.next().expect("shard 1").split();
    let (_out2, in2) = links.next().expect("shard 2").split();
    let source: SocketAddr = "192.0.2.7:5060".parse().expect("addr");
    let requests: Vec<Vec<u8>> = (0..32).map(|u| register(u, 1)).collect();
    let turn = |out0: &mut mesh::Outbound| {
        // One turn: 32 datagrams for two owners, handed over at its end, then applied and returned.
        for (i, request) in requests.iter().enumerate() {
            out0.offer(1 + i % 2, request, source).expect("room");
        }
        let flushed = out0.flush(|_, _| panic!("the owners are open: nothing comes back"));
        assert_eq!((flushed.batches, flushed.datagrams), (2, 32));
        for inbox in [&in1, &in2] {
            let batch = inbox.try_take().expect("a batch");
            assert_eq!(batch.iter().count(), 16);
            inbox.recycle(batch);
        }
    };
    // Warm-up: the first turns allocate the batches, which then live in the pool.
    for _ in 0..4 {
        turn(&mut out0);
    }
    let before = allocations();
    for _ in 0..1000 {
        turn(&mut out0);
    }
    let allocations = allocations() - before;
    assert_eq!(
        allocations, 0,
        "32,000 handed-over requests allocated {allocations} times"
    );
}
