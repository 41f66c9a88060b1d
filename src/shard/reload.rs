//! Credentials reload (SIGHUP) without locks on the REGISTER path.
//!
//! The signal thread loads the new users file and [`CredentialsFeed::publish`]es it: the store goes into a
//! mutex-protected slot and a generation counter is bumped. Each registrar shard runs [`credentials_loop`],
//! which compares the generation (one atomic load) every [`RELOAD_POLL`] and, when it moved, takes the new
//! `Arc<CredentialStore>` (the only time it touches the mutex, for an `Arc` clone) and hands it to its
//! authenticator. Requests never wait: a REGISTER sees either the old store or the new one, never a mix, and
//! bindings, nonces and brute-force counters stay as they were.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::auth::credentials::CredentialStore;
use crate::registrar::Registrar;

/// How often a shard looks for new credentials: a reload is in force on every shard within this long.
pub const RELOAD_POLL: Duration = Duration::from_millis(200);

/// The credentials every shard should use, and a generation number that changes with them.
#[derive(Clone, Debug)]
pub struct CredentialsFeed {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    generation: AtomicU64,
    store: Mutex<Arc<CredentialStore>>,
}

impl CredentialsFeed {
    /// A feed at generation 0 holding the credentials loaded at start-up.
    pub fn new(store: Arc<CredentialStore>) -> Self {
        CredentialsFeed {
            inner: Arc::new(Inner {
                generation: AtomicU64::new(0),
                store: Mutex::new(store),
            }),
        }
    }

    /// Makes `store` the credentials of every shard (each picks it up within [`RELOAD_POLL`]); returns the
    /// new generation.
    pub fn publish(&self, store: Arc<CredentialStore>) -> u64 {
        // A panic while holding this lock could only come from an Arc clone or assignment; the slot is
        // always a complete Arc, so a poisoned lock still holds a usable value.
        let mut slot = self
            .inner
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = store;
        // Bumped under the lock, so [`CredentialsFeed::current`] always returns a matching pair.
        self.inner.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The current credentials and their generation.
    pub fn current(&self) -> (u64, Arc<CredentialStore>) {
        let store = self
            .inner
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Read under the lock so that the pair is consistent with a concurrent publish.
        (self.generation(), store.clone())
    }
}

/// Runs until its task is cancelled: applies every new generation of `feed` to the shard's authenticator.
pub async fn credentials_loop(
    shard: usize,
    registrar: Rc<RefCell<Registrar>>,
    feed: CredentialsFeed,
) {
    let mut seen = feed.generation();
    loop {
        glommio::timer::sleep(RELOAD_POLL).await;
        if feed.generation() == seen {
            continue;
        }
        let (generation, store) = feed.current();
        let users = store.len();
        if let Some(auth) = registrar.borrow_mut().authenticator_mut() {
            auth.set_credentials(store);
        }
        seen = generation;
        tracing::debug!(shard, generation, users, "credentials updated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_bumps_the_generation_and_swaps_the_store() {
        let feed = CredentialsFeed::new(Arc::new(CredentialStore::empty()));
        assert_eq!(feed.generation(), 0);
        let store =
            CredentialStore::from_csv_str("username,realm,password\na,r,p\n", None).expect("csv");
        assert_eq!(feed.clone().publish(Arc::new(store)), 1);
        let (generation, current) = feed.current();
        assert_eq!((generation, current.len()), (1, 1));
    }
}
