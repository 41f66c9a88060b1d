//! The executors' sleep barrier (vendor/README.md): a shard going to sleep must not interrupt the other
//! shards' CPUs. Upstream glommio registers the process for `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`
//! when an executor starts and issues one before every sleep; the kernel refuses that command to a process
//! that never registered, so after executors have started and slept the command must still be refused.
//!
//! Its own test binary: the registration is per process, and no other test may start one first.

use std::time::Duration;

use glommio::LocalExecutorBuilder;

const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;

fn membarrier(cmd: libc::c_int) -> (libc::c_long, i32) {
    // SAFETY: membarrier takes two integers and touches no memory of the caller.
    let ret = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_int) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    (ret, errno)
}

#[test]
fn sleeping_executors_never_register_for_expedited_membarriers() {
    let (supported, _) = membarrier(MEMBARRIER_CMD_QUERY);
    assert!(
        supported >= 0 && supported & libc::c_long::from(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0,
        "this kernel has no private expedited membarrier (query returned {supported}): the check means nothing here"
    );

    // Two executors, as two shards, each sleeping on a timer several times (every sleep parks the reactor).
    let shards: Vec<_> = (0..2)
        .map(|i| {
            LocalExecutorBuilder::default()
                .name(&format!("barrier-test-{i}"))
                .spawn(|| async {
                    for _ in 0..5 {
                        glommio::timer::sleep(Duration::from_millis(2)).await;
                    }
                })
                .expect("executor starts (is `ulimit -l` at least 512 KiB per executor?)")
        })
        .collect();
    for shard in shards {
        shard.join().expect("executor runs");
    }

    let (ret, errno) = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    assert_eq!(
        (ret, errno),
        (-1, libc::EPERM),
        "the process is registered for expedited membarriers: executors interrupt each other's CPUs on every sleep"
    );
}
