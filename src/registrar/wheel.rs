//! Hashed timer wheel for binding expiry: O(1) schedule, re-arm and cancel, 1 s resolution.
//!
//! # Use
//! - [`TimerWheel::schedule`] arms timer `id` for `deadline_s`, an absolute time in whole seconds (the
//!   registrar uses Unix seconds); scheduling an armed id re-arms it. [`TimerWheel::cancel`] disarms it
//!   (an unarmed id: nothing happens). Ids are dense `u32`s (the registrar uses its binding arena's slot
//!   numbers): the wheel keeps its own intrusive links per id, in a `Vec` indexed by id and grown on
//!   demand, so it needs nothing from the caller.
//! - A timer is due when `now_s >= deadline_s`. [`TimerWheel::advance`]`(now_s, out, max)` appends due ids
//!   to `out`, each exactly once and at most `max` of them, and returns true while more are due: the caller
//!   yields to other work, then calls again. Ids whose deadline lies far beyond the wheel's span wait in an
//!   overflow level and cascade in when their turn comes.
//! - [`TimerWheel::next_deadline`] is the earliest armed deadline (exact, or earlier, never later), or None:
//!   when to call `advance` next.
//!
//! # Layout
//! Two levels of [`SLOTS`] slots: level 0 slots are 1 s wide (span 4096 s ≈ 68 min), level 1 slots are
//! 4096 s wide (span 2^24 s ≈ 194 days). Deadlines beyond level 1's current rotation sit in an unsorted
//! overflow list that is rescanned once per level-1 rotation (in practice never: the registrar's
//! maximum expiry is days). A timer's level is chosen by the highest bit in which its deadline differs
//! from the wheel's cursor (the scheme of Linux and tokio), so every level-0 timer lies in the cursor's
//! level-0 rotation and every level-1 timer in its level-1 rotation; nothing ever wraps around.
//!
//! Each slot is an intrusive doubly-linked list threaded through `nodes[id]` (16 bytes per id). A list
//! head is recognised by `prev = HEAD_BIT | list`, which lets `cancel` unlink in O(1) without knowing
//! the slot. An occupancy bitset per level, with a one-word summary over its 64 words, finds the next
//! non-empty slot in two `trailing_zeros`.
//!
//! # Time
//! The wheel keeps its own monotonic clock (`now_s`, the latest time ever passed to `advance`): a clock
//! stepped back is treated as no time passing. A cursor (`cur_s`) marks the first second whose level-0
//! slot has not been expired yet; `advance` moves it forward event by event (jumping over empty slots
//! via the bitsets), so a jump of hours or months costs work proportional to the non-empty slots, not
//! to the seconds skipped, and never skips a due timer. Work per call is bounded: at most `max` ids
//! returned and at most `max(max * CASCADE_MOVES_PER_ID, MIN_CASCADE_MOVES)` timers moved between
//! levels, because one level-1 slot can hold every binding registered within 68 minutes.
//!
//! Times (both `now_s` and deadlines) are saturated at [`MAX_TIME_S`] (~146 billion years) so that
//! cursor arithmetic cannot overflow; only deadlines above that limit are affected (they become due at
//! `MAX_TIME_S`).

use std::collections::TryReserveError;

/// log2 of the slots per level.
const LEVEL_BITS: u32 = 12;
/// Slots per level (4096).
pub const SLOTS: usize = 1 << LEVEL_BITS;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Seconds covered by one full level-1 rotation, as a bit count (2^24 s).
const SPAN_BITS: u32 = 2 * LEVEL_BITS;
const SPAN_MASK: u64 = (1 << SPAN_BITS) - 1;
/// Occupancy words per level; the summary word has one bit per occupancy word.
const WORDS: usize = SLOTS / 64;
const _: () = assert!(
    WORDS <= 64,
    "the one-word summary covers at most 64 occupancy words"
);

// List indices into `heads`: level-0 slots, level-1 slots, then three special lists.
const L0_BASE: u32 = 0;
const L1_BASE: u32 = SLOTS as u32;
/// Deadlines beyond level 1's current rotation.
const OVERFLOW: u32 = 2 * SLOTS as u32;
/// The overflow list detached for rescanning at a rotation boundary (drained in bounded steps).
const RESCAN: u32 = OVERFLOW + 1;
/// Timers already due (scheduled with a deadline before the cursor), returned first by `advance`.
const DUE: u32 = OVERFLOW + 2;
const LISTS: usize = DUE as usize + 1;

/// `next` of a list tail.
const NIL: u32 = u32::MAX;
/// Set in `prev` of a list head; the low bits name the list.
const HEAD_BIT: u32 = 1 << 31;
/// `prev` of an unarmed id. It has `HEAD_BIT` set but names no list (`LISTS` is far below 2^31 - 1).
const UNARMED: u32 = u32::MAX;
const _: () = assert!(LISTS < (UNARMED & !HEAD_BIT) as usize);

/// Ids must be below this: a link stores an id in 31 bits (the top bit marks a list head).
pub const MAX_TIMER_ID: u32 = HEAD_BIT - 1;
/// Times and deadlines are saturated here so `cur_s = now_s + 1` and rotation arithmetic never overflow.
pub const MAX_TIME_S: u64 = u64::MAX >> 2;

/// Cascade moves allowed per id the caller lets `advance` return.
const CASCADE_MOVES_PER_ID: usize = 4;
/// Cascade moves allowed per `advance` call whatever `max` is (so `max = 1` still makes progress).
const MIN_CASCADE_MOVES: usize = 256;

/// Why `try_schedule` refused an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WheelError {
    #[error("timer id {0} is not below MAX_TIMER_ID")]
    IdTooLarge(u32),
    #[error("cannot grow the timer table to id {0}: {1}")]
    OutOfMemory(u32, TryReserveError),
}

/// Per-id intrusive links. 16 bytes: memory per binding matters at millions of bindings per shard.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Previous id in the list, or `HEAD_BIT | list` for the head, or `UNARMED`.
    prev: u32,
    /// Next id in the list, or `NIL`.
    next: u32,
    deadline_s: u64,
}
const _: () = assert!(std::mem::size_of::<Node>() == 16);

const UNARMED_NODE: Node = Node {
    prev: UNARMED,
    next: NIL,
    deadline_s: 0,
};

/// Which slots of one level are non-empty.
#[derive(Debug)]
struct Occupancy {
    /// Bit `w` set iff `words[w] != 0`.
    summary: u64,
    words: [u64; WORDS],
}

impl Occupancy {
    const EMPTY: Occupancy = Occupancy {
        summary: 0,
        words: [0; WORDS],
    };

    fn set(&mut self, slot: usize) {
        debug_assert!(slot < SLOTS);
        let w = slot / 64;
        self.words[w] |= 1 << (slot % 64);
        self.summary |= 1 << w;
    }

    fn clear(&mut self, slot: usize) {
        debug_assert!(slot < SLOTS);
        let w = slot / 64;
        self.words[w] &= !(1 << (slot % 64));
        if self.words[w] == 0 {
            self.summary &= !(1 << w);
        }
    }

    /// The lowest non-empty slot. All non-empty slots lie at or after the cursor's slot (no wrap), so
    /// the lowest is also the next in time.
    fn first(&self) -> Option<usize> {
        if self.summary == 0 {
            return None;
        }
        let w = self.summary.trailing_zeros() as usize;
        debug_assert!(self.words[w] != 0);
        Some(w * 64 + self.words[w].trailing_zeros() as usize)
    }
}

/// Whether `at_s` is strictly before the best event so far (`Option::is_none_or` needs Rust 1.82).
fn earlier(at_s: u64, best: Option<(u64, Event)>) -> bool {
    match best {
        None => true,
        Some((t, _)) => at_s < t,
    }
}

/// What `advance` must do next, in time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    /// Re-place the detached overflow timers (time: the cursor).
    Rescan,
    /// Detach the overflow list for rescanning (time: the level-1 rotation of its earliest deadline).
    Overflow,
    /// Move a level-1 slot down to level 0 (time: the slot's first second).
    Cascade(usize),
    /// Return a level-0 slot's timers (time: its second).
    Expire(usize),
}

#[derive(Debug)]
pub struct TimerWheel {
    nodes: Vec<Node>,
    /// Head id of every list (`NIL` when empty), indexed by list number.
    heads: Box<[u32]>,
    occupied: [Occupancy; 2],
    /// The wheel's clock: the latest `now_s` seen (monotonic).
    now_s: u64,
    /// First second whose level-0 slot is not yet expired. Invariant: `cur_s <= now_s + 1`, and
    /// `cur_s` is never past the time of any pending event.
    cur_s: u64,
    /// Armed timers.
    armed: usize,
    /// Lower bounds of the deadlines in the unsorted lists (`u64::MAX` when the list is empty); a cancel
    /// does not raise them, which only makes an event or `next_deadline` early, never late.
    overflow_min_s: u64,
    rescan_min_s: u64,
    due_min_s: u64,
}

impl TimerWheel {
    /// A wheel whose current time is `now_s`.
    pub fn new(now_s: u64) -> Self {
        let now_s = now_s.min(MAX_TIME_S);
        TimerWheel {
            nodes: Vec::new(),
            heads: vec![NIL; LISTS].into_boxed_slice(),
            occupied: [Occupancy::EMPTY, Occupancy::EMPTY],
            now_s,
            cur_s: now_s,
            armed: 0,
            overflow_min_s: u64::MAX,
            rescan_min_s: u64::MAX,
            due_min_s: u64::MAX,
        }
    }

    /// A wheel with room for ids below `ids` without growing (the registrar knows its arena size).
    pub fn with_capacity(now_s: u64, ids: usize) -> Self {
        let mut wheel = Self::new(now_s);
        let ids = ids.min(MAX_TIMER_ID as usize);
        wheel.nodes.resize(ids, UNARMED_NODE);
        wheel
    }

    /// A wheel whose id table is reserved for ids below `ids` (address space only: entries are written as
    /// ids are first armed), so arming never reallocates it.
    pub fn with_reserved(now_s: u64, ids: usize) -> Self {
        let mut wheel = Self::new(now_s);
        wheel.nodes.reserve_exact(ids.min(MAX_TIMER_ID as usize));
        wheel
    }

    /// Ids the table holds without reallocating.
    pub fn id_capacity(&self) -> usize {
        self.nodes.capacity()
    }

    /// Arms `id` to fire at `deadline_s`, re-arming it if it is armed. A deadline at or before the wheel's
    /// time is due at the next `advance`. An id at or above [`MAX_TIMER_ID`] (or one the table cannot
    /// grow to) is a caller bug: it is asserted in debug builds and ignored in release builds; use
    /// [`try_schedule`](Self::try_schedule) to handle it.
    pub fn schedule(&mut self, id: u32, deadline_s: u64) {
        let result = self.try_schedule(id, deadline_s);
        debug_assert!(result.is_ok(), "schedule({id}): {result:?}");
    }

    /// [`schedule`](Self::schedule), reporting ids the wheel cannot hold.
    #[must_use = "a refused id is not armed"]
    pub fn try_schedule(&mut self, id: u32, deadline_s: u64) -> Result<(), WheelError> {
        if id >= MAX_TIMER_ID {
            return Err(WheelError::IdTooLarge(id));
        }
        let index = id as usize;
        if index >= self.nodes.len() {
            let additional = index + 1 - self.nodes.len();
            self.nodes
                .try_reserve(additional)
                .map_err(|e| WheelError::OutOfMemory(id, e))?;
            self.nodes.resize(index + 1, UNARMED_NODE);
        }
        if self.nodes[index].prev == UNARMED {
            self.armed += 1;
        } else {
            self.unlink(id);
        }
        self.link(id, deadline_s.min(MAX_TIME_S));
        Ok(())
    }

    /// Disarms `id`; a no-op when it is not armed.
    pub fn cancel(&mut self, id: u32) {
        if self.is_armed(id) {
            self.unlink(id);
            self.armed -= 1;
        }
    }

    pub fn is_armed(&self, id: u32) -> bool {
        self.nodes
            .get(id as usize)
            .is_some_and(|node| node.prev != UNARMED)
    }

    /// The deadline `id` is armed for (after saturation at [`MAX_TIME_S`]).
    pub fn deadline(&self, id: u32) -> Option<u64> {
        self.nodes
            .get(id as usize)
            .filter(|node| node.prev != UNARMED)
            .map(|node| node.deadline_s)
    }

    /// Moves the wheel's clock to `now_s` (an earlier `now_s` counts as no time passing) and appends up
    /// to `max` due ids to `out`, each disarmed and returned once. Returns true when more work is due
    /// now: due ids beyond `max`, or level moves beyond this call's budget (then the next call may
    /// return no id, but every call makes progress and a finite number of calls returns false).
    #[must_use = "true means more timers are due: call again after yielding"]
    pub fn advance(&mut self, now_s: u64, out: &mut Vec<u32>, max: usize) -> bool {
        let now_s = now_s.min(MAX_TIME_S);
        if now_s > self.now_s {
            self.now_s = now_s;
        }
        let move_budget = max
            .saturating_mul(CASCADE_MOVES_PER_ID)
            .max(MIN_CASCADE_MOVES);
        let mut emitted = 0usize;
        let mut moves = 0usize;
        loop {
            if emitted >= max || moves >= move_budget {
                return self.has_due_work();
            }
            if self.heads[DUE as usize] != NIL {
                while emitted < max && self.heads[DUE as usize] != NIL {
                    self.expire_head(DUE, out);
                    emitted += 1;
                }
                continue;
            }
            let Some((at_s, event)) = self.next_event() else {
                self.cur_s = self.now_s + 1;
                return false;
            };
            if at_s > self.now_s {
                // Nothing happens before at_s > now_s, so the cursor may skip to now_s + 1 <= at_s
                // without passing an event.
                self.cur_s = self.now_s + 1;
                return false;
            }
            debug_assert!(at_s >= self.cur_s);
            self.cur_s = at_s;
            match event {
                Event::Rescan => {
                    while moves < move_budget && self.heads[RESCAN as usize] != NIL {
                        // Re-placed relative to the cursor at the rotation boundary: into level 1 or
                        // 0 when its rotation has come, back into overflow otherwise (never RESCAN).
                        self.relink_head(RESCAN);
                        moves += 1;
                    }
                }
                Event::Overflow => {
                    // O(1): detach the whole list; its timers are re-placed under the move budget.
                    debug_assert!(self.heads[RESCAN as usize] == NIL);
                    let head = self.heads[OVERFLOW as usize];
                    self.heads[RESCAN as usize] = head;
                    self.heads[OVERFLOW as usize] = NIL;
                    self.nodes[head as usize].prev = HEAD_BIT | RESCAN;
                    self.rescan_min_s = self.overflow_min_s;
                    self.overflow_min_s = u64::MAX;
                    moves += 1;
                }
                Event::Cascade(slot) => {
                    let list = L1_BASE + slot as u32;
                    while moves < move_budget && self.heads[list as usize] != NIL {
                        // The cursor is at the slot's first second, so every timer in it lands in
                        // level 0 (never back in this list).
                        self.relink_head(list);
                        moves += 1;
                    }
                }
                Event::Expire(slot) => {
                    let list = L0_BASE + slot as u32;
                    while emitted < max && self.heads[list as usize] != NIL {
                        debug_assert_eq!(
                            self.nodes[self.heads[list as usize] as usize].deadline_s,
                            self.cur_s
                        );
                        self.expire_head(list, out);
                        emitted += 1;
                    }
                }
            }
        }
    }

    /// The earliest armed deadline, or an earlier time (a level-1 slot reports its first second; the
    /// unsorted lists report a lower bound), or None when nothing is armed. A value at or before the
    /// wheel's time means `advance` has work now.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut earliest = u64::MAX;
        if self.heads[DUE as usize] != NIL {
            earliest = earliest.min(self.due_min_s);
        }
        if self.heads[RESCAN as usize] != NIL {
            earliest = earliest.min(self.rescan_min_s);
        }
        if self.heads[OVERFLOW as usize] != NIL {
            earliest = earliest.min(self.overflow_min_s);
        }
        if let Some(slot) = self.occupied[1].first() {
            earliest = earliest.min(self.level1_slot_start(slot));
        }
        if let Some(slot) = self.occupied[0].first() {
            earliest = earliest.min(self.level0_slot_time(slot));
        }
        debug_assert_eq!(earliest == u64::MAX, self.armed == 0);
        (self.armed > 0).then_some(earliest)
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.armed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of per-id state (the wheel's fixed part is about 33 KiB more).
    pub fn node_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
    }

    fn has_due_work(&self) -> bool {
        self.heads[DUE as usize] != NIL || self.next_event().is_some_and(|(t, _)| t <= self.now_s)
    }

    /// The earliest pending event and its time (>= `cur_s`); ties go to the higher level, whose
    /// timers must move down before the lower level's slot at the same second is expired.
    fn next_event(&self) -> Option<(u64, Event)> {
        if self.heads[RESCAN as usize] != NIL {
            return Some((self.cur_s, Event::Rescan));
        }
        let mut best: Option<(u64, Event)> = None;
        if self.heads[OVERFLOW as usize] != NIL {
            // overflow_min_s <= every overflow deadline, so its rotation start is no later than the
            // boundary at which any overflow timer must enter level 1.
            let at_s = (self.overflow_min_s & !SPAN_MASK).max(self.cur_s);
            best = Some((at_s, Event::Overflow));
        }
        if let Some(slot) = self.occupied[1].first() {
            let start_s = self.level1_slot_start(slot);
            debug_assert!(start_s >= self.cur_s, "level-1 slot behind the cursor");
            let at_s = start_s.max(self.cur_s);
            if earlier(at_s, best) {
                best = Some((at_s, Event::Cascade(slot)));
            }
        }
        if let Some(slot) = self.occupied[0].first() {
            let time_s = self.level0_slot_time(slot);
            debug_assert!(time_s >= self.cur_s, "level-0 slot behind the cursor");
            let at_s = time_s.max(self.cur_s);
            if earlier(at_s, best) {
                best = Some((at_s, Event::Expire(slot)));
            }
        }
        best
    }

    /// The second a level-0 slot stands for in the cursor's level-0 rotation.
    fn level0_slot_time(&self, slot: usize) -> u64 {
        (self.cur_s & !SLOT_MASK) | slot as u64
    }

    /// The first second of a level-1 slot in the cursor's level-1 rotation.
    fn level1_slot_start(&self, slot: usize) -> u64 {
        (self.cur_s & !SPAN_MASK) | ((slot as u64) << LEVEL_BITS)
    }

    /// The list a deadline belongs in, relative to the cursor.
    fn list_for(&self, deadline_s: u64) -> u32 {
        if deadline_s < self.cur_s {
            return DUE;
        }
        let differing = deadline_s ^ self.cur_s;
        if differing <= SLOT_MASK {
            L0_BASE + (deadline_s & SLOT_MASK) as u32
        } else if differing <= SPAN_MASK {
            L1_BASE + ((deadline_s >> LEVEL_BITS) & SLOT_MASK) as u32
        } else {
            OVERFLOW
        }
    }

    /// Places an unlinked (but counted as armed) id.
    fn link(&mut self, id: u32, deadline_s: u64) {
        debug_assert!(self.nodes[id as usize].prev == UNARMED);
        debug_assert!(deadline_s <= MAX_TIME_S);
        let list = self.list_for(deadline_s);
        match list {
            DUE => self.due_min_s = self.due_min_s.min(deadline_s),
            OVERFLOW => self.overflow_min_s = self.overflow_min_s.min(deadline_s),
            _ => {}
        }
        let head = self.heads[list as usize];
        self.nodes[id as usize] = Node {
            prev: HEAD_BIT | list,
            next: head,
            deadline_s,
        };
        if head == NIL {
            self.mark_occupied(list);
        } else {
            self.nodes[head as usize].prev = id;
        }
        self.heads[list as usize] = id;
    }

    /// Unlinks an armed id and marks it unarmed (the caller keeps `armed` right).
    fn unlink(&mut self, id: u32) {
        let Node { prev, next, .. } = self.nodes[id as usize];
        debug_assert!(prev != UNARMED, "unlink of an unarmed id");
        if prev & HEAD_BIT != 0 {
            let list = prev & !HEAD_BIT;
            debug_assert_eq!(self.heads[list as usize], id);
            self.heads[list as usize] = next;
            if next == NIL {
                self.mark_empty(list);
            } else {
                self.nodes[next as usize].prev = prev;
            }
        } else {
            self.nodes[prev as usize].next = next;
            if next != NIL {
                self.nodes[next as usize].prev = prev;
            }
        }
        self.nodes[id as usize].prev = UNARMED;
        self.nodes[id as usize].next = NIL;
    }

    /// Pops a list's head and returns it to the caller as due.
    fn expire_head(&mut self, list: u32, out: &mut Vec<u32>) {
        let id = self.heads[list as usize];
        debug_assert!(id != NIL);
        self.unlink(id);
        self.armed -= 1;
        out.push(id);
    }

    /// Pops a list's head and places it again relative to the cursor (a cascade step).
    fn relink_head(&mut self, list: u32) {
        let id = self.heads[list as usize];
        debug_assert!(id != NIL);
        let deadline_s = self.nodes[id as usize].deadline_s;
        debug_assert!(
            deadline_s >= self.cur_s,
            "a cascading timer was already due"
        );
        self.unlink(id);
        self.link(id, deadline_s);
        debug_assert!(self.nodes[id as usize].prev != HEAD_BIT | list);
    }

    fn mark_occupied(&mut self, list: u32) {
        if list < L1_BASE {
            self.occupied[0].set((list - L0_BASE) as usize);
        } else if list < OVERFLOW {
            self.occupied[1].set((list - L1_BASE) as usize);
        }
    }

    fn mark_empty(&mut self, list: u32) {
        match list {
            OVERFLOW => self.overflow_min_s = u64::MAX,
            RESCAN => self.rescan_min_s = u64::MAX,
            DUE => self.due_min_s = u64::MAX,
            _ if list < L1_BASE => self.occupied[0].clear((list - L0_BASE) as usize),
            _ => self.occupied[1].clear((list - L1_BASE) as usize),
        }
    }

    /// Walks every list and checks links, counts, bitsets, placement and the cursor: for tests and the fuzz
    /// harness (`Registrar::check_invariants`), never on the request path. The lists are found from their
    /// heads' nodes (O(ids)); the head table and the bitsets are then compared whole with what was found,
    /// so a check costs little more than a few block compares when few timers are armed.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
            if ok {
                Ok(())
            } else {
                Err(format!("timer wheel: {}", what()))
            }
        }
        ensure(self.cur_s <= self.now_s + 1, || {
            format!("cursor {} beyond clock {} + 1", self.cur_s, self.now_s)
        })?;
        let mut heads = vec![NIL; LISTS];
        let mut occupied = [Occupancy::EMPTY, Occupancy::EMPTY];
        let mut seen = 0usize;
        let mut unarmed = 0usize;
        for (head, node) in self.nodes.iter().enumerate() {
            if node.prev == UNARMED {
                unarmed += 1;
                continue;
            }
            if node.prev & HEAD_BIT == 0 {
                continue;
            }
            let list = node.prev & !HEAD_BIT;
            ensure((list as usize) < LISTS, || {
                format!("id {head} heads the unknown list {list}")
            })?;
            heads[list as usize] = head as u32;
            if list < L1_BASE {
                occupied[0].set((list - L0_BASE) as usize);
            } else if list < OVERFLOW {
                occupied[1].set((list - L1_BASE) as usize);
            }
            let mut prev = HEAD_BIT | list;
            let mut id = head as u32;
            let mut min_s = u64::MAX;
            while id != NIL {
                ensure(seen < self.armed, || {
                    format!("more linked ids than the {} armed (a cycle?)", self.armed)
                })?;
                let Some(node) = self.nodes.get(id as usize).copied() else {
                    return Err(format!("timer wheel: list {list} links unknown id {id}"));
                };
                ensure(node.prev == prev, || format!("broken back link at id {id}"))?;
                let placed = self.list_placement(node.deadline_s, list)?;
                ensure(placed == list, || {
                    format!(
                        "id {id} (deadline {}) sits in list {list}, belongs in {placed}",
                        node.deadline_s
                    )
                })?;
                min_s = min_s.min(node.deadline_s);
                seen += 1;
                prev = id;
                id = node.next;
            }
            let bound = match list {
                DUE => self.due_min_s,
                OVERFLOW => self.overflow_min_s,
                RESCAN => self.rescan_min_s,
                _ => 0,
            };
            ensure(bound <= min_s, || {
                format!("list {list}: lower bound {bound} above its earliest deadline {min_s}")
            })?;
        }
        ensure(seen == self.armed, || {
            format!("{seen} linked ids, {} counted armed", self.armed)
        })?;
        ensure(unarmed + self.armed == self.nodes.len(), || {
            format!(
                "{unarmed} unarmed + {} armed != {} ids",
                self.armed,
                self.nodes.len()
            )
        })?;
        // Whole-table compares: a head or an occupancy bit that no list accounts for is an error.
        ensure(heads[..] == self.heads[..], || {
            let list = (0..LISTS).find(|&l| heads[l] != self.heads[l]).unwrap_or(0);
            format!(
                "list {list} has head {}, its nodes say {}",
                self.heads[list], heads[list]
            )
        })?;
        for (level, (want, got)) in occupied.iter().zip(&self.occupied).enumerate() {
            ensure(
                want.words == got.words && want.summary == got.summary,
                || format!("level-{level} occupancy bits disagree with the lists"),
            )?;
        }
        Ok(())
    }

    /// Whether a timer with `deadline_s` may legitimately sit in `list`: a level-0 or level-1 timer must be
    /// in the cursor's rotation at or after it; level-1 slot timers may also be in the current slot when
    /// the cascade is pending at the cursor. Returns the list it belongs in.
    fn list_placement(&self, deadline_s: u64, list: u32) -> Result<u32, String> {
        let misplaced = |why: &str| {
            Err(format!(
                "timer wheel: deadline {deadline_s} in list {list}: {why} (cursor {}, clock {})",
                self.cur_s, self.now_s
            ))
        };
        match list {
            DUE if deadline_s > self.now_s => misplaced("due but in the future"),
            DUE => Ok(DUE),
            OVERFLOW | RESCAN if deadline_s < self.cur_s => misplaced("behind the cursor"),
            OVERFLOW | RESCAN => Ok(list),
            _ if list < L1_BASE => {
                if deadline_s < self.cur_s {
                    return misplaced("behind the cursor");
                }
                if deadline_s >> LEVEL_BITS != self.cur_s >> LEVEL_BITS {
                    return misplaced("outside the cursor's level-0 rotation");
                }
                Ok(L0_BASE + (deadline_s & SLOT_MASK) as u32)
            }
            _ => {
                if deadline_s < self.cur_s {
                    return misplaced("behind the cursor");
                }
                if deadline_s >> SPAN_BITS != self.cur_s >> SPAN_BITS {
                    return misplaced("outside the cursor's level-1 rotation");
                }
                let start_s = (deadline_s >> LEVEL_BITS) << LEVEL_BITS;
                if start_s < self.cur_s {
                    return misplaced("level-1 timer behind the cursor");
                }
                Ok(L1_BASE + ((deadline_s >> LEVEL_BITS) & SLOT_MASK) as u32)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Advances with a large batch and returns the ids, sorted, checking invariants.
    fn due(wheel: &mut TimerWheel, now_s: u64) -> Vec<u32> {
        let mut out = Vec::new();
        let more = wheel.advance(now_s, &mut out, usize::MAX);
        assert!(!more);
        wheel.check_invariants().expect("wheel invariants");
        out.sort_unstable();
        out
    }

    /// Calls `advance` until it returns false; each call must make progress.
    fn drain(wheel: &mut TimerWheel, now_s: u64, max: usize) -> Vec<u32> {
        let mut out = Vec::new();
        for _ in 0..1_000_000 {
            let before = out.len();
            let more = wheel.advance(now_s, &mut out, max);
            assert!(out.len() - before <= max);
            wheel.check_invariants().expect("wheel invariants");
            if !more {
                out.sort_unstable();
                return out;
            }
        }
        panic!("advance never finished");
    }

    #[test]
    fn node_is_small() {
        assert_eq!(std::mem::size_of::<Node>(), 16);
    }

    #[test]
    fn due_exactly_at_deadline_not_one_second_before() {
        for start in [0u64, 1_700_000_000, 4095, 4096, (1 << 24) - 1] {
            for delta in [
                0u64,
                1,
                2,
                4095,
                4096,
                4097,
                86_400,
                604_800,
                1 << 24,
                (1 << 24) + 5,
            ] {
                let mut wheel = TimerWheel::new(start);
                wheel.schedule(7, start + delta);
                assert!(wheel.next_deadline().unwrap() <= start + delta);
                if delta > 0 {
                    assert_eq!(
                        due(&mut wheel, start + delta - 1),
                        Vec::<u32>::new(),
                        "{start}+{delta}"
                    );
                    assert!(wheel.is_armed(7));
                }
                assert_eq!(due(&mut wheel, start + delta), vec![7], "{start}+{delta}");
                assert!(!wheel.is_armed(7));
                assert!(wheel.is_empty());
                assert_eq!(wheel.next_deadline(), None);
            }
        }
    }

    #[test]
    fn stepping_one_second_at_a_time_across_level_boundaries() {
        let start = 10_000u64;
        let mut wheel = TimerWheel::new(start);
        let deadlines: Vec<u64> = (0..40u32).map(|i| start + u64::from(i) * 517 + 3).collect();
        for (id, d) in deadlines.iter().enumerate() {
            wheel.schedule(id as u32, *d);
        }
        let last = *deadlines.last().unwrap();
        for now in start..=last {
            let got = due(&mut wheel, now);
            let want: Vec<u32> = deadlines
                .iter()
                .enumerate()
                .filter(|(_, d)| **d == now)
                .map(|(id, _)| id as u32)
                .collect();
            assert_eq!(got, want, "at {now}");
            if let Some(next) = wheel.next_deadline() {
                assert!(next > now);
            }
        }
        assert!(wheel.is_empty());
    }

    #[test]
    fn cancel_and_rearm() {
        let mut wheel = TimerWheel::new(100);
        wheel.cancel(3); // never armed: no-op
        wheel.cancel(u32::MAX);
        assert!(!wheel.is_armed(u32::MAX));
        wheel.schedule(3, 200);
        wheel.schedule(4, 200);
        wheel.schedule(5, 200);
        assert_eq!(wheel.len(), 3);
        wheel.cancel(4); // middle of the slot's list
        wheel.cancel(4); // twice: no-op
        assert_eq!(wheel.len(), 2);
        wheel.schedule(3, 10_000); // re-arm later, into level 1
        wheel.schedule(5, 150); // re-arm earlier
        assert_eq!(wheel.len(), 2);
        assert_eq!(wheel.deadline(3), Some(10_000));
        assert_eq!(wheel.next_deadline(), Some(150));
        assert_eq!(due(&mut wheel, 199), vec![5]);
        assert_eq!(due(&mut wheel, 9_999), Vec::<u32>::new());
        wheel.schedule(3, 9_999 + 1); // re-arm of an id sitting in level 1 into level 0
        assert_eq!(due(&mut wheel, 10_000), vec![3]);
        // An expired id can be scheduled again.
        wheel.schedule(3, 10_001);
        assert_eq!(due(&mut wheel, 10_001), vec![3]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn past_deadlines_are_due_at_next_advance() {
        let mut wheel = TimerWheel::new(1_000);
        wheel.schedule(1, 0);
        wheel.schedule(2, 999);
        wheel.schedule(3, 1_000);
        assert_eq!(wheel.next_deadline(), Some(0));
        assert_eq!(due(&mut wheel, 1_000), vec![1, 2, 3]);
        // After advancing to 1000, a deadline of 1000 is in the past of the cursor (1001): still due.
        wheel.schedule(4, 1_000);
        wheel.schedule(5, 1_001);
        assert_eq!(due(&mut wheel, 1_000), vec![4]);
        assert_eq!(due(&mut wheel, 1_001), vec![5]);
    }

    #[test]
    fn clock_stepped_back_is_no_time_passing() {
        let mut wheel = TimerWheel::new(5_000);
        wheel.schedule(1, 5_010);
        wheel.schedule(2, 6_000);
        assert_eq!(due(&mut wheel, 5_100), vec![1]);
        // The clock steps back: nothing new is due, nothing panics.
        assert_eq!(due(&mut wheel, 10), Vec::<u32>::new());
        // A deadline before the wheel's clock (5100) but after the stepped-back time is due now.
        wheel.schedule(3, 5_050);
        assert_eq!(due(&mut wheel, 20), vec![3]);
        assert_eq!(due(&mut wheel, 5_999), Vec::<u32>::new());
        assert_eq!(due(&mut wheel, 6_000), vec![2]);
        // new() at 0 and time 0.
        let mut wheel = TimerWheel::new(0);
        wheel.schedule(0, 0);
        assert_eq!(due(&mut wheel, 0), vec![0]);
    }

    #[test]
    fn cascade_from_level1_and_overflow() {
        let start = 1_700_000_000u64;
        let mut wheel = TimerWheel::new(start);
        let week = 7 * 86_400;
        let far = start + (1 << 25) + 12_345; // beyond the 2^24 s span: overflow
        wheel.schedule(1, start + 5_000); // level 1
        wheel.schedule(2, start + week); // level 1
        wheel.schedule(3, far); // overflow
        wheel.schedule(4, far + 1); // overflow
        assert_eq!(
            wheel.next_deadline().map(|d| d <= start + 5_000),
            Some(true)
        );
        assert_eq!(due(&mut wheel, start + 4_999), Vec::<u32>::new());
        assert_eq!(due(&mut wheel, start + 5_000), vec![1]);
        assert_eq!(due(&mut wheel, start + week - 1), Vec::<u32>::new());
        assert_eq!(due(&mut wheel, start + week), vec![2]);
        assert_eq!(due(&mut wheel, far - 1), Vec::<u32>::new());
        assert_eq!(wheel.len(), 2);
        assert_eq!(due(&mut wheel, far), vec![3]);
        assert_eq!(due(&mut wheel, far + 1), vec![4]);
        // Stepping through a cascade boundary one second at a time.
        let mut wheel = TimerWheel::new(4_090);
        wheel.schedule(9, 4_100); // crosses the level-0 rotation: level 1
        for now in 4_090..4_100 {
            assert_eq!(due(&mut wheel, now), Vec::<u32>::new());
        }
        assert_eq!(due(&mut wheel, 4_100), vec![9]);
    }

    #[test]
    fn big_jump_returns_everything_due_and_nothing_else() {
        let start = 1_000_000u64;
        let mut wheel = TimerWheel::new(start);
        let mut want = Vec::new();
        for id in 0..5_000u32 {
            // Spread over 0 s .. ~58 days, including the overflow.
            let d = start + u64::from(id) * u64::from(id) * 200;
            wheel.schedule(id, d);
            if d <= start + 30 * 86_400 {
                want.push(id);
            }
        }
        // The shell was suspended for 30 days.
        let got = drain(&mut wheel, start + 30 * 86_400, 1_000);
        assert_eq!(got, want);
        assert_eq!(wheel.len(), 5_000 - want.len());
        let rest = drain(&mut wheel, u64::MAX, 7);
        assert_eq!(rest.len(), 5_000 - want.len());
        assert!(wheel.is_empty());
    }

    #[test]
    fn batches_are_bounded_by_max() {
        let mut wheel = TimerWheel::new(0);
        for id in 0..10_000u32 {
            wheel.schedule(id, 5_000 + u64::from(id % 3)); // one level-1 slot, cascades in bounded steps
        }
        // At 4999 the level-1 slot (first second 4096) is cascading: 10_000 moves exceed one call's
        // budget, so calls return true with no id until the cascade is done, then false.
        let mut out = Vec::new();
        assert!(wheel.advance(4_999, &mut out, 100));
        assert!(out.is_empty());
        assert_eq!(drain(&mut wheel, 4_999, 100), Vec::<u32>::new());
        let mut calls = 0;
        loop {
            let before = out.len();
            let more = wheel.advance(5_010, &mut out, 100);
            calls += 1;
            assert!(out.len() - before <= 100);
            wheel.check_invariants().expect("wheel invariants");
            if !more {
                break;
            }
            assert!(calls < 1_000);
        }
        out.sort_unstable();
        assert_eq!(out, (0..10_000).collect::<Vec<u32>>());
        // max = 0 returns nothing but reports the work.
        wheel.schedule(1, 1);
        let mut out = Vec::new();
        assert!(wheel.advance(6_000, &mut out, 0));
        assert!(out.is_empty());
        assert!(!wheel.advance(6_000, &mut out, 1));
        assert_eq!(out, vec![1]);
    }

    #[test]
    fn ids_far_apart_and_limits() {
        let mut wheel = TimerWheel::new(0);
        wheel.schedule(0, 10);
        wheel.schedule(1 << 20, 10);
        wheel.schedule(77, 11);
        assert_eq!(wheel.len(), 3);
        assert!(!wheel.is_armed(1 << 19));
        assert_eq!(due(&mut wheel, 10), vec![0, 1 << 20]);
        assert_eq!(due(&mut wheel, 11), vec![77]);
        assert!(matches!(
            wheel.try_schedule(MAX_TIMER_ID, 1),
            Err(WheelError::IdTooLarge(_))
        ));
        assert!(wheel.try_schedule(u32::MAX, 1).is_err());
        assert!(wheel.is_empty());
        // Absurd times saturate instead of overflowing.
        wheel.schedule(5, u64::MAX);
        assert_eq!(wheel.deadline(5), Some(MAX_TIME_S));
        assert_eq!(due(&mut wheel, MAX_TIME_S - 1), Vec::<u32>::new());
        assert_eq!(due(&mut wheel, u64::MAX), vec![5]);
        assert_eq!(due(&mut wheel, u64::MAX), Vec::<u32>::new());
        let wheel = TimerWheel::with_capacity(0, 1_000);
        assert_eq!(wheel.node_bytes(), 16_000);
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Deadline = model clock + delta (saturating at 0).
        Schedule {
            id: u32,
            delta: i64,
        },
        ScheduleAbsolute {
            id: u32,
            deadline_s: u64,
        },
        Cancel {
            id: u32,
        },
        /// One `advance` call at model clock + delta.
        Advance {
            delta: i64,
            max: usize,
        },
        /// `advance` until it returns false.
        Drain {
            delta: i64,
            max: usize,
        },
    }

    fn id() -> impl Strategy<Value = u32> {
        prop_oneof![8 => 0u32..48, 1 => 0u32..70_000]
    }

    fn delta() -> impl Strategy<Value = i64> {
        prop_oneof![
            4 => -3i64..8,
            4 => -100i64..5_000,
            3 => 0i64..700_000,
            2 => 0i64..(1 << 26),
            1 => -(1i64 << 25)..0,
            1 => ((1i64 << 24) - 5)..((1i64 << 24) + 5),
        ]
    }

    fn max() -> impl Strategy<Value = usize> {
        prop_oneof![0usize..4, 1usize..40, Just(usize::MAX)]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (id(), delta()).prop_map(|(id, delta)| Op::Schedule { id, delta }),
            1 => (id(), any::<u64>()).prop_map(|(id, deadline_s)| Op::ScheduleAbsolute { id, deadline_s }),
            2 => id().prop_map(|id| Op::Cancel { id }),
            3 => (delta(), max()).prop_map(|(delta, max)| Op::Advance { delta, max }),
            1 => (delta(), 1usize..10).prop_map(|(delta, max)| Op::Drain { delta, max }),
        ]
    }

    fn offset(base: u64, delta: i64) -> u64 {
        base.saturating_add_signed(delta)
    }

    /// Checks one `advance` result against the model: every id returned was armed and due, and when
    /// the wheel says nothing more is due, the model agrees.
    fn check_batch(
        model: &mut BTreeMap<u32, u64>,
        clock_s: u64,
        out: &[u32],
        more: bool,
        max: usize,
    ) {
        assert!(out.len() <= max);
        for id in out {
            let deadline_s = model
                .remove(id)
                .unwrap_or_else(|| panic!("id {id} returned but not armed"));
            assert!(
                deadline_s <= clock_s,
                "id {id} returned at {clock_s} before its deadline {deadline_s}"
            );
        }
        if !more {
            let missed: Vec<_> = model.iter().filter(|(_, d)| **d <= clock_s).collect();
            assert!(
                missed.is_empty(),
                "due at {clock_s} but not returned: {missed:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn agrees_with_btreemap_model(
            start_s in prop_oneof![0u64..10_000, 1_600_000_000u64..1_800_000_000, Just((1u64 << 24) - 3)],
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let mut wheel = TimerWheel::new(start_s);
            let mut model: BTreeMap<u32, u64> = BTreeMap::new();
            // The model's clock is monotonic, as the wheel's: a step back is no time passing.
            let mut clock_s = start_s;
            for op in ops {
                match op {
                    Op::Schedule { id, delta } => {
                        let deadline_s = offset(clock_s, delta);
                        wheel.schedule(id, deadline_s);
                        model.insert(id, deadline_s.min(MAX_TIME_S));
                    }
                    Op::ScheduleAbsolute { id, deadline_s } => {
                        wheel.schedule(id, deadline_s);
                        model.insert(id, deadline_s.min(MAX_TIME_S));
                    }
                    Op::Cancel { id } => {
                        wheel.cancel(id);
                        model.remove(&id);
                    }
                    Op::Advance { delta, max } => {
                        let now_s = offset(clock_s, delta);
                        clock_s = clock_s.max(now_s.min(MAX_TIME_S));
                        let mut out = Vec::new();
                        let more = wheel.advance(now_s, &mut out, max);
                        check_batch(&mut model, clock_s, &out, more, max);
                    }
                    Op::Drain { delta, max } => {
                        let now_s = offset(clock_s, delta);
                        clock_s = clock_s.max(now_s.min(MAX_TIME_S));
                        let mut calls = 0;
                        loop {
                            let mut out = Vec::new();
                            let more = wheel.advance(now_s, &mut out, max);
                            check_batch(&mut model, clock_s, &out, more, max);
                            calls += 1;
                            prop_assert!(calls < 100_000, "advance never finished");
                            if !more {
                                break;
                            }
                        }
                    }
                }
                wheel.check_invariants().expect("wheel invariants");
                prop_assert_eq!(wheel.len(), model.len());
                let earliest = model.values().min().copied();
                match (wheel.next_deadline(), earliest) {
                    (None, None) => {}
                    (Some(next), Some(earliest)) => prop_assert!(next <= earliest, "next_deadline {} > {}", next, earliest),
                    (got, want) => prop_assert!(false, "next_deadline {:?}, model {:?}", got, want),
                }
                for (id, deadline_s) in &model {
                    prop_assert_eq!(wheel.deadline(*id), Some(*deadline_s));
                }
            }
        }
    }
}
