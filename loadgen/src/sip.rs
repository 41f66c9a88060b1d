//! SIP on the wire for the load generator: writing REGISTER requests into a caller's buffer and
//! reading the few fields of a response we need. Input bytes come from the network, so parsing
//! never indexes without a bound check and rejects rather than panics.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not a SIP/2.0 status line")]
    BadStatusLine,
    #[error("message ends before the header section ends")]
    Truncated,
}

/// Bounded writer into a fixed buffer: a request that does not fit is reported, never truncated.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer {
            buf,
            len: 0,
            overflow: false,
        }
    }

    #[inline]
    pub fn put(&mut self, bytes: &[u8]) -> &mut Self {
        let end = self.len + bytes.len();
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len = end;
            }
            None => self.overflow = true,
        }
        self
    }

    pub fn put_u64(&mut self, mut n: u64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&tmp[i..])
    }

    /// Decimal, left-padded with zeros to `width` digits (user names like `u000042`).
    pub fn put_u64_padded(&mut self, n: u64, width: usize) -> &mut Self {
        let digits = if n == 0 { 1 } else { n.ilog10() as usize + 1 };
        for _ in digits..width {
            self.put(b"0");
        }
        self.put_u64(n)
    }

    pub fn put_hex(&mut self, mut n: u64) -> &mut Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut tmp = [0u8; 16];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = HEX[(n & 15) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        self.put(&tmp[i..])
    }

    /// Bytes written so far.
    pub fn pos(&self) -> usize {
        self.len
    }

    pub fn finish(self) -> Option<usize> {
        (!self.overflow).then_some(self.len)
    }
}

/// Branch parameter layout: `z9hG4bK-lg.<run hex>.<user hex>.<generation hex>`. Encoding the user
/// index and a per-user generation in the branch lets a worker match a response to its transaction
/// with no lookup table, and ignore late responses to transactions it already finished.
pub const BRANCH_PREFIX: &[u8] = b"z9hG4bK-lg.";

/// Decodes a branch written by `write_register`: (run id, user, generation).
pub fn parse_branch(branch: &[u8]) -> Option<(u32, u32, u32)> {
    let rest = branch.strip_prefix(BRANCH_PREFIX)?;
    let mut parts = rest.split(|&b| b == b'.');
    let run = parse_hex_u32(parts.next()?)?;
    let user = parse_hex_u32(parts.next()?)?;
    let generation = parse_hex_u32(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    Some((run, user, generation))
}

fn parse_hex_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 8 {
        return None;
    }
    let mut v: u32 = 0;
    for &b in s {
        let d = (b as char).to_digit(16)?;
        v = (v << 4) | d;
    }
    Some(v)
}

pub fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (b - b'0') as u64;
    }
    u32::try_from(v).ok()
}

/// Iterator over `(name, value)` header lines after the start line, up to the blank line. Values
/// are trimmed. Folded continuation lines (obsolete) are yielded as their own nameless lines and
/// thus ignored by name lookups.
pub struct Headers<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> Headers<'a> {
    /// `msg` is the whole message; the start line is skipped.
    pub fn after_start_line(msg: &'a [u8]) -> Self {
        let rest = match memchr::memchr(b'\n', msg) {
            Some(i) => msg.get(i + 1..).unwrap_or(&[]),
            None => &[],
        };
        Headers { rest, done: false }
    }

    /// True once the blank line ending the header section has been seen.
    pub fn complete(&self) -> bool {
        self.done
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done || self.rest.is_empty() {
                return None;
            }
            let (line, rest) = match memchr::memchr(b'\n', self.rest) {
                Some(i) => (&self.rest[..i], self.rest.get(i + 1..).unwrap_or(&[])),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                self.done = true;
                return None;
            }
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let name = trim(&line[..colon]);
            let value = trim(line.get(colon + 1..).unwrap_or(&[]));
            return Some((name, value));
        }
    }
}

pub fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or(&[])
}

/// Header name match including the RFC 3261 §7.3.3 compact forms.
pub fn is_header(name: &[u8], long: &[u8], compact: Option<u8>) -> bool {
    name.eq_ignore_ascii_case(long)
        || matches!((compact, name), (Some(c), [n]) if n.eq_ignore_ascii_case(&c))
}

/// Value of parameter `param` (e.g. `branch`) in a header value such as a Via.
pub fn header_param<'a>(value: &'a [u8], param: &[u8]) -> Option<&'a [u8]> {
    for part in value.split(|&b| b == b';').skip(1) {
        let part = trim(part);
        let (name, val) = match memchr::memchr(b'=', part) {
            Some(i) => (trim(&part[..i]), trim(part.get(i + 1..).unwrap_or(&[]))),
            None => (part, &[][..]),
        };
        if name.eq_ignore_ascii_case(param) {
            // A Via may carry further comma-separated values on the same line; stop there.
            let end = memchr::memchr(b',', val).unwrap_or(val.len());
            return Some(trim(&val[..end]));
        }
    }
    None
}

/// `header_param(via, b"branch")`, with a fast path for the usual exact `;branch=` spelling.
pub fn via_branch(value: &[u8]) -> Option<&[u8]> {
    if let Some(i) = memchr::memmem::find(value, b";branch=") {
        let val = &value[i + b";branch=".len()..];
        let val = &val[..memchr::memchr(b';', val).unwrap_or(val.len())];
        let val = trim(val);
        let end = memchr::memchr(b',', val).unwrap_or(val.len());
        return Some(trim(&val[..end]));
    }
    header_param(value, b"branch")
}

/// Maximum challenges kept from one response; more would be a hostile or broken server.
pub const MAX_CHALLENGES: usize = 4;

/// The fields of a response the load generator acts on, borrowed from the datagram.
#[derive(Debug, Default)]
pub struct Response<'a> {
    pub status: u16,
    /// `branch` of the top Via: identifies our transaction.
    pub branch: Option<&'a [u8]>,
    pub cseq: Option<u32>,
    pub www_authenticate: [&'a [u8]; MAX_CHALLENGES],
    pub www_count: usize,
    pub proxy_authenticate: [&'a [u8]; MAX_CHALLENGES],
    pub proxy_count: usize,
}

impl<'a> Response<'a> {
    pub fn challenges(&self) -> &[&'a [u8]] {
        if self.www_count > 0 {
            &self.www_authenticate[..self.www_count]
        } else {
            &self.proxy_authenticate[..self.proxy_count]
        }
    }
}

/// Parses a response's status and the headers we use. Garbage yields an error, never a panic.
pub fn parse_response(msg: &[u8]) -> Result<Response<'_>, ParseError> {
    let rest = msg
        .strip_prefix(b"SIP/2.0 ")
        .ok_or(ParseError::BadStatusLine)?;
    let code = rest.get(..3).ok_or(ParseError::BadStatusLine)?;
    if !code.iter().all(u8::is_ascii_digit) || code[0] == b'0' {
        return Err(ParseError::BadStatusLine);
    }
    if !matches!(rest.get(3), Some(b' ') | Some(b'\r') | Some(b'\n')) {
        return Err(ParseError::BadStatusLine);
    }
    let status = code
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + (d - b'0') as u16);
    let mut resp = Response {
        status,
        ..Response::default()
    };
    let mut headers = Headers::after_start_line(msg);
    for (name, value) in headers.by_ref() {
        if is_header(name, b"Via", Some(b'v')) {
            if resp.branch.is_none() {
                resp.branch = via_branch(value);
            }
        } else if name.eq_ignore_ascii_case(b"CSeq") {
            let num = value.split(|b| *b == b' ' || *b == b'\t').next();
            resp.cseq = num.and_then(parse_u32);
        } else if name.eq_ignore_ascii_case(b"WWW-Authenticate") {
            if resp.www_count < MAX_CHALLENGES {
                resp.www_authenticate[resp.www_count] = value;
                resp.www_count += 1;
            }
        } else if name.eq_ignore_ascii_case(b"Proxy-Authenticate")
            && resp.proxy_count < MAX_CHALLENGES
        {
            resp.proxy_authenticate[resp.proxy_count] = value;
            resp.proxy_count += 1;
        }
    }
    if !headers.complete() {
        return Err(ParseError::Truncated);
    }
    Ok(resp)
}

/// The contact URIs listed in a response (for checking bindings through the registrar).
pub fn contact_uris(msg: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (name, value) in Headers::after_start_line(msg) {
        if !is_header(name, b"Contact", Some(b'm')) {
            continue;
        }
        let mut rest = value;
        while let Some(lt) = memchr::memchr(b'<', rest) {
            let after = rest.get(lt + 1..).unwrap_or(&[]);
            let Some(gt) = memchr::memchr(b'>', after) else {
                break;
            };
            out.push(after[..gt].to_vec());
            rest = after.get(gt + 1..).unwrap_or(&[]);
        }
    }
    out
}

/// What kind of REGISTER to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Register,
    Refresh,
    Unregister,
}

/// The digest `Authorization` fields for one request.
pub struct AuthFields<'a> {
    pub proxy: bool,
    pub username: &'a [u8],
    pub realm: &'a [u8],
    pub nonce: &'a [u8],
    pub uri: &'a [u8],
    pub response: &'a [u8],
    pub algorithm: &'a [u8],
    pub opaque: Option<&'a [u8]>,
    /// (nc, cnonce) when qop=auth.
    pub qop: Option<(u32, &'a [u8])>,
}

/// Everything that varies per REGISTER.
pub struct RegisterParams<'a> {
    pub request_uri: &'a [u8],
    pub domain: &'a [u8],
    pub user_prefix: &'a [u8],
    pub user_number: u64,
    pub user_width: usize,
    pub local_host: &'a [u8],
    pub local_port: u16,
    pub run_id: u32,
    pub user_index: u32,
    pub generation: u32,
    pub boot: u32,
    pub cseq: u32,
    pub action: Action,
    pub expires_s: u32,
    pub auth: Option<AuthFields<'a>>,
}

/// Where the per-request fields of a REGISTER landed (byte offsets), recorded while writing it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Marks {
    /// User number (decimal): From, To, Contact.
    pub user_dec: [usize; 3],
    /// User index (hex): branch, From tag, Call-ID.
    pub user_hex: [usize; 3],
    pub generation_hex: usize,
    pub boot_hex: usize,
    pub cseq_dec: usize,
}

/// Writes one REGISTER into `buf`; None if it does not fit.
pub fn write_register(buf: &mut [u8], p: &RegisterParams<'_>) -> Option<usize> {
    write_register_marked(buf, p, &mut Marks::default())
}

/// `write_register`, also recording where the per-request fields went.
pub fn write_register_marked(
    buf: &mut [u8],
    p: &RegisterParams<'_>,
    m: &mut Marks,
) -> Option<usize> {
    let mut w = Writer::new(buf);
    w.put(b"REGISTER ").put(p.request_uri).put(b" SIP/2.0\r\n");
    w.put(b"Via: SIP/2.0/UDP ")
        .put(p.local_host)
        .put(b":")
        .put_u64(p.local_port as u64)
        .put(b";rport;branch=");
    w.put(BRANCH_PREFIX).put_hex(p.run_id as u64).put(b".");
    m.user_hex[0] = w.pos();
    w.put_hex(p.user_index as u64).put(b".");
    m.generation_hex = w.pos();
    w.put_hex(p.generation as u64);
    w.put(b"\r\nMax-Forwards: 70\r\nFrom: <sip:")
        .put(p.user_prefix);
    m.user_dec[0] = w.pos();
    w.put_u64_padded(p.user_number, p.user_width);
    w.put(b"@").put(p.domain).put(b">;tag=");
    w.put_hex(p.run_id as u64).put(b"-");
    m.user_hex[1] = w.pos();
    w.put_hex(p.user_index as u64);
    w.put(b"\r\nTo: <sip:").put(p.user_prefix);
    m.user_dec[1] = w.pos();
    w.put_u64_padded(p.user_number, p.user_width);
    w.put(b"@").put(p.domain).put(b">\r\nCall-ID: lg-");
    // Call-ID stays the same for a user's registrations within one "boot" (RFC 3261 §10.2.4
    // refresh semantics); a new boot after an unregister starts a new Call-ID.
    w.put_hex(p.run_id as u64).put(b"-");
    m.user_hex[2] = w.pos();
    w.put_hex(p.user_index as u64).put(b"-");
    m.boot_hex = w.pos();
    w.put_hex(p.boot as u64).put(b"@").put(p.local_host);
    w.put(b"\r\nCSeq: ");
    m.cseq_dec = w.pos();
    w.put_u64(p.cseq as u64)
        .put(b" REGISTER\r\nContact: <sip:")
        .put(p.user_prefix);
    m.user_dec[2] = w.pos();
    w.put_u64_padded(p.user_number, p.user_width);
    w.put(b"@")
        .put(p.local_host)
        .put(b":")
        .put_u64(p.local_port as u64)
        .put(b">");
    let expires = if p.action == Action::Unregister {
        0
    } else {
        p.expires_s
    };
    w.put(b"\r\nExpires: ").put_u64(expires as u64).put(b"\r\n");
    if let Some(a) = &p.auth {
        w.put(if a.proxy {
            b"Proxy-Authorization: Digest username=\"".as_slice()
        } else {
            b"Authorization: Digest username=\"".as_slice()
        });
        w.put(a.username)
            .put(b"\", realm=\"")
            .put(a.realm)
            .put(b"\", nonce=\"")
            .put(a.nonce)
            .put(b"\", uri=\"")
            .put(a.uri)
            .put(b"\", response=\"")
            .put(a.response)
            .put(b"\", algorithm=")
            .put(a.algorithm);
        if let Some(o) = a.opaque {
            w.put(b", opaque=\"").put(o).put(b"\"");
        }
        if let Some((nc, cnonce)) = a.qop {
            w.put(b", qop=auth, nc=")
                .put(&crate::digest::nc_hex(nc))
                .put(b", cnonce=\"")
                .put(cnonce)
                .put(b"\"");
        }
        w.put(b"\r\n");
    }
    w.put(b"User-Agent: corereg-loadgen\r\nContent-Length: 0\r\n\r\n");
    w.finish()
}

fn dec_digits(n: u64) -> usize {
    if n == 0 {
        1
    } else {
        n.ilog10() as usize + 1
    }
}

fn hex_digits(n: u64) -> usize {
    if n == 0 {
        1
    } else {
        n.ilog2() as usize / 4 + 1
    }
}

/// Writes `n` as exactly `width` decimal digits (zero-filled on the left) at `out`.
#[inline]
fn patch_dec(out: &mut [u8], mut n: u64, width: usize) {
    for b in out[..width].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Writes `n` as exactly `width` lowercase hex digits at `out`.
#[inline]
fn patch_hex(out: &mut [u8], mut n: u64, width: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in out[..width].iter_mut().rev() {
        *b = HEX[(n & 15) as usize];
        n >>= 4;
    }
}

/// Everything that decides a REGISTER's layout (field widths) for fixed run parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    user_dec: usize,
    user_hex: usize,
    generation_hex: usize,
    boot_hex: usize,
    cseq_dec: usize,
    expires: u32,
}

impl Layout {
    fn of(p: &RegisterParams<'_>) -> Layout {
        Layout {
            user_dec: dec_digits(p.user_number).max(p.user_width),
            user_hex: hex_digits(p.user_index as u64),
            generation_hex: hex_digits(p.generation as u64),
            boot_hex: hex_digits(p.boot as u64),
            cseq_dec: dec_digits(p.cseq as u64),
            expires: if p.action == Action::Unregister {
                0
            } else {
                p.expires_s
            },
        }
    }
}

/// A REGISTER without credentials written once, with the offsets of the fields that change from
/// one request to the next: a later request of the same layout (same field widths, which is
/// nearly every one) is one copy plus a few digit patches instead of ~40 formatted pieces.
/// The bytes are identical to `write_register`'s. The run-wide fields (URIs, host, port, run id,
/// prefix, width) must not change between uses of one template.
#[derive(Default)]
pub struct RegisterTemplate {
    bytes: Vec<u8>,
    marks: Marks,
    layout: Option<Layout>,
}

impl RegisterTemplate {
    /// Writes the credential-less REGISTER `p` into `buf` (p.auth is ignored); None if it does
    /// not fit.
    pub fn write(&mut self, buf: &mut [u8], p: &RegisterParams<'_>) -> Option<usize> {
        let layout = Layout::of(p);
        if self.layout != Some(layout) {
            let n = write_register_marked(buf, p, &mut self.marks)?;
            self.bytes.clear();
            self.bytes.extend_from_slice(&buf[..n]);
            self.layout = Some(layout);
            return Some(n);
        }
        let n = self.bytes.len();
        let out = buf.get_mut(..n)?;
        out.copy_from_slice(&self.bytes);
        let m = &self.marks;
        for at in m.user_dec {
            patch_dec(&mut out[at..], p.user_number, layout.user_dec);
        }
        for at in m.user_hex {
            patch_hex(&mut out[at..], p.user_index as u64, layout.user_hex);
        }
        patch_hex(
            &mut out[m.generation_hex..],
            p.generation as u64,
            layout.generation_hex,
        );
        patch_hex(&mut out[m.boot_hex..], p.boot as u64, layout.boot_hex);
        patch_dec(&mut out[m.cseq_dec..], p.cseq as u64, layout.cseq_dec);
        Some(n)
    }
}

/// Writes a REGISTER without Contact: a binding query (RFC 3261 §10.2.3).
pub fn write_query(
    buf: &mut [u8],
    domain: &[u8],
    user: &[u8],
    local_host: &[u8],
    local_port: u16,
    tag: u64,
) -> Option<usize> {
    let mut w = Writer::new(buf);
    w.put(b"REGISTER sip:").put(domain).put(b" SIP/2.0\r\n");
    w.put(b"Via: SIP/2.0/UDP ")
        .put(local_host)
        .put(b":")
        .put_u64(local_port as u64)
        .put(b";rport;branch=z9hG4bK-q")
        .put_hex(tag);
    w.put(b"\r\nMax-Forwards: 70\r\nFrom: <sip:")
        .put(user)
        .put(b"@")
        .put(domain)
        .put(b">;tag=q")
        .put_hex(tag);
    w.put(b"\r\nTo: <sip:")
        .put(user)
        .put(b"@")
        .put(domain)
        .put(b">\r\nCall-ID: query-")
        .put_hex(tag);
    w.put(b"\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n");
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_branch(w: &mut Writer<'_>, run_id: u32, user: u32, generation: u32) {
        w.put(BRANCH_PREFIX)
            .put_hex(run_id as u64)
            .put(b".")
            .put_hex(user as u64)
            .put(b".")
            .put_hex(generation as u64);
    }

    #[test]
    fn branch_round_trips() {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        write_branch(&mut w, 0xdead_beef, 42, 7);
        let n = w.finish().expect("fits");
        assert_eq!(parse_branch(&buf[..n]), Some((0xdead_beef, 42, 7)));
        assert_eq!(parse_branch(b"z9hG4bK-lg.1.2"), None);
        assert_eq!(parse_branch(b"z9hG4bK-lg.1.2.3.4"), None);
        assert_eq!(parse_branch(b"z9hG4bK-lg.123456789.2.3"), None);
        assert_eq!(parse_branch(b"z9hG4bK-lg.g.2.3"), None);
        assert_eq!(parse_branch(b"z9hG4bKother"), None);
    }

    #[test]
    fn writer_reports_overflow() {
        let mut buf = [0u8; 4];
        let mut w = Writer::new(&mut buf);
        w.put(b"abc").put(b"de");
        assert_eq!(w.finish(), None);
        let mut buf = [0u8; 16];
        let mut w = Writer::new(&mut buf);
        w.put_u64_padded(42, 6).put(b" ").put_u64(0);
        let n = w.finish().expect("fits");
        assert_eq!(&buf[..n], b"000042 0");
    }

    fn params(action: Action) -> RegisterParams<'static> {
        RegisterParams {
            request_uri: b"sip:example.com",
            domain: b"example.com",
            user_prefix: b"u",
            user_number: 7,
            user_width: 6,
            local_host: b"127.0.0.1",
            local_port: 5080,
            run_id: 1,
            user_index: 7,
            generation: 3,
            boot: 0,
            cseq: 5,
            action,
            expires_s: 3600,
            auth: None,
        }
    }

    #[test]
    fn register_is_well_formed() {
        let mut buf = [0u8; 2048];
        let n = write_register(&mut buf, &params(Action::Register)).expect("fits");
        let text = std::str::from_utf8(&buf[..n]).expect("ascii");
        assert!(text.starts_with("REGISTER sip:example.com SIP/2.0\r\n"));
        assert!(text.contains("\r\nTo: <sip:u000007@example.com>\r\n"));
        assert!(text.contains("\r\nContact: <sip:u000007@127.0.0.1:5080>\r\n"));
        assert!(text.contains("\r\nCSeq: 5 REGISTER\r\n"));
        assert!(text.contains("\r\nExpires: 3600\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        let n = write_register(&mut buf, &params(Action::Unregister)).expect("fits");
        let text = std::str::from_utf8(&buf[..n]).expect("ascii");
        assert!(text.contains("\r\nExpires: 0\r\n"));
        assert_eq!(
            write_register(&mut buf[..100], &params(Action::Register)),
            None
        );
    }

    #[test]
    fn template_matches_write_register() {
        let mut tpl = RegisterTemplate::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for i in 0..20_000u64 {
            let mut p = params(match next(3) {
                0 => Action::Register,
                1 => Action::Refresh,
                _ => Action::Unregister,
            });
            // Mostly one layout (the common case), sometimes a width change.
            let big = next(10) == 0;
            p.user_index = (if big {
                next(1 << 32)
            } else {
                0x1000 + next(0x100)
            }) as u32;
            p.user_number = if big {
                next(1 << 40)
            } else {
                1000 + next(9000)
            };
            p.user_width = if i % 5000 < 2500 { 0 } else { 8 };
            p.generation = (if big {
                next(1 << 32)
            } else {
                0x10 + next(0x10)
            }) as u32;
            p.boot = (if big { next(1 << 32) } else { next(16) }) as u32;
            p.cseq = (if big { next(1 << 32) } else { 10 + next(90) }) as u32;
            let mut a = [0u8; 2048];
            let mut b = [0u8; 2048];
            let na = write_register(&mut a, &p).expect("fits");
            let nb = tpl.write(&mut b, &p).expect("fits");
            assert_eq!(&a[..na], &b[..nb], "request {i}");
        }
        let p = params(Action::Register);
        let mut small = [0u8; 100];
        assert_eq!(tpl.write(&mut small, &p), None);
    }

    #[test]
    fn parses_response_fields() {
        let msg = b"SIP/2.0 401 Unauthorized\r\nv: SIP/2.0/UDP 127.0.0.1:5080;rport=5080;branch=z9hG4bK-lg.1.2.3\r\nVia: SIP/2.0/UDP x;branch=other\r\nCSeq: 12 REGISTER\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"m\", algorithm=SHA-256\r\nContent-Length: 0\r\n\r\n";
        let r = parse_response(msg).expect("valid");
        assert_eq!(r.status, 401);
        assert_eq!(r.branch, Some(&b"z9hG4bK-lg.1.2.3"[..]));
        assert_eq!(r.cseq, Some(12));
        assert_eq!(r.challenges().len(), 2);
    }

    #[test]
    fn via_branch_agrees_with_header_param() {
        for via in [
            &b"SIP/2.0/UDP h:1;rport=5;branch=z9hG4bK-lg.1.2.3"[..],
            b"SIP/2.0/UDP h;branch=abc;received=1.2.3.4",
            b"SIP/2.0/UDP h;branch= abc ;x",
            b"SIP/2.0/UDP h;branch=abc, SIP/2.0/UDP g;branch=def",
            b"SIP/2.0/UDP h;BRANCH=abc",
            b"SIP/2.0/UDP h; branch = abc",
            b"SIP/2.0/UDP h;branch=",
            b"SIP/2.0/UDP h;branches=1;branch=2",
            b"SIP/2.0/UDP h;rport",
            b";branch=",
        ] {
            assert_eq!(via_branch(via), header_param(via, b"branch"), "{via:?}");
        }
    }

    #[test]
    fn lists_contacts() {
        let msg = b"SIP/2.0 200 OK\r\nContact: <sip:a@h:1>;expires=60, <sip:b@h:2>;expires=30\r\nm: <sip:c@h>\r\n\r\n";
        assert_eq!(
            contact_uris(msg),
            vec![
                b"sip:a@h:1".to_vec(),
                b"sip:b@h:2".to_vec(),
                b"sip:c@h".to_vec()
            ]
        );
    }

    #[test]
    fn garbage_never_panics() {
        let samples: &[&[u8]] = &[
            b"",
            b"SIP/2.0",
            b"SIP/2.0 ",
            b"SIP/2.0 20",
            b"SIP/2.0 200",
            b"SIP/2.0 abc OK\r\n\r\n",
            b"SIP/2.0 099 x\r\n\r\n",
            b"SIP/2.0 200 OK\r\nVia",
            b"SIP/2.0 200 OK\r\nVia: ;;;;branch\r\nCSeq: 99999999999 R\r\n\r\n",
            b"SIP/2.0 200 OK\r\n:\r\n:::\r\n\r\n",
            b"\xff\xff\xff\r\n\r\n",
            b"SIP/2.0 200 OK\r\nContact: <<<>\r\n\r\n",
        ];
        for s in samples {
            let _ = parse_response(s);
            let _ = contact_uris(s);
        }
        // Pseudo-random bytes and every prefix of a valid response.
        let valid = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-lg.1.2.3\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@b>\r\n\r\n";
        for i in 0..valid.len() {
            let _ = parse_response(&valid[..i]);
            let _ = contact_uris(&valid[..i]);
        }
        assert!(parse_response(valid).is_ok());
        assert_eq!(
            parse_response(&valid[..valid.len() - 2]).err(),
            Some(ParseError::Truncated)
        );
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = [0u8; 300];
        for _ in 0..5000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = b"SIP/2.0 401\r\n:;=,\"<>Via branchz9hG4bK-lg.0123 "[(x % 45) as usize];
            }
            let n = (x % 300) as usize;
            if let Ok(r) = parse_response(&buf[..n]) {
                let _ = r.branch.and_then(parse_branch);
                let _ = crate::digest::Challenge::pick_strongest(r.challenges().iter().copied());
            }
            let _ = contact_uris(&buf[..n]);
        }
    }
}
