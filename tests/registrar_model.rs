//! Model-based test: a plain BTreeMap model of RFC 3261 §10.3 and the registrar must agree on every
//! status code and every binding list over random sequences of REGISTERs, unregisters, `Contact: *`,
//! fetches, operator deletes and clock advances; and the change stream, replayed into a replica, must
//! give back exactly the registrar's bindings after every step.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use corereg::registrar::changes::ChangeKind;
use corereg::registrar::{Now, Outcome, Registrar, RegistrarConfig};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000;
const MIN_EXPIRES: u32 = 60;

#[derive(Clone, Debug)]
enum Op {
    Register {
        user: u8,
        call: u8,
        cseq: u32,
        contacts: Vec<(u8, u32)>,
    },
    Star {
        user: u8,
        call: u8,
        cseq: u32,
    },
    Fetch {
        user: u8,
    },
    Delete {
        user: u8,
    },
    Advance {
        secs: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let expires = prop_oneof![Just(0u32), Just(30), Just(60), Just(120), Just(600)];
    prop_oneof![
        5 => (0..3u8, 0..2u8, 1..12u32, proptest::sample::subsequence(vec![0u8, 1, 2, 3], 1..=3), proptest::collection::vec(expires, 3))
            .prop_map(|(user, call, cseq, cs, exps)| Op::Register {
                user, call, cseq,
                contacts: cs.into_iter().zip(exps).collect(),
            }),
        1 => (0..3u8, 0..2u8, 1..12u32).prop_map(|(user, call, cseq)| Op::Star { user, call, cseq }),
        2 => (0..3u8).prop_map(|user| Op::Fetch { user }),
        1 => (0..3u8).prop_map(|user| Op::Delete { user }),
        2 => prop_oneof![Just(1u64), Just(30), Just(59), Just(61), Just(200), Just(700)].prop_map(|secs| Op::Advance { secs }),
    ]
}

#[derive(Clone, Debug)]
struct ModelBinding {
    expires_at: u64,
    call: u8,
    cseq: u32,
}

#[derive(Default)]
struct Model {
    aors: BTreeMap<u8, BTreeMap<u8, ModelBinding>>,
}

enum Cseq {
    Ok,
    Retrans,
    Abort,
}

impl Model {
    fn purge(&mut self, user: u8, now: u64) {
        if let Some(m) = self.aors.get_mut(&user) {
            m.retain(|_, b| b.expires_at > now);
        }
    }
    fn verdict<'a>(bs: impl Iterator<Item = &'a ModelBinding>, call: u8, cseq: u32) -> Cseq {
        let mut v = Cseq::Ok;
        for b in bs {
            if b.call == call {
                if cseq < b.cseq {
                    return Cseq::Abort;
                }
                if cseq == b.cseq {
                    v = Cseq::Retrans;
                }
            }
        }
        v
    }
    fn register(&mut self, user: u8, call: u8, cseq: u32, contacts: &[(u8, u32)], now: u64) -> u16 {
        if contacts.iter().any(|&(_, e)| e != 0 && e < MIN_EXPIRES) {
            return 423;
        }
        self.purge(user, now);
        let aor = self.aors.entry(user).or_default();
        let touched = contacts.iter().filter_map(|(c, _)| aor.get(c));
        match Self::verdict(touched, call, cseq) {
            Cseq::Abort => return 400,
            Cseq::Retrans => return 200,
            Cseq::Ok => {}
        }
        for &(c, e) in contacts {
            if e == 0 {
                aor.remove(&c);
            } else {
                aor.insert(
                    c,
                    ModelBinding {
                        expires_at: now + u64::from(e),
                        call,
                        cseq,
                    },
                );
            }
        }
        200
    }
    fn star(&mut self, user: u8, call: u8, cseq: u32, now: u64) -> u16 {
        self.purge(user, now);
        let aor = self.aors.entry(user).or_default();
        match Self::verdict(aor.values(), call, cseq) {
            Cseq::Abort => 400,
            Cseq::Retrans => 200,
            Cseq::Ok => {
                aor.clear();
                200
            }
        }
    }
    fn list(&self, user: u8, now: u64) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self
            .aors
            .get(&user)
            .map(|m| {
                m.iter()
                    .filter(|(_, b)| b.expires_at > now)
                    .map(|(c, b)| (contact_uri(*c), b.expires_at - now))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
    fn count(&self, now: u64) -> usize {
        self.aors
            .values()
            .map(|m| m.values().filter(|b| b.expires_at > now).count())
            .sum()
    }
}

/// What the change stream says is stored: binding id -> (AoR, contact, expiry), with the last sequence
/// number.
#[derive(Default)]
struct Replica {
    bindings: HashMap<u32, (Vec<u8>, Vec<u8>, u64)>,
    seq: u64,
}

impl Replica {
    /// Applies the registrar's new changes, checking their order, then compares with the registrar.
    fn catch_up(&mut self, reg: &mut Registrar) -> Result<(), TestCaseError> {
        let batch = reg.take_changes(Vec::new());
        for change in batch.iter() {
            let c = change.map_err(|e| TestCaseError::fail(format!("undecodable change: {e}")))?;
            prop_assert_eq!(c.seq, self.seq + 1, "sequence numbers have no gap");
            self.seq = c.seq;
            let entry = (
                c.aor.to_vec(),
                c.binding.contact.to_vec(),
                c.binding.expires_at_s,
            );
            let had = match c.kind {
                ChangeKind::Registered => self.bindings.insert(c.binding.id, entry).is_some(),
                ChangeKind::Refreshed => self.bindings.insert(c.binding.id, entry).is_none(),
                _ => self.bindings.remove(&c.binding.id).is_none(),
            };
            prop_assert!(
                !had,
                "{:?} of binding {} does not fit what came before",
                c.kind,
                c.binding.id
            );
        }
        let store = reg.store();
        let mut stored: HashMap<u32, (Vec<u8>, Vec<u8>, u64)> = HashMap::new();
        for (id, b) in store.iter() {
            let aor = store.aor_name(b.aor()).expect("AoR of a binding").to_vec();
            stored.insert(id, (aor, b.contact().to_vec(), b.expires_at_s));
        }
        prop_assert_eq!(&self.bindings, &stored);
        Ok(())
    }
}

fn contact_uri(c: u8) -> String {
    format!("sip:dev{c}@192.0.2.{c}:5060")
}

fn message(
    user: u8,
    call: u8,
    cseq: u32,
    contact_lines: &[String],
    expires: Option<u32>,
) -> Vec<u8> {
    let mut s = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{user}{call}{cseq}\r\n\
         From: <sip:u{user}@example.com>;tag=x\r\nTo: <sip:u{user}@example.com>\r\nCall-ID: call-{call}\r\n\
         CSeq: {cseq} REGISTER\r\n"
    );
    for line in contact_lines {
        s.push_str(line);
    }
    if let Some(e) = expires {
        s.push_str(&format!("Expires: {e}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s.into_bytes()
}

/// (status, contacts listed in the response, sorted)
fn send(reg: &mut Registrar, msg: &[u8], now: u64) -> (u16, Vec<(String, u64)>) {
    let mut out = Vec::new();
    let source: SocketAddr = "192.0.2.1:5060".parse().expect("addr");
    let status = match reg.handle(msg, source, Now::from_secs(now), &mut out) {
        Outcome::Reply { status, .. } => status,
        other => panic!("expected a reply, got {other:?}"),
    };
    let text = String::from_utf8(out).expect("utf8");
    let mut contacts: Vec<_> = text
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("Contact: <"))
        .map(|l| {
            let (uri, rest) = l.split_once('>').expect(">");
            let exp = rest
                .trim_start_matches(";expires=")
                .split(';')
                .next()
                .expect("n");
            (uri.to_string(), exp.parse::<u64>().expect("number"))
        })
        .collect();
    contacts.sort();
    (status, contacts)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn registrar_agrees_with_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut reg = Registrar::new(RegistrarConfig::default(), Now::from_secs(T0));
        let mut model = Model::default();
        let mut now = T0;
        let mut fetch_cseq = 1_000_000u32;
        let mut replica = Replica::default();
        for op in &ops {
            match op {
                Op::Register { user, call, cseq, contacts } => {
                    // Half the time the expiry goes in a contact param, else in the Expires header.
                    let lines: Vec<String> = contacts
                        .iter()
                        .map(|(c, e)| if c % 2 == 0 {
                            format!("Contact: <{}>;expires={e}\r\n", contact_uri(*c))
                        } else {
                            format!("Contact: <{}>\r\n", contact_uri(*c))
                        })
                        .collect();
                    // Odd contacts take the Expires header: give them one per request (the first odd one's).
                    let header = contacts.iter().find(|(c, _)| c % 2 == 1).map(|(_, e)| *e);
                    let effective: Vec<(u8, u32)> = contacts
                        .iter()
                        .map(|&(c, e)| (c, if c % 2 == 1 { header.unwrap_or(e) } else { e }))
                        .collect();
                    let want = model.register(*user, *call, *cseq, &effective, now);
                    let (status, listed) = send(&mut reg, &message(*user, *call, *cseq, &lines, header), now);
                    prop_assert_eq!(status, want, "op {:?}", op);
                    if status == 200 {
                        prop_assert_eq!(listed, model.list(*user, now), "op {:?}", op);
                    }
                }
                Op::Star { user, call, cseq } => {
                    let want = model.star(*user, *call, *cseq, now);
                    let msg = message(*user, *call, *cseq, &["Contact: *\r\n".to_string()], Some(0));
                    let (status, listed) = send(&mut reg, &msg, now);
                    prop_assert_eq!(status, want, "op {:?}", op);
                    if status == 200 {
                        prop_assert_eq!(listed, model.list(*user, now));
                    }
                }
                Op::Fetch { user } => {
                    fetch_cseq += 1;
                    let (status, listed) = send(&mut reg, &message(*user, 9, fetch_cseq, &[], None), now);
                    prop_assert_eq!(status, 200);
                    prop_assert_eq!(listed, model.list(*user, now));
                }
                Op::Delete { user } => {
                    let aor = format!("sip:u{user}@example.com");
                    let live = reg
                        .store()
                        .iter()
                        .filter(|(_, b)| reg.store().aor_name(b.aor()) == Some(aor.as_bytes()))
                        .count();
                    prop_assert_eq!(reg.delete(aor.as_bytes(), None, Now::from_secs(now)), live);
                    model.aors.remove(user);
                }
                Op::Advance { secs } => {
                    now += secs;
                    while reg.handle_timeout(Now::from_secs(now)) {}
                    prop_assert_eq!(reg.binding_count(), model.count(now));
                }
            }
            replica.catch_up(&mut reg)?;
        }
    }
}
