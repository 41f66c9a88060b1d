//! Message framing: start line, header lines (with RFC 3261 §7.3.1 folding), body.
//!
//! [`parse_message`] frames one datagram into a [`Message`] of slices borrowed from it;
//! [`parse_message_into`] does the same in storage the caller provides. Neither allocates or panics.
//! - They fail ([`FramingError`]) only when no header section can be delimited at all: such a datagram
//!   cannot be answered, only dropped.
//! - A request whose start line is broken still yields a `Message`, with `start` =
//!   [`StartLine::Invalid`], when its header lines could be split: the Via, From, To, Call-ID and CSeq
//!   values that a 400 or 505 copies are there.
//! - Header values are raw slices, without leading and trailing LWS; a folded value keeps its inner CRLF
//!   and whitespace (the typed parsers of [`header`](crate::header) take CR, LF, SP and HTAB alike as
//!   LWS). [`Message::first`], [`Message::all`] and [`Message::count`] find them by [`HeaderName`].
//! - The body follows the UDP rules (RFC 3261 §18.3): a Content-Length larger than the bytes left sets
//!   [`Message::body_error`] to [`BodyError::ContentLengthExceedsDatagram`]; bytes beyond Content-Length
//!   are ignored (RFC 4475 dblreq); without Content-Length the body is the rest of the datagram.

use std::mem::MaybeUninit;

use memchr::{memchr, memrchr};
use thiserror::Error;

use super::charclass::TOKEN;
use super::header::{is_lws, parse_u32, span, trim_lws};
use super::scan::{has_space_or_ctl, newline_mask};
use super::uri::MAX_URI_BYTES;

#[allow(unsafe_code)]
mod slots;
pub use slots::parse_message;

/// Limits applied while framing. Every one is explicit and configurable (see `config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest datagram accepted, in bytes.
    pub max_message_bytes: usize,
    /// Largest number of header lines (after unfolding) accepted; must be <= MAX_HEADERS.
    pub max_headers: usize,
    /// Longest header line (name + value, unfolded, in bytes).
    pub max_line_bytes: usize,
}

/// Compile-time capacity of the header array (static size on the hot path).
pub const MAX_HEADERS: usize = 96;

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_message_bytes: 8192,
            max_headers: 64,
            max_line_bytes: 2048,
        }
    }
}

/// Header names the registrar cares about; everything else is `Other`. Compact forms map here too
/// (`v` Via, `f` From, `t` To, `i` Call-ID, `m` Contact, `l` Content-Length, `k` Supported, `s` Subject->Other,
/// `c` Content-Type->Other, `e` Content-Encoding->Other). Matching is case-insensitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HeaderName {
    Via = 0,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    Expires,
    Require,
    ProxyRequire,
    Supported,
    Path,
    Authorization,
    ContentLength,
    UserAgent,
    MaxForwards,
    Other,
}

/// Number of `HeaderName` variants (for per-name index arrays).
pub const HEADER_NAME_COUNT: usize = HeaderName::Other as usize + 1;

/// SIP methods; unknown tokens are `Other` (method_raw keeps the bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Register,
    Options,
    Ack,
    Invite,
    Bye,
    Cancel,
    Prack,
    Subscribe,
    Notify,
    Publish,
    Info,
    Refer,
    Message,
    Update,
    Other,
}

/// One header line, as handed out by [`Message::headers`] (slices into the datagram).
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    pub name: HeaderName,
    pub raw_name: &'a [u8],
    pub value: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
pub enum StartLine<'a> {
    Request {
        method: Method,
        method_raw: &'a [u8],
        uri: &'a [u8],
    },
    Response {
        code: u16,
    },
    /// The start line is malformed; the headers were still split so a 400/505 can be built.
    Invalid(StartLineError),
}

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum StartLineError {
    #[error("malformed request line")]
    Malformed,
    #[error("unsupported SIP version")]
    BadVersion,
    #[error("request-URI too long")]
    UriTooLong,
}

/// Errors where no header section could be delimited: nothing can be answered.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("empty datagram")]
    Empty,
    #[error("datagram larger than the configured maximum")]
    TooLarge,
    #[error("too many header lines")]
    TooManyHeaders,
    #[error("header line too long")]
    LineTooLong,
    #[error("not a SIP message")]
    Garbage,
}

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("Content-Length is not a valid number")]
    BadContentLength,
    #[error("Content-Length exceeds the datagram")]
    ContentLengthExceedsDatagram,
}

/// A header line stored as offsets into the datagram (16 bytes instead of 40 for two slices): the array
/// is 1.5 KiB instead of ~4 KiB, so building and moving a `Message` is cheap. Slices are made on access.
#[derive(Clone, Copy)]
struct Slot {
    /// Offset of the line (= of the name).
    line: u32,
    value_start: u32,
    value_end: u32,
    name_len: u16,
    name: HeaderName,
}

/// A parsed message: borrowed slices into the datagram plus a fixed-size array of header offsets.
///
/// It is about 1.6 KiB: on hot paths build it in the caller's frame with [`parse_message_into`]
/// (`let mut slot = MaybeUninit::uninit(); let msg = parse_message_into(.., &mut slot)?;`) and pass
/// `&Message` around; `parse_message` returns it by value (one move of the whole struct).
pub struct Message<'a> {
    pub start: StartLine<'a>,
    pub body: &'a [u8],
    pub body_error: Option<BodyError>,
    /// The datagram the slots index.
    buf: &'a [u8],
    /// `headers[..header_count]` are initialised (written by `push` before the count grows); the rest is
    /// never read. Left uninitialised so that framing does not first write 1.5 KiB of zeros.
    headers: [MaybeUninit<Slot>; MAX_HEADERS],
    header_count: usize,
    /// Index into `headers` of the first header of each name; `NO_HEADER` when absent.
    first_index: [u8; HEADER_NAME_COUNT],
    /// Number of headers of each name.
    name_count: [u8; HEADER_NAME_COUNT],
}

const NO_HEADER: u8 = u8::MAX;
const _: () = assert!(MAX_HEADERS < NO_HEADER as usize);
const _: () = assert!(MAX_HEADERS <= u8::MAX as usize);

impl<'a> Message<'a> {
    #[inline]
    fn bytes(&self, start: u32, end: u32) -> &'a [u8] {
        // Offsets were taken from `buf` by the framer; `get` keeps this panic-free regardless.
        let buf: &'a [u8] = self.buf;
        buf.get(start as usize..end as usize).unwrap_or(&[])
    }

    #[inline]
    fn value_of(&self, s: &Slot) -> &'a [u8] {
        self.bytes(s.value_start, s.value_end)
    }

    #[inline]
    fn header_of(&self, s: &Slot) -> Header<'a> {
        Header {
            name: s.name,
            raw_name: self.bytes(s.line, s.line + u32::from(s.name_len)),
            value: self.value_of(s),
        }
    }

    /// All header lines in order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = Header<'a>> + DoubleEndedIterator + '_ {
        self.slots().iter().map(|s| self.header_of(s))
    }
    /// The `i`-th header line (in order), if there is one.
    pub fn header(&self, i: usize) -> Option<Header<'a>> {
        self.slots().get(i).map(|s| self.header_of(s))
    }
    /// Number of header lines.
    pub fn header_count(&self) -> usize {
        self.header_count
    }
    /// Value of the first header with this name (O(1)).
    #[inline]
    pub fn first(&self, name: HeaderName) -> Option<&'a [u8]> {
        match self.first_index[name as usize] {
            NO_HEADER => None,
            i => self.slots().get(usize::from(i)).map(|s| self.value_of(s)),
        }
    }
    /// How many header lines carry this name (O(1)); used to detect duplicated singleton headers.
    pub fn count(&self, name: HeaderName) -> usize {
        usize::from(self.name_count[name as usize])
    }
    /// Values of all header lines with this name, in order.
    pub fn all(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + '_ {
        let slots = self.slots();
        let from = match self.first_index[name as usize] {
            NO_HEADER => slots.len(),
            i => usize::from(i).min(slots.len()),
        };
        slots[from..]
            .iter()
            .filter(move |s| s.name == name)
            .map(|s| self.value_of(s))
    }

    /// Line start and (trimmed) value start of the last header.
    fn last_starts(&self) -> Option<(usize, usize)> {
        self.slots()
            .last()
            .map(|s| (s.line as usize, s.value_start as usize))
    }
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("start", &self.start)
            .field("headers", &HeadersDebug(self))
            .field("body_len", &self.body.len())
            .field("body_error", &self.body_error)
            .finish()
    }
}

struct HeadersDebug<'m, 'a>(&'m Message<'a>);

impl std::fmt::Debug for HeadersDebug<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.headers()).finish()
    }
}

/// `raw` (token characters only) equals `lower` (lower-case letters and `-`) ignoring ASCII case. For token
/// characters `b | 0x20` is the lower-case letter exactly when `b` is that letter in either case, and `-` only
/// for `-`, so one OR per byte replaces a full case fold.
#[inline(always)]
fn is_name(raw: &[u8], lower: &[u8]) -> bool {
    raw.len() == lower.len() && raw.iter().zip(lower).all(|(&r, &l)| r | 0x20 == l)
}

/// Case-insensitive header name (full or compact form, token characters) to `HeaderName`.
fn header_name(raw: &[u8]) -> HeaderName {
    use HeaderName::*;
    let Some(&first) = raw.first() else {
        return Other;
    };
    // Dispatch on (length, first letter); then at most two comparisons with constant lengths.
    let (lower, name): (&[u8], HeaderName) = match (raw.len(), first | 0x20) {
        (1, b'v') => return Via,
        (1, b'f') => return From,
        (1, b't') => return To,
        (1, b'i') => return CallId,
        (1, b'm') => return Contact,
        (1, b'l') => return ContentLength,
        (1, b'k') => return Supported,
        (2, b't') => (b"to", To),
        (3, b'v') => (b"via", Via),
        (4, b'f') => (b"from", From),
        (4, b'c') => (b"cseq", CSeq),
        (4, b'p') => (b"path", Path),
        (7, b'c') if is_name(raw, b"call-id") => return CallId,
        (7, b'c') => (b"contact", Contact),
        (7, b'e') => (b"expires", Expires),
        (7, b'r') => (b"require", Require),
        (9, b's') => (b"supported", Supported),
        (10, b'u') => (b"user-agent", UserAgent),
        (12, b'm') => (b"max-forwards", MaxForwards),
        (13, b'a') => (b"authorization", Authorization),
        (13, b'p') => (b"proxy-require", ProxyRequire),
        (14, b'c') => (b"content-length", ContentLength),
        _ => return Other,
    };
    if is_name(raw, lower) {
        name
    } else {
        Other
    }
}

/// A known header name followed directly by `: ` (colon, one SP), matched against the first 16 bytes of a
/// line as two little-endian words: `word | case == pattern`, where `case` has 0x20 at letter positions (so a
/// letter matches in either case and every other byte, `-`, `:` and SP included, matches exactly) and 0xff
/// past the `name: ` bytes (at most 16: `content-length: `), where `pattern` is 0xff too, so whatever the
/// line holds there matches.
///
/// 32 bytes, aligned: two entries per cache line, so the ten names of a typical REGISTER (the first ten
/// entries) take five lines to fetch when a REGISTER starts with cold caches. The name and its length
/// are in [`KNOWN_NAMES`] (see [`KNOWN_TABLE`]).
#[repr(align(32))]
struct KnownName {
    pattern: [u64; 2],
    case: [u64; 2],
}

const fn known(lower: &[u8]) -> KnownName {
    let mut pattern = [u64::MAX; 2];
    let mut case = [u64::MAX; 2];
    let mut i = 0;
    while i < lower.len() + 2 {
        let b = if i == lower.len() {
            b':'
        } else if i == lower.len() + 1 {
            b' '
        } else {
            lower[i]
        };
        let shift = (i % 8) * 8;
        pattern[i / 8] &= !(0xff << shift);
        pattern[i / 8] |= (b as u64) << shift;
        case[i / 8] &= !(0xff << shift);
        if b.is_ascii_lowercase() {
            case[i / 8] |= 0x20 << shift;
        }
        i += 1;
    }
    KnownName { pattern, case }
}

impl KnownName {
    #[inline(always)]
    fn matches(&self, w: [u64; 2]) -> bool {
        (w[0] | self.case[0]) == self.pattern[0] && (w[1] | self.case[1]) == self.pattern[1]
    }
}

/// The known names, lower case, most common first; the entry after them matches nothing (empty hash
/// buckets point at it).
const KNOWN_LIST: [(&[u8], HeaderName); 15] = [
    (b"via", HeaderName::Via),
    (b"from", HeaderName::From),
    (b"to", HeaderName::To),
    (b"call-id", HeaderName::CallId),
    (b"cseq", HeaderName::CSeq),
    (b"contact", HeaderName::Contact),
    (b"content-length", HeaderName::ContentLength),
    (b"expires", HeaderName::Expires),
    (b"max-forwards", HeaderName::MaxForwards),
    (b"user-agent", HeaderName::UserAgent),
    (b"authorization", HeaderName::Authorization),
    (b"supported", HeaderName::Supported),
    (b"require", HeaderName::Require),
    (b"path", HeaderName::Path),
    (b"proxy-require", HeaderName::ProxyRequire),
];

/// `KNOWN_LIST`'s patterns; the entries after them match nothing: `word | 1` has bit 0 set, their
/// pattern does not.
const KNOWN: [KnownName; 16] = {
    let mut k = [const {
        KnownName {
            pattern: [0; 2],
            case: [1; 2],
        }
    }; 16];
    let mut i = 0;
    while i < KNOWN_LIST.len() {
        k[i] = known(KNOWN_LIST[i].0);
        i += 1;
    }
    k
};

/// `KNOWN_LIST`'s names and their lengths, by `KNOWN` index.
const KNOWN_NAMES: [(u8, HeaderName); 16] = {
    let mut n = [(0, HeaderName::Other); 16];
    let mut i = 0;
    while i < KNOWN_LIST.len() {
        n[i] = (KNOWN_LIST[i].0.len() as u8, KNOWN_LIST[i].1);
        i += 1;
    }
    n
};
const NO_KNOWN: u8 = 15;

/// Multiplier of the hash of a line's first 4 bytes (case-folded): `(x * HASH_MUL) >> 28`, a bucket in
/// 0..16. Chosen (by search) so the 14 distinct 4-byte prefixes of `name: ` get distinct buckets; the
/// build fails if they stop doing so (see `known_buckets`).
const HASH_MUL: u32 = 0xd121_950d;

/// Bucket of the first 4 bytes of a line (`| 0x20` folds letter case; it also merges some non-letters,
/// which only picks a wrong candidate, then rejected by its pattern).
#[inline(always)]
fn known_bucket(first4: u32) -> usize {
    ((first4 | 0x2020_2020).wrapping_mul(HASH_MUL) >> 28) as usize
}

/// Which of a bucket's two candidates to try, from byte 4 of the line: `contact` and `content-length`
/// share their first four bytes and differ there (`a` vs `e`, bit 2); every other bucket holds one name
/// twice.
#[inline(always)]
fn known_alternative(byte4: u8) -> usize {
    usize::from((byte4 >> 2) & 1)
}

/// Hash buckets: `KNOWN` indices of the candidates, `[alternative]`. Built at compile time; a collision
/// that byte 4 cannot resolve aborts the build.
const BUCKETS: [[u8; 2]; 16] = known_buckets();

/// What `known_header` reads, in one static aligned to a cache line: the patterns (eight lines, the
/// common names in the first five), then the names and the hash buckets together in the ninth. Separate
/// statics land wherever the linker puts them, and a 32-byte one can straddle two lines.
#[repr(C, align(64))]
struct KnownTable {
    entries: [KnownName; 16],
    names: [(u8, HeaderName); 16],
    buckets: [[u8; 2]; 16],
}

static KNOWN_TABLE: KnownTable = KnownTable {
    entries: KNOWN,
    names: KNOWN_NAMES,
    buckets: BUCKETS,
};

const fn known_buckets() -> [[u8; 2]; 16] {
    let mut buckets = [[NO_KNOWN; 2]; 16];
    let mut i = 0;
    while i < NO_KNOWN as usize {
        let k = &KNOWN[i];
        let name_len = KNOWN_LIST[i].0.len();
        let first4 = (k.pattern[0] & 0xffff_ffff) as u32;
        let h = ((first4 | 0x2020_2020).wrapping_mul(HASH_MUL) >> 28) as usize;
        let alt = ((k.pattern[0] >> 32) as u8 >> 2 & 1) as usize;
        if buckets[h][0] == NO_KNOWN {
            buckets[h] = [i as u8; 2];
        } else {
            // A second name in this bucket: it must differ from the first at byte 4.
            let first = &KNOWN[buckets[h][0] as usize];
            let first_alt = ((first.pattern[0] >> 32) as u8 >> 2 & 1) as usize;
            let first_len = KNOWN_LIST[buckets[h][0] as usize].0.len();
            assert!(buckets[h][0] == buckets[h][1] && first_alt != alt && name_len >= 4);
            assert!(first_len >= 4);
            buckets[h][alt] = i as u8;
        }
        i += 1;
    }
    buckets
}

/// Fast path for the common line `Known-Name: value` (full name, colon right after it, then SP): (name
/// length, name). `None` sends the line through the general `split_header_line` + `header_name` path,
/// which gives the same result for the lines matched here.
///
/// One candidate per line, from a hash of its first 4 bytes (and byte 4 for contact/content-length); the
/// candidate's 16-byte pattern then decides. A wrong pick only costs the general path, never a wrong match.
#[inline]
fn known_header(line16: &[u8; 16]) -> Option<(usize, HeaderName)> {
    let (lo, hi) = line16.split_at(8);
    let w = [
        u64::from_le_bytes(lo.try_into().ok()?),
        u64::from_le_bytes(hi.try_into().ok()?),
    ];
    let t = &KNOWN_TABLE;
    let candidates = &t.buckets[known_bucket(w[0] as u32)];
    let i = usize::from(candidates[known_alternative(line16[4])]) & 15;
    t.entries[i].matches(w).then(|| {
        let (len, name) = t.names[i];
        (usize::from(len), name)
    })
}

/// Methods are case-sensitive (RFC 3261 §7.1).
fn method(raw: &[u8]) -> Method {
    match raw {
        b"REGISTER" => Method::Register,
        b"OPTIONS" => Method::Options,
        b"ACK" => Method::Ack,
        b"INVITE" => Method::Invite,
        b"BYE" => Method::Bye,
        b"CANCEL" => Method::Cancel,
        b"PRACK" => Method::Prack,
        b"SUBSCRIBE" => Method::Subscribe,
        b"NOTIFY" => Method::Notify,
        b"PUBLISH" => Method::Publish,
        b"INFO" => Method::Info,
        b"REFER" => Method::Refer,
        b"MESSAGE" => Method::Message,
        b"UPDATE" => Method::Update,
        _ => Method::Other,
    }
}

/// `SIP/2.0` (the protocol name is case-insensitive as an ABNF literal).
fn is_sip_2_0(v: &[u8]) -> bool {
    v.len() == 7 && v[..4].eq_ignore_ascii_case(b"SIP/") && &v[4..] == b"2.0"
}

/// `"SIP" "/" 1*DIGIT "." 1*DIGIT`, any version.
fn is_sip_version(v: &[u8]) -> bool {
    if v.len() < 7 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return false;
    }
    let num = &v[4..];
    let major = num.iter().take_while(|b| b.is_ascii_digit()).count();
    let minor = &num[major..];
    major > 0 && minor.len() > 1 && minor[0] == b'.' && minor[1..].iter().all(u8::is_ascii_digit)
}

/// `Method SP Request-URI SP SIP-Version`, strictly: one SP between elements, none at the end, no LWS or
/// `<...>` around the URI (RFC 4475 lwsstart, trws, lwsruri, ltgtruri).
fn request_line(line: &[u8]) -> StartLine<'_> {
    register_line(line).unwrap_or_else(|| request_line_general(line))
}

/// Fast path for the usual line, `REGISTER <uri> SIP/2.0` with a valid URI: one prefix and one suffix
/// compare and a word-at-a-time URI check instead of a token scan, `memrchr`, version and method matching.
/// `None` leaves the line (valid or not) to `request_line_general`, which gives the same result for the
/// lines accepted here.
#[inline]
fn register_line(line: &[u8]) -> Option<StartLine<'_>> {
    let uri = line.strip_prefix(b"REGISTER ")?.strip_suffix(b" SIP/2.0")?;
    let ok = uri.first().is_some_and(|&b| b != b'<')
        && uri.len() <= MAX_URI_BYTES
        && !has_space_or_ctl(uri);
    let method_raw = line.get(..8)?;
    ok.then_some(StartLine::Request {
        method: Method::Register,
        method_raw,
        uri,
    })
}

/// The general request-line parser (any method, every error case); kept out of line so that the fast path
/// inlined into `parse_message_into` stays small.
#[inline(never)]
fn request_line_general(line: &[u8]) -> StartLine<'_> {
    use StartLineError::*;
    let m = span(line, TOKEN);
    if m == 0 || line.get(m) != Some(&b' ') {
        return StartLine::Invalid(Malformed);
    }
    let rest = &line[m + 1..];
    let Some(last_sp) = memrchr(b' ', rest) else {
        return StartLine::Invalid(Malformed);
    };
    let (uri, version) = (&rest[..last_sp], &rest[last_sp + 1..]);
    if !is_sip_2_0(version) {
        return StartLine::Invalid(if is_sip_version(version) {
            BadVersion
        } else {
            Malformed
        });
    }
    if uri.is_empty() || uri[0] == b'<' || uri.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return StartLine::Invalid(Malformed);
    }
    if uri.len() > MAX_URI_BYTES {
        return StartLine::Invalid(UriTooLong);
    }
    StartLine::Request {
        method: method(&line[..m]),
        method_raw: &line[..m],
        uri,
    }
}

/// `SIP/2.0 SP 3DIGIT [SP Reason-Phrase]`. None when it is not one.
fn status_line(line: &[u8]) -> Option<StartLine<'static>> {
    let (version, rest) = line.split_at(memchr(b' ', line)?);
    let code = rest.get(1..4)?;
    let well_formed = is_sip_2_0(version)
        && (b'1'..=b'6').contains(&code[0])
        && code.iter().all(u8::is_ascii_digit)
        && matches!(rest.get(4), None | Some(b' '));
    well_formed.then(|| StartLine::Response {
        code: code
            .iter()
            .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0')),
    })
}

/// Every LF of `buf` from a start offset on, in order: one 64-byte block compare per 64 bytes instead of a
/// `memchr` call per line.
struct Newlines<'a> {
    buf: &'a [u8],
    /// Offset of the block `mask` describes.
    base: usize,
    /// LFs of the current block not yet returned.
    mask: u64,
}

impl<'a> Newlines<'a> {
    fn new(buf: &'a [u8], from: usize) -> Self {
        Newlines {
            buf,
            base: from,
            mask: newline_mask(buf, from),
        }
    }

    /// The next LF, or None when there is none left.
    #[inline]
    fn next_lf(&mut self) -> Option<usize> {
        while self.mask == 0 {
            if self.base >= self.buf.len() {
                return None;
            }
            self.base += 64;
            self.mask = newline_mask(self.buf, self.base);
        }
        let i = self.base + self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(i)
    }

    /// The line starting at `pos` (which must follow the last LF returned): (end of its content without
    /// CR/LF, start of the next line). A line ends at LF (CRLF or bare LF) or at the end of the buffer.
    #[inline]
    fn line(&mut self, pos: usize) -> (usize, usize) {
        let (nl, next) = match self.next_lf() {
            Some(i) => (i, i + 1),
            None => (self.buf.len(), self.buf.len()),
        };
        let end = if nl > pos && self.buf.get(nl - 1) == Some(&b'\r') {
            nl - 1
        } else {
            nl
        };
        (end, next)
    }
}

/// `field-name HCOLON` at the start of a line, HCOLON = *(SP/HTAB) ":" SWS: (name length, offset of the value).
/// None when the line is not a header line.
fn split_header_line(line: &[u8]) -> Option<(usize, usize)> {
    let n = span(line, TOKEN);
    let colon = n + line[n..]
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    (n > 0 && line.get(colon) == Some(&b':')).then_some((n, colon + 1))
}

/// [`parse_message`] into storage the caller provides, so the ~1.6 KiB `Message` is built where it is used
/// and never moved (a by-value return costs a `memcpy` of the whole struct in the caller). On `Err` the
/// slot holds nothing usable (`Message` has no destructor, so nothing leaks).
#[inline]
pub fn parse_message_into<'a, 'm>(
    buf: &'a [u8],
    limits: &ParseLimits,
    slot: &'m mut MaybeUninit<Message<'a>>,
) -> Result<&'m mut Message<'a>, FramingError> {
    let (start, pos, mut lines) = start_line(buf, limits)?;
    // Written in place; the header array is left uninitialised (see `Message::headers`).
    let msg = slot.write(Message {
        start,
        body: &[],
        body_error: None,
        buf,
        headers: [const { MaybeUninit::uninit() }; MAX_HEADERS],
        header_count: 0,
        first_index: [NO_HEADER; HEADER_NAME_COUNT],
        name_count: [0; HEADER_NAME_COUNT],
    });
    read_headers_and_body(msg, buf, pos, &mut lines, limits)?;
    Ok(msg)
}

/// Checks the datagram size, skips leading CRLFs and parses the start line: (start line, next position,
/// the LF scanner positioned after the start line). Inlined so the tuple and the scanner stay in registers.
#[inline(always)]
fn start_line<'a>(
    buf: &'a [u8],
    limits: &ParseLimits,
) -> Result<(StartLine<'a>, usize, Newlines<'a>), FramingError> {
    if buf.len() > limits.max_message_bytes || u32::try_from(buf.len()).is_err() {
        return Err(FramingError::TooLarge);
    }
    let pos = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if pos == buf.len() {
        return Err(FramingError::Empty);
    }
    let mut lines = Newlines::new(buf, pos);
    let (line_end, next) = lines.line(pos);
    let line = &buf[pos..line_end];
    let is_response = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/");
    let start = if is_response {
        status_line(line).ok_or(FramingError::Garbage)?
    } else {
        request_line(line)
    };
    Ok((start, next, lines))
}

/// Header lines from `pos` to the empty line (or the end of the datagram), then the body.
#[inline(always)]
fn read_headers_and_body<'a>(
    msg: &mut Message<'a>,
    buf: &'a [u8],
    mut pos: usize,
    lines: &mut Newlines<'a>,
    limits: &ParseLimits,
) -> Result<(), FramingError> {
    let max_headers = limits.max_headers.min(MAX_HEADERS);
    let mut bad_header_line = false;
    // Whether the previous line was a header line (kept), which a continuation line extends. Its line and
    // value start are read back from its slot: continuing the trim from the trimmed value start gives the
    // same value as from the colon, since only LWS lies between them.
    let mut after_header = false;
    let body_start = loop {
        let (end, next) = lines.line(pos);
        if end <= pos {
            break next; // the empty line, or the end of the datagram
        }
        let line = &buf[pos..end];
        if let Some((name_len, name, s, e)) = typical_header_line(buf, pos, line) {
            // The usual `Known-Name: value` line; the general code below gives the same slot.
            if line.len() > limits.max_line_bytes {
                return Err(FramingError::LineTooLong);
            }
            msg.push(
                Slot {
                    line: pos as u32,
                    value_start: (pos + s) as u32,
                    value_end: (pos + e) as u32,
                    name_len: name_len as u16,
                    name,
                },
                max_headers,
            )?;
            after_header = true;
            pos = next;
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // Continuation line (RFC 3261 §7.3.1): the value runs on, inner CRLF+WS kept.
            match msg.last_starts().filter(|_| after_header) {
                Some((line_start, value_start)) => {
                    if end - line_start > limits.max_line_bytes {
                        return Err(FramingError::LineTooLong);
                    }
                    let (s, e) = trim_lws_range(buf, value_start, end);
                    msg.set_last_value(s, e);
                }
                None => bad_header_line = true,
            }
        } else {
            let known = buf
                .get(pos..)
                .and_then(<[u8]>::first_chunk::<16>)
                .and_then(known_header);
            let split = match known {
                Some((name_len, name)) => Some((name_len, name_len + 1, name)),
                None => split_header_line(line).map(|(name_len, value_offset)| {
                    (name_len, value_offset, header_name(&line[..name_len]))
                }),
            };
            match split {
                // A known name matched on 16 bytes may run past `end` only if the line is shorter than
                // `name:`, which the match excludes: the colon is on this line.
                Some((name_len, value_offset, name)) if value_offset <= line.len() => {
                    if line.len() > limits.max_line_bytes {
                        return Err(FramingError::LineTooLong);
                    }
                    let (s, e) = trim_value(line, value_offset);
                    let (s, e) = (pos + s, pos + e);
                    msg.push(
                        Slot {
                            line: pos as u32,
                            value_start: s as u32,
                            value_end: e as u32,
                            name_len: name_len as u16,
                            name,
                        },
                        max_headers,
                    )?;
                    after_header = true;
                }
                _ => {
                    bad_header_line = true;
                    after_header = false;
                }
            }
        }
        pos = next;
    };
    if bad_header_line && matches!(msg.start, StartLine::Request { .. }) {
        msg.start = StartLine::Invalid(StartLineError::Malformed);
    }

    let rest = buf.get(body_start..).unwrap_or(&[]);
    msg.body = rest;
    match (
        msg.count(HeaderName::ContentLength),
        msg.first(HeaderName::ContentLength),
    ) {
        // `Content-Length: 0`, the usual REGISTER, without the number parser (same result: an empty body).
        (1, Some(b"0")) => msg.body = &rest[..0],
        (1, Some(cl)) => match parse_u32(cl) {
            Ok(n) if n as usize <= rest.len() => msg.body = &rest[..n as usize],
            Ok(_) => msg.body_error = Some(BodyError::ContentLengthExceedsDatagram),
            Err(_) => msg.body_error = Some(BodyError::BadContentLength),
        },
        (0, _) => {}
        _ => msg.body_error = Some(BodyError::BadContentLength),
    }
    Ok(())
}

/// The typical header line, `Known-Name: value`: a known full name right before the colon, one SP, and a
/// value that neither starts nor ends with LWS. (name length, name, value start, value end), offsets into
/// `line` (= `buf[pos..]` up to its CR/LF). `None` for any other line, which the general path then frames;
/// for the lines accepted here it gives the same result (`known_header`, then `trim_value` stops after the
/// single SP and keeps the whole rest).
#[inline(always)]
fn typical_header_line(
    buf: &[u8],
    pos: usize,
    line: &[u8],
) -> Option<(usize, HeaderName, usize, usize)> {
    let (name_len, name) = known_header(buf.get(pos..)?.first_chunk::<16>()?)?;
    // `known_header` matched `name: ` (no CR/LF in it), so those bytes are on this line.
    let value_start = name_len + 2;
    let typical = line.get(value_start).is_some_and(|&b| !is_lws(b))
        && line.last().is_some_and(|&b| !is_lws(b));
    typical.then_some((name_len, name, value_start, line.len()))
}

/// `line[from..]` without leading and trailing LWS, as offsets into `line` (same result as `trim_lws`;
/// open-coded so the bounds are those of `line`, already known, and the usual single SP costs one step).
#[inline(always)]
fn trim_value(line: &[u8], from: usize) -> (usize, usize) {
    let mut s = from;
    while line.get(s).is_some_and(|&b| is_lws(b)) {
        s += 1;
    }
    let mut e = line.len();
    while e > s && line.get(e - 1).is_some_and(|&b| is_lws(b)) {
        e -= 1;
    }
    (s.min(e), e)
}

/// `buf[start..end]` without leading and trailing LWS, as offsets (same result as `trim_lws`).
#[inline]
fn trim_lws_range(buf: &[u8], start: usize, end: usize) -> (usize, usize) {
    let v = trim_lws(&buf[start..end]);
    let s = v.as_ptr() as usize - buf.as_ptr() as usize;
    (s, s + v.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Start-line material biased towards the REGISTER fast path and its edges.
    fn start_line_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"REGISTER".to_vec()),
            Just(b"REGISTER ".to_vec()),
            Just(b" SIP/2.0".to_vec()),
            Just(b"sip/2.0".to_vec()),
            Just(b"sip:example.com".to_vec()),
            Just(b"<".to_vec()),
            Just(vec![b' ']),
            Just(vec![0x7f]),
            Just(vec![0x80]),
            Just(vec![0xa0]),
            proptest::collection::vec(any::<u8>(), 0..12),
            proptest::collection::vec(0x1fu8..0x23, 0..4),
            "[a-z0-9@.:;=]{0,40}".prop_map(String::into_bytes),
        ];
        proptest::collection::vec(piece, 0..6).prop_map(|v| v.concat())
    }

    fn same_start(a: &StartLine<'_>, b: &StartLine<'_>) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        #[test]
        fn register_fast_path_agrees_with_general_request_line(line in start_line_bytes()) {
            if let Some(fast) = register_line(&line) {
                let general = request_line_general(&line);
                prop_assert!(same_start(&fast, &general), "{fast:?} vs {general:?}");
            }
        }

        #[test]
        fn register_fast_path_takes_valid_uris(uri in "[!-~&&[^<]][!-~]{0,600}") {
            let line = format!("REGISTER {uri} SIP/2.0");
            let general = request_line_general(line.as_bytes());
            match register_line(line.as_bytes()) {
                Some(fast) => prop_assert!(same_start(&fast, &general), "{fast:?} vs {general:?}"),
                None => prop_assert!(
                    !matches!(general, StartLine::Request { .. }),
                    "fast path refused a valid line: {general:?}"
                ),
            }
        }

    }

    /// Header-line material biased towards known names, colons, spaces and line ends.
    fn header_line_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"Via".to_vec()),
            Just(b"call-ID".to_vec()),
            Just(b"CSeq".to_vec()),
            Just(b"Contact".to_vec()),
            Just(b"Content-Length".to_vec()),
            Just(b"Proxy-Require".to_vec()),
            Just(b"Path".to_vec()),
            Just(b"Max-Forwards".to_vec()),
            Just(b":".to_vec()),
            Just(b": ".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\t".to_vec()),
            Just(b"\r".to_vec()),
            "[a-zA-Z0-9 ;=<>@.-]{0,20}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..6),
        ];
        proptest::collection::vec(piece, 0..6).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 8192, ..ProptestConfig::default() })]

        #[test]
        fn typical_line_fast_path_agrees_with_general_path(line in header_line_bytes(), tail in "[\r\n a-z]{0,20}") {
            // The line as framed: it never holds LF, and its CR/LF is not part of it.
            let line: Vec<u8> = line.into_iter().filter(|&b| b != b'\n').collect();
            let mut buf = line.clone();
            buf.extend_from_slice(b"\r\n");
            buf.extend_from_slice(tail.as_bytes());
            if let Some((n, name, s, e)) = typical_header_line(&buf, 0, &line) {
                let (gn, voff) = split_header_line(&line).expect("a header line");
                let v = trim_lws(&line[voff..]);
                let gs = v.as_ptr() as usize - line.as_ptr() as usize;
                prop_assert_eq!((n, name), (gn, header_name(&line[..gn])));
                prop_assert_eq!((s, e), (gs, gs + v.len()));
            }
        }
    }

    const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Bob <sip:bob@example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Expires: 7200\r\n\
Content-Length: 0\r\n\
\r\n";

    fn parse(buf: &[u8]) -> Message<'_> {
        parse_message(buf, &ParseLimits::default()).unwrap()
    }

    fn invalid(buf: &[u8]) -> StartLineError {
        match parse(buf).start {
            StartLine::Invalid(e) => e,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn typical_register() {
        let m = parse(REGISTER);
        match m.start {
            StartLine::Request {
                method,
                method_raw,
                uri,
            } => {
                assert_eq!(method, Method::Register);
                assert_eq!(method_raw, b"REGISTER");
                assert_eq!(uri, b"sip:example.com");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.headers().len(), 9);
        assert_eq!(
            m.first(HeaderName::CallId),
            Some(&b"843817637684230@998sdasdh09"[..])
        );
        assert_eq!(m.first(HeaderName::CSeq), Some(&b"1826 REGISTER"[..]));
        assert_eq!(
            m.first(HeaderName::To),
            Some(&b"Bob <sip:bob@example.com>"[..])
        );
        assert_eq!(m.first(HeaderName::MaxForwards), Some(&b"70"[..]));
        assert_eq!(m.count(HeaderName::Contact), 1);
        assert_eq!(m.count(HeaderName::Path), 0);
        assert_eq!(m.first(HeaderName::Path), None);
        assert_eq!(m.all(HeaderName::Path).count(), 0);
        assert!(m.body.is_empty());
        assert_eq!(m.body_error, None);
        assert_eq!(m.header(0).unwrap().raw_name, b"Via");
    }

    #[test]
    fn compact_and_case_insensitive_names() {
        let buf = b"REGISTER sip:example.com SIP/2.0\r\nv: SIP/2.0/UDP h\r\nF: <sip:a@b>;tag=1\r\nt: <sip:a@b>\r\n\
I: x\r\nm: <sip:a@c>\r\nL: 0\r\nk: path\r\ns: subject\r\nc: text/plain\r\ne: gzip\r\nCALL-ID: y\r\n\
cseq: 1 REGISTER\r\nEXPIRES: 60\r\nrequire: path\r\nProxy-Require: x\r\nPATH: <sip:p@q;lr>\r\n\
authorization: Digest x\r\nuser-agent: t\r\nMAX-FORWARDS: 70\r\nSupported: gruu\r\ncontent-length: 0\r\n\
Contact: <sip:a@d>\r\nX-Custom: 1\r\n\r\n";
        let m = parse(buf);
        use HeaderName::*;
        let expect = [
            Via,
            From,
            To,
            CallId,
            Contact,
            ContentLength,
            Supported,
            Other,
            Other,
            Other,
            CallId,
            CSeq,
            Expires,
            Require,
            ProxyRequire,
            Path,
            Authorization,
            UserAgent,
            MaxForwards,
            Supported,
            ContentLength,
            Contact,
            Other,
        ];
        let names: Vec<HeaderName> = m.headers().map(|h| h.name).collect();
        assert_eq!(names, expect);
        assert_eq!(m.count(CallId), 2);
        assert_eq!(m.first(CallId), Some(&b"x"[..]));
        assert_eq!(
            m.all(Contact).collect::<Vec<_>>(),
            vec![&b"<sip:a@c>"[..], b"<sip:a@d>"]
        );
        assert_eq!(
            m.all(Supported).collect::<Vec<_>>(),
            vec![&b"path"[..], b"gruu"]
        );
        // Two Content-Length headers: the body cannot be framed reliably.
        assert_eq!(m.body_error, Some(BodyError::BadContentLength));
    }

    #[test]
    fn folding_and_hcolon() {
        // RFC 4475 wsinv fragments.
        let buf = b"INVITE sip:a@b SIP/2.0\r\nTO :\r\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n\
cseq: 0009\r\n  INVITE\r\nVia  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw\r\ns :\r\n\
NewFangledHeader:   newfangled value\r\n continued newfangled value\r\nSubject:\t \r\n\t\r\nl: 0\r\n\r\n";
        let m = parse(buf);
        assert!(matches!(
            m.start,
            StartLine::Request {
                method: Method::Invite,
                ..
            }
        ));
        assert_eq!(
            m.first(HeaderName::To),
            Some(&b"sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n"[..])
        );
        assert_eq!(m.first(HeaderName::CSeq), Some(&b"0009\r\n  INVITE"[..]));
        assert_eq!(
            m.first(HeaderName::Via),
            Some(&b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw"[..])
        );
        let h: Vec<Header<'_>> = m.headers().collect();
        assert_eq!(h[3].raw_name, b"s");
        assert_eq!(h[3].value, b"");
        assert_eq!(
            h[4].value,
            b"newfangled value\r\n continued newfangled value"
        );
        assert_eq!(h[5].raw_name, b"Subject");
        assert_eq!(h[5].value, b"");
        assert_eq!(m.body_error, None);
    }

    #[test]
    fn bare_lf_and_leading_crlf() {
        let buf = b"\r\n\r\nREGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP h\n folded\nCall-ID: x\n\nbody";
        let m = parse(buf);
        assert!(matches!(
            m.start,
            StartLine::Request {
                method: Method::Register,
                ..
            }
        ));
        assert_eq!(
            m.first(HeaderName::Via),
            Some(&b"SIP/2.0/UDP h\n folded"[..])
        );
        assert_eq!(m.first(HeaderName::CallId), Some(&b"x"[..]));
        assert_eq!(m.body, b"body");
    }

    #[test]
    fn missing_final_empty_line() {
        // RFC 4475 baddn.dat ends right after its last header line.
        let m = parse(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nl: 0\r\n");
        assert_eq!(m.first(HeaderName::ContentLength), Some(&b"0"[..]));
        assert!(m.body.is_empty());
        let m = parse(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x");
        assert_eq!(m.first(HeaderName::CallId), Some(&b"x"[..]));
        let m = parse(b"OPTIONS sip:a@b SIP/2.0");
        assert_eq!(m.headers().len(), 0);
    }

    #[test]
    fn methods_are_case_sensitive() {
        let m = parse(b"register sip:example.com SIP/2.0\r\n\r\n");
        assert!(matches!(
            m.start,
            StartLine::Request {
                method: Method::Other,
                method_raw: b"register",
                ..
            }
        ));
        // RFC 4475 esc02: RE%47IST%45R is not REGISTER.
        let m = parse(b"RE%47IST%45R sip:registrar.example.com SIP/2.0\r\n\r\n");
        assert!(matches!(
            m.start,
            StartLine::Request {
                method: Method::Other,
                ..
            }
        ));
        for (name, method) in [
            ("OPTIONS", Method::Options),
            ("ACK", Method::Ack),
            ("INVITE", Method::Invite),
            ("BYE", Method::Bye),
            ("CANCEL", Method::Cancel),
            ("PRACK", Method::Prack),
            ("SUBSCRIBE", Method::Subscribe),
            ("NOTIFY", Method::Notify),
            ("PUBLISH", Method::Publish),
            ("INFO", Method::Info),
            ("REFER", Method::Refer),
            ("MESSAGE", Method::Message),
            ("UPDATE", Method::Update),
        ] {
            let buf = format!("{name} sip:a@b SIP/2.0\r\n\r\n");
            match parse(buf.as_bytes()).start {
                StartLine::Request { method: m, .. } => assert_eq!(m, method),
                other => panic!("{other:?}"),
            }
        }
        // RFC 4475 intmeth: every token character.
        let m = parse(b"!interesting-Method0123456789_*+`.%indeed'~ sip:a@b SIP/2.0\r\n\r\n");
        assert!(matches!(
            m.start,
            StartLine::Request {
                method: Method::Other,
                ..
            }
        ));
    }

    #[test]
    fn strict_request_line() {
        use StartLineError::*;
        assert_eq!(
            invalid(b"OPTIONS sip:t.watson@example.org SIP/7.0\r\nl: 0\r\n\r\n"),
            BadVersion
        ); // badvers
        assert_eq!(invalid(b"OPTIONS sip:a@b SIP/2.00\r\n\r\n"), BadVersion);
        assert_eq!(
            invalid(b"INVITE  sip:user@example.com  SIP/2.0\r\n\r\n"),
            Malformed
        ); // lwsstart
        assert_eq!(
            invalid(b"OPTIONS sip:remote-target@example.com SIP/2.0  \r\n\r\n"),
            Malformed
        ); // trws
        assert_eq!(
            invalid(b"INVITE sip:user@example.com; lr SIP/2.0\r\n\r\n"),
            Malformed
        ); // lwsruri
        assert_eq!(
            invalid(b"INVITE <sip:user@example.com> SIP/2.0\r\n\r\n"),
            Malformed
        ); // ltgtruri
        assert_eq!(invalid(b"INVITE sip:alan@jasomi.com\r\n\r\n"), Malformed); // test.dat
        assert_eq!(invalid(b"INVITE\tsip:a@b SIP/2.0\r\n\r\n"), Malformed);
        assert_eq!(invalid(b"INVITE sip:a@b HTTP/1.1\r\n\r\n"), Malformed);
        assert_eq!(invalid(b"INVITE  SIP/2.0\r\n\r\n"), Malformed);
        assert_eq!(invalid(b" INVITE sip:a@b SIP/2.0\r\n\r\n"), Malformed);
        assert_eq!(invalid(b"INVITE sip:a\x7f@b SIP/2.0\r\n\r\n"), Malformed);
        let long = format!("INVITE sip:{}@b SIP/2.0\r\n\r\n", "a".repeat(MAX_URI_BYTES));
        assert_eq!(invalid(long.as_bytes()), UriTooLong);
        // Lower-case protocol name is the same literal.
        assert!(matches!(
            parse(b"OPTIONS sip:a@b sip/2.0\r\n\r\n").start,
            StartLine::Request { .. }
        ));
    }

    #[test]
    fn bad_header_line_makes_request_malformed() {
        let buf = b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\nFoobar roobar\r\nl: 0\r\n\r\n";
        let m = parse(buf);
        assert!(matches!(
            m.start,
            StartLine::Invalid(StartLineError::Malformed)
        ));
        assert_eq!(m.headers().len(), 2); // the good lines are still there to answer with
        let m = parse(b"INVITE sip:a@b SIP/2.0\r\n folded-first\r\nCall-ID: x\r\n\r\n");
        assert!(matches!(
            m.start,
            StartLine::Invalid(StartLineError::Malformed)
        ));
        let m = parse(b"INVITE sip:a@b SIP/2.0\r\n: empty-name\r\n\r\n");
        assert!(matches!(
            m.start,
            StartLine::Invalid(StartLineError::Malformed)
        ));
        // A response keeps its status (it is never answered); the bad line is dropped.
        let m = parse(b"SIP/2.0 200 OK\r\nbogus\r\nCall-ID: x\r\n\r\n");
        assert!(matches!(m.start, StartLine::Response { code: 200 }));
        assert_eq!(m.headers().len(), 1);
    }

    #[test]
    fn status_lines() {
        assert!(matches!(
            parse(b"SIP/2.0 200 OK\r\n\r\n").start,
            StartLine::Response { code: 200 }
        ));
        assert!(matches!(
            parse(b"SIP/2.0 100 \r\n\r\n").start,
            StartLine::Response { code: 100 }
        )); // noreason
        assert!(matches!(
            parse(b"SIP/2.0 699\r\n\r\n").start,
            StartLine::Response { code: 699 }
        ));
        assert!(matches!(
            parse(b"sip/2.0 404 Not Found\r\n\r\n").start,
            StartLine::Response { code: 404 }
        ));
        for bad in [
            &b"SIP/2.0 4294967301 better not break the receiver\r\n\r\n"[..], // bigcode
            b"SIP/3.0 200 OK\r\n\r\n",
            b"SIP/2.0 099 Low\r\n\r\n",
            b"SIP/2.0 700 High\r\n\r\n",
            b"SIP/2.0 20 Short\r\n\r\n",
            b"SIP/2.0 2x0 Bad\r\n\r\n",
            b"SIP/2.0\r\n\r\n",
            b"SIP/",
        ] {
            assert_eq!(
                parse_message(bad, &ParseLimits::default()).unwrap_err(),
                FramingError::Garbage
            );
        }
    }

    #[test]
    fn content_length_over_udp() {
        let m = parse(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nhello world");
        assert_eq!(m.body, b"hello"); // dblreq: trailing octets ignored
        assert_eq!(m.body_error, None);
        let m = parse(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 9999\r\n\r\nhello");
        assert_eq!(m.body_error, Some(BodyError::ContentLengthExceedsDatagram)); // clerr
        let m = parse(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\nhello");
        assert_eq!(m.body_error, Some(BodyError::BadContentLength)); // ncl
        let m = parse(b"MESSAGE sip:a@b SIP/2.0\r\nl: 99999999999999999999\r\n\r\nhello");
        assert_eq!(m.body_error, Some(BodyError::BadContentLength));
        let m = parse(b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nhello\r\n");
        assert_eq!(m.body, b"hello\r\n"); // no Content-Length over UDP: the rest of the datagram
        assert_eq!(m.body_error, None);
        let m = parse(b"MESSAGE sip:a@b SIP/2.0\r\nl: 0\r\n\r\n");
        assert_eq!((m.body, m.body_error), (&b""[..], None));
    }

    #[test]
    fn limits() {
        let limits = ParseLimits {
            max_message_bytes: 64,
            max_headers: 2,
            max_line_bytes: 20,
        };
        assert_eq!(
            parse_message(b"", &limits).unwrap_err(),
            FramingError::Empty
        );
        assert_eq!(
            parse_message(b"\r\n\r\n", &limits).unwrap_err(),
            FramingError::Empty
        );
        assert_eq!(
            parse_message(&[b'a'; 65], &limits).unwrap_err(),
            FramingError::TooLarge
        );
        let three = b"OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(
            parse_message(three, &limits).unwrap_err(),
            FramingError::TooManyHeaders
        );
        let two = b"OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(parse_message(two, &limits).unwrap().headers().len(), 2);
        let long = b"OPTIONS sip:a@b SIP/2.0\r\nA: 12345678901234567890\r\n\r\n";
        assert_eq!(
            parse_message(long, &limits).unwrap_err(),
            FramingError::LineTooLong
        );
        // Folding counts towards the line length.
        let folded = b"OPTIONS sip:a@b SIP/2.0\r\nA: 1234567890\r\n 1234567890\r\n\r\n";
        assert_eq!(
            parse_message(folded, &limits).unwrap_err(),
            FramingError::LineTooLong
        );
        // max_headers above the static capacity is clamped to it.
        let limits = ParseLimits {
            max_message_bytes: 1 << 20,
            max_headers: 1000,
            max_line_bytes: 100,
        };
        let mut many = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        for _ in 0..MAX_HEADERS {
            many.extend_from_slice(b"X: 1\r\n");
        }
        assert_eq!(
            parse_message(&many, &limits).unwrap().headers().len(),
            MAX_HEADERS
        );
        many.extend_from_slice(b"X: 1\r\n\r\n");
        assert_eq!(
            parse_message(&many, &limits).unwrap_err(),
            FramingError::TooManyHeaders
        );
    }

    #[test]
    fn other_headers_do_not_shadow_known_ones() {
        let m = parse(b"OPTIONS sip:a@b SIP/2.0\r\nX: 1\r\nVia: v\r\nY: 2\r\n\r\n");
        assert_eq!(m.first(HeaderName::Other), Some(&b"1"[..]));
        assert_eq!(
            m.all(HeaderName::Other).collect::<Vec<_>>(),
            vec![&b"1"[..], b"2"]
        );
        assert_eq!(m.first(HeaderName::Via), Some(&b"v"[..]));
        assert!(format!("{m:?}").contains("Via"));
    }

    #[test]
    fn known_name_fast_path_agrees_with_general_path() {
        let names = [
            "Via",
            "vIA",
            "From",
            "To",
            "tO",
            "Call-ID",
            "call-id",
            "CSeq",
            "Contact",
            "CONTENT-LENGTH",
            "Expires",
            "Max-Forwards",
            "User-Agent",
            "Authorization",
            "Supported",
            "Require",
            "Path",
            "Proxy-Require",
            "Call\rID",
            "Call\x0dID",
            "Vi\x01",
            "Tx",
            "Via ",
            "Contacts",
            "Content-Lengthx",
            "To\x1a",
            "V",
            "Pat",
            "Requir",
            "Cseq-",
        ];
        for name in names {
            for tail in [
                ":",
                " :",
                "\x1a",
                "-",
                "",
                ":value and more bytes",
                ": ",
                ": value",
                ":  value",
                ":\tvalue",
            ] {
                let line = format!("{name}{tail}                ");
                let bytes = line.as_bytes();
                let w = bytes.first_chunk::<16>().unwrap();
                if let Some((n, hn)) = known_header(w) {
                    let (gn, voff) = split_header_line(bytes).unwrap();
                    assert_eq!((n, n + 1), (gn, voff), "{line:?}");
                    assert_eq!(hn, header_name(&bytes[..gn]), "{line:?}");
                }
            }
        }
        assert!(known_header(b"Call-ID: x......").is_some());
        assert!(known_header(b"Call\rID: x......").is_none());
        assert!(known_header(b"To\x1a.............").is_none());
        // The unused entries match nothing, whatever the bytes.
        for fill in [0u64, 0x2020_2020_2020_2020, u64::MAX - 1, u64::MAX] {
            assert!(known_header(&[fill as u8; 16]).is_none());
            assert!(!KNOWN[usize::from(NO_KNOWN)].matches([fill; 2]));
        }
        // Every known name, in any case, is found by the hash dispatch.
        assert_eq!(KNOWN_LIST.len(), usize::from(NO_KNOWN));
        for (lower, _) in KNOWN_LIST {
            for variant in [
                lower.to_vec(),
                lower.to_ascii_uppercase(),
                lower
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        if i % 2 == 0 {
                            b.to_ascii_uppercase()
                        } else {
                            *b
                        }
                    })
                    .collect(),
            ] {
                let mut line = variant.clone();
                line.extend_from_slice(b": v                ");
                let w = line.first_chunk::<16>().unwrap();
                assert_eq!(
                    known_header(w),
                    Some((variant.len(), header_name(&variant))),
                    "{:?}",
                    String::from_utf8_lossy(&variant)
                );
                assert_ne!(header_name(&variant), HeaderName::Other);
            }
        }
        let buf = b"Via: x\r\nTo:  y \r\nX-Padding: 0123456789\r\n\r\n";
        assert_eq!(
            typical_header_line(buf, 0, &buf[..6]),
            Some((3, HeaderName::Via, 5, 6))
        );
        assert_eq!(typical_header_line(buf, 8, &buf[8..15]), None); // two SP, trailing SP
    }
}
