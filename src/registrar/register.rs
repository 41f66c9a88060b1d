//! REGISTER processing, RFC 3261 §10.3 steps 5-8, with Path (RFC 3327) and outbound (RFC 5626).
//!
//! Atomicity: the request is first turned into a plan (one action per Contact, checked against every rule
//! and limit) on the stack; only a plan that passes every check is applied. A failing REGISTER changes
//! nothing.

use std::net::SocketAddr;
use std::num::NonZeroU32;

use arrayvec::ArrayVec;

use super::bindings::{same_transaction, AorIdx, BindingData, BindingIdx, BindingStore, TxnKey};
use super::changes::ChangeKind;
use super::wheel::TimerWheel;
use super::{OverLimitPolicy, RegistrarConfig};
use crate::sip::header::{
    parse_contact, parse_qvalue, parse_u32, sole_element, split_list, ContactValue, HeaderError,
};
use crate::sip::uri::{parse_uri, uri_eq};

/// Static capacity of a plan: the most Contacts one REGISTER may carry (config may lower it).
pub const MAX_CONTACTS_PER_REQUEST: usize = 64;
/// Static capacity for the bindings of one AoR considered at once (config may lower it).
pub const MAX_CONTACTS_PER_AOR: usize = 256;
/// Largest `max_binding_bytes`: a binding's strings are addressed with 16-bit offsets.
pub const MAX_BINDING_BYTES: usize = u16::MAX as usize;

/// Binding indices of one AoR, on the stack and not initialised until pushed.
pub(crate) type Idxs = ArrayVec<BindingIdx, MAX_CONTACTS_PER_AOR>;

/// What the request asks for, already checked against §10.3.
#[derive(Clone, Copy, Debug)]
pub struct RegisterRequest<'a> {
    pub aor: &'a [u8],
    pub aor_hash: u64,
    pub call_id: &'a [u8],
    pub cseq: u32,
    /// The request's transaction key ([`BindingStore::transaction_key`]).
    pub txn: TxnKey,
    pub path: &'a [u8],
    pub user_agent: &'a [u8],
    pub source: SocketAddr,
    pub now_s: u64,
}

/// One Contact of the request.
#[derive(Clone, Copy, Debug)]
pub struct ReqContact<'a> {
    pub uri_text: &'a [u8],
    /// False for non-SIP URIs, which compare byte for byte (RFC 3986 §6.2.1). The parsed URI is not kept:
    /// it is large, and re-parsing for the rare comparison is cheaper than copying it around.
    pub is_sip: bool,
    pub expires_s: u32,
    pub q: Option<u16>,
    /// `+sip.instance` value without quotes (empty: none).
    pub instance: &'a [u8],
    /// Only kept when an instance is present too (RFC 5626 §6: reg-id alone is ignored).
    pub reg_id: Option<NonZeroU32>,
}

impl<'a> ReqContact<'a> {
    fn is_outbound(&self) -> bool {
        self.reg_id.is_some()
    }
    /// Bytes of this Contact a binding stores (its URI and instance).
    pub fn stored_bytes(&self) -> usize {
        self.uri_text.len() + self.instance.len()
    }
}

/// The Contacts of a REGISTER, parsed into a fixed-capacity array.
///
/// Fixed capacity without initialisation (`ArrayVec`): the caller keeps it in its own frame and
/// `collect_contacts` fills it in place, so nothing of its size is copied per request.
#[derive(Default)]
pub struct Contacts<'a> {
    pub star: bool,
    items: ArrayVec<ReqContact<'a>, MAX_CONTACTS_PER_REQUEST>,
}

impl<'a> Contacts<'a> {
    pub fn as_slice(&self) -> &[ReqContact<'a>] {
        &self.items
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && !self.star
    }
    /// Some Contact asks for an outbound (RFC 5626) binding.
    pub fn any_outbound(&self) -> bool {
        self.items.iter().any(ReqContact::is_outbound)
    }
    /// Treat the registration as a plain one: every Contact is matched by URI (RFC 5626 §6, a first hop
    /// without outbound support).
    pub fn ignore_reg_ids(&mut self) {
        for c in &mut self.items {
            c.reg_id = None;
        }
    }
    /// Rewrites each non-zero expiry with `f` (spreading the refreshes of restored AoRs).
    pub fn map_expires(&mut self, mut f: impl FnMut(u32) -> u32) {
        for c in &mut self.items {
            if c.expires_s > 0 {
                c.expires_s = f(c.expires_s);
            }
        }
    }
}

/// Why a REGISTER is refused; maps to one status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: malformed Contact / Expires / `*` misuse.
    BadRequest(&'static str),
    /// 423 with Min-Expires.
    IntervalTooBrief,
    /// 400: same Call-ID with a CSeq that is not higher, from another transaction (§10.3 step 7: abort).
    OutOfOrder,
    /// Same Call-ID and CSeq, same transaction key and source: a retransmission of the request that set the
    /// binding; nothing changes, the current bindings are sent.
    Retransmission,
    /// 403: over max contacts (policy reject403, or eviction could not make room).
    TooManyContacts403,
    /// 503: over max contacts (policy reject503).
    TooManyContacts503,
    /// 503: the shard's binding table is full.
    StoreFull,
    /// 503: changes cannot be made durable now (the journal cannot write).
    Unavailable,
    /// 413: a binding would store more than `max_binding_bytes`.
    BindingTooLarge,
    /// 439: an outbound registration (reg-id, and `Supported: outbound`) through a first hop that does not
    /// support outbound (RFC 5626 §6).
    FirstHopLacksOutbound,
}

/// One Contact element into `contacts` (a named function rather than a closure, so that it can sit with
/// the rest of the request path: see `build.rs`).
fn add_contact<'a>(
    element: &'a [u8],
    header_expires: Option<u32>,
    limit: usize,
    cfg: &RegistrarConfig,
    contacts: &mut Contacts<'a>,
) -> Result<(), Refusal> {
    match parse_contact(element).map_err(|_| Refusal::BadRequest("bad Contact"))? {
        ContactValue::Star => contacts.star = true,
        ContactValue::Addr(na) => {
            if contacts.items.len() >= limit {
                return Err(Refusal::BadRequest("too many Contacts"));
            }
            contacts.items.push(req_contact(na, header_expires, cfg)?);
        }
    }
    Ok(())
}

/// Collect and check every Contact (§10.3 steps 6-7 up to expiry), without touching state.
pub fn collect_contacts<'a>(
    contact_values: impl Iterator<Item = &'a [u8]>,
    expires_header: Option<&'a [u8]>,
    cfg: &RegistrarConfig,
    contacts: &mut Contacts<'a>,
) -> Result<(), Refusal> {
    let header_expires = match expires_header {
        Some(v) => Some(parse_expires(v).ok_or(Refusal::BadRequest("bad Expires"))?),
        None => None,
    };
    let limit = cfg.max_contacts_per_request.min(MAX_CONTACTS_PER_REQUEST);
    contacts.star = false;
    contacts.items.clear();
    let mut elements = 0usize;
    for value in contact_values {
        // An unbalanced `<` in a sole element is refused by `parse_contact` as `split_list` would.
        if let Some(element) = sole_element(value) {
            elements += 1;
            add_contact(element, header_expires, limit, cfg, contacts)?;
            continue;
        }
        for element in split_list(value) {
            elements += 1;
            let element = element.map_err(|_| Refusal::BadRequest("bad Contact"))?;
            add_contact(element, header_expires, limit, cfg, contacts)?;
        }
    }
    if contacts.star {
        // §10.3 step 6: `*` only alone, and only with Expires: 0.
        if elements != 1 || header_expires != Some(0) {
            return Err(Refusal::BadRequest(
                "Contact: * needs to be alone, with Expires: 0",
            ));
        }
        return Ok(());
    }
    // §10.3 step 7: a non-zero expiry below the minimum refuses the whole request.
    if contacts
        .as_slice()
        .iter()
        .any(|c| c.expires_s != 0 && c.expires_s < cfg.min_expires_s)
    {
        return Err(Refusal::IntervalTooBrief);
    }
    Ok(())
}

fn req_contact<'a>(
    na: crate::sip::header::NameAddr<'a>,
    header_expires: Option<u32>,
    cfg: &RegistrarConfig,
) -> Result<ReqContact<'a>, Refusal> {
    let is_sip = match parse_uri(na.uri) {
        Ok(_) => true,
        Err(crate::sip::uri::UriError::UnsupportedScheme) if !na.uri.is_empty() => false,
        Err(_) => return Err(Refusal::BadRequest("bad Contact URI")),
    };
    // One pass over the parameters; the first occurrence of each name counts.
    let mut expires = None;
    let mut q = None;
    let mut instance: &[u8] = b"";
    let mut reg_id = None;
    for (name, value) in na.params.iter() {
        if name.eq_ignore_ascii_case(b"expires") && expires.is_none() {
            let v = value.ok_or(Refusal::BadRequest("bad expires parameter"))?;
            expires = Some(parse_expires(v).ok_or(Refusal::BadRequest("bad expires parameter"))?);
        } else if name.eq_ignore_ascii_case(b"q") && q.is_none() {
            let v = value.ok_or(Refusal::BadRequest("bad q"))?;
            q = Some(parse_qvalue(v).map_err(|_| Refusal::BadRequest("bad q"))?);
        } else if name.eq_ignore_ascii_case(b"+sip.instance") && instance.is_empty() {
            instance = value.unwrap_or(b"");
        } else if name.eq_ignore_ascii_case(b"reg-id") && reg_id.is_none() {
            let v = value.ok_or(Refusal::BadRequest("bad reg-id"))?;
            let n = parse_u32(v).map_err(|_| Refusal::BadRequest("bad reg-id"))?;
            reg_id = Some(NonZeroU32::new(n).ok_or(Refusal::BadRequest("bad reg-id"))?);
        }
    }
    let expires = expires.or(header_expires).unwrap_or(cfg.default_expires_s);
    Ok(ReqContact {
        uri_text: na.uri,
        is_sip,
        expires_s: expires.min(cfg.max_expires_s),
        q,
        instance,
        // RFC 5626 §6: reg-id without +sip.instance is ignored.
        reg_id: reg_id.filter(|_| !instance.is_empty()),
    })
}

/// Expires values larger than 32 bits are valid and simply capped later (RFC 3261 §20.19, RFC 4475 scalar02
/// still fails on its CSeq first).
fn parse_expires(v: &[u8]) -> Option<u32> {
    match parse_u32(v) {
        Ok(n) => Some(n),
        Err(HeaderError::NumberOutOfRange) => Some(u32::MAX),
        Err(_) => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Nothing,
    Insert,
    Update(BindingIdx),
    Remove(BindingIdx),
}

/// The outcome of a successful REGISTER.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub changed: bool,
    /// An outbound (instance + reg-id) binding was processed: answer with `Require: outbound`.
    pub outbound: bool,
    /// The AoR's record afterwards (None: no binding left), for the 200's Contact list.
    pub aor: Option<AorIdx>,
}

/// The mutable state a REGISTER acts on.
pub struct State<'s> {
    pub store: &'s mut BindingStore,
    pub wheel: &'s mut TimerWheel,
    pub cfg: &'s RegistrarConfig,
}

/// Remove the AoR's bindings that are already expired but not yet swept by the wheel, so that the rules
/// and the 200's list never see them. Returns how many went, and the AoR's record when it still has
/// bindings (looked up once here, then handed to `apply` and the 200).
pub fn purge_expired(
    st: &mut State<'_>,
    aor_hash: u64,
    aor: &[u8],
    now_s: u64,
) -> (u64, Option<AorIdx>) {
    let Some(rec) = st.store.find_aor(aor_hash, aor) else {
        return (0, None);
    };
    let due: Idxs = st
        .store
        .bindings_of(rec)
        .filter(|(_, b)| b.expires_at_s <= now_s)
        .map(|(idx, _)| idx)
        .take(MAX_CONTACTS_PER_AOR)
        .collect();
    if due.is_empty() {
        return (0, Some(rec));
    }
    for &idx in &due {
        st.wheel.cancel(idx);
        st.store.remove(idx, ChangeKind::Expired, now_s);
    }
    (due.len() as u64, st.store.find_aor(aor_hash, aor))
}

/// §10.3 steps 6-8: plan every change, check it, then apply it. `rec` is the AoR's record as
/// `purge_expired` left it.
pub fn apply(
    st: &mut State<'_>,
    req: &RegisterRequest<'_>,
    rec: Option<AorIdx>,
    contacts: &Contacts<'_>,
) -> Result<Applied, Refusal> {
    debug_assert_eq!(rec, st.store.find_aor(req.aor_hash, req.aor));
    // Filled in place: moving a 1 KiB ArrayVec out of an expression costs a memcpy per REGISTER.
    let mut existing = Idxs::new();
    if let Some(rec) = rec {
        let idxs = st.store.bindings_of(rec).map(|(idx, _)| idx);
        existing.extend(idxs.take(MAX_CONTACTS_PER_AOR));
    }
    let existing = existing.as_slice();

    let mut actions: ArrayVec<Action, MAX_CONTACTS_PER_REQUEST> = ArrayVec::new();
    let items = contacts.as_slice();
    let mut removals = 0usize;
    let mut inserts = 0usize;

    if contacts.star {
        // Step 6: remove every binding, unless one with this Call-ID has a CSeq that is not lower.
        let mut verdict = CseqVerdict::default();
        for &idx in existing {
            verdict.add(check_cseq(st.store, idx, req));
        }
        verdict.result()?;
        for &idx in existing {
            st.wheel.cancel(idx);
            st.store.remove(idx, ChangeKind::Unregistered, req.now_s);
        }
        return Ok(Applied {
            changed: !existing.is_empty(),
            outbound: false,
            aor: None,
        });
    }

    let mut verdict = CseqVerdict::default();
    for c in items {
        let target = existing
            .iter()
            .copied()
            .find(|&idx| matches(st.store, idx, c));
        // A later Contact for the same binding wins over an earlier one in the same request.
        for (prev, action) in items.iter().zip(actions.iter_mut()) {
            let same = match (*action, target) {
                (Action::Update(a) | Action::Remove(a), Some(b)) => a == b,
                (Action::Insert, None) => same_contact(prev, c),
                _ => false,
            };
            if same {
                *action = Action::Nothing;
            }
        }
        actions.push(match target {
            Some(idx) => {
                verdict.add(check_cseq(st.store, idx, req));
                if c.expires_s == 0 {
                    Action::Remove(idx)
                } else {
                    Action::Update(idx)
                }
            }
            None if c.expires_s == 0 => Action::Nothing,
            None => Action::Insert,
        });
    }
    verdict.result()?;
    for a in &actions {
        match a {
            Action::Insert => inserts += 1,
            Action::Remove(_) => removals += 1,
            _ => {}
        }
    }

    // Limits: per AoR, then per shard.
    let mut evict = Idxs::new();
    let after = existing.len() + inserts - removals;
    let max_contacts = st.cfg.max_contacts_per_aor.min(MAX_CONTACTS_PER_AOR);
    if inserts > 0 && after > max_contacts {
        match st.cfg.over_limit {
            OverLimitPolicy::Reject403 => return Err(Refusal::TooManyContacts403),
            OverLimitPolicy::Reject503 => return Err(Refusal::TooManyContacts503),
            OverLimitPolicy::EvictOldest => {
                evict = pick_evictions(st.store, existing, &actions, after - max_contacts)
                    .ok_or(Refusal::TooManyContacts403)?;
            }
        }
    }
    if st.store.len() + inserts > st.store.max_bindings() + removals + evict.len() {
        return Err(Refusal::StoreFull);
    }

    // Apply: nothing below can fail for a request that reached this point. Evictions and removals
    // first: the capacity check above counted them, so the inserts must find their room free.
    let removed = actions.iter().filter_map(|a| match *a {
        Action::Remove(idx) => Some((idx, ChangeKind::Unregistered)),
        _ => None,
    });
    let evicted = evict.iter().map(|&idx| (idx, ChangeKind::Evicted));
    for (idx, kind) in evicted.chain(removed) {
        st.wheel.cancel(idx);
        st.store.remove(idx, kind, req.now_s);
    }
    let mut outbound = false;
    for (c, a) in items.iter().zip(actions.iter()) {
        outbound |= c.is_outbound() && *a != Action::Nothing;
        let data = binding_data(req, c);
        match *a {
            Action::Nothing | Action::Remove(_) => {}
            Action::Update(idx) => {
                let armed_no_later_than = st.store.get(idx).map(|b| b.expires_at_s);
                if st.store.update(idx, &data).is_ok() {
                    // Lazy re-arming: a binding's wheel entry may fire before its expiry, never after
                    // (`Registrar::handle_timeout` re-arms a binding that is not yet due). A refresh that
                    // does not shorten the expiry therefore leaves the entry where it is: no wheel work, and
                    // no touching of neighbouring wheel nodes, on the common refresh.
                    if armed_no_later_than.is_none_or(|old| data.expires_at_s < old) {
                        st.wheel.schedule(idx, data.expires_at_s);
                    }
                } else {
                    debug_assert!(false, "fields are bounded by the datagram size");
                }
            }
            Action::Insert => match st.store.insert(req.aor_hash, req.aor, &data) {
                Ok(idx) => st.wheel.schedule(idx, data.expires_at_s),
                Err(_) => debug_assert!(
                    false,
                    "capacity and field sizes were checked while planning"
                ),
            },
        }
    }
    let changed = !evict.is_empty() || actions.iter().any(|a| *a != Action::Nothing);
    // Only inserts and removals create or delete the record: a plain refresh keeps `rec`.
    let aor = if evict.is_empty() && inserts == 0 && removals == 0 {
        rec
    } else {
        st.store.find_aor(req.aor_hash, req.aor)
    };
    Ok(Applied {
        changed,
        outbound,
        aor,
    })
}

fn binding_data<'a>(req: &RegisterRequest<'a>, c: &ReqContact<'a>) -> BindingData<'a> {
    BindingData {
        contact: c.uri_text,
        call_id: req.call_id,
        path: req.path,
        instance: c.instance,
        user_agent: req.user_agent,
        cseq: req.cseq,
        txn: req.txn,
        expires_at_s: req.now_s.saturating_add(u64::from(c.expires_s)),
        q: c.q,
        reg_id: c.reg_id,
        source: req.source,
        now_s: req.now_s,
    }
}

/// The Call-ID/CSeq verdict over every binding a request touches: an out-of-order CSeq aborts the request
/// whatever the order of its Contacts; otherwise an equal CSeq marks a retransmission.
#[derive(Default)]
struct CseqVerdict {
    out_of_order: bool,
    retransmission: bool,
}

impl CseqVerdict {
    fn add(&mut self, r: Result<(), Refusal>) {
        match r {
            Err(Refusal::OutOfOrder) => self.out_of_order = true,
            Err(_) => self.retransmission = true,
            Ok(()) => {}
        }
    }
    fn result(&self) -> Result<(), Refusal> {
        if self.out_of_order {
            Err(Refusal::OutOfOrder)
        } else if self.retransmission {
            Err(Refusal::Retransmission)
        } else {
            Ok(())
        }
    }
}

/// Step 7's Call-ID/CSeq rule for one existing binding. An equal CSeq is the same request only when it is
/// the same transaction from the same source; otherwise it is a CSeq that is not higher.
fn check_cseq(
    store: &BindingStore,
    idx: BindingIdx,
    req: &RegisterRequest<'_>,
) -> Result<(), Refusal> {
    let Some(b) = store.get(idx) else {
        return Ok(());
    };
    if b.call_id() != req.call_id {
        return Ok(());
    }
    if req.cseq > b.cseq {
        Ok(())
    } else if req.cseq == b.cseq && same_transaction(b.txn, req.txn) && b.source == req.source {
        Err(Refusal::Retransmission)
    } else {
        Err(Refusal::OutOfOrder)
    }
}

/// Does the request Contact designate this existing binding? Outbound contacts match on
/// (+sip.instance, reg-id) even when the URI changed (RFC 5626 §6); others on URI equality (§19.1.4).
fn matches(store: &BindingStore, idx: BindingIdx, c: &ReqContact<'_>) -> bool {
    let Some(b) = store.get(idx) else {
        return false;
    };
    if c.is_outbound() {
        return b.reg_id == c.reg_id && b.instance() == c.instance;
    }
    if b.reg_id.is_some() {
        // An outbound binding is only replaced through its own instance/reg-id pair.
        return false;
    }
    contact_uri_eq(c, b.contact())
}

fn contact_uri_eq(c: &ReqContact<'_>, stored: &[u8]) -> bool {
    // Identical text is equal under every rule (and is what a refresh sends): skip parsing.
    if !c.is_sip || c.uri_text == stored {
        return c.uri_text == stored;
    }
    // A second device of the AoR (another contact) is the common unequal case: prove it without parsing.
    if surely_different(c.uri_text, stored) {
        return false;
    }
    match (parse_uri(c.uri_text), parse_uri(stored)) {
        (Ok(a), Ok(b)) => uri_eq(&a, &b),
        _ => false,
    }
}

/// A cheap proof that two SIP URI texts are not equal under RFC 3261 §19.1.4. Without `%` escapes, equal
/// URIs have the same `scheme:user[:password]@host[:port]` text up to ASCII case (user and password compare
/// exactly, scheme and host without case, and the user's bytes are the same so a `;` or `?` inside it is at
/// the same place in both): that text, up to the first `;` or `?`, differing is proof enough. A port
/// written with a leading zero (`:05060` equals `:5060`) is left to the full comparison.
fn surely_different(a: &[u8], b: &[u8]) -> bool {
    fn prefix(u: &[u8]) -> Option<&[u8]> {
        if memchr::memchr(b'%', u).is_some() {
            return None;
        }
        let p = &u[..memchr::memchr2(b';', b'?', u).unwrap_or(u.len())];
        (!p.windows(2).any(|w| w == b":0")).then_some(p)
    }
    match (prefix(a), prefix(b)) {
        (Some(pa), Some(pb)) => !pa.eq_ignore_ascii_case(pb),
        _ => false,
    }
}

fn same_contact(a: &ReqContact<'_>, b: &ReqContact<'_>) -> bool {
    if a.is_outbound() || b.is_outbound() {
        return a.reg_id == b.reg_id && a.instance == b.instance;
    }
    match (a.is_sip, b.is_sip) {
        (true, true) => contact_uri_eq(a, b.uri_text),
        (false, false) => a.uri_text == b.uri_text,
        _ => false,
    }
}

/// Choose `need` bindings that the request does not touch, least recently refreshed first.
fn pick_evictions(
    store: &BindingStore,
    existing: &[BindingIdx],
    actions: &[Action],
    need: usize,
) -> Option<Idxs> {
    let touched = |idx: BindingIdx| {
        actions
            .iter()
            .any(|a| matches!(a, Action::Update(i) | Action::Remove(i) if *i == idx))
    };
    let mut candidates: ArrayVec<(u64, BindingIdx), MAX_CONTACTS_PER_AOR> = existing
        .iter()
        .filter(|&&idx| !touched(idx))
        .filter_map(|&idx| store.get(idx).map(|b| (b.updated_at_s, idx)))
        .collect();
    if candidates.len() < need {
        return None;
    }
    candidates.sort_unstable();
    Some(candidates.iter().take(need).map(|&(_, idx)| idx).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uri() -> impl Strategy<Value = String> {
        let pick = |xs: &'static [&'static str]| proptest::sample::select(xs.to_vec());
        (
            pick(&["sip:", "SIP:", "sips:"]),
            pick(&["", "a@", "A@", "a;b@", "%61@", "a:pw@", "a:0@"]),
            pick(&["h", "H", "h.c", "[::1]"]),
            pick(&["", ":5060", ":05060", ":5061", ":0"]),
            pick(&[
                "",
                ";transport=udp",
                ";TRANSPORT=UDP",
                ";lr",
                "?x=1",
                ";maddr=h",
            ]),
        )
            .prop_map(|(s, u, h, p, x)| format!("{s}{u}{h}{p}{x}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]
        /// `surely_different` never calls two §19.1.4-equal URIs different.
        #[test]
        fn surely_different_only_for_unequal_uris(a in uri(), b in uri()) {
            if let (Ok(pa), Ok(pb)) = (parse_uri(a.as_bytes()), parse_uri(b.as_bytes())) {
                if surely_different(a.as_bytes(), b.as_bytes()) {
                    prop_assert!(!uri_eq(&pa, &pb), "{} vs {}", a, b);
                }
            }
        }
    }

    #[test]
    fn another_device_is_surely_different() {
        assert!(surely_different(
            b"sip:u1@10.0.0.1:5060;transport=udp",
            b"sip:u1@10.0.0.2:5060"
        ));
        assert!(!surely_different(b"sip:u1@H:5060", b"SIP:u1@h:5060;lr"));
        assert!(!surely_different(b"sip:u1@h:5060", b"sip:u1@h:05060"));
        assert!(!surely_different(b"sip:%751@h", b"sip:u1@h"));
    }
}
