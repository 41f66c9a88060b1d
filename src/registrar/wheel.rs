//! Hashed timer wheel for binding expiry: O(1) schedule, re-arm and cancel, 1 s resolution.
//!
//! CONTRACT (used by the registrar; keep these names and meanings):
//! - Timers are identified by dense `u32` ids (the binding arena's slot numbers); the wheel keeps its own
//!   intrusive links per id (`Vec` indexed by id, grown on demand), so it needs nothing from the caller.
//! - `deadline_s` is an absolute time in whole seconds (the registrar uses Unix seconds). A timer is due
//!   when `now_s >= deadline_s`.
//! - `advance(now_s, out, max)` appends due ids (each exactly once) to `out`, at most `max` of them, and
//!   returns true when more due ids remain (the caller yields and calls again). Ids whose deadline is
//!   far beyond the wheel's span are kept in an overflow level and cascade in when their turn comes.
//! - `next_deadline()` returns the earliest armed deadline (exact, or earlier — never later), or None.
//! - Scheduling an already armed id re-arms it; cancelling an unarmed id is a no-op.

#[derive(Debug)]
pub struct TimerWheel {
    _p: (),
}

impl TimerWheel {
    /// A wheel whose current time is `now_s`.
    pub fn new(_now_s: u64) -> Self {
        todo!()
    }
    pub fn schedule(&mut self, _id: u32, _deadline_s: u64) {
        todo!()
    }
    pub fn cancel(&mut self, _id: u32) {
        todo!()
    }
    pub fn is_armed(&self, _id: u32) -> bool {
        todo!()
    }
    #[must_use]
    pub fn advance(&mut self, _now_s: u64, _out: &mut Vec<u32>, _max: usize) -> bool {
        todo!()
    }
    pub fn next_deadline(&self) -> Option<u64> {
        todo!()
    }
    /// Number of armed timers.
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
