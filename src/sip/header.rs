//! Typed, lazy parsers for header values. All borrow from the value slice; none allocates.
//!
//! CONTRACT (used by the registrar; keep these names and meanings). LWS = SP / HTAB / CR / LF runs
//! (values may contain folded CRLF+WS). Parameter names compare case-insensitively.

use thiserror::Error;

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("malformed header value")]
    Malformed,
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    #[error("missing angle bracket")]
    UnbalancedAngle,
    #[error("number out of range")]
    NumberOutOfRange,
    #[error("too many list elements")]
    TooMany,
}

/// `;name[=value]` parameters after a URI or header value, parsed on demand.
#[derive(Clone, Copy, Debug, Default)]
pub struct Params<'a> {
    /// Raw text starting at the first `;` (or empty).
    pub raw: &'a [u8],
}

impl<'a> Params<'a> {
    /// Value of the named parameter: `Some(Some(v))` with `name=v` (quotes removed when quoted, escapes
    /// inside the quoted string left as they are), `Some(None)` for a bare `name`, `None` when absent.
    pub fn get(&self, _name: &[u8]) -> Option<Option<&'a [u8]>> {
        todo!()
    }
    /// Every parameter, in order, as (name, value) with the same value rules as `get`.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { rest: self.raw }
    }
}

pub struct ParamIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);
    fn next(&mut self) -> Option<Self::Item> {
        let _ = self.rest;
        todo!()
    }
}

/// `[display-name] <uri> *(;param)` or `addr-spec *(;param)` (RFC 3261 §20.10 rules: without angle
/// brackets, `;params` belong to the header, not to the URI, and the URI cannot contain `,` `?` `;`).
#[derive(Clone, Copy, Debug)]
pub struct NameAddr<'a> {
    /// Display name without quotes (escapes untouched); None when absent.
    pub display: Option<&'a [u8]>,
    /// The URI text only (without `<` `>`).
    pub uri: &'a [u8],
    /// Header parameters after the URI (`;tag=..`, `;expires=..`, `;q=..`, ...).
    pub params: Params<'a>,
}

/// Parse one name-addr / addr-spec with its header parameters (From, To, one Contact, one Path entry).
pub fn parse_name_addr(_value: &[u8]) -> Result<NameAddr<'_>, HeaderError> {
    todo!()
}

/// One element of a Contact header value.
#[derive(Clone, Copy, Debug)]
pub enum ContactValue<'a> {
    /// `Contact: *`
    Star,
    Addr(NameAddr<'a>),
}

/// Split a comma-separated list header value (Contact, Path, Via, Require, Supported) into elements,
/// honouring quoted strings and `<...>` so commas inside them do not split.
pub fn split_list(value: &[u8]) -> ListIter<'_> {
    ListIter { rest: value }
}

pub struct ListIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ListIter<'a> {
    /// Each element trimmed of LWS; `Err` for an unterminated quote or `<` (then iteration stops).
    type Item = Result<&'a [u8], HeaderError>;
    fn next(&mut self) -> Option<Self::Item> {
        let _ = self.rest;
        todo!()
    }
}

/// Parse one Contact list element (from `split_list`): `*` or a name-addr.
pub fn parse_contact(_element: &[u8]) -> Result<ContactValue<'_>, HeaderError> {
    todo!()
}

/// CSeq: `number LWS method`. The number must fit in 32 bits (RFC 3261 §8.1.1.5, RFC 4475 scalar02).
pub fn parse_cseq(_value: &[u8]) -> Result<(u32, &[u8]), HeaderError> {
    todo!()
}

/// A non-negative decimal that fits in u32 (Expires, Content-Length, Max-Forwards, expires param).
/// Expires values above u32::MAX are NumberOutOfRange; callers cap them.
pub fn parse_u32(_value: &[u8]) -> Result<u32, HeaderError> {
    todo!()
}

/// q-value (`0`, `0.5`, `1.000`) in thousandths, 0..=1000 (RFC 3261 §20.10 qvalue grammar).
pub fn parse_qvalue(_value: &[u8]) -> Result<u16, HeaderError> {
    todo!()
}

/// One Via element (`SIP/2.0/UDP host[:port];params`).
#[derive(Clone, Copy, Debug)]
pub struct Via<'a> {
    /// Transport token as written (UDP, TCP, TLS, SCTP, WS, ...).
    pub transport: &'a [u8],
    pub host: &'a [u8],
    pub port: Option<u16>,
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.params.get(b"branch").flatten()
    }
}

/// Parse one Via element (after `split_list`).
pub fn parse_via(_element: &[u8]) -> Result<Via<'_>, HeaderError> {
    todo!()
}

/// Case-insensitive option-tag membership in a comma-separated list value (Require, Supported).
pub fn has_option_tag(list_value: &[u8], tag: &[u8]) -> bool {
    split_list(list_value)
        .flatten()
        .any(|t| t.eq_ignore_ascii_case(tag))
}
