//! The registrar core driven by sequences of steps, with its invariants checked after every step.
//!
//! Input layout (hand-writable, so seeds can be made from real messages, see `make-seeds.py`):
//! - byte 0: mode, bit 0: `--auth required` (with an `Authenticator` and a users file) or no auth;
//! - bytes 1-4: the rest of the set-up (limits, policy, expiry bounds, domains, digest options);
//! - then steps until the input runs out (at most [`MAX_STEPS`]): an op byte, the op's bytes, a flags
//!   byte (source address out of three; bit 7: sweep after the step), then the time advance applied
//!   before the step: a kind byte and a u16 little-endian value. Ops (op byte mod 16): 0-8 a REGISTER
//!   from the structured generator, 9 the same mutated by a few byte edits, 10 a raw datagram (u16
//!   little-endian length, bytes), 11 a timeout sweep, 12 another method, 13 a datagram sent
//!   again (the previous one, or one of the last answered 200), 14 stateless probes on it, 15 a REGISTER answering the last challenge.
//!
//! In auth mode the harness reads the nonce and opaque of every 401 it gets and answers with a real
//! digest (right or wrong password, nc increasing, repeated or arbitrary), so the accepted, stale and
//! replay paths are all reached.
//!
//! Checked after every step (a violation panics, with the step's datagram and the reply):
//! - `Registrar::check_invariants` (table and wheel structure, max contacts per AoR, every live
//!   binding armed at or before its expiry, nothing else armed, `next_timeout` not late);
//! - a reply's bytes parse as a response with the status the outcome names; silence leaves `out` empty;
//! - a 200 to a REGISTER lists exactly the AoR's live bindings (`expires_at_s > now`) with their
//!   remaining seconds;
//! - an outcome that does not say `bindings_changed` changed no live binding (atomicity: refusals
//!   change nothing), and only a 200 may say it;
//! - after `handle_timeout(now)` has returned false: no binding with `expires_at_s <= now` is left, no
//!   live binding went, and (clock not stepped back) `next_timeout()` is after `now`, so the shell's
//!   expiry task does not spin;
//! - the change stream: the changes taken after each step decode, their sequence numbers have no gap,
//!   and replayed into a replica (registered adds, refreshed rewrites, a removal removes, each only where
//!   it fits) they give exactly the store's bindings;
//! - auth: a generated answer with a wrong password or an unknown user is never accepted; a request
//!   whose credentials are accepted and that changes bindings never reuses a (nonce, nc) pair that
//!   changed bindings before.

#![no_main]

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use corereg::auth::credentials::CredentialStore;
use corereg::auth::guard::GuardConfig;
use corereg::auth::nonce::NonceKey;
use corereg::auth::{AuthConfig, Authenticator};
use corereg::registrar::bindings::HashSeed;
use corereg::registrar::changes::ChangeKind;
use corereg::registrar::{Now, Outcome, OverLimitPolicy, Registrar, RegistrarConfig};
use corereg::sip::digest::{expected_response, parse_authorization, Algorithm, Ha1};
use corereg::sip::header::{parse_contact, parse_name_addr, parse_u32, ContactValue};
use corereg::sip::parse::{parse_message, HeaderName, Method, ParseLimits, StartLine};
use corereg::sip::uri::{canonical_aor, parse_uri, AorBuf};
use libfuzzer_sys::fuzz_target;

const T0_S: u64 = 1_700_000_000;
const MAX_STEPS: usize = 64;
/// `handle_timeout` calls allowed for one sweep before it counts as never finishing.
const MAX_SWEEP_CALLS: usize = 10_000;
const REALM: &str = "example.com";

/// (username, password, in the users file).
const USERS: [(&str, &str, bool); 4] = [
    ("alice", "wonderland", true),
    ("bob", "builder", true),
    ("carol", "carrots", true),
    ("dave", "unknown", false),
];
/// User parts of the AoRs registered; carol may also register frontdesk.
const AOR_USERS: [&str; 5] = ["alice", "bob", "carol", "frontdesk", "dave"];

const SOURCES: [&str; 3] = ["192.0.2.10:5060", "192.0.2.11:5062", "[2001:db8::1]:5060"];

/// The users file: passwords for alice and bob, HA1 only for carol (who may also register frontdesk).
fn credentials() -> Arc<CredentialStore> {
    static STORE: OnceLock<Arc<CredentialStore>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let ha1 = |alg| {
                let h = Ha1::from_password(alg, b"carol", REALM.as_bytes(), b"carrots");
                String::from_utf8_lossy(h.expose_hex()).into_owned()
            };
            let text = format!(
                "default_realm = \"{REALM}\"\n\
                 [[user]]\nusername = \"alice\"\npassword = \"wonderland\"\n\
                 [[user]]\nusername = \"bob\"\npassword = \"builder\"\n\
                 [[user]]\nusername = \"carol\"\nha1_md5 = \"{}\"\nha1_sha256 = \"{}\"\n\
                 aors = [\"sip:frontdesk@example.com\"]\n",
                ha1(Algorithm::Md5),
                ha1(Algorithm::Sha256),
            );
            Arc::new(CredentialStore::from_toml_str(&text, None).expect("the harness' users file"))
        })
        .clone()
}

/// The set-up, from bytes 0-4.
#[derive(Debug)]
struct Setup {
    auth: bool,
    max_contacts: usize,
    over_limit: OverLimitPolicy,
    max_bindings: usize,
    only_example_com: bool,
    sha256_too: bool,
    bind_nonce_to_source: bool,
    /// (min, default, max) expiry.
    expiry: (u32, u32, u32),
    max_failures: u32,
    nonce_ttl_s: u64,
    replay_capacity: usize,
}

impl Setup {
    fn decode(b: [u8; 5]) -> Self {
        Setup {
            auth: b[0] & 1 == 1,
            max_contacts: 1 + usize::from(b[1] & 3),
            over_limit: match (b[1] >> 2) % 3 {
                0 => OverLimitPolicy::Reject503,
                1 => OverLimitPolicy::Reject403,
                _ => OverLimitPolicy::EvictOldest,
            },
            only_example_com: b[1] & 0x10 != 0,
            sha256_too: b[1] & 0x20 != 0,
            bind_nonce_to_source: b[1] & 0x40 != 0,
            max_bindings: if b[2] & 0x80 != 0 {
                1000
            } else {
                2 + usize::from(b[2] % 15)
            },
            expiry: match b[3] % 4 {
                0 => (60, 3600, 86400),
                1 => (1, 30, 120),
                2 => (60, 60, 60),
                _ => (10, 100, 1000),
            },
            max_failures: u32::from(b[4] % 4) * 3,
            nonce_ttl_s: if b[4] & 4 != 0 { 30 } else { 300 },
            replay_capacity: if b[4] & 8 != 0 { 8 } else { 1024 },
        }
    }

    fn registrar(&self) -> Registrar {
        let (min, default, max) = self.expiry;
        let cfg = RegistrarConfig {
            domains: if self.only_example_com {
                vec!["example.com".into()]
            } else {
                Vec::new()
            },
            default_expires_s: default,
            min_expires_s: min,
            max_expires_s: max,
            max_contacts_per_aor: self.max_contacts,
            over_limit: self.over_limit,
            max_bindings: self.max_bindings,
            // Fixed: runs must be reproducible.
            hash_seed: HashSeed([0x5eed, 1, 2, 3]),
            ..RegistrarConfig::default()
        };
        let mut reg = Registrar::new(cfg, Now::from_secs(T0_S));
        if self.auth {
            let algorithms: &[Algorithm] = if self.sha256_too {
                &[Algorithm::Sha256, Algorithm::Md5]
            } else {
                &[Algorithm::Md5]
            };
            // Small tables: cheap to build per run, and a run can fill them (the replay window's
            // "forgotten" path, the guard's evictions).
            let config = AuthConfig {
                nonce_ttl_s: self.nonce_ttl_s,
                bind_nonce_to_source: self.bind_nonce_to_source,
                replay_capacity: self.replay_capacity,
                guard: GuardConfig {
                    max_failures: self.max_failures,
                    capacity: 64,
                    ..GuardConfig::default()
                },
                ..AuthConfig::default()
            }
            .with_algorithms(algorithms)
            .expect("one or two algorithms");
            let key = NonceKey::from_bytes(&[0x42; 32]).expect("key");
            // As the registrar tests do: the replay window starts a second before the clock, so nonces
            // issued at T0 are not re-challenged as possibly from a previous process.
            let auth = Authenticator::new(config, key, credentials(), T0_S - 1);
            reg.set_authenticator(Some(auth));
        }
        reg
    }
}

// ---------------------------------------------------------------------------------------------
// The structured REGISTER generator. Small integers index small tables, so that the fuzzer reuses
// AoRs, contacts, Call-IDs and values often enough to hit refreshes, retransmissions and limits.

#[derive(Arbitrary, Debug)]
struct RegisterGen {
    aor: u8,
    to_form: u8,
    ruri: u8,
    contacts: ContactsGen,
    /// Index into EXPIRES (None: no Expires header).
    expires_header: Option<u8>,
    call_id: u8,
    cseq: CseqGen,
    new_branch: bool,
    two_vias: bool,
    path: u8,
    supported: u8,
    require: u8,
    compact: bool,
    user_agent: u8,
    auth: Option<AuthGen>,
}

#[derive(Arbitrary, Debug)]
enum ContactsGen {
    /// No Contact: a fetch.
    None,
    Star,
    List(Vec<ContactGen>),
}

#[derive(Arbitrary, Debug)]
struct ContactGen {
    form: u8,
    device: u8,
    expires: Option<u8>,
    q: Option<u8>,
    instance: Option<u8>,
    reg_id: Option<u8>,
    /// In the same header as the previous Contact, comma-separated.
    same_header: bool,
    display_name: bool,
}

#[derive(Arbitrary, Debug)]
enum CseqGen {
    Next,
    Same,
    Previous,
    Value(u16),
    Max,
    TooLarge,
}

#[derive(Arbitrary, Debug)]
struct AuthGen {
    /// Below 200: the user owning the AoR (carol for frontdesk); else any of USERS.
    user: u8,
    /// Below 160: a correct answer; else bit 0 wrong password, 1 wrong digest uri, 2 wrong opaque,
    /// 3 another realm, 4 no qop.
    flaws: u8,
    sha256: bool,
    nonce: NonceGen,
    nc: NcGen,
    cnonce: u8,
}

#[derive(Arbitrary, Debug)]
enum NonceGen {
    /// The newest nonce a 401 gave for this AoR (else the newest of any AoR).
    ForAor,
    /// The one before it.
    Older,
    /// The newest of any AoR.
    Newest,
    Forged,
}

#[derive(Arbitrary, Debug)]
enum NcGen {
    Next,
    Same,
    Zero,
    Value(u8),
}

const EXPIRES: [&str; 16] = [
    "0",
    "1",
    "9",
    "10",
    "30",
    "59",
    "60",
    "61",
    "120",
    "600",
    "3600",
    "86400",
    "86401",
    "4294967295",
    "4294967296",
    "soon",
];
const QS: [&str; 8] = ["1", "0.5", "0", "0.001", "1.000", "0.1234", "2", "0.75"];
const REG_IDS: [&str; 4] = ["1", "2", "0", "x"];
const METHODS: [&str; 6] = ["OPTIONS", "INVITE", "ACK", "BYE", "FOO", "REGISTER"];

/// One step's action.
enum Action {
    Register(RegisterGen),
    Mutated(RegisterGen, Vec<(u16, u8, u8)>),
    Raw(Vec<u8>),
    Sweep,
    Other(u8, RegisterGen),
    /// Send again the previous datagram (even byte) or one of the last that got a 200 (a late
    /// retransmission).
    Again(u8),
    Probe,
}

struct Step {
    action: Action,
    source: SocketAddr,
    advance: Advance,
    sweep_after: bool,
}

#[derive(Debug, Clone, Copy)]
enum Advance {
    None,
    Millis(u16),
    Seconds(u8),
    LongSeconds(u16),
    Minutes(u8),
    Days(u16),
    Huge(u32),
    Back(u16),
}

fn decode_step(u: &mut Unstructured<'_>) -> arbitrary::Result<Step> {
    let op: u8 = u.arbitrary()?;
    let action = match op % 16 {
        0..=8 => Action::Register(u.arbitrary()?),
        9 => {
            let gen = u.arbitrary()?;
            let n = usize::from(u.arbitrary::<u8>()? % 4) + 1;
            let mut edits = Vec::with_capacity(n);
            for _ in 0..n {
                edits.push((u.arbitrary()?, u.arbitrary()?, u.arbitrary()?));
            }
            Action::Mutated(gen, edits)
        }
        10 => {
            let len = u.bytes(2)?;
            let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
            let len = len.min(u.len());
            Action::Raw(u.bytes(len)?.to_vec())
        }
        11 => Action::Sweep,
        12 => Action::Other(u.arbitrary()?, u.arbitrary()?),
        13 => Action::Again(u.arbitrary()?),
        14 => Action::Probe,
        _ => {
            // A REGISTER that answers a challenge (in auth mode).
            let mut gen: RegisterGen = u.arbitrary()?;
            if gen.auth.is_none() {
                gen.auth = Some(AuthGen {
                    user: 0,
                    flaws: 0,
                    sha256: false,
                    nonce: NonceGen::ForAor,
                    nc: NcGen::Next,
                    cnonce: 0,
                });
            }
            Action::Register(gen)
        }
    };
    let flags: u8 = u.arbitrary()?;
    let kind: u8 = u.arbitrary()?;
    let v = match u.bytes(2) {
        Ok(b) => u16::from_le_bytes([b[0], b[1]]),
        Err(_) => 0,
    };
    let advance = match kind % 8 {
        0 => Advance::None,
        1 => Advance::Millis(v),
        2 => Advance::Seconds(v as u8),
        3 => Advance::LongSeconds(v),
        4 => Advance::Minutes(v as u8),
        5 => Advance::Days(v),
        6 => Advance::Huge(u32::from(v) << 11),
        _ => Advance::Back(v),
    };
    Ok(Step {
        action,
        source: SOURCES[usize::from(flags % 3)].parse().expect("address"),
        advance,
        sweep_after: flags & 0x80 != 0,
    })
}

// ---------------------------------------------------------------------------------------------
// The harness

/// A live binding, everything the registrar keeps of it: what "nothing changed" compares.
type LiveBinding = (
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    u32,
    u64,
    u64,
    Option<u16>,
    Option<u32>,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    SocketAddr,
);

struct Harness {
    reg: Registrar,
    auth: bool,
    now_ms: u64,
    /// The latest time passed to the registrar (the clock may step back).
    max_now_ms: u64,
    out: Vec<u8>,
    last_datagram: Vec<u8>,
    /// The last datagrams answered 200 (at most 8).
    answered_ok: Vec<Vec<u8>>,
    /// Last CSeq sent per Call-ID.
    cseqs: HashMap<String, u32>,
    branch: u32,
    /// (nonce, opaque) of the 401s, newest last, per AoR index; and the newest of all.
    nonces: HashMap<usize, Vec<(String, String)>>,
    newest_nonce: Option<(String, String)>,
    /// Last nc the harness sent per nonce.
    ncs: HashMap<String, u32>,
    /// (nonce, nc) of accepted requests that changed bindings.
    accepted: HashSet<(Vec<u8>, u32)>,
    /// The store as the change stream tells it: binding id -> (AoR, contact), and the last sequence number.
    replica: HashMap<u32, (Vec<u8>, Vec<u8>)>,
    last_seq: u64,
}

/// What the generator knows about the credentials it put in a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Credentials {
    None,
    /// A digest computed with a wrong password, for an unknown user or for another realm.
    Wrong,
    /// Right user and password (the request may still be refused: nonce, nc, uri, ownership).
    Right,
}

impl Harness {
    fn new(setup: &Setup) -> Self {
        Harness {
            reg: setup.registrar(),
            auth: setup.auth,
            now_ms: T0_S * 1000,
            max_now_ms: T0_S * 1000,
            out: Vec::new(),
            last_datagram: Vec::new(),
            answered_ok: Vec::new(),
            cseqs: HashMap::new(),
            branch: 0,
            nonces: HashMap::new(),
            newest_nonce: None,
            ncs: HashMap::new(),
            accepted: HashSet::new(),
            replica: HashMap::new(),
            last_seq: 0,
        }
    }

    /// Replays the changes of the last step into the replica and compares it with the store.
    fn check_changes(&mut self, datagram: &[u8]) {
        let batch = self.reg.take_changes(Vec::new());
        for change in batch.iter() {
            let c = change.unwrap_or_else(|e| panic!("undecodable change: {e}"));
            assert_eq!(c.seq, self.last_seq + 1, "a gap in the change stream");
            self.last_seq = c.seq;
            let entry = (c.aor.to_vec(), c.binding.contact.to_vec());
            let fits = match c.kind {
                ChangeKind::Registered => self.replica.insert(c.binding.id, entry).is_none(),
                ChangeKind::Refreshed => self.replica.insert(c.binding.id, entry).is_some(),
                _ => self.replica.remove(&c.binding.id).is_some(),
            };
            assert!(
                fits,
                "{:?} of binding {} after:\n{}",
                c.kind,
                c.binding.id,
                show(datagram)
            );
        }
        let store = self.reg.store();
        let stored: HashMap<u32, (Vec<u8>, Vec<u8>)> = store
            .iter()
            .map(|(id, b)| {
                let aor = store.aor_name(b.aor()).unwrap_or_default().to_vec();
                (id, (aor, b.contact().to_vec()))
            })
            .collect();
        assert!(
            stored == self.replica,
            "the change stream disagrees with the store after:\n{}",
            show(datagram)
        );
    }

    fn now(&self) -> Now {
        Now {
            unix_ms: self.now_ms,
        }
    }

    fn advance(&mut self, a: Advance) {
        let ms: i64 = match a {
            Advance::None => 0,
            Advance::Millis(n) => i64::from(n % 2000),
            Advance::Seconds(n) => i64::from(n) * 1000,
            Advance::LongSeconds(n) => i64::from(n) * 1000,
            Advance::Minutes(n) => i64::from(n) * 60_000,
            Advance::Days(n) => i64::from(n % 400) * 86_400_000,
            // Up to ~4 years: across level 1 of the wheel (2^24 s) and into its overflow list.
            Advance::Huge(n) => i64::from(n % (1 << 27)) * 1000,
            Advance::Back(n) => -i64::from(n % 4000) * 1000,
        };
        self.now_ms = self.now_ms.saturating_add_signed(ms).max(1000);
        self.max_now_ms = self.max_now_ms.max(self.now_ms);
    }

    fn run(&mut self, step: Step) {
        self.advance(step.advance);
        match step.action {
            Action::Sweep => self.sweep(),
            Action::Register(gen) => {
                let (bytes, creds) = self.build(&gen, "REGISTER", "REGISTER");
                self.send(bytes, step.source, creds);
            }
            Action::Mutated(gen, edits) => {
                let (mut bytes, _) = self.build(&gen, "REGISTER", "REGISTER");
                mutate(&mut bytes, &edits);
                self.send(bytes, step.source, Credentials::None);
            }
            Action::Raw(bytes) => self.send(bytes, step.source, Credentials::None),
            Action::Other(m, gen) => {
                let method = METHODS[usize::from(m) % METHODS.len()];
                let cseq_method = if m & 0x80 != 0 { "REGISTER" } else { method };
                let (bytes, _) = self.build(&gen, method, cseq_method);
                self.send(bytes, step.source, Credentials::None);
            }
            Action::Again(which) => {
                let bytes = match (which % 2, self.answered_ok.len()) {
                    (1, n) if n > 0 => self.answered_ok[usize::from(which / 2) % n].clone(),
                    _ => self.last_datagram.clone(),
                };
                if !bytes.is_empty() {
                    self.send(bytes, step.source, Credentials::None);
                }
            }
            Action::Probe => self.probe(step.source),
        }
        if step.sweep_after {
            self.sweep();
        }
    }

    /// The stateless entry point on the previous datagram: it must change nothing.
    fn probe(&mut self, source: SocketAddr) {
        let now = self.now();
        let before = self.live(now);
        let datagram = self.last_datagram.clone();
        let outcome = self
            .reg
            .reject_overloaded(&datagram, source, now, &mut self.out);
        self.check_reply_bytes(outcome, &datagram);
        if let Outcome::Reply { status, .. } = outcome {
            assert_eq!(status, 503, "reject_overloaded answers 503");
        }
        assert!(
            before == self.live(now),
            "a stateless probe changed bindings"
        );
        self.check_invariants(&datagram);
        self.check_changes(&datagram);
    }

    fn send(&mut self, datagram: Vec<u8>, source: SocketAddr, creds: Credentials) {
        let now = self.now();
        let before = self.live(now);
        let accepted_before = self.accepted_count();
        if trace() {
            eprintln!("--- {} ms from {source}:\n{}", self.now_ms, show(&datagram));
        }
        let outcome = self.reg.handle(&datagram, source, now, &mut self.out);
        if trace() {
            eprintln!("=> {outcome:?}\n{}", show(&self.out));
        }
        self.check_invariants(&datagram);
        self.check_changes(&datagram);
        self.check_reply_bytes(outcome, &datagram);
        let changed = match outcome {
            Outcome::Reply {
                status,
                bindings_changed,
            } => {
                assert!(
                    !bindings_changed || status == 200,
                    "bindings_changed with status {status}"
                );
                if status == 200 {
                    self.check_ok_lists_live(&datagram, now);
                    if self.answered_ok.len() == 8 {
                        self.answered_ok.remove(0);
                    }
                    self.answered_ok.push(datagram.clone());
                }
                if status == 401 {
                    self.remember_nonce(&datagram);
                }
                bindings_changed
            }
            Outcome::Silent(_) => false,
            Outcome::HandOff { .. } => panic!("a registrar of one shard handed a request off"),
        };
        if !changed {
            assert!(
                before == self.live(now),
                "{outcome:?} but live bindings changed\n{}",
                show(&datagram)
            );
        }
        let accepted = self.accepted_count() - accepted_before;
        if accepted > 0 {
            assert!(
                creds != Credentials::Wrong,
                "wrong credentials accepted\n{}",
                show(&datagram)
            );
            if changed {
                self.check_not_replayed(&datagram);
            }
        }
        self.last_datagram = datagram;
    }

    fn accepted_count(&mut self) -> u64 {
        self.reg
            .authenticator_mut()
            .map_or(0, |a| a.stats().accepted)
    }

    /// Sweep as the shell does: `handle_timeout` until it reports nothing more due.
    fn sweep(&mut self) {
        let now = self.now();
        let now_s = now.unix_s();
        let before = self.live(now);
        if trace() {
            eprintln!("--- {} ms: sweep", self.now_ms);
        }
        let mut calls = 0;
        while self.reg.handle_timeout(now) {
            calls += 1;
            assert!(
                calls < MAX_SWEEP_CALLS,
                "handle_timeout({now_s}) never finishes"
            );
        }
        self.check_invariants(b"(sweep)");
        self.check_changes(b"(sweep)");
        if let Some((idx, b)) = self
            .reg
            .store()
            .iter()
            .find(|(_, b)| b.expires_at_s <= now_s)
        {
            panic!(
                "after handle_timeout({now_s}) returned false, binding {idx} ({}) expired at {} is still stored",
                String::from_utf8_lossy(b.contact()),
                b.expires_at_s
            );
        }
        if self.now_ms == self.max_now_ms {
            if let Some(next) = self.reg.next_timeout() {
                assert!(
                    next > now_s,
                    "after a full sweep at {now_s}, next_timeout() is {next}: the expiry task would spin"
                );
            }
        }
        assert!(before == self.live(now), "a sweep removed a live binding");
    }

    fn check_invariants(&self, datagram: &[u8]) {
        if let Err(e) = self.reg.check_invariants(self.now()) {
            panic!(
                "invariant violated at {} ms: {e}\nafter:\n{}\nreply:\n{}",
                self.now_ms,
                show(datagram),
                show(&self.out)
            );
        }
    }

    fn live(&self, now: Now) -> Vec<LiveBinding> {
        let store = self.reg.store();
        let mut v: Vec<LiveBinding> = store
            .iter()
            .filter(|(_, b)| b.expires_at_s > now.unix_s())
            .map(|(_, b)| {
                (
                    store.aor_name(b.aor()).unwrap_or_default().to_vec(),
                    b.contact().to_vec(),
                    b.call_id().to_vec(),
                    b.cseq,
                    b.expires_at_s,
                    b.updated_at_s,
                    b.q,
                    b.reg_id.map(|r| r.get()),
                    b.instance().to_vec(),
                    b.path().to_vec(),
                    b.user_agent().to_vec(),
                    b.source,
                )
            })
            .collect();
        v.sort();
        v
    }

    /// A reply parses as a response with the outcome's status; silence writes nothing.
    fn check_reply_bytes(&self, outcome: Outcome, datagram: &[u8]) {
        match outcome {
            Outcome::Reply { status, .. } => {
                let msg = parse_message(&self.out, &WIDE).unwrap_or_else(|e| {
                    panic!(
                        "reply {status} does not frame ({e})\n{}\nto:\n{}",
                        show(&self.out),
                        show(datagram)
                    )
                });
                match msg.start {
                    StartLine::Response { code } => assert_eq!(code, status),
                    other => panic!("reply start line {other:?}\n{}", show(&self.out)),
                }
                assert!(
                    self.out.ends_with(b"\r\n\r\n"),
                    "reply without a body ends with CRLF CRLF"
                );
            }
            Outcome::Silent(_) | Outcome::HandOff { .. } => {
                assert!(self.out.is_empty(), "silence with bytes in out");
            }
        }
    }

    /// A 200 to a REGISTER lists exactly the AoR's live bindings, each with its remaining seconds.
    fn check_ok_lists_live(&self, datagram: &[u8], now: Now) {
        let limits = self.reg.config().parse;
        let Ok(msg) = parse_message(datagram, &limits) else {
            panic!(
                "a 200 to a datagram that does not frame\n{}",
                show(datagram)
            );
        };
        if !matches!(
            msg.start,
            StartLine::Request {
                method: Method::Register,
                ..
            }
        ) {
            return;
        }
        let to = msg
            .first(HeaderName::To)
            .expect("a 200 to a REGISTER without To");
        let to = parse_name_addr(to).expect("a 200 to a REGISTER whose To does not parse");
        let uri = parse_uri(to.uri).expect("a 200 to a REGISTER whose To URI does not parse");
        let mut aor = AorBuf::default();
        canonical_aor(&uri, &mut aor).expect("a 200 to a REGISTER without AoR");
        let store = self.reg.store();
        let now_s = now.unix_s();
        let mut want: Vec<(Vec<u8>, u64)> = store
            .find_aor(store.hash_aor(aor.as_bytes()), aor.as_bytes())
            .map(|rec| {
                store
                    .bindings_of(rec)
                    .filter(|(_, b)| b.expires_at_s > now_s)
                    .map(|(_, b)| (b.contact().to_vec(), b.expires_at_s - now_s))
                    .collect()
            })
            .unwrap_or_default();
        want.sort();
        let reply = parse_message(&self.out, &WIDE).expect("checked by check_reply_bytes");
        let mut got: Vec<(Vec<u8>, u64)> = reply
            .all(HeaderName::Contact)
            .map(|value| match parse_contact(value) {
                Ok(ContactValue::Addr(na)) => {
                    let expires = na
                        .params
                        .get(b"expires")
                        .flatten()
                        .and_then(|v| parse_u32(v).ok())
                        .unwrap_or_else(|| {
                            panic!("a 200's Contact without expires\n{}", show(&self.out))
                        });
                    (na.uri.to_vec(), u64::from(expires))
                }
                _ => panic!(
                    "a 200's Contact does not parse: {:?}\n{}",
                    String::from_utf8_lossy(value),
                    show(&self.out)
                ),
            })
            .collect();
        got.sort();
        assert!(
            got == want,
            "the 200 lists {} but the AoR {:?} has the live bindings {}\nrequest:\n{}\nreply:\n{}",
            list(&got),
            String::from_utf8_lossy(aor.as_bytes()),
            list(&want),
            show(datagram),
            show(&self.out)
        );
    }

    /// Take the nonce and opaque of a 401 (every challenge of one 401 shares them).
    fn remember_nonce(&mut self, datagram: &[u8]) {
        // Lossy: the reply echoes the request's headers, which may hold any bytes.
        let reply = String::from_utf8_lossy(&self.out);
        let Some(challenge) = reply
            .split("\r\n")
            .find(|l| l.starts_with("WWW-Authenticate:"))
        else {
            panic!("401 without WWW-Authenticate\n{}", show(&self.out));
        };
        let nonce = param(challenge, "nonce").expect("nonce").to_string();
        let opaque = param(challenge, "opaque").expect("opaque").to_string();
        let aor = aor_index(datagram);
        let pair = (nonce, opaque);
        if let Some(i) = aor {
            let kept = self.nonces.entry(i).or_default();
            kept.push(pair.clone());
            if kept.len() > 2 {
                kept.remove(0);
            }
        }
        self.newest_nonce = Some(pair);
    }

    /// An accepted request that changed bindings: its (nonce, nc) pair was never used for that before.
    fn check_not_replayed(&mut self, datagram: &[u8]) {
        let Ok(msg) = parse_message(datagram, &self.reg.config().parse) else {
            return;
        };
        let pairs: Vec<(Vec<u8>, u32)> = msg
            .all(HeaderName::Authorization)
            .filter_map(|v| parse_authorization(v).ok())
            .filter_map(|c| Some((c.nonce.raw().to_vec(), c.nonce_count()?)))
            .collect();
        if pairs.len() != 1 {
            // Several credentials: which one was used is not known here.
            return;
        }
        let pair = pairs.into_iter().next().expect("one");
        assert!(
            self.accepted.insert(pair.clone()),
            "nonce {:?} with nc {} accepted twice for a change\n{}",
            String::from_utf8_lossy(&pair.0),
            pair.1,
            show(datagram)
        );
    }

    // -----------------------------------------------------------------------------------------
    // Building requests

    fn build(
        &mut self,
        g: &RegisterGen,
        method: &str,
        cseq_method: &str,
    ) -> (Vec<u8>, Credentials) {
        let aor_i = usize::from(g.aor) % AOR_USERS.len();
        let user = AOR_USERS[aor_i];
        let to = match g.to_form % 10 {
            0..=2 => format!("<sip:{user}@example.com>"),
            3 => format!("sip:{user}@example.com"),
            4 => format!("\"Some One\" <sip:{user}@EXAMPLE.COM;transport=udp>"),
            5 => format!("<sip:{user}@example.com:5060>"),
            6 => format!("<sips:{user}@example.com>"),
            7 => format!("<sip:{user}@example.net>"),
            8 => format!(
                "<sip:%{:02X}{}@example.com>",
                user.as_bytes()[0],
                &user[1..]
            ),
            _ => format!("<tel:+1555{}>", aor_i),
        };
        let ruri = match g.ruri % 8 {
            0..=3 => "sip:example.com",
            4 => "sip:EXAMPLE.COM",
            5 => "sip:example.net",
            6 => "sips:example.com",
            _ => "tel:+15550000",
        };
        let call_id = match g.call_id % 6 {
            5 => "shared-call-id@fuzz".to_string(),
            n => format!("cid-{user}-{n}@fuzz"),
        };
        let last = self.cseqs.get(&call_id).copied();
        let cseq: String = match g.cseq {
            CseqGen::Next => last.map_or(1, |c| c.wrapping_add(1)).to_string(),
            CseqGen::Same => last.unwrap_or(1).to_string(),
            CseqGen::Previous => last.map_or(0, |c| c.saturating_sub(1)).to_string(),
            CseqGen::Value(v) => v.to_string(),
            CseqGen::Max => u32::MAX.to_string(),
            CseqGen::TooLarge => "4294967296".to_string(),
        };
        if let Ok(n) = cseq.parse::<u32>() {
            self.cseqs.insert(call_id.clone(), n);
        }
        if g.new_branch || self.branch == 0 {
            self.branch += 1;
        }
        let h = |full: &'static str, compact: &'static str| if g.compact { compact } else { full };
        let mut m = String::with_capacity(512);
        let _ = write!(m, "{method} {ruri} SIP/2.0\r\n");
        let _ = write!(
            m,
            "{}: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-fz{};rport\r\n",
            h("Via", "v"),
            self.branch
        );
        if g.two_vias {
            m.push_str(
                "Via: SIP/2.0/UDP edge.example.com;branch=z9hG4bK-edge;received=192.0.2.99\r\n",
            );
        }
        m.push_str("Max-Forwards: 70\r\n");
        let _ = write!(
            m,
            "{}: <sip:{user}@example.com>;tag=fz{}\r\n",
            h("From", "f"),
            g.call_id
        );
        let _ = write!(m, "{}: {to}\r\n", h("To", "t"));
        let _ = write!(m, "{}: {call_id}\r\n", h("Call-ID", "i"));
        let _ = write!(m, "CSeq: {cseq} {cseq_method}\r\n");
        match &g.contacts {
            ContactsGen::None => {}
            ContactsGen::Star => {
                let _ = write!(m, "{}: *\r\n", h("Contact", "m"));
            }
            ContactsGen::List(list) => {
                let mut open = false;
                for (i, c) in list.iter().take(8).enumerate() {
                    if c.same_header && open {
                        m.truncate(m.len() - 2);
                        m.push_str(", ");
                    } else {
                        let _ = write!(m, "{}: ", h("Contact", "m"));
                    }
                    contact(&mut m, c, user, i);
                    m.push_str("\r\n");
                    open = true;
                }
            }
        }
        if let Some(e) = g.expires_header {
            let _ = write!(
                m,
                "Expires: {}\r\n",
                EXPIRES[usize::from(e) % EXPIRES.len()]
            );
        }
        match g.path % 6 {
            1 => m.push_str("Path: <sip:edge1.example.com;lr>\r\n"),
            2 => m.push_str(
                "Path: <sip:edge1.example.com;lr>\r\nPath: <sip:edge2.example.com;lr>\r\n",
            ),
            3 => m.push_str("Path: <sip:edge1.example.com;lr>, <sip:edge2.example.com;lr>\r\n"),
            _ => {}
        }
        match g.supported % 5 {
            1 => m.push_str("Supported: path\r\n"),
            2 => m.push_str("Supported: path, outbound, gruu\r\n"),
            3 => m.push_str("k: outbound\r\n"),
            _ => {}
        }
        match g.require % 6 {
            1 => m.push_str("Require: outbound\r\n"),
            2 => m.push_str("Require: path\r\n"),
            3 => m.push_str("Require: foo, outbound\r\n"),
            _ => {}
        }
        match g.user_agent % 4 {
            1 => m.push_str("User-Agent: fuzz-phone/1.0\r\n"),
            2 => m.push_str("User-Agent: other-phone/2.0 (rev 3)\r\n"),
            _ => {}
        }
        let creds = match &g.auth {
            Some(a) if self.auth || a.cnonce & 0x80 != 0 => {
                self.authorization(&mut m, a, aor_i, ruri, method)
            }
            _ => Credentials::None,
        };
        let _ = write!(m, "{}: 0\r\n\r\n", h("Content-Length", "l"));
        (m.into_bytes(), creds)
    }

    /// An Authorization header answering the last challenge, with a real digest.
    fn authorization(
        &mut self,
        m: &mut String,
        a: &AuthGen,
        aor_i: usize,
        ruri: &str,
        method: &str,
    ) -> Credentials {
        let (user, password, known) = if a.user < 200 {
            let owner = match AOR_USERS[aor_i] {
                "frontdesk" => "carol",
                other => other,
            };
            USERS
                .into_iter()
                .find(|(u, _, _)| *u == owner)
                .expect("every AoR user has an owner in USERS")
        } else {
            USERS[usize::from(a.user) % USERS.len()]
        };
        let flaw = |bit: u8| a.flaws >= 160 && a.flaws & (1 << bit) != 0;
        let (wrong_password, wrong_uri, wrong_opaque, wrong_realm, no_qop) =
            (flaw(0), flaw(1), flaw(2), flaw(3), flaw(4));
        let kept = self.nonces.get(&aor_i);
        let (nonce, opaque) = match a.nonce {
            NonceGen::ForAor => kept.and_then(|k| k.last()).cloned(),
            NonceGen::Older => kept.and_then(|k| k.first()).cloned(),
            NonceGen::Newest => self.newest_nonce.clone(),
            NonceGen::Forged => None,
        }
        .or_else(|| self.newest_nonce.clone())
        .unwrap_or_else(|| {
            (
                "AAAAforgedNONCEforgedNONCEforgedNONCEforged=".into(),
                "forged".into(),
            )
        });
        let last_nc = self.ncs.get(&nonce).copied().unwrap_or(0);
        let nc = match a.nc {
            NcGen::Next => last_nc + 1,
            NcGen::Same => last_nc.max(1),
            NcGen::Zero => 0,
            NcGen::Value(v) => u32::from(v),
        };
        self.ncs.insert(nonce.clone(), last_nc.max(nc));
        let nc = format!("{nc:08x}");
        let alg = if a.sha256 {
            Algorithm::Sha256
        } else {
            Algorithm::Md5
        };
        let realm = if wrong_realm { "other.example" } else { REALM };
        let digest_password = if wrong_password {
            "not-the-password"
        } else {
            password
        };
        let ha1 = Ha1::from_password(
            alg,
            user.as_bytes(),
            realm.as_bytes(),
            digest_password.as_bytes(),
        );
        let uri = if wrong_uri {
            "sip:example.com:5060"
        } else {
            ruri
        };
        let cnonce = format!("c{:02x}", a.cnonce);
        let qop: Option<&[u8]> = if no_qop { None } else { Some(b"auth") };
        let response = expected_response(
            alg,
            ha1.expose_hex(),
            method.as_bytes(),
            uri.as_bytes(),
            nonce.as_bytes(),
            nc.as_bytes(),
            cnonce.as_bytes(),
            qop,
        )
        .expect("qop auth or none");
        let opaque = if wrong_opaque {
            "wrong"
        } else {
            opaque.as_str()
        };
        let _ = write!(
            m,
            "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{}\", algorithm={}, cnonce=\"{cnonce}\", opaque=\"{opaque}\"",
            response.as_str(),
            alg.name(),
        );
        if !no_qop {
            let _ = write!(m, ", qop=auth, nc={nc}");
        }
        m.push_str("\r\n");
        if !known || wrong_password || wrong_realm {
            Credentials::Wrong
        } else {
            Credentials::Right
        }
    }
}

/// One Contact element.
fn contact(m: &mut String, c: &ContactGen, user: &str, i: usize) {
    let d = c.device % 4;
    let uri = match c.form % 12 {
        0..=3 => format!("sip:{user}@192.0.2.10:{}", 5060 + u32::from(d)),
        4 => format!(
            "SIP:{user}@192.0.2.10:{};TRANSPORT=udp",
            5060 + u32::from(d)
        ),
        5 => format!(
            "sip:{user}@192.0.2.10:{};transport=udp",
            5060 + u32::from(d)
        ),
        6 => format!("sip:{user}@[2001:db8::{d}]:5062;ob"),
        7 => format!("sips:{user}@phone{d}.example.org"),
        8 => format!("tel:+1555000{d}"),
        9 => format!(
            "sip:%{:02x}{}@192.0.2.10:{}",
            user.as_bytes()[0],
            &user[1..],
            5060 + u32::from(d)
        ),
        10 => format!("sip:{user}@192.0.2.10:0{}", 5060 + u32::from(d)),
        _ => format!("sip:{user}-{i}@192.0.2.12"),
    };
    if c.display_name {
        m.push_str("\"Phone\" ");
    }
    let _ = write!(m, "<{uri}>");
    if let Some(e) = c.expires {
        let _ = write!(m, ";expires={}", EXPIRES[usize::from(e) % EXPIRES.len()]);
    }
    if let Some(q) = c.q {
        let _ = write!(m, ";q={}", QS[usize::from(q) % QS.len()]);
    }
    if let Some(n) = c.instance {
        let _ = write!(
            m,
            ";+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-0000000000{:02x}>\"",
            n % 4
        );
    }
    if let Some(r) = c.reg_id {
        let _ = write!(m, ";reg-id={}", REG_IDS[usize::from(r) % REG_IDS.len()]);
    }
}

/// A few byte edits: overwrite, insert, delete, or cut the datagram short.
fn mutate(bytes: &mut Vec<u8>, edits: &[(u16, u8, u8)]) {
    for &(at, kind, byte) in edits {
        if bytes.is_empty() {
            return;
        }
        let at = usize::from(at) % bytes.len();
        match kind % 4 {
            0 => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            2 => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at.max(1)),
        }
    }
}

/// The index of the AoR user a datagram's To names, if it is one of ours.
fn aor_index(datagram: &[u8]) -> Option<usize> {
    let msg = parse_message(datagram, &WIDE).ok()?;
    let to = parse_name_addr(msg.first(HeaderName::To)?).ok()?;
    let uri = parse_uri(to.uri).ok()?;
    let mut aor = AorBuf::default();
    canonical_aor(&uri, &mut aor).ok()?;
    let user = aor.as_bytes().strip_prefix(b"sip:")?;
    let user = &user[..user.iter().position(|&b| b == b'@')?];
    AOR_USERS.iter().position(|u| u.as_bytes() == user)
}

/// A quoted or token parameter's value in a challenge line.
fn param<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split([',', ' ']).next(),
    }
}

const WIDE: ParseLimits = ParseLimits {
    max_message_bytes: 65_507,
    max_headers: corereg::sip::parse::MAX_HEADERS,
    max_line_bytes: 65_507,
};

/// `COREREG_FUZZ_TRACE=1`: print every step (to read what a finding did).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("COREREG_FUZZ_TRACE").is_some_and(|v| v != "0"))
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace("\r\n", "\n")
}

fn list(contacts: &[(Vec<u8>, u64)]) -> String {
    let items: Vec<String> = contacts
        .iter()
        .map(|(c, e)| format!("{}@{e}s", String::from_utf8_lossy(c)))
        .collect();
    format!("[{}]", items.join(", "))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let setup = Setup::decode([data[0], data[1], data[2], data[3], data[4]]);
    let mut h = Harness::new(&setup);
    h.check_invariants(b"(start)");
    let mut u = Unstructured::new(&data[5..]);
    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        let Ok(step) = decode_step(&mut u) else {
            break;
        };
        h.run(step);
    }
    // The end of every run: a full sweep, at the last time and once more far later.
    h.sweep();
    h.advance(Advance::Days(399));
    h.sweep();
    assert_eq!(
        h.reg.binding_count(),
        0,
        "every binding expires within 399 days"
    );
});
