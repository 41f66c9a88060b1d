//! Message framing: start line, header lines (with RFC 3261 §7.3.1 folding), body.
//!
//! CONTRACT (used by the registrar; keep these names and meanings):
//! - `parse_message(buf, &limits) -> Result<Message<'_>, FramingError>` never allocates and never panics.
//!   `Err` only when no header section can be delimited at all (then nobody can be answered: drop + count).
//! - A request whose start line is broken still yields a `Message` whose `start` is `StartLine::Invalid(err)`
//!   when the header lines could be split, so the caller can answer 400/505 using the Via/From/To/... copies.
//! - Header values are raw slices, trimmed of leading/trailing LWS; a folded value keeps its inner CRLF+WS
//!   bytes (typed parsers in `header` treat CR/LF/SP/HTAB alike as LWS).
//! - Over UDP (RFC 3261 §18.3): Content-Length larger than the remaining bytes -> `Message::body_error`
//!   = Some(ContentLengthExceedsDatagram); trailing octets beyond Content-Length are ignored (RFC 4475 dblreq).
//!   Missing Content-Length over UDP: body = rest of the datagram.

use thiserror::Error;

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

/// A parsed message: borrowed slices into the datagram plus a fixed-size header array.
pub struct Message<'a> {
    pub start: StartLine<'a>,
    pub body: &'a [u8],
    pub body_error: Option<BodyError>,
    // private: headers array, count, first-index per HeaderName, count per HeaderName ...
    _p: std::marker::PhantomData<&'a ()>,
}

impl<'a> Message<'a> {
    /// All header lines in order.
    pub fn headers(&self) -> &[Header<'a>] {
        todo!()
    }
    /// Value of the first header with this name (O(1)).
    pub fn first(&self, _name: HeaderName) -> Option<&'a [u8]> {
        todo!()
    }
    /// How many header lines carry this name (O(1)); used to detect duplicated singleton headers.
    pub fn count(&self, _name: HeaderName) -> usize {
        todo!()
    }
    /// Values of all header lines with this name, in order.
    pub fn all(&self, _name: HeaderName) -> impl Iterator<Item = &'a [u8]> + '_ {
        std::iter::empty()
    }
}

/// Frame a datagram. Never allocates, never panics.
pub fn parse_message<'a>(
    _buf: &'a [u8],
    _limits: &ParseLimits,
) -> Result<Message<'a>, FramingError> {
    todo!()
}
