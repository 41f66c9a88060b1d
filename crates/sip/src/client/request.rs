//! Client requests: a bounded writer, REGISTERs (with or without digest credentials) and binding
//! queries.
//!
//! Requests are written into the caller's buffer; one that does not fit is reported (`None`), never
//! truncated. A REGISTER's per-request fields (user, branch, CSeq, Call-ID) follow one layout, so
//! that [`RegisterTemplate`] can write the next request of the same shape as a copy and a few digit
//! patches, and [`parse_branch`] can read the transaction back from a response's top Via.

use crate::digest::{nc_hex, quoted_content, Algorithm};

/// Bounded writer into a fixed buffer: a request that does not fit is reported, never truncated.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    /// A writer that fills `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer {
            buf,
            len: 0,
            overflow: false,
        }
    }

    /// `bytes` as they are.
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

    /// Decimal.
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

    /// Lower-case hex, without leading zeros.
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

    /// `s` as the content of a quoted string: `"` and `\\` escaped, control characters dropped.
    pub fn put_quoted(&mut self, s: &[u8]) -> &mut Self {
        quoted_content(s, |piece| {
            self.put(piece);
        });
        self
    }

    /// Bytes written so far.
    pub fn pos(&self) -> usize {
        self.len
    }

    /// The length written, or None when something did not fit.
    pub fn finish(self) -> Option<usize> {
        (!self.overflow).then_some(self.len)
    }
}

/// Branch parameter layout: `z9hG4bK-lg.<run hex>.<user hex>.<generation hex>`. Encoding the user
/// index and a per-user generation in the branch lets a client match a response to its transaction
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

/// What kind of REGISTER to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new registration (the Call-ID of the current boot).
    Register,
    /// A refresh of the registration.
    Refresh,
    /// `Expires: 0`: the binding removed.
    Unregister,
}

/// The digest `Authorization` fields for one request.
pub struct AuthFields<'a> {
    /// `Proxy-Authorization` (answering a 407) instead of `Authorization`.
    pub proxy: bool,
    pub username: &'a [u8],
    pub realm: &'a [u8],
    pub nonce: &'a [u8],
    pub uri: &'a [u8],
    /// The hex digest ([`digest::response_from_ha2`](crate::digest::response_from_ha2)).
    pub response: &'a [u8],
    pub algorithm: Algorithm,
    pub opaque: Option<&'a [u8]>,
    /// (nc, cnonce) when qop=auth.
    pub qop: Option<(u32, &'a [u8])>,
}

/// Writes the `Authorization` (or `Proxy-Authorization`) header line, CRLF included: the quoted values
/// escaped, so that whatever a challenge held goes back as it came.
pub fn write_authorization(w: &mut Writer<'_>, a: &AuthFields<'_>) {
    w.put(if a.proxy {
        b"Proxy-Authorization: Digest username=\"".as_slice()
    } else {
        b"Authorization: Digest username=\"".as_slice()
    });
    w.put_quoted(a.username)
        .put(b"\", realm=\"")
        .put_quoted(a.realm)
        .put(b"\", nonce=\"")
        .put_quoted(a.nonce)
        .put(b"\", uri=\"")
        .put_quoted(a.uri)
        .put(b"\", response=\"")
        .put(a.response)
        .put(b"\", algorithm=")
        .put(a.algorithm.name().as_bytes());
    if let Some(o) = a.opaque {
        w.put(b", opaque=\"").put_quoted(o).put(b"\"");
    }
    if let Some((nc, cnonce)) = a.qop {
        w.put(b", qop=auth, nc=")
            .put(&nc_hex(nc))
            .put(b", cnonce=\"")
            .put_quoted(cnonce)
            .put(b"\"");
    }
    w.put(b"\r\n");
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
    /// The `User-Agent` value.
    pub user_agent: &'a [u8],
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
        write_authorization(&mut w, a);
    }
    w.put(b"User-Agent: ")
        .put(p.user_agent)
        .put(b"\r\nContent-Length: 0\r\n\r\n");
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
/// prefix, width, user agent) must not change between uses of one template.
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
    use crate::digest::{self, Ha1};
    use crate::parse::{parse_message, HeaderName, ParseLimits, StartLine};

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
            user_agent: b"corereg-loadgen",
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

    /// A REGISTER that answers a challenge: the registrar's parser frames it, and the credentials
    /// verify with the HA1 of the password.
    #[test]
    fn register_with_credentials_verifies() {
        for (alg, proxy, qop) in [
            (Algorithm::Md5, false, Some((7, &b"c\"n"[..]))),
            (Algorithm::Sha256, true, Some((1, &b"cn"[..]))),
            (Algorithm::Md5, false, None),
        ] {
            let (user, realm, nonce, uri) = (
                &b"u000007"[..],
                &b"r \"q\""[..],
                &b"n\\1"[..],
                &b"sip:example.com"[..],
            );
            let ha1 = Ha1::from_password(alg, user, realm, b"secret");
            let ha2 = digest::ha2(alg, b"REGISTER", uri);
            let nc = qop.map(|(nc, _)| nc_hex(nc));
            let qop_auth = qop
                .zip(nc.as_ref())
                .map(|((_, cnonce), nc)| (&nc[..], cnonce));
            let response = digest::response_from_ha2(alg, ha1.expose_hex(), nonce, qop_auth, &ha2);
            let mut p = params(Action::Register);
            p.auth = Some(AuthFields {
                proxy,
                username: user,
                realm,
                nonce,
                uri,
                response: response.as_bytes(),
                algorithm: alg,
                opaque: Some(b"op"),
                qop,
            });
            let mut buf = [0u8; 2048];
            let n = write_register(&mut buf, &p).expect("fits");
            let msg = parse_message(&buf[..n], &ParseLimits::default()).expect("frames");
            assert!(matches!(msg.start, StartLine::Request { .. }));
            let value = if proxy {
                msg.headers()
                    .find(|h| h.raw_name == b"Proxy-Authorization")
                    .map(|h| h.value)
            } else {
                msg.first(HeaderName::Authorization)
            };
            let creds = digest::parse_authorization(value.expect("credentials")).expect("parses");
            assert!(creds.realm.eq_unescaped(realm) && creds.nonce.eq_unescaped(nonce));
            assert_eq!(creds.algorithm, alg);
            assert_eq!(creds.nonce_count(), qop.map(|(nc, _)| nc));
            assert_eq!(creds.opaque.map(|o| o.raw()), Some(&b"op"[..]));
            assert!(digest::verify(&ha1, &creds, b"REGISTER"));
        }
    }

    #[test]
    fn query_is_well_formed() {
        let mut buf = [0u8; 512];
        let n =
            write_query(&mut buf, b"example.com", b"u1", b"127.0.0.1", 5080, 0x5a).expect("fits");
        let msg = parse_message(&buf[..n], &ParseLimits::default()).expect("frames");
        assert!(matches!(
            msg.start,
            StartLine::Request {
                uri: b"sip:example.com",
                ..
            }
        ));
        assert_eq!(msg.count(HeaderName::Contact), 0);
        assert_eq!(
            msg.first(HeaderName::To),
            Some(&b"<sip:u1@example.com>"[..])
        );
        assert!(
            write_query(&mut buf[..40], b"example.com", b"u1", b"127.0.0.1", 5080, 1).is_none()
        );
    }

    #[test]
    fn quoted_values_are_escaped() {
        let mut buf = [0u8; 32];
        let mut w = Writer::new(&mut buf);
        w.put(b"\"").put_quoted(b"a\"b\\c\r\n").put(b"\"");
        let n = w.finish().expect("fits");
        assert_eq!(&buf[..n], b"\"a\\\"b\\\\c\"");
    }
}
