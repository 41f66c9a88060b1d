//! Reads of a shard's bindings for the API: one AoR's bindings, pages of AoRs, pages of the whole state for a
//! snapshot. Each read is bounded (a page scans at most a given number of AoR records), so answering the API
//! never holds a shard for long.

use super::changes::BindingView;
use super::Registrar;

/// One page of AoRs: each with its binding count; `next` is the cursor of the following page (None: the
/// last page).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AorPage {
    pub aors: Vec<(String, usize)>,
    pub next: Option<usize>,
}

/// One page of the shard's state, as of change `seq` (every change up to it is reflected, none after).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatePage {
    pub aors: Vec<(String, Vec<BindingView>)>,
    pub seq: u64,
    pub next: Option<usize>,
}

impl Registrar {
    /// The bindings of an AoR (canonical form), None when it has none. Unordered.
    pub fn lookup(&self, aor: &[u8]) -> Option<Vec<BindingView>> {
        let rec = self.store.find_aor(self.store.hash_aor(aor), aor)?;
        let bindings = self.store.bindings_of(rec);
        Some(bindings.map(|(idx, b)| b.fields(idx).to_view()).collect())
    }

    /// The AoRs whose name starts with `prefix`, from cursor `from` (0: the first page): at most `limit` of
    /// them, scanning at most `scan` AoR records.
    pub fn aor_page(&self, prefix: &[u8], from: usize, limit: usize, scan: usize) -> AorPage {
        let mut page = AorPage::default();
        let mut records = self.store.aors_from(from).peekable();
        let mut scanned = 0;
        while let Some(&rec) = records.peek() {
            if page.aors.len() >= limit.max(1) || scanned >= scan.max(1) {
                page.next = Some(rec as usize);
                return page;
            }
            records.next();
            scanned += 1;
            let name = self.store.aor_name(rec).unwrap_or_default();
            if name.starts_with(prefix) {
                let count = self.store.binding_count_of(rec);
                page.aors
                    .push((String::from_utf8_lossy(name).into_owned(), count));
            }
        }
        page
    }

    /// At most `limit` AoRs with their bindings from cursor `from`, and the sequence number of the last
    /// change they reflect.
    pub fn state_page(&self, from: usize, limit: usize) -> StatePage {
        let mut page = StatePage {
            seq: self.last_seq(),
            ..StatePage::default()
        };
        let mut records = self.store.aors_from(from).peekable();
        while let Some(&rec) = records.peek() {
            if page.aors.len() >= limit.max(1) {
                page.next = Some(rec as usize);
                return page;
            }
            records.next();
            let name = self.store.aor_name(rec).unwrap_or_default();
            let bindings = self.store.bindings_of(rec);
            let views = bindings.map(|(idx, b)| b.fields(idx).to_view()).collect();
            page.aors
                .push((String::from_utf8_lossy(name).into_owned(), views));
        }
        page
    }

    /// The sequence number of the last change recorded (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.store.changes().next_seq() - 1
    }

    /// The number of AoRs with at least one binding.
    pub fn aor_count(&self) -> usize {
        self.store.aor_count()
    }
}

/// The shard that owns an AoR (canonical form) among `shards`, with the process's hash seed: the same
/// choice the shards make for REGISTERs.
pub fn owner_of(seed: super::bindings::HashSeed, aor: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    (seed.hasher().hash_one(aor) % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::{testing, Now, RegistrarConfig};

    fn register(reg: &mut Registrar, user: &str, contact: &str, cseq: u32) {
        let contact = format!("<{contact}>;q=0.5");
        let extra = "Path: <sip:edge.example.net;lr>\r\n";
        let msg = testing::register_message(user, cseq, &contact, 600, extra);
        let out = testing::handle(reg, &msg);
        assert!(
            out.starts_with(b"SIP/2.0 200"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn lookup_returns_every_field_and_unknown_is_none() {
        let mut reg = Registrar::new(RegistrarConfig::default(), Now::from_secs(1000));
        register(&mut reg, "alice", "sip:alice@192.0.2.1", 1);
        register(&mut reg, "alice", "sip:alice@192.0.2.2", 2);
        let found = reg.lookup(b"sip:alice@example.com").expect("alice");
        assert_eq!(found.len(), 2);
        let b = found
            .iter()
            .find(|b| b.contact == "sip:alice@192.0.2.2")
            .expect("2");
        assert_eq!(b.q, Some(500));
        assert_eq!(b.expires_at_s, 1600);
        assert_eq!(b.path, "<sip:edge.example.net;lr>");
        assert_eq!(b.cseq, 2);
        assert_eq!(b.source.to_string(), "192.0.2.1:5060");
        assert_eq!(reg.lookup(b"sip:bob@example.com"), None);
    }

    #[test]
    fn pages_visit_every_aor_once_within_their_bounds() {
        let mut reg = Registrar::new(RegistrarConfig::default(), Now::from_secs(1000));
        for i in 0..25 {
            register(
                &mut reg,
                &format!("u{i}"),
                &format!("sip:u{i}@192.0.2.1"),
                1,
            );
        }
        register(&mut reg, "other", "sip:other@192.0.2.1", 1);
        let (mut seen, mut cursor, mut pages) = (Vec::new(), Some(0), 0);
        while let Some(from) = cursor {
            let page = reg.aor_page(b"sip:u", from, 4, 6);
            assert!(page.aors.len() <= 4);
            seen.extend(page.aors.into_iter().map(|(a, n)| {
                assert_eq!(n, 1);
                a
            }));
            cursor = page.next;
            pages += 1;
            assert!(pages < 100, "paging does not end");
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 25, "{seen:?}");
        assert!(seen.iter().all(|a| a.starts_with("sip:u")));

        let (mut state, mut cursor) = (Vec::new(), Some(0));
        while let Some(from) = cursor {
            let page = reg.state_page(from, 7);
            assert_eq!(page.seq, 26);
            state.extend(page.aors);
            cursor = page.next;
        }
        assert_eq!(state.len(), 26);
        assert!(state.iter().all(|(_, b)| b.len() == 1));
    }

    #[test]
    fn the_owner_is_the_shards_choice() {
        use crate::registrar::Outcome;
        let cfg = RegistrarConfig::default();
        for shards in 2..5 {
            for user in ["alice", "bob", "carol", "dave", "erin"] {
                let aor = format!("sip:{user}@example.com");
                let owner = owner_of(cfg.hash_seed, aor.as_bytes(), shards);
                for shard in 0..shards {
                    let mut reg = Registrar::new(cfg.clone(), Now::from_secs(1000));
                    reg.set_partition(shard, shards);
                    let msg = format!(
                        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-1\r\n\
                         From: <{aor}>;tag=1\r\nTo: <{aor}>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\
                         Contact: <sip:x@192.0.2.1>\r\nContent-Length: 0\r\n\r\n"
                    );
                    let source = "192.0.2.1:5060".parse().expect("addr");
                    let outcome = reg.handle(
                        msg.as_bytes(),
                        source,
                        Now::from_secs(1000),
                        &mut Vec::new(),
                    );
                    match outcome {
                        Outcome::HandOff { owner: o } => {
                            assert_ne!(shard, owner);
                            assert_eq!(o, owner);
                        }
                        _ => assert_eq!(shard, owner, "{outcome:?}"),
                    }
                }
            }
        }
    }
}
