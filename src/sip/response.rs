//! Response writer: appends a SIP response into a caller-owned, reused buffer.
//!
//! Hand-written rather than built on a crate: it runs once per REGISTER and must not allocate once the
//! buffer has grown to its working size (a generic builder would own Strings per header).

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::header::split_list;
use super::parse::{HeaderName, Message};

/// Standard reason phrases for the codes the registrar sends.
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Unknown",
    }
}

/// Writes one response. Usage: `start`, `dialog_headers`, any `header`s, `finish`.
pub struct ResponseWriter<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> ResponseWriter<'o> {
    /// Clears `out` and writes the status line.
    pub fn start(out: &'o mut Vec<u8>, code: u16) -> Self {
        out.clear();
        out.extend_from_slice(b"SIP/2.0 ");
        let mut num = itoa::Buffer::new();
        out.extend_from_slice(num.format(code).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason(code).as_bytes());
        out.extend_from_slice(b"\r\n");
        ResponseWriter { out }
    }

    /// Via (all, in order; the top one gets `received`/`rport` per RFC 3261 §18.2.1 and RFC 3581), From, To
    /// (with `to_tag` appended when the request's To has none), Call-ID and CSeq copied from the request.
    pub fn dialog_headers(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        to_tag: &[u8],
    ) -> &mut Self {
        let mut first = true;
        for via in msg.all(HeaderName::Via) {
            if first {
                self.top_via(via, source);
                first = false;
            } else {
                self.header(b"Via", via);
            }
        }
        if let Some(from) = msg.first(HeaderName::From) {
            self.header(b"From", from);
        }
        if let Some(to) = msg.first(HeaderName::To) {
            self.out.extend_from_slice(b"To: ");
            self.out.extend_from_slice(to);
            if !to_tag.is_empty() && !has_tag_param(to) {
                self.out.extend_from_slice(b";tag=");
                self.out.extend_from_slice(to_tag);
            }
            self.out.extend_from_slice(b"\r\n");
        }
        if let Some(call_id) = msg.first(HeaderName::CallId) {
            self.header(b"Call-ID", call_id);
        }
        if let Some(cseq) = msg.first(HeaderName::CSeq) {
            self.header(b"CSeq", cseq);
        }
        self
    }

    fn top_via(&mut self, value: &[u8], source: SocketAddr) {
        // Only the first via-parm of the first Via line is ours to annotate; the rest is copied verbatim.
        let first_len = first_element_len(value);
        let (top, rest) = value.split_at(first_len);
        let mut ip_buf = [0u8; 48];
        let ip = format_ip(source.ip(), &mut ip_buf);
        self.out.extend_from_slice(b"Via: ");
        let rport_at = find_bare_param(top, b"rport");
        match rport_at {
            Some(end) => {
                self.out.extend_from_slice(&top[..end]);
                self.out.extend_from_slice(b"=");
                let mut num = itoa::Buffer::new();
                self.out
                    .extend_from_slice(num.format(source.port()).as_bytes());
                self.out.extend_from_slice(&top[end..]);
            }
            None => self.out.extend_from_slice(top),
        }
        // RFC 3261 §18.2.1: add received when sent-by is not the packet's source address; with rport the
        // received parameter is always added (RFC 3581 §4), so the Via needs no parsing then. A
        // client-supplied received is left alone.
        let needs_received = if rport_at.is_some() {
            !contains_ignore_case(top, b"received")
                || super::header::parse_via(top).is_ok_and(|v| v.params.get(b"received").is_none())
        } else {
            match super::header::parse_via(top) {
                Ok(v) => v.params.get(b"received").is_none() && !sent_by_is(v.host, ip),
                Err(_) => true,
            }
        };
        if needs_received {
            self.out.extend_from_slice(b";received=");
            self.out.extend_from_slice(ip);
        }
        self.out.extend_from_slice(rest);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn header(&mut self, name: &[u8], value: &[u8]) -> &mut Self {
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    pub fn header_u64(&mut self, name: &[u8], value: u64) -> &mut Self {
        let mut num = itoa::Buffer::new();
        self.header(name, num.format(value).as_bytes())
    }

    /// Raw bytes (e.g. a header line assembled elsewhere, ending in CRLF).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.extend_from_slice(bytes);
        self
    }

    /// Direct access for writers of composite header lines.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        self.out
    }

    /// `Content-Length: 0` and the empty line.
    pub fn finish(self) {
        self.out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    }
}

fn format_ip(ip: IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    if let IpAddr::V4(v4) = ip {
        // The common case, without the formatting machinery (it costs ~1k instructions per reply).
        let mut len = 0;
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                buf[len] = b'.';
                len += 1;
            }
            let mut num = itoa::Buffer::new();
            let digits = num.format(octet).as_bytes();
            buf[len..len + digits.len()].copy_from_slice(digits);
            len += digits.len();
        }
        return &buf[..len];
    }
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // An IP address is at most 45 characters: the write cannot fail.
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    &buf[..len]
}

/// Length of the first element of a comma-separated header value (quotes respected).
fn first_element_len(value: &[u8]) -> usize {
    match split_list(value).next() {
        Some(Ok(first)) => {
            // `first` is a subslice of `value`: its end offset is where the element ends.
            let start = first.as_ptr() as usize - value.as_ptr() as usize;
            start + first.len()
        }
        _ => value.len(),
    }
}

/// True when a Via sent-by host is exactly `ip` (IPv6 references compared without brackets).
fn sent_by_is(host: &[u8], ip: &[u8]) -> bool {
    let host = host
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(host);
    host.eq_ignore_ascii_case(ip)
}

/// Offset just past a parameter `;name` that has no value (outside quoted strings), e.g. `;rport`.
fn find_bare_param(text: &[u8], name: &[u8]) -> Option<usize> {
    let mut in_quotes = false;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => in_quotes = !in_quotes,
            b';' if !in_quotes => {
                let mut j = i + 1;
                while j < text.len() && matches!(text[j], b' ' | b'\t') {
                    j += 1;
                }
                let end = j + name.len();
                if end <= text.len() && text[j..end].eq_ignore_ascii_case(name) {
                    let mut k = end;
                    while k < text.len() && matches!(text[k], b' ' | b'\t') {
                        k += 1;
                    }
                    if k == text.len() || matches!(text[k], b';' | b',') {
                        return Some(end);
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// True when a To/From value carries a `tag` parameter.
fn has_tag_param(value: &[u8]) -> bool {
    // Most REGISTERs' To has no tag at all: a substring test avoids parsing the name-addr again.
    if !contains_ignore_case(value, b"tag") {
        return false;
    }
    match super::header::parse_name_addr(value) {
        Ok(na) => na.params.get(b"tag").is_some(),
        Err(_) => false,
    }
}

/// Case-insensitive substring test that jumps between candidate first bytes with memchr.
fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    memchr::memchr2_iter(lower, upper, haystack).any(|at| {
        haystack
            .get(at..at + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_param_found_only_when_bare() {
        assert_eq!(
            find_bare_param(b"SIP/2.0/UDP h;rport;branch=1", b"rport"),
            Some(19)
        );
        assert_eq!(
            find_bare_param(b"SIP/2.0/UDP h;branch=1;rport", b"rport"),
            Some(28)
        );
        assert_eq!(
            find_bare_param(b"SIP/2.0/UDP h;rport=5;branch=1", b"rport"),
            None
        );
        assert_eq!(
            find_bare_param(b"SIP/2.0/UDP h;x=\";rport\"", b"rport"),
            None
        );
        assert_eq!(find_bare_param(b"SIP/2.0/UDP h;rportx", b"rport"), None);
    }

    #[test]
    fn reasons_cover_what_the_registrar_sends() {
        for code in [
            200, 400, 401, 403, 404, 405, 416, 420, 423, 500, 501, 503, 505, 513,
        ] {
            assert_ne!(reason(code), "Unknown", "{code}");
        }
    }

    #[test]
    fn longest_ipv6_fits_the_buffer() {
        let mut buf = [0u8; 48];
        let v6: IpAddr = "1111:2222:3333:4444:5555:6666:7777:8888"
            .parse()
            .expect("ip");
        assert_eq!(
            format_ip(v6, &mut buf),
            b"1111:2222:3333:4444:5555:6666:7777:8888"
        );
        let mapped: IpAddr = "::ffff:255.255.255.255".parse().expect("ip");
        let text = format_ip(mapped, &mut buf).to_vec();
        assert_eq!(
            std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse::<IpAddr>().ok()),
            Some(mapped)
        );
    }

    #[test]
    fn case_insensitive_substring() {
        assert!(contains_ignore_case(b"<sip:a@b>;TAG=1", b"tag"));
        assert!(contains_ignore_case(b"x;tAg=1", b"tag"));
        assert!(!contains_ignore_case(b"<sip:ta@b>;ta", b"tag"));
        assert!(contains_ignore_case(
            b"SIP/2.0/UDP h;Received=1.2.3.4",
            b"received"
        ));
        assert!(!contains_ignore_case(b"", b"tag"));
    }

    #[test]
    fn ipv4_fast_path_matches_display() {
        let mut buf = [0u8; 48];
        for ip in ["0.0.0.0", "255.255.255.255", "192.0.2.7", "10.200.3.45"] {
            let addr: IpAddr = ip.parse().expect("ip");
            assert_eq!(format_ip(addr, &mut buf), ip.as_bytes());
        }
    }

    #[test]
    fn sent_by_ignores_brackets_and_case() {
        assert!(sent_by_is(b"[::1]", b"::1"));
        assert!(sent_by_is(b"127.0.0.1", b"127.0.0.1"));
        assert!(!sent_by_is(b"host.example.com", b"127.0.0.1"));
    }
}
