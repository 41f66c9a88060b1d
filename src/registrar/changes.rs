//! The change stream: every change to a binding, recorded once, in order, by the shard that made it.
//!
//! The binding store records a [`Change`] for each binding it inserts (`registered`), rewrites (`refreshed`)
//! or removes (`unregistered`, `expired`, `evicted`, `deleted`), with the shard's sequence number (1, 2, 3, …
//! with no gap). An AoR lives on one shard, so the sequence number is also the AoR's version: the changes
//! of one AoR carry rising numbers, also across its last binding going and a new one coming (a consumer
//! keeps, per AoR, the number of the last change it applied, and ignores anything not above it). Records are encoded back to back into one byte buffer, so recording costs a copy and no
//! allocation once the buffer has grown; the shell takes the buffer after each turn of its loop
//! ([`ChangeLog::take`]) and hands it on (the event stream, later the journal). The buffer is bounded by one
//! turn's work: a batch of datagrams, or one batch of expiries.
//!
//! # Record format (little-endian)
//!
//! | bytes | field |
//! |---|---|
//! | 4 | length of the rest of the record |
//! | 1 | kind ([`ChangeKind`] as `u8`) |
//! | 8 | sequence number |
//! | 4 | binding id (its slot in the shard's store; unique among live bindings) |
//! | 8 | time of the change, Unix seconds |
//! | 8 | expiry, Unix seconds |
//! | 8 | last update, Unix seconds |
//! | 4 | CSeq |
//! | 2 | q in thousandths, `0xFFFF`: none |
//! | 4 | reg-id, 0: none |
//! | 1 + 16 + 2 | source: 4 or 6, the address (IPv4 in the first 4 bytes), the port |
//! | 6 x (2 + n) | AoR, contact, Call-ID, Path, `+sip.instance`, User-Agent: length, bytes |

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;

use thiserror::Error;

/// What happened to a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChangeKind {
    /// A new binding (REGISTER).
    Registered = 1,
    /// An existing binding rewritten (REGISTER refresh).
    Refreshed = 2,
    /// Removed by its REGISTER (`expires=0`, `Contact: *`).
    Unregistered = 3,
    /// Removed because its expiry came.
    Expired = 4,
    /// Removed to make room for a newer binding of its AoR (`--over-limit evict-oldest`).
    Evicted = 5,
    /// Removed by an operator (the management API).
    Deleted = 6,
}

impl ChangeKind {
    /// The kind's name in the event stream.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Registered => "registered",
            ChangeKind::Refreshed => "refreshed",
            ChangeKind::Unregistered => "unregistered",
            ChangeKind::Expired => "expired",
            ChangeKind::Evicted => "evicted",
            ChangeKind::Deleted => "deleted",
        }
    }

    /// Whether the binding is gone after this change.
    pub fn is_removal(self) -> bool {
        !matches!(self, ChangeKind::Registered | ChangeKind::Refreshed)
    }

    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => ChangeKind::Registered,
            2 => ChangeKind::Refreshed,
            3 => ChangeKind::Unregistered,
            4 => ChangeKind::Expired,
            5 => ChangeKind::Evicted,
            6 => ChangeKind::Deleted,
            _ => return None,
        })
    }
}

/// One change, borrowed from the buffer it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change<'a> {
    pub kind: ChangeKind,
    pub seq: u64,
    /// When the change happened, Unix seconds.
    pub at_s: u64,
    pub aor: &'a [u8],
    /// The binding as it is after the change (as it was, for a removal).
    pub binding: BindingFields<'a>,
}

/// The binding fields a change carries, as the store holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingFields<'a> {
    /// Its slot in the shard's store: unique among live bindings, reused after a removal.
    pub id: u32,
    pub expires_at_s: u64,
    pub updated_at_s: u64,
    pub cseq: u32,
    pub q: Option<u16>,
    pub reg_id: Option<NonZeroU32>,
    pub source: SocketAddr,
    pub contact: &'a [u8],
    pub call_id: &'a [u8],
    pub path: &'a [u8],
    pub instance: &'a [u8],
    pub user_agent: &'a [u8],
}

impl BindingFields<'_> {
    /// An owned copy (for another thread: the API, the event hub). Strings that are not UTF-8 (the
    /// registrar accepts any bytes a SIP header may hold) are copied lossily.
    pub fn to_view(&self) -> BindingView {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        BindingView {
            id: self.id,
            contact: text(self.contact),
            q: self.q,
            expires_at_s: self.expires_at_s,
            updated_at_s: self.updated_at_s,
            call_id: text(self.call_id),
            cseq: self.cseq,
            path: text(self.path),
            instance: text(self.instance),
            reg_id: self.reg_id,
            user_agent: text(self.user_agent),
            source: self.source,
        }
    }
}

/// A binding's fields, owned: what a lookup returns and an event carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingView {
    pub id: u32,
    pub contact: String,
    /// q-value in thousandths, when the UA gave one.
    pub q: Option<u16>,
    pub expires_at_s: u64,
    pub updated_at_s: u64,
    pub call_id: String,
    pub cseq: u32,
    pub path: String,
    pub instance: String,
    pub reg_id: Option<NonZeroU32>,
    pub user_agent: String,
    pub source: SocketAddr,
}

/// Why a buffer of records does not decode.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record truncated at byte {0}")]
    Truncated(usize),
    #[error("unknown change kind {kind} at byte {at}")]
    UnknownKind { kind: u8, at: usize },
    #[error("bad source address family {family} at byte {at}")]
    BadFamily { family: u8, at: usize },
    #[error("record at byte {0} is longer than its fields")]
    TrailingBytes(usize),
}

/// Fixed part of a record after its length: kind, seq, id, three times, CSeq, q, reg-id, source.
const FIXED_BYTES: usize = 1 + 8 + 4 + 8 + 8 + 8 + 4 + 2 + 4 + 19;
/// The variable fields: AoR, contact, Call-ID, Path, instance, User-Agent.
const STRINGS: usize = 6;

/// The shard's change recorder: the next sequence number and the records not yet taken.
#[derive(Debug)]
pub struct ChangeLog {
    buf: Vec<u8>,
    next_seq: u64,
    pending: usize,
}

impl Default for ChangeLog {
    fn default() -> Self {
        ChangeLog::starting_at(1)
    }
}

impl ChangeLog {
    /// A log whose first change gets sequence number `seq` (1 for a fresh shard).
    pub fn starting_at(seq: u64) -> Self {
        ChangeLog {
            buf: Vec::new(),
            next_seq: seq,
            pending: 0,
        }
    }

    /// The sequence number the next change gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Changes recorded and not yet taken.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Records one change; returns its sequence number.
    pub fn record(
        &mut self,
        kind: ChangeKind,
        aor: &[u8],
        at_s: u64,
        b: &BindingFields<'_>,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending += 1;
        encode_record(&mut self.buf, kind, seq, aor, at_s, b);
        seq
    }

    /// Takes the records recorded so far, leaving `spare` (cleared) in their place, so that a shell that
    /// hands buffers back reuses their memory.
    pub fn take(&mut self, spare: Vec<u8>) -> ChangeBatch {
        let mut next = spare;
        next.clear();
        let buf = std::mem::replace(&mut self.buf, next);
        let count = std::mem::take(&mut self.pending);
        ChangeBatch { buf, count }
    }
}

/// Appends one record in the format above to `buf` (the change log's encoder; the journal's snapshots write
/// the live bindings with it too).
pub fn encode_record(
    buf: &mut Vec<u8>,
    kind: ChangeKind,
    seq: u64,
    aor: &[u8],
    at_s: u64,
    b: &BindingFields<'_>,
) {
    let strings = [aor, b.contact, b.call_id, b.path, b.instance, b.user_agent];
    let var: usize = strings
        .iter()
        .map(|s| 2 + s.len().min(usize::from(u16::MAX)))
        .sum();
    let len = FIXED_BYTES + var;
    buf.reserve(4 + len);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.push(kind as u8);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&b.id.to_le_bytes());
    buf.extend_from_slice(&at_s.to_le_bytes());
    buf.extend_from_slice(&b.expires_at_s.to_le_bytes());
    buf.extend_from_slice(&b.updated_at_s.to_le_bytes());
    buf.extend_from_slice(&b.cseq.to_le_bytes());
    buf.extend_from_slice(&b.q.unwrap_or(u16::MAX).to_le_bytes());
    buf.extend_from_slice(&b.reg_id.map_or(0, NonZeroU32::get).to_le_bytes());
    let mut addr = [0u8; 16];
    let family = match b.source.ip() {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            addr = v6.octets();
            6
        }
    };
    buf.push(family);
    buf.extend_from_slice(&addr);
    buf.extend_from_slice(&b.source.port().to_le_bytes());
    for s in strings {
        // The store caps a binding's strings at 65535 bytes in all, and AoRs are shorter still.
        let s = &s[..s.len().min(usize::from(u16::MAX))];
        buf.extend_from_slice(&(s.len() as u16).to_le_bytes());
        buf.extend_from_slice(s);
    }
}

/// Records taken from a [`ChangeLog`]: an encoded buffer and how many records it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeBatch {
    buf: Vec<u8>,
    count: usize,
}

impl ChangeBatch {
    /// A batch from bytes in the record format (read back from elsewhere); [`ChangeBatch::iter`] checks them.
    pub fn from_bytes(buf: Vec<u8>) -> Self {
        ChangeBatch { buf, count: 0 }
    }

    /// How many records the log put in (0 for a batch made with [`ChangeBatch::from_bytes`]).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded records.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The buffer, to hand back to [`ChangeLog::take`].
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The records in order; a malformed one ends the iteration with its error.
    pub fn iter(&self) -> Records<'_> {
        Records {
            buf: &self.buf,
            at: 0,
        }
    }
}

/// The records encoded back to back in `buf` (from a journal, say), checked as [`ChangeBatch::iter`] does.
pub fn records(buf: &[u8]) -> Records<'_> {
    Records { buf, at: 0 }
}

/// The longest record the format can hold: the fixed fields and six strings of at most 65535 bytes.
pub const MAX_RECORD_BYTES: usize = 4 + FIXED_BYTES + STRINGS * (2 + u16::MAX as usize);

/// Iterator over encoded records.
pub struct Records<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Change<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.buf.len() {
            return None;
        }
        let start = self.at;
        let decoded = decode(self.buf, start);
        match &decoded {
            Ok((_, end)) => self.at = *end,
            Err(_) => self.at = self.buf.len(),
        }
        Some(decoded.map(|(change, _)| change))
    }
}

/// A cursor over one record's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    record: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let s = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or(DecodeError::Truncated(self.record))?;
        self.at += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }
    fn string(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

/// Decodes the record at `start`; returns it and where the next one starts.
fn decode(buf: &[u8], start: usize) -> Result<(Change<'_>, usize), DecodeError> {
    let len_bytes = buf
        .get(start..start + 4)
        .ok_or(DecodeError::Truncated(start))?;
    let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    let end = start
        .checked_add(4 + len)
        .filter(|&e| e <= buf.len())
        .ok_or(DecodeError::Truncated(start))?;
    let mut r = Reader {
        bytes: &buf[start + 4..end],
        at: 0,
        record: start,
    };
    let kind_byte = r.u8()?;
    let kind = ChangeKind::from_u8(kind_byte).ok_or(DecodeError::UnknownKind {
        kind: kind_byte,
        at: start,
    })?;
    let seq = r.u64()?;
    let binding_id = r.u32()?;
    let at_s = r.u64()?;
    let expires_at_s = r.u64()?;
    let updated_at_s = r.u64()?;
    let cseq = r.u32()?;
    let q = Some(r.u16()?).filter(|&q| q != u16::MAX);
    let reg_id = NonZeroU32::new(r.u32()?);
    let family = r.u8()?;
    let addr: [u8; 16] = r.array()?;
    let port = r.u16()?;
    let ip = match family {
        4 => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        6 => IpAddr::V6(Ipv6Addr::from(addr)),
        _ => return Err(DecodeError::BadFamily { family, at: start }),
    };
    let mut strings = [&[][..]; STRINGS];
    for s in &mut strings {
        *s = r.string()?;
    }
    if r.at != r.bytes.len() {
        return Err(DecodeError::TrailingBytes(start));
    }
    let [aor, contact, call_id, path, instance, user_agent] = strings;
    let binding = BindingFields {
        id: binding_id,
        expires_at_s,
        updated_at_s,
        cseq,
        q,
        reg_id,
        source: SocketAddr::new(ip, port),
        contact,
        call_id,
        path,
        instance,
        user_agent,
    };
    Ok((
        Change {
            kind,
            seq,
            at_s,
            aor,
            binding,
        },
        end,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(contact: &[u8], source: &str) -> BindingFields<'static> {
        BindingFields {
            id: 7,
            expires_at_s: 4600,
            updated_at_s: 1000,
            cseq: 3,
            q: Some(500),
            reg_id: NonZeroU32::new(1),
            source: source.parse().expect("addr"),
            contact: Box::leak(contact.to_vec().into_boxed_slice()),
            call_id: b"cid@host",
            path: b"<sip:edge.example.com;lr>",
            instance: b"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
            user_agent: b"phone/1.0",
        }
    }

    #[test]
    fn records_round_trip_in_order_with_consecutive_sequence_numbers() {
        let mut log = ChangeLog::default();
        let a = fields(b"<sip:a@192.0.2.1>", "192.0.2.1:5060");
        let b = BindingFields {
            q: None,
            reg_id: None,
            ..fields(b"<sip:b@[2001:db8::1]>", "[2001:db8::1]:5070")
        };
        assert_eq!(
            log.record(ChangeKind::Registered, b"sip:a@example.com", 1000, &a),
            1
        );
        assert_eq!(
            log.record(ChangeKind::Expired, b"sip:b@example.com", 1001, &b),
            2
        );
        assert_eq!((log.pending(), log.next_seq()), (2, 3));
        let batch = log.take(Vec::new());
        assert_eq!((batch.len(), log.pending()), (2, 0));
        let got: Vec<_> = batch.iter().collect::<Result<_, _>>().expect("decodes");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].kind, ChangeKind::Registered);
        assert_eq!((got[0].seq, got[0].binding.id), (1, 7));
        assert_eq!(got[0].aor, b"sip:a@example.com");
        assert_eq!(got[0].binding.contact, b"<sip:a@192.0.2.1>");
        assert_eq!(got[0].binding.q, Some(500));
        assert_eq!(got[0].binding.reg_id, NonZeroU32::new(1));
        assert_eq!(got[0].binding, a);
        assert_eq!(got[0].at_s, 1000);
        assert_eq!(got[1].kind, ChangeKind::Expired);
        assert_eq!(
            got[1].binding.source,
            "[2001:db8::1]:5070".parse().expect("addr")
        );
        assert_eq!(got[1].binding, b);
        // The next batch goes on counting, in the buffer handed back.
        let spare = batch.into_bytes();
        log.record(ChangeKind::Deleted, b"sip:a@example.com", 1002, &a);
        let next = log.take(spare);
        let change = next.iter().next().expect("one").expect("decodes");
        assert_eq!((change.seq, change.kind), (3, ChangeKind::Deleted));
    }

    #[test]
    fn damaged_buffers_are_errors_never_panics() {
        let mut log = ChangeLog::default();
        log.record(
            ChangeKind::Refreshed,
            b"sip:a@example.com",
            5,
            &fields(b"<sip:a@192.0.2.1>", "192.0.2.1:5060"),
        );
        let good = log.take(Vec::new()).into_bytes();
        for cut in 0..good.len() {
            let batch = ChangeBatch::from_bytes(good[..cut].to_vec());
            if cut == 0 {
                assert!(batch.iter().next().is_none());
            } else {
                assert!(matches!(batch.iter().next(), Some(Err(_))), "cut at {cut}");
            }
        }
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                // Decodes to something or to an error; the iteration ends either way.
                assert!(ChangeBatch::from_bytes(bad).iter().count() <= 2);
            }
        }
        let mut unknown = good.clone();
        unknown[4] = 0;
        assert_eq!(
            ChangeBatch::from_bytes(unknown).iter().next(),
            Some(Err(DecodeError::UnknownKind { kind: 0, at: 0 }))
        );
    }
}
