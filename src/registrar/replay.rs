//! Replaying a journal straight into the store at start-up: each record read is applied as it comes (a
//! snapshot entry, then the segments' changes), with no intermediate copy of the data, so that loading costs
//! one decode and one store insert per record.
//!
//! The rules are those of reading a journal (see `crate::journal`): a change applies to an AoR only when
//! its sequence number is above the AoR's version (the snapshot entry's number, or the last change
//! applied); a binding is found by the id the journal gave it. Expiry is settled once everything is in
//! ([`Replay::finish`]): a binding may be refreshed by a later record, so none is dropped on the way.

use super::bindings::{AorIdx, BindingIdx, StoreError};
use super::changes::Change;
use super::register::MAX_CONTACTS_PER_AOR;
use super::{Now, Registrar};

/// What replaying a journal into a registrar did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Bindings live once replayed (restored).
    pub restored: usize,
    /// Bindings that expired while the registrar was down (their AoRs' next registrations are spread).
    pub expired: usize,
    /// Records for AoRs another shard owns (re-partitioning).
    pub not_owned: usize,
    /// Bindings restored under another id than the journal's (the journal must be snapshotted anew).
    pub renumbered: usize,
    /// Bindings refused: the store full, a record the store refuses, or more bindings for an AoR than
    /// `--max-contacts` allows now.
    pub refused: usize,
    /// Records dropped because their AoR already held the most bindings an AoR can (a crafted file).
    pub dropped: usize,
}

/// A registrar being restored from its journal, record by record. Made by [`Registrar::replay`]; ended by
/// [`Replay::finish`], before the registrar serves.
pub struct Replay<'r> {
    reg: &'r mut Registrar,
    /// Per AoR record: the sequence number of the last change applied to it.
    versions: Vec<u64>,
    /// Bindings held under another slot than their journal id: slot -> journal id (rare: ids from several
    /// old shards meeting in one store when re-partitioning).
    moved: hashbrown::HashMap<BindingIdx, u32, ahash::RandomState>,
    /// Latest expiry a binding may keep (a clock set back, a crafted file).
    longest_s: u64,
    report: ReplayReport,
    warned: bool,
}

impl Registrar {
    /// Starts restoring this registrar (a fresh one, after [`Registrar::set_partition`]) from a journal:
    /// feed every record to [`Replay::apply`] in file order, then call [`Replay::finish`]. `records` is a
    /// guess of how many will come (sizes the AoR index up front; 0 when unknown).
    pub fn replay(&mut self, records: usize, now: Now) -> Replay<'_> {
        self.store.reserve_aors(records);
        let longest_s = now
            .unix_s()
            .saturating_add(u64::from(self.cfg.max_expires_s));
        Replay {
            reg: self,
            versions: Vec::new(),
            moved: hashbrown::HashMap::default(),
            longest_s,
            report: ReplayReport::default(),
            warned: false,
        }
    }
}

impl Replay<'_> {
    /// Applies one record: a snapshot entry (`snapshot`), or a segment's change.
    pub fn apply(&mut self, change: &Change<'_>, snapshot: bool) {
        let store = &self.reg.store;
        let hash = store.hash_aor(change.aor);
        let removal = change.kind.is_removal();
        if self.reg.partition.owner_elsewhere(hash).is_some() {
            self.report.not_owned += usize::from(!removal);
            return;
        }
        let found = store.find_aor(hash, change.aor);
        if let Some(aor) = found {
            let version = self.version_mut(aor);
            // A snapshot entry carries the sequence number its AoR was read at (several entries may share
            // it); a change applies only when it is newer than what the AoR already reflects.
            if snapshot {
                *version = (*version).max(change.seq);
            } else if change.seq <= *version {
                return;
            } else {
                *version = change.seq;
            }
        }
        let id = change.binding.id;
        let existing = found.and_then(|aor| self.find(aor, id));
        let mut fields = change.binding;
        fields.expires_at_s = fields.expires_at_s.min(self.longest_s);
        match (removal, existing) {
            (true, Some(idx)) => {
                self.reg.store.restore_remove(idx);
                self.moved.remove(&idx);
            }
            (true, None) => {}
            (false, Some(idx)) => {
                if let Err(e) = self.reg.store.restore_over(idx, &fields) {
                    // The old binding would be wrong: it goes, as the record says it changed.
                    self.refuse(change.aor, e);
                    self.reg.store.restore_remove(idx);
                    self.moved.remove(&idx);
                }
            }
            (false, None) => {
                let held = found.map_or(0, |aor| self.reg.store.binding_count_of(aor));
                if held >= MAX_CONTACTS_PER_AOR {
                    self.report.dropped += 1;
                    return;
                }
                match self.reg.store.restore(hash, change.aor, &fields) {
                    Ok((idx, renumbered)) => {
                        if renumbered {
                            self.moved.insert(idx, id);
                        }
                        if found.is_none() {
                            self.new_aor(idx, change.seq);
                        }
                    }
                    Err(e) => self.refuse(change.aor, e),
                }
            }
        }
    }

    /// The binding of `aor` that the journal calls `id`.
    fn find(&self, aor: AorIdx, id: u32) -> Option<BindingIdx> {
        let mut bindings = self.reg.store.bindings_of(aor);
        if self.moved.is_empty() {
            return bindings.find(|&(idx, _)| idx == id).map(|(idx, _)| idx);
        }
        bindings
            .find(|&(idx, _)| self.moved.get(&idx).copied().unwrap_or(idx) == id)
            .map(|(idx, _)| idx)
    }

    /// Starts the version of the AoR record binding `idx` just created.
    fn new_aor(&mut self, idx: BindingIdx, seq: u64) {
        let Some(aor) = self.reg.store.aor_of(idx) else {
            debug_assert!(false, "a restored binding without its AoR");
            return;
        };
        *self.version_mut(aor) = seq;
    }

    fn version_mut(&mut self, aor: AorIdx) -> &mut u64 {
        let i = aor as usize;
        if self.versions.len() <= i {
            self.versions.resize(i + 1, 0);
        }
        &mut self.versions[i]
    }

    /// Counts a refusal; the first is logged (the shard logs the count once loaded).
    fn refuse(&mut self, aor: &[u8], e: StoreError) {
        self.report.refused += 1;
        if !self.warned {
            self.warned = true;
            tracing::warn!(aor = %String::from_utf8_lossy(aor), "binding not restored: {e}");
        }
    }

    /// Ends the restore at `now`: drops what expired while the registrar was down (spreading those AoRs'
    /// next registrations), trims AoRs to `--max-contacts`, arms every expiry, and lets the change log go
    /// on after `last_seq` (the last sequence number read).
    pub fn finish(mut self, last_seq: u64, now: Now) -> ReplayReport {
        let now_s = now.unix_s();
        let spread = self.reg.cfg.expires_range_pct > 0;
        let expired: Vec<BindingIdx> = self
            .reg
            .store
            .iter()
            .filter(|(_, b)| b.expires_at_s <= now_s)
            .map(|(idx, _)| idx)
            .collect();
        for idx in expired {
            if let Some(hash) = self.aor_hash_of(idx) {
                if spread {
                    self.reg.spread.insert(hash);
                    self.reg.spread_until_s = now_s + u64::from(self.reg.cfg.max_expires_s);
                }
            }
            self.reg.store.restore_remove(idx);
            self.moved.remove(&idx);
            self.report.expired += 1;
        }
        self.trim_to_max_contacts();
        let reg = &mut *self.reg;
        for (idx, b) in reg.store.iter() {
            reg.wheel.schedule(idx, b.expires_at_s);
        }
        reg.store.finish_restore(last_seq);
        self.report.restored = reg.store.len();
        self.report.renumbered = self.moved.len();
        self.report
    }

    fn aor_hash_of(&self, idx: BindingIdx) -> Option<u64> {
        let aor = self.reg.store.aor_of(idx)?;
        self.reg.store.aor_hash(aor)
    }

    /// An AoR holding more bindings than `--max-contacts` allows now (it was lowered since) keeps the most
    /// recently restored ones.
    fn trim_to_max_contacts(&mut self) {
        let max = self.reg.cfg.max_contacts_per_aor.min(MAX_CONTACTS_PER_AOR);
        let store = &self.reg.store;
        let over: Vec<BindingIdx> = store
            .aors()
            .filter(|&aor| store.binding_count_of(aor) > max)
            .flat_map(|aor| store.bindings_of(aor).skip(max).map(|(idx, _)| idx))
            .collect();
        for idx in over {
            self.reg.store.restore_remove(idx);
            self.moved.remove(&idx);
            self.report.refused += 1;
        }
    }
}
