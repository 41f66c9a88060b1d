//! The expiry task: drives the registrar's timer wheel from the executor's clock.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::changes::ChangeFeed;
use super::now;
use crate::registrar::Registrar;

/// Longest sleep between two looks at `next_timeout`: a binding registered meanwhile with an earlier
/// deadline is then expired at most this late (the wheel ticks in whole seconds anyway).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Shortest sleep, so that a core reporting a deadline already past (but not expiring it) cannot spin the loop.
const MIN_SLEEP: Duration = Duration::from_millis(5);

/// Runs until its task is cancelled.
pub async fn expiry_loop(registrar: Rc<RefCell<Registrar>>, feed: Rc<RefCell<ChangeFeed>>) {
    loop {
        let next_s = registrar.borrow().next_timeout();
        let now_ms = now().unix_ms;
        let wait = match next_s {
            Some(due_s) => Duration::from_millis(due_s.saturating_mul(1000).saturating_sub(now_ms)),
            None => MAX_SLEEP,
        };
        glommio::timer::sleep(wait.clamp(MIN_SLEEP, MAX_SLEEP)).await;
        // Bounded batches; yield between them so replies keep flowing when many bindings expire together.
        loop {
            let more = {
                let mut registrar = registrar.borrow_mut();
                let more = registrar.handle_timeout(now());
                feed.borrow_mut().publish(&mut registrar);
                more
            };
            if !more {
                break;
            }
            glommio::executor().yield_task_queue_now().await;
        }
    }
}
