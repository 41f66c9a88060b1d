//! Binding storage: one arena of bindings and one arena of AoR records per registrar (shard), and a
//! hash table from canonical AoR to its record.
//!
//! Layout choices (memory per binding is a product figure, see the README):
//! - every binding keeps its strings (contact URI, Call-ID, Path, +sip.instance, User-Agent) in ONE boxed
//!   allocation with u16 end offsets, so a binding costs one heap block;
//! - the bindings of one AoR form an intrusive singly linked list through the binding arena (`next`), so an
//!   AoR record needs no Vec of its own;
//! - the table ([`AorTable`]) stores a hash tag and a `u32` record index per AoR; the AoR hash is computed
//!   once per request (ahash, seeded once per process and shared by all shards so the same hash also picks
//!   the owning shard), and [`BindingStore::prefetch_aor`] starts loading the AoR's table line early.
//!
//! A refresh that changes nothing but CSeq, expiry and source address rewrites the binding in place and
//! allocates nothing.

use std::net::SocketAddr;
use std::num::NonZeroU32;

use thiserror::Error;

use super::aor_table::AorTable;
use super::arena::Arena;
use super::changes::{BindingFields, ChangeBatch, ChangeKind, ChangeLog};
use super::prefetch::prefetch_read;

/// Index of a binding in the arena; also its timer id in the expiry wheel.
pub type BindingIdx = u32;
/// Index of an AoR record in the arena.
pub type AorIdx = u32;

/// End of an intrusive list.
const NIL: u32 = u32::MAX;

/// Number of string fields stored per binding.
const FIELDS: usize = 5;
const CONTACT: usize = 0;
const CALL_ID: usize = 1;
const PATH: usize = 2;
const INSTANCE: usize = 3;
const USER_AGENT: usize = 4;

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("binding store is full")]
    Full,
    #[error("binding field longer than 65535 bytes")]
    FieldTooLong,
}

/// Everything a REGISTER says about one binding, borrowed from the request.
#[derive(Clone, Copy, Debug)]
pub struct BindingData<'a> {
    pub contact: &'a [u8],
    pub call_id: &'a [u8],
    pub path: &'a [u8],
    pub instance: &'a [u8],
    pub user_agent: &'a [u8],
    pub cseq: u32,
    /// The request's transaction key ([`BindingStore::transaction_key`]).
    pub txn: TxnKey,
    pub expires_at_s: u64,
    pub q: Option<u16>,
    pub reg_id: Option<NonZeroU32>,
    pub source: SocketAddr,
    pub now_s: u64,
}

/// A short keyed hash of what makes a REGISTER one transaction rather than another with the same Call-ID and
/// CSeq: its top via-parm (the branch with it) and its Authorization values. A retransmission has the same
/// key (and comes from the same source); a new transaction that reuses the CSeq has another.
pub type TxnKey = u32;

/// The [`TxnKey`] of a binding restored from the journal (which does not keep keys): the REGISTER that set
/// it is not known, so a request with its Call-ID and CSeq from its source is taken for that REGISTER's
/// retransmission (a phone whose 200 was lost in the restart). [`BindingStore::transaction_key`] never
/// gives it.
pub const UNKNOWN_TXN: TxnKey = 0;

/// Is a request with key `txn` the transaction that set a binding whose key is `stored`?
pub fn same_transaction(stored: TxnKey, txn: TxnKey) -> bool {
    stored == txn || stored == UNKNOWN_TXN
}

/// One stored binding.
pub struct Binding {
    strings: Box<[u8]>,
    /// End offsets of the first FIELDS-1 strings; the last one ends at `strings.len()`.
    ends: [u16; FIELDS - 1],
    pub cseq: u32,
    /// Transaction key of the REGISTER that last set this binding: with `source`, tells its retransmission
    /// (answered again) from a new transaction reusing its CSeq (refused, §10.3 step 7).
    pub txn: TxnKey,
    /// Absolute Unix second at which the binding is expired (`now_s >= expires_at_s`).
    pub expires_at_s: u64,
    /// When the binding was created or last refreshed (Unix seconds): "oldest" for eviction.
    pub updated_at_s: u64,
    /// q-value in thousandths, when the UA gave one.
    pub q: Option<u16>,
    pub reg_id: Option<NonZeroU32>,
    /// Where the REGISTER came from (RFC 5626 flow / NAT traversal).
    pub source: SocketAddr,
    aor: AorIdx,
    next: BindingIdx,
}

impl Binding {
    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            usize::from(self.ends[i - 1])
        };
        let end = if i == FIELDS - 1 {
            self.strings.len()
        } else {
            usize::from(self.ends[i])
        };
        &self.strings[start..end]
    }
    pub fn contact(&self) -> &[u8] {
        self.field(CONTACT)
    }
    pub fn call_id(&self) -> &[u8] {
        self.field(CALL_ID)
    }
    pub fn path(&self) -> &[u8] {
        self.field(PATH)
    }
    /// `+sip.instance` value without quotes; empty when none.
    pub fn instance(&self) -> &[u8] {
        self.field(INSTANCE)
    }
    pub fn user_agent(&self) -> &[u8] {
        self.field(USER_AGENT)
    }
    pub fn aor(&self) -> AorIdx {
        self.aor
    }
    /// Every field a change or a lookup carries; `idx` is this binding's index (its id).
    pub fn fields(&self, idx: BindingIdx) -> BindingFields<'_> {
        BindingFields {
            id: idx,
            expires_at_s: self.expires_at_s,
            updated_at_s: self.updated_at_s,
            cseq: self.cseq,
            q: self.q,
            reg_id: self.reg_id,
            source: self.source,
            contact: self.contact(),
            call_id: self.call_id(),
            path: self.path(),
            instance: self.instance(),
            user_agent: self.user_agent(),
        }
    }
    /// Heap bytes held by this binding's strings.
    pub fn string_bytes(&self) -> usize {
        self.strings.len()
    }

    fn strings_equal(&self, d: &BindingData<'_>) -> bool {
        self.contact() == d.contact
            && self.call_id() == d.call_id
            && self.path() == d.path
            && self.instance() == d.instance
            && self.user_agent() == d.user_agent
    }
}

fn pack_strings(d: &BindingData<'_>) -> Result<(Box<[u8]>, [u16; FIELDS - 1]), StoreError> {
    let parts = [d.contact, d.call_id, d.path, d.instance, d.user_agent];
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total > usize::from(u16::MAX) {
        return Err(StoreError::FieldTooLong);
    }
    let mut strings = Vec::with_capacity(total);
    let mut ends = [0u16; FIELDS - 1];
    for (i, part) in parts.iter().enumerate() {
        strings.extend_from_slice(part);
        if i < FIELDS - 1 {
            // Cannot truncate: total <= u16::MAX was checked above.
            ends[i] = strings.len() as u16;
        }
    }
    Ok((strings.into_boxed_slice(), ends))
}

/// An AoR: its name, and the head of its bindings' list. Aligned to a cache line, so that finding an AoR
/// reads one line (a step of the lookup, see [`BindingStore::prefetch_records`]).
#[repr(align(64))]
struct AorRecord {
    hash: u64,
    head: BindingIdx,
    count: u32,
    name: AorName,
}

/// Bytes of an AoR name kept inside the record (`sip:` + user + `@` + domain: most fit).
const INLINE_AOR: usize = 46;

/// An AoR's canonical name: inside the record when it fits, on the heap otherwise. A heap name would be one
/// more dependent cache miss (and page) for every lookup; inline, the record costs 64 bytes, what a 32-byte
/// record plus a typical name's heap block cost before.
enum AorName {
    Inline { len: u8, bytes: [u8; INLINE_AOR] },
    Heap(Box<[u8]>),
}

impl AorName {
    fn new(aor: &[u8]) -> Self {
        let mut bytes = [0u8; INLINE_AOR];
        match (bytes.get_mut(..aor.len()), u8::try_from(aor.len())) {
            (Some(head), Ok(len)) => {
                head.copy_from_slice(aor);
                AorName::Inline { len, bytes }
            }
            _ => AorName::Heap(aor.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            AorName::Inline { len, bytes } => &bytes[..usize::from(*len)],
            AorName::Heap(b) => b,
        }
    }
}

/// The per-shard binding table.
pub struct BindingStore {
    hasher: ahash::RandomState,
    table: AorTable,
    aors: Arena<AorRecord>,
    bindings: Arena<Binding>,
    max_bindings: usize,
    /// Every insert, rewrite and removal, recorded once (see [`ChangeLog`]).
    changes: ChangeLog,
}

/// Seeds for the AoR hash. One value per process, shared by every shard: the hash both finds an AoR in a
/// shard's table and picks the shard that owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashSeed(pub [u64; 4]);

impl HashSeed {
    /// A random seed (HashDoS resistance: collisions cannot be precomputed against a running process).
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        // getrandom only fails when the OS has no entropy source at all; a fixed seed is then still correct,
        // just not DoS-resistant.
        let _ = getrandom::getrandom(&mut bytes);
        let mut seeds = [0u64; 4];
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            seeds[i] = u64::from_le_bytes(w);
        }
        HashSeed(seeds)
    }

    pub fn hasher(self) -> ahash::RandomState {
        let [a, b, c, d] = self.0;
        ahash::RandomState::with_seeds(a, b, c, d)
    }
}

impl BindingStore {
    pub fn new(seed: HashSeed, max_bindings: usize) -> Self {
        BindingStore {
            hasher: seed.hasher(),
            table: AorTable::default(),
            aors: Arena::new(),
            bindings: Arena::new(),
            // Indices double as timer ids in the expiry wheel, which caps them.
            max_bindings: max_bindings.min(super::wheel::MAX_TIMER_ID as usize),
            changes: ChangeLog::default(),
        }
    }

    /// A store with its arenas reserved for `max_bindings` bindings (and as many AoRs), so inserts never
    /// reallocate them. Address space only: the arenas' pages are touched as they fill.
    /// When the address space cannot be had (a huge `--max-bindings` on a small box with strict
    /// overcommit), it logs a warning and returns an unreserved store that grows on demand.
    pub fn with_reserved(seed: HashSeed, max_bindings: usize) -> Self {
        let mut store = Self::new(seed, max_bindings);
        let n = store.max_bindings;
        // Vec has no fallible constructor: probe the address space with one fallible reservation of the
        // same total first, so a refusal is a warning rather than an abort.
        // Per binding: a binding slot and an AoR slot.
        let per_binding = Arena::<Binding>::SLOT_BYTES + Arena::<AorRecord>::SLOT_BYTES;
        let bytes = n.saturating_mul(per_binding);
        if Vec::<u8>::new().try_reserve_exact(bytes).is_err() {
            tracing::warn!(
                bindings = n,
                bytes,
                "cannot reserve the binding arenas up front; they will grow on demand"
            );
            return store;
        }
        // The table is not sized for `n`: half-empty it is dense, and a table sized for a million AoRs
        // that holds a hundred thousand spreads its lookups over 16 MB instead of 2, out of the caches.
        // It grows by doubling instead: a rehash of 8-byte buckets, without touching the records.
        store.aors = Arena::with_capacity(n);
        store.bindings = Arena::with_capacity(n);
        store
    }

    /// Bindings the arenas hold without reallocating.
    pub fn binding_capacity(&self) -> usize {
        self.bindings.capacity()
    }

    /// AoRs the arena holds without reallocating (the table grows on its own, see `with_reserved`).
    pub fn aor_capacity(&self) -> usize {
        self.aors.capacity()
    }

    pub fn hash_aor(&self, aor: &[u8]) -> u64 {
        self.hasher.hash_one(aor)
    }

    /// The [`TxnKey`] of a request with this top via-parm and these Authorization values. Keyed with the
    /// process's secret seed, so a client cannot aim at another request's key.
    pub fn transaction_key<'v>(
        &self,
        top_via_parm: &[u8],
        authorizations: impl Iterator<Item = &'v [u8]>,
    ) -> TxnKey {
        use std::hash::{BuildHasher, Hasher};
        let mut h = self.hasher.build_hasher();
        h.write(top_via_parm);
        for a in authorizations {
            h.write_usize(a.len());
            h.write(a);
        }
        ((h.finish() >> 32) as TxnKey).max(UNKNOWN_TXN + 1)
    }

    /// Live bindings.
    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// AoRs with at least one binding.
    pub fn aor_count(&self) -> usize {
        self.aors.len()
    }

    pub fn max_bindings(&self) -> usize {
        self.max_bindings
    }

    /// An AoR lookup in steps, so that its dependent cache misses (table line, then AoR record, then the
    /// record's name and first binding, then that binding's strings) overlap with parsing instead of
    /// following one another inside [`Self::find_aor`]. Each step reads only what the previous one started
    /// loading; the caller puts request work between them. All are hints: skipping any changes no result.
    ///
    /// Step 1: the table line where the lookup of `hash` begins.
    #[inline]
    pub fn prefetch_aor(&self, hash: u64) {
        self.table.prefetch(hash);
    }

    /// Step 2: the records the table holds under `hash`'s tag (reads the table line of step 1).
    pub fn prefetch_records(&self, hash: u64) {
        for rec in self.table.candidates(hash) {
            self.aors.prefetch(rec as usize);
        }
    }

    /// Step 3: the first binding of each candidate record with the full hash, and its name when that lives on
    /// the heap (reads the records of step 2). The binding's strings follow in [`Self::find_aor`], once the
    /// binding itself is in.
    pub fn prefetch_heads(&self, hash: u64) {
        for rec in self.table.candidates(hash) {
            let Some(r) = self.aors.get(rec as usize).filter(|r| r.hash == hash) else {
                continue;
            };
            if let AorName::Heap(name) = &r.name {
                prefetch_read::<[u8]>(name);
            }
            self.bindings.prefetch(r.head as usize);
        }
    }

    pub fn find_aor(&self, hash: u64, aor: &[u8]) -> Option<AorIdx> {
        let (aors, bindings) = (&self.aors, &self.bindings);
        let found = self.table.find(hash, |i| {
            aors.get(i as usize)
                .is_some_and(|r| r.hash == hash && r.name.as_bytes() == aor)
        })?;
        // The caller reads the first binding's strings next (contact comparison, the 200's Contact list).
        if let Some(b) = aors
            .get(found as usize)
            .and_then(|r| bindings.get(r.head as usize))
        {
            prefetch_read::<[u8]>(&b.strings);
        }
        Some(found)
    }

    pub fn aor_name(&self, aor: AorIdx) -> Option<&[u8]> {
        self.aors.get(aor as usize).map(|r| r.name.as_bytes())
    }

    pub fn binding_count_of(&self, aor: AorIdx) -> usize {
        self.aors.get(aor as usize).map_or(0, |r| r.count as usize)
    }

    pub fn get(&self, idx: BindingIdx) -> Option<&Binding> {
        self.bindings.get(idx as usize)
    }

    /// The bindings of an AoR (most recently inserted first).
    pub fn bindings_of(&self, aor: AorIdx) -> BindingsOf<'_> {
        let head = self.aors.get(aor as usize).map_or(NIL, |r| r.head);
        BindingsOf {
            store: self,
            cur: head,
        }
    }

    /// Insert a new binding for `aor` (creating the AoR record when needed).
    pub fn insert(
        &mut self,
        hash: u64,
        aor: &[u8],
        d: &BindingData<'_>,
    ) -> Result<BindingIdx, StoreError> {
        if self.bindings.len() >= self.max_bindings {
            return Err(StoreError::Full);
        }
        let (strings, ends) = pack_strings(d)?;
        let aor_idx = match self.find_aor(hash, aor) {
            Some(i) => i,
            None => self.insert_aor(hash, aor),
        };
        let record = &mut self.aors[aor_idx as usize];
        let idx = self.bindings.insert(Binding {
            strings,
            ends,
            cseq: d.cseq,
            txn: d.txn,
            expires_at_s: d.expires_at_s,
            updated_at_s: d.now_s,
            q: d.q,
            reg_id: d.reg_id,
            source: d.source,
            aor: aor_idx,
            next: record.head,
        }) as BindingIdx;
        record.head = idx;
        record.count += 1;
        self.record_change(ChangeKind::Registered, idx, d.now_s);
        Ok(idx)
    }

    /// Restores a binding read back from the journal, at start-up, into a store that has served nothing yet:
    /// under its id `fields.id` when that slot is free, else under a new one (the bool says so). Records no
    /// change (the journal has it already). Call [`BindingStore::finish_restore`] once every binding is in.
    pub fn restore(
        &mut self,
        hash: u64,
        aor: &[u8],
        fields: &BindingFields<'_>,
    ) -> Result<(BindingIdx, bool), StoreError> {
        if self.bindings.len() >= self.max_bindings {
            return Err(StoreError::Full);
        }
        let d = restored_data(fields);
        let (strings, ends) = pack_strings(&d)?;
        let aor_idx = match self.find_aor(hash, aor) {
            Some(i) => i,
            None => self.insert_aor(hash, aor),
        };
        let record = &mut self.aors[aor_idx as usize];
        let binding = Binding {
            strings,
            ends,
            cseq: d.cseq,
            txn: d.txn,
            expires_at_s: d.expires_at_s,
            updated_at_s: d.now_s,
            q: d.q,
            reg_id: d.reg_id,
            source: d.source,
            aor: aor_idx,
            next: record.head,
        };
        let wanted = fields.id as usize;
        let placed = if wanted < self.max_bindings {
            self.bindings.restore_at(wanted, binding).map(|()| wanted)
        } else {
            Err(binding)
        };
        let (idx, renumbered) = match placed {
            Ok(i) => (i as BindingIdx, false),
            Err(binding) => (self.bindings.insert(binding) as BindingIdx, true),
        };
        let record = &mut self.aors[aor_idx as usize];
        record.head = idx;
        record.count += 1;
        Ok((idx, renumbered))
    }

    /// Before a restore into an empty store: room for `aors` AoRs in the index (bounded by the store's
    /// limit), so that it does not grow by doubling while they come in.
    pub fn reserve_aors(&mut self, aors: usize) {
        if self.table.is_empty() && self.table.capacity() < aors {
            self.table = AorTable::with_capacity(aors.min(self.max_bindings));
        }
    }

    /// Ends a restore: free slots are reused again, and the change log goes on after `last_seq`.
    pub fn finish_restore(&mut self, last_seq: u64) {
        self.bindings.rebuild_free_list();
        self.changes =
            ChangeLog::starting_at(last_seq.saturating_add(1).max(self.changes.next_seq()));
    }

    /// Records a change to the binding at `idx` (still in the store).
    fn record_change(&mut self, kind: ChangeKind, idx: BindingIdx, now_s: u64) {
        let Some(b) = self.bindings.get(idx as usize) else {
            debug_assert!(false, "change recorded for a missing binding");
            return;
        };
        let Some(record) = self.aors.get(b.aor as usize) else {
            debug_assert!(false, "binding without AoR record");
            return;
        };
        let fields = b.fields(idx);
        self.changes
            .record(kind, record.name.as_bytes(), now_s, &fields);
    }

    /// The changes recorded since the last call, leaving `spare` as the next buffer (see [`ChangeLog::take`]).
    pub fn take_changes(&mut self, spare: Vec<u8>) -> ChangeBatch {
        self.changes.take(spare)
    }

    /// The change log (its next sequence number, what is pending).
    pub fn changes(&self) -> &ChangeLog {
        &self.changes
    }

    fn insert_aor(&mut self, hash: u64, aor: &[u8]) -> AorIdx {
        let idx = self.aors.insert(AorRecord {
            name: AorName::new(aor),
            hash,
            head: NIL,
            count: 0,
        }) as AorIdx;
        self.table.insert_unique(hash, idx);
        idx
    }

    /// Rewrite a binding in place. Allocates only when one of its strings changed.
    pub fn update(&mut self, idx: BindingIdx, d: &BindingData<'_>) -> Result<(), StoreError> {
        if self.overwrite(idx, d)? {
            self.record_change(ChangeKind::Refreshed, idx, d.now_s);
        }
        Ok(())
    }

    /// Rewrites binding `idx` with `d` (no change recorded); false when there is no such binding.
    fn overwrite(&mut self, idx: BindingIdx, d: &BindingData<'_>) -> Result<bool, StoreError> {
        let Some(b) = self.bindings.get_mut(idx as usize) else {
            return Ok(false);
        };
        if !b.strings_equal(d) {
            let (strings, ends) = pack_strings(d)?;
            b.strings = strings;
            b.ends = ends;
        }
        b.cseq = d.cseq;
        b.txn = d.txn;
        b.expires_at_s = d.expires_at_s;
        b.updated_at_s = d.now_s;
        b.q = d.q;
        b.reg_id = d.reg_id;
        b.source = d.source;
        Ok(true)
    }

    /// While restoring: rewrites binding `idx` with what the journal says of it (no change recorded).
    pub fn restore_over(
        &mut self,
        idx: BindingIdx,
        fields: &BindingFields<'_>,
    ) -> Result<(), StoreError> {
        self.overwrite(idx, &restored_data(fields)).map(|_| ())
    }

    /// While restoring: removes binding `idx` (no change recorded) and leaves its slot to
    /// [`Self::restore`]; the AoR record goes with its last binding.
    pub fn restore_remove(&mut self, idx: BindingIdx) -> Option<Binding> {
        let b = self.bindings.vacate(idx as usize)?;
        self.unlink(idx, &b);
        Some(b)
    }

    /// The AoR a binding belongs to.
    pub fn aor_of(&self, idx: BindingIdx) -> Option<AorIdx> {
        self.bindings.get(idx as usize).map(|b| b.aor)
    }

    /// The hash of an AoR's name.
    pub fn aor_hash(&self, aor: AorIdx) -> Option<u64> {
        self.aors.get(aor as usize).map(|r| r.hash)
    }

    /// Remove a binding, recording why (`kind`, a removal) at `now_s`; the AoR record goes when its last
    /// binding does. Returns the removed binding.
    pub fn remove(&mut self, idx: BindingIdx, kind: ChangeKind, now_s: u64) -> Option<Binding> {
        debug_assert!(kind.is_removal());
        if self.bindings.get(idx as usize).is_some() {
            self.record_change(kind, idx, now_s);
        }
        let b = self.bindings.try_remove(idx as usize)?;
        self.unlink(idx, &b);
        Some(b)
    }

    /// Takes binding `idx` (already out of the arena) out of its AoR's list; the AoR record goes with its
    /// last binding.
    fn unlink(&mut self, idx: BindingIdx, b: &Binding) {
        let aor_idx = b.aor as usize;
        let Some(record) = self.aors.get_mut(aor_idx) else {
            debug_assert!(false, "binding without AoR record");
            return;
        };
        if record.head == idx {
            record.head = b.next;
        } else {
            let mut cur = record.head;
            while cur != NIL {
                let Some(node) = self.bindings.get_mut(cur as usize) else {
                    break;
                };
                if node.next == idx {
                    node.next = b.next;
                    break;
                }
                cur = node.next;
            }
        }
        record.count -= 1;
        if record.count == 0 {
            debug_assert_eq!(record.head, NIL);
            let hash = record.hash;
            let removed = self.table.remove(hash, aor_idx as AorIdx);
            debug_assert!(removed, "AoR record missing from the table");
            let _ = self.aors.try_remove(aor_idx);
        }
    }

    /// Every live binding, in arena order (inspection: tests, the fuzz harness, reports).
    pub fn iter(&self) -> impl Iterator<Item = (BindingIdx, &Binding)> + '_ {
        self.bindings.iter().map(|(i, b)| (i as BindingIdx, b))
    }

    /// Every AoR record (each has at least one binding), in arena order.
    pub fn aors(&self) -> impl Iterator<Item = AorIdx> + '_ {
        self.aors_from(0)
    }

    /// The AoR records at arena index `start` and after, in arena order: a paging cursor (an AoR keeps
    /// its index while it has bindings).
    pub fn aors_from(&self, start: usize) -> impl Iterator<Item = AorIdx> + '_ {
        self.aors.iter_from(start).map(|(i, _)| i as AorIdx)
    }

    /// Checks the table's structure: every AoR record is found under its own name's hash, its list links
    /// exactly `count` (> 0) bindings that all point back to it, and the lists together hold every live
    /// binding. O(bindings + AoRs): for tests and the fuzz harness (`Registrar::check_invariants`).
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.table.len() != self.aors.len() {
            return Err(format!(
                "binding store: {} table entries for {} AoR records",
                self.table.len(),
                self.aors.len()
            ));
        }
        let mut linked = 0usize;
        for (rec_idx, rec) in self.aors.iter() {
            let name = rec.name.as_bytes();
            let shown = || String::from_utf8_lossy(name).into_owned();
            if rec.hash != self.hash_aor(name) {
                return Err(format!("binding store: AoR {:?} has a stale hash", shown()));
            }
            if self.find_aor(rec.hash, name) != Some(rec_idx as AorIdx) {
                return Err(format!(
                    "binding store: AoR {:?} (record {rec_idx}) not found by name",
                    shown()
                ));
            }
            if rec.count == 0 {
                return Err(format!(
                    "binding store: AoR {:?} kept without bindings",
                    shown()
                ));
            }
            let mut cur = rec.head;
            for n in 0..rec.count {
                let Some(b) = self.bindings.get(cur as usize) else {
                    return Err(format!(
                        "binding store: AoR {:?} counts {} bindings, its list ends after {n}",
                        shown(),
                        rec.count
                    ));
                };
                if b.aor as usize != rec_idx {
                    return Err(format!(
                        "binding store: binding {cur} in the list of AoR {:?} belongs to record {}",
                        shown(),
                        b.aor
                    ));
                }
                cur = b.next;
            }
            if cur != NIL {
                return Err(format!(
                    "binding store: AoR {:?} has more bindings linked than its count {}",
                    shown(),
                    rec.count
                ));
            }
            linked += rec.count as usize;
        }
        if linked != self.bindings.len() {
            return Err(format!(
                "binding store: {linked} bindings linked from AoRs, {} live",
                self.bindings.len()
            ));
        }
        if self.bindings.len() > self.max_bindings {
            return Err(format!(
                "binding store: {} bindings over the limit {}",
                self.bindings.len(),
                self.max_bindings
            ));
        }
        Ok(())
    }

    /// Heap-independent estimate used by the memory report: bytes of strings held (AoRs and bindings).
    pub fn string_bytes(&self) -> usize {
        let b: usize = self.bindings.iter().map(|(_, b)| b.string_bytes()).sum();
        let a: usize = self.aors.iter().map(|(_, r)| r.name.as_bytes().len()).sum();
        a + b
    }
}

/// A binding read back from the journal as the store takes it.
fn restored_data<'a>(fields: &BindingFields<'a>) -> BindingData<'a> {
    BindingData {
        contact: fields.contact,
        call_id: fields.call_id,
        path: fields.path,
        instance: fields.instance,
        user_agent: fields.user_agent,
        cseq: fields.cseq,
        // Not kept in the journal (see UNKNOWN_TXN).
        txn: UNKNOWN_TXN,
        expires_at_s: fields.expires_at_s,
        q: fields.q,
        reg_id: fields.reg_id,
        source: fields.source,
        now_s: fields.updated_at_s,
    }
}

pub struct BindingsOf<'s> {
    store: &'s BindingStore,
    cur: BindingIdx,
}

impl<'s> Iterator for BindingsOf<'s> {
    type Item = (BindingIdx, &'s Binding);
    fn next(&mut self) -> Option<Self::Item> {
        let idx = self.cur;
        let b = self.store.bindings.get(idx as usize)?;
        self.cur = b.next;
        Some((idx, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data<'a>(contact: &'a [u8], call_id: &'a [u8], cseq: u32) -> BindingData<'a> {
        BindingData {
            contact,
            call_id,
            path: b"",
            instance: b"",
            user_agent: b"ua",
            cseq,
            txn: 0,
            expires_at_s: 100,
            q: None,
            reg_id: None,
            source: "127.0.0.1:5060".parse().expect("addr"),
            now_s: 0,
        }
    }

    #[test]
    fn insert_find_iterate_remove() {
        let mut s = BindingStore::new(HashSeed([1, 2, 3, 4]), 10);
        let aor = b"sip:alice@example.com";
        let h = s.hash_aor(aor);
        let a = s
            .insert(h, aor, &data(b"sip:a@1", b"c1", 1))
            .expect("insert");
        let b = s
            .insert(h, aor, &data(b"sip:a@2", b"c2", 1))
            .expect("insert");
        let rec = s.find_aor(h, aor).expect("aor");
        let got: Vec<_> = s
            .bindings_of(rec)
            .map(|(i, b)| (i, b.contact().to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![(b, b"sip:a@2".to_vec()), (a, b"sip:a@1".to_vec())]
        );
        assert_eq!(s.get(a).map(|b| b.call_id()), Some(&b"c1"[..]));
        assert_eq!(s.get(a).map(|b| b.user_agent()), Some(&b"ua"[..]));
        assert!(s.remove(a, ChangeKind::Deleted, 0).is_some());
        assert_eq!(s.binding_count_of(rec), 1);
        assert!(s.remove(b, ChangeKind::Deleted, 0).is_some());
        assert_eq!(s.find_aor(h, aor), None);
        assert!(s.is_empty());
        assert_eq!(s.aor_count(), 0);
        assert!(s.remove(b, ChangeKind::Deleted, 0).is_none());
    }

    #[test]
    fn full_store_refuses() {
        let mut s = BindingStore::new(HashSeed([1, 2, 3, 4]), 1);
        let h = s.hash_aor(b"x");
        s.insert(h, b"x", &data(b"sip:a@1", b"c", 1))
            .expect("first");
        assert_eq!(
            s.insert(h, b"x", &data(b"sip:a@2", b"c", 1)),
            Err(StoreError::Full)
        );
    }

    #[test]
    fn update_in_place_keeps_strings_when_unchanged() {
        let mut s = BindingStore::new(HashSeed([1, 2, 3, 4]), 10);
        let h = s.hash_aor(b"x");
        let i = s
            .insert(h, b"x", &data(b"sip:a@1", b"c", 1))
            .expect("insert");
        let before = s.get(i).map(|b| b.strings.as_ptr());
        s.update(i, &data(b"sip:a@1", b"c", 2)).expect("update");
        assert_eq!(
            s.get(i).map(|b| b.strings.as_ptr()),
            before,
            "no reallocation on refresh"
        );
        assert_eq!(s.get(i).map(|b| b.cseq), Some(2));
        s.update(i, &data(b"sip:a@9", b"c", 3)).expect("update");
        assert_eq!(s.get(i).map(|b| b.contact()), Some(&b"sip:a@9"[..]));
    }

    #[test]
    fn removing_middle_of_list_keeps_others() {
        let mut s = BindingStore::new(HashSeed([1, 2, 3, 4]), 10);
        let h = s.hash_aor(b"x");
        let ids: Vec<_> = (0..4u8)
            .map(|n| {
                s.insert(h, b"x", &data(&[b'a' + n], b"c", 1))
                    .expect("insert")
            })
            .collect();
        s.remove(ids[2], ChangeKind::Deleted, 0);
        s.remove(ids[0], ChangeKind::Deleted, 0);
        let rec = s.find_aor(h, b"x").expect("aor");
        let left: Vec<_> = s.bindings_of(rec).map(|(i, _)| i).collect();
        assert_eq!(left, vec![ids[3], ids[1]]);
    }

    #[test]
    fn oversized_fields_are_refused() {
        let mut s = BindingStore::new(HashSeed([1, 2, 3, 4]), 10);
        let big = vec![b'a'; 70_000];
        let h = s.hash_aor(b"x");
        assert_eq!(
            s.insert(h, b"x", &data(&big, b"c", 1)),
            Err(StoreError::FieldTooLong)
        );
        assert_eq!(
            s.aor_count(),
            0,
            "a refused insert leaves no AoR record behind"
        );
    }

    #[test]
    fn a_binding_slot_stays_96_bytes() {
        // Memory per binding is a product figure: the transaction key fits beside the CSeq.
        assert_eq!(Arena::<Binding>::SLOT_BYTES, 96);
    }

    #[test]
    fn an_aor_record_is_one_cache_line_with_its_name_inside_when_it_fits() {
        assert_eq!(std::mem::size_of::<AorRecord>(), 64);
        assert_eq!(
            Arena::<AorRecord>::SLOT_BYTES,
            64,
            "the free-list link fits the niche"
        );
        let mut s = BindingStore::new(HashSeed([1, 2, 3, 4]), 10);
        let short = b"sip:alice@example.com".as_slice();
        let fits = [b'a'; INLINE_AOR];
        let long = [b'b'; INLINE_AOR + 1];
        for name in [short, &fits[..], &long[..], b""] {
            let h = s.hash_aor(name);
            s.insert(h, name, &data(b"c", b"i", 1)).expect("insert");
            let rec = s.find_aor(h, name).expect("found");
            assert_eq!(s.aor_name(rec), Some(name));
        }
        assert!(matches!(AorName::new(&fits), AorName::Inline { .. }));
        assert!(matches!(AorName::new(&long), AorName::Heap(_)));
        let h = s.hash_aor(&long);
        assert_eq!(
            s.find_aor(h, &long[..INLINE_AOR]),
            None,
            "a prefix is another AoR"
        );
    }
}
