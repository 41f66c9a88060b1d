//! A slab arena: values stored in one `Vec` of slots, addressed by index, freed slots reused (the most recently
//! freed first).
//!
//! This is the `slab` crate's model, written out here for one thing that crate cannot do: [`Arena::prefetch`]
//! starts loading a slot's cache line *without reading it*. `slab::Slab::get` must read the slot's tag to
//! know whether it is occupied, and that read stalls on a cache miss, so a lookup that wants to start several
//! independent loads early (the AoR record, its first binding, see `BindingStore`) could not overlap them.
//! Slots are the value itself, or a free-list link that fits in the value's niche where it has one (a `Box`),
//! so a slot costs what a `slab` entry does.

use super::prefetch::prefetch_ptr;

/// Marks the end of the free list.
const NONE: usize = usize::MAX;

enum Slot<T> {
    Used(T),
    Free { next: usize },
}

pub struct Arena<T> {
    slots: Vec<Slot<T>>,
    /// First free slot, NONE when every slot is used.
    free: usize,
    len: usize,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Arena<T> {
    /// Bytes one slot takes (the memory figures depend on it).
    pub const SLOT_BYTES: usize = std::mem::size_of::<Slot<T>>();

    pub fn new() -> Self {
        Arena {
            slots: Vec::new(),
            free: NONE,
            len: 0,
        }
    }

    /// An arena that holds `n` values without reallocating.
    pub fn with_capacity(n: usize) -> Self {
        Arena {
            slots: Vec::with_capacity(n),
            free: NONE,
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// Values stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` in a free slot (the most recently freed one) or a new one; returns its index.
    pub fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        if let Some(Slot::Free { next }) = self.slots.get(self.free) {
            let i = self.free;
            self.free = *next;
            self.slots[i] = Slot::Used(value);
            return i;
        }
        self.slots.push(Slot::Used(value));
        self.slots.len() - 1
    }

    /// Stores `value` in slot `i` when that slot is free, growing the arena with free slots up to it;
    /// gives the value back when slot `i` is taken. For restoring saved state into a new arena: the free list
    /// is not kept meanwhile (new slots from [`Arena::insert`] go at the end), so call
    /// [`Arena::rebuild_free_list`] once done.
    pub fn restore_at(&mut self, i: usize, value: T) -> Result<(), T> {
        if self.free != NONE {
            return Err(value);
        }
        while self.slots.len() <= i {
            self.slots.push(Slot::Free { next: NONE });
        }
        match &self.slots[i] {
            Slot::Used(_) => Err(value),
            Slot::Free { .. } => {
                self.slots[i] = Slot::Used(value);
                self.len += 1;
                Ok(())
            }
        }
    }

    /// Links every free slot into the free list (the lowest index first), after [`Arena::restore_at`].
    pub fn rebuild_free_list(&mut self) {
        self.free = NONE;
        for i in (0..self.slots.len()).rev() {
            if let Slot::Free { next } = &mut self.slots[i] {
                *next = self.free;
                self.free = i;
            }
        }
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        match self.slots.get(i) {
            Some(Slot::Used(v)) => Some(v),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        match self.slots.get_mut(i) {
            Some(Slot::Used(v)) => Some(v),
            _ => None,
        }
    }

    /// Takes the value out of slot `i` and frees the slot; None when the slot holds none.
    pub fn try_remove(&mut self, i: usize) -> Option<T> {
        let slot = self.slots.get_mut(i)?;
        match std::mem::replace(slot, Slot::Free { next: self.free }) {
            Slot::Used(value) => {
                self.free = i;
                self.len -= 1;
                Some(value)
            }
            free => {
                *slot = free;
                None
            }
        }
    }

    /// Takes the value out of slot `i` without linking the slot into the free list, so that
    /// [`Arena::restore_at`] can still be used (while restoring; [`Arena::rebuild_free_list`] links it once
    /// done). None when the slot holds none.
    pub fn vacate(&mut self, i: usize) -> Option<T> {
        let slot = self.slots.get_mut(i)?;
        match std::mem::replace(slot, Slot::Free { next: NONE }) {
            Slot::Used(value) => {
                self.len -= 1;
                Some(value)
            }
            free => {
                *slot = free;
                None
            }
        }
    }

    /// Starts loading slot `i`'s first cache line without reading it (a hint: never faults, no effect on
    /// results; an index out of range does nothing).
    #[inline]
    pub fn prefetch(&self, i: usize) {
        if i < self.slots.len() {
            prefetch_ptr(self.slots.as_ptr().wrapping_add(i));
        }
    }

    /// The stored values with their indices, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.iter_from(0)
    }

    /// The stored values at index `start` and after, with their indices, in index order (a cursor for
    /// paging: a value keeps its index while it is stored).
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = (usize, &T)> {
        let start = start.min(self.slots.len());
        self.slots[start..]
            .iter()
            .enumerate()
            .filter_map(move |(i, s)| match s {
                Slot::Used(v) => Some((start + i, v)),
                Slot::Free { .. } => None,
            })
    }
}

impl<T> std::ops::Index<usize> for Arena<T> {
    type Output = T;
    /// Panics when slot `i` holds no value: for indices the store itself just looked up or inserted.
    fn index(&self, i: usize) -> &T {
        self.get(i).expect("arena slot holds a value")
    }
}

impl<T> std::ops::IndexMut<usize> for Arena<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        self.get_mut(i).expect("arena slot holds a value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_boxed_value_costs_no_more_than_itself() {
        // The free-list link lives in the Box's niche, as in a `slab` entry: the memory-per-binding figure
        // depends on it.
        assert_eq!(
            std::mem::size_of::<Slot<(Box<[u8]>, u64)>>(),
            std::mem::size_of::<(Box<[u8]>, u64)>()
        );
    }

    #[test]
    fn freed_slots_are_reused_most_recent_first() {
        let mut a = Arena::new();
        let (x, y, z) = (a.insert('x'), a.insert('y'), a.insert('z'));
        assert_eq!((x, y, z), (0, 1, 2));
        assert_eq!(a.try_remove(x), Some('x'));
        assert_eq!(a.try_remove(z), Some('z'));
        assert_eq!(a.try_remove(z), None, "a freed slot holds nothing");
        assert_eq!(a.len(), 1);
        assert_eq!(a.insert('p'), z);
        assert_eq!(a.insert('q'), x);
        assert_eq!(a.insert('r'), 3);
        assert_eq!(a.get(z), Some(&'p'));
        assert_eq!(a[x], 'q');
        assert_eq!(a.get(99), None);
        a.prefetch(99);
        a.prefetch(usize::MAX);
    }

    proptest! {
        /// Against a map model: every value stays where its index says, and `len` and `iter` agree.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((any::<bool>(), 0usize..40), 1..300)) {
            let mut a = Arena::with_capacity(8);
            let mut model = BTreeMap::new();
            let mut next_value = 0u32;
            for (insert, pick) in ops {
                if insert {
                    let i = a.insert(next_value);
                    prop_assert!(model.insert(i, next_value).is_none(), "index {} handed out twice", i);
                    next_value += 1;
                } else {
                    prop_assert_eq!(a.try_remove(pick), model.remove(&pick));
                }
                prop_assert_eq!(a.len(), model.len());
            }
            let stored: Vec<(usize, u32)> = a.iter().map(|(i, v)| (i, *v)).collect();
            let expected: Vec<(usize, u32)> = model.into_iter().collect();
            prop_assert_eq!(stored, expected);
        }
    }
}
