//! Response writer: appends a SIP response into a caller-owned, reused buffer.
//!
//! Hand-written rather than built on a crate: it runs once per REGISTER and must not allocate once the
//! buffer has grown to its working size (a generic builder would own Strings per header).

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::header::{is_lws, skip_lws, split_list};
use super::parse::{HeaderName, Message};
use super::scan::{via_masks, Hits};

/// One table for both the reason phrases and the full status lines, so that the two cannot disagree.
macro_rules! status_table {
    ($($code:literal => $reason:literal),* $(,)?) => {
        /// Standard reason phrases for the codes the registrar sends.
        pub fn reason(code: u16) -> &'static str {
            match code {
                $($code => $reason,)*
                _ => "Unknown",
            }
        }

        /// The whole status line (with CRLF) for a code of the table: one constant copy instead of
        /// formatting the number and looking up the phrase for every reply.
        fn status_line(code: u16) -> Option<&'static [u8]> {
            match code {
                $($code => Some(concat!("SIP/2.0 ", $code, " ", $reason, "\r\n").as_bytes()),)*
                _ => None,
            }
        }
    };
}

status_table! {
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
    439 => "First Hop Lacks Outbound Support",
    500 => "Server Internal Error",
    501 => "Not Implemented",
    503 => "Service Unavailable",
    505 => "Version Not Supported",
    513 => "Message Too Large",
}

/// The status line for any code, built piece by piece (codes outside the table).
fn write_status_line(out: &mut Vec<u8>, code: u16) {
    out.extend_from_slice(b"SIP/2.0 ");
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(num.format(code).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(code).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// What `received` depends on in the top via-parm, from a `parse_via` the caller already did (request
/// validation parses every Via): the sent-by host and whether a `received` parameter is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViaFacts<'a> {
    pub host: &'a [u8],
    pub has_received: bool,
    /// When the facts come from the first element of the top Via value ([`ViaFacts::of_top`]): that value,
    /// and where its first via-parm and a bare `rport` end, so that `top_via` needs no scan of its own.
    layout: Option<(&'a [u8], TopViaScan)>,
}

impl<'a> ViaFacts<'a> {
    pub fn of(via: &super::header::Via<'a>) -> Self {
        ViaFacts {
            host: via.host,
            has_received: via.has_received,
            layout: None,
        }
    }

    /// The facts of `via`, the parse of `element`: the first element of the top Via header value `value`
    /// (both subslices of the datagram, as `Message` hands them out). `parse_via` noted `received` and the
    /// first bare `rport` (what `find_bare_param` would find) in its pass over the parameters.
    #[inline]
    pub fn of_top(via: &super::header::Via<'a>, element: &'a [u8], value: &'a [u8]) -> Self {
        let base = value.as_ptr() as usize;
        let end_in_value = |s: &[u8]| {
            (s.as_ptr() as usize)
                .checked_sub(base)
                .map(|at| at + s.len())
                .filter(|&end| end <= value.len())
        };
        // No layout when the element, or a bare rport, is not a subslice of `value` (top_via then scans).
        let rport_end = match via.bare_rport {
            Some(name) => end_in_value(name).map(Some),
            None => Some(None),
        };
        let layout = end_in_value(element)
            .zip(rport_end)
            .map(|(first_len, rport_end)| {
                let scan = TopViaScan {
                    first_len,
                    rport_end,
                    mentions_received: via.has_received,
                };
                (value, scan)
            });
        ViaFacts {
            host: via.host,
            has_received: via.has_received,
            layout,
        }
    }

    /// The scan of `value` this parse stands for, when it was the parse of `value`'s first element.
    fn scan_of(self, value: &[u8]) -> Option<TopViaScan> {
        self.layout
            .filter(|(v, _)| std::ptr::eq(*v, value))
            .map(|(_, scan)| scan)
    }
}

/// The top Via line: the first via-parm gets `rport`'s value and `received` (RFC 3261 §18.2.1, RFC 3581);
/// the rest of the line is copied verbatim. `known`: the first via-parm's facts when the caller parsed it
/// already (it must be the `parse_via` of that via-parm), which saves parsing it again; facts from
/// [`ViaFacts::of_top`] for this very value also save the scan for the via-parm's end and `rport`.
fn top_via(f: &mut Filler<'_>, value: &[u8], source: SocketAddr, known: Option<ViaFacts<'_>>) {
    let scan = known
        .and_then(|k| k.scan_of(value))
        .unwrap_or_else(|| scan_top_via(value));
    let (top, rest) = value.split_at(scan.first_len);
    let mut ip_buf = [0u8; 48];
    let ip = format_ip(source.ip(), &mut ip_buf);
    f.put(b"Via: ");
    let rport_at = scan.rport_end;
    match rport_at {
        Some(end) => {
            let (before, after) = top.split_at(end);
            f.put_value(before);
            f.put(b"=");
            let mut num = itoa::Buffer::new();
            f.put_value(num.format(source.port()).as_bytes());
            f.put_value(after);
        }
        None => f.put_value(top),
    }
    // RFC 3261 §18.2.1: add received when sent-by is not the packet's source address; with rport the
    // received parameter is always added (RFC 3581 §4), so the Via needs no parsing then. A
    // client-supplied received is left alone.
    let facts = || known.or_else(|| super::header::parse_via(top).ok().map(|v| ViaFacts::of(&v)));
    let needs_received = if rport_at.is_some() {
        !scan.mentions_received || facts().is_some_and(|v| !v.has_received)
    } else {
        match facts() {
            Some(v) => !v.has_received && !sent_by_is(v.host, ip),
            None => true,
        }
    };
    if needs_received {
        f.put(b";received=");
        f.put_value(ip);
    }
    f.put_value(rest);
    f.put(b"\r\n");
}

/// Appends to `out` through a region sized in advance (zero-filled once, trimmed at the end), so that
/// each copy is one bounds check and, for the short slices of a reply, a few fixed-size moves instead of
/// a capacity check and a `memcpy` call. Running past the region only costs speed: the copy then grows
/// the vector.
struct Filler<'o> {
    out: &'o mut Vec<u8>,
    /// Where the next byte goes; `out[..pos]` is the written text.
    pos: usize,
}

impl<'o> Filler<'o> {
    #[inline]
    fn new(out: &'o mut Vec<u8>, room: usize) -> Self {
        let pos = out.len();
        out.resize(pos.saturating_add(room), 0);
        Filler { out, pos }
    }

    #[inline(always)]
    fn put(&mut self, src: &[u8]) {
        let end = self.pos + src.len();
        match self.out.get_mut(self.pos..end) {
            Some(dst) => copy_short(dst, src),
            None => self.overflow(src),
        }
        self.pos = end;
    }

    /// The rare path of [`put`](Self::put), out of line so that each inlined `put` stays a few moves.
    #[cold]
    #[inline(never)]
    fn overflow(&mut self, src: &[u8]) {
        self.out.truncate(self.pos);
        self.out.extend_from_slice(src);
    }

    /// [`put`](Self::put) for values whose length is not a constant, kept out of line: `put` inlines to
    /// a single move for a literal, but to the whole length dispatch for a variable slice, and a dozen
    /// inlined dispatches made `dialog_headers` 14 KB. A shard that sleeps between datagrams fetches its
    /// code from L3 or memory each time, so one shared copy is cheaper than a call saved (measured
    /// under callgrind's cache model with `examples/refresh_loop` and `THRASH_KB`).
    #[inline(never)]
    fn put_value(&mut self, src: &[u8]) {
        self.put(src);
    }

    /// `name` (with its `: `), `value` and CRLF.
    #[inline(always)]
    fn line(&mut self, name: &[u8], value: &[u8]) {
        self.put(name);
        self.put_value(value);
        self.put(b"\r\n");
    }

    /// Trims the unused rest of the region (what dropping does; this names the moment).
    fn done(self) {}
}

impl Drop for Filler<'_> {
    fn drop(&mut self) {
        self.out.truncate(self.pos);
    }
}

/// `dst.copy_from_slice(src)` for slices of equal length, with the lengths of header values done as two
/// overlapping fixed-size moves that the compiler inlines (a variable-length `copy_from_slice` is a
/// `memcpy` call).
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    if dst.len() != src.len() {
        return;
    }
    macro_rules! two_moves {
        ($w:literal) => {{
            if let (Some(d), Some(s)) = (dst.first_chunk_mut::<$w>(), src.first_chunk::<$w>()) {
                *d = *s;
            }
            if let (Some(d), Some(s)) = (dst.last_chunk_mut::<$w>(), src.last_chunk::<$w>()) {
                *d = *s;
            }
        }};
    }
    match src.len() {
        0 => {}
        1..=3 => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s;
            }
        }
        4..=7 => two_moves!(4),
        8..=15 => two_moves!(8),
        16..=32 => two_moves!(16),
        33..=64 => two_moves!(32),
        _ => dst.copy_from_slice(src),
    }
}

/// Upper bound of what `dialog_headers` writes besides the copied values and the To tag: header names,
/// separators, `=port` and `;received=ip`.
const DIALOG_FIXED_LEN: usize = "Via: =65535;received=\r\n".len()
    + IP_TEXT_MAX
    + "From: \r\nTo: ;tag=\r\nCall-ID: \r\nCSeq: \r\n".len();

/// Longest textual IP address (IPv4-mapped IPv6 with its dotted quad).
const IP_TEXT_MAX: usize = 45;

/// Writes one response. Usage: `start`, `dialog_headers`, any `header`s, `finish`.
pub struct ResponseWriter<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> ResponseWriter<'o> {
    /// Clears `out` and writes the status line.
    #[inline]
    pub fn start(out: &'o mut Vec<u8>, code: u16) -> Self {
        out.clear();
        match status_line(code) {
            Some(line) => out.extend_from_slice(line),
            None => write_status_line(out, code),
        }
        ResponseWriter { out }
    }

    /// Via (all, in order; the top one gets `received`/`rport` per RFC 3261 §18.2.1 and RFC 3581), From, To
    /// (with `to_tag` appended when the request's To has none), Call-ID and CSeq copied from the request.
    ///
    /// `top_via`: the facts of the first via-parm when the caller has parsed it (see [`ViaFacts`]).
    pub fn dialog_headers(
        &mut self,
        msg: &Message<'_>,
        source: SocketAddr,
        to_tag: &[u8],
        top_via_facts: Option<ViaFacts<'_>>,
    ) -> &mut Self {
        let top = msg.first(HeaderName::Via);
        let from = msg.first(HeaderName::From);
        let to = msg.first(HeaderName::To);
        let call_id = msg.first(HeaderName::CallId);
        let cseq = msg.first(HeaderName::CSeq);
        // The common single Via needs no walk over the remaining header slots.
        let more_vias = msg.count(HeaderName::Via) > 1;
        let mut room = [top, from, to, call_id, cseq]
            .iter()
            .map(|v| v.map_or(0, <[u8]>::len))
            .sum::<usize>()
            + to_tag.len()
            + DIALOG_FIXED_LEN;
        if more_vias {
            room += msg
                .all(HeaderName::Via)
                .skip(1)
                .map(|v| v.len() + "Via: \r\n".len())
                .sum::<usize>();
        }
        let mut f = Filler::new(self.out, room);
        if let Some(via) = top {
            top_via(&mut f, via, source, top_via_facts);
            if more_vias {
                for via in msg.all(HeaderName::Via).skip(1) {
                    f.line(b"Via: ", via);
                }
            }
        }
        if let Some(from) = from {
            f.line(b"From: ", from);
        }
        if let Some(to) = to {
            f.put(b"To: ");
            f.put_value(to);
            if !to_tag.is_empty() && !has_tag_param(to) {
                f.put(b";tag=");
                f.put_value(to_tag);
            }
            f.put(b"\r\n");
        }
        if let Some(call_id) = call_id {
            f.line(b"Call-ID: ", call_id);
        }
        if let Some(cseq) = cseq {
            f.line(b"CSeq: ", cseq);
        }
        f.done();
        self
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
        // The common case, without the formatting machinery (it costs ~1k instructions per reply) and
        // without a copy call per octet. At most 15 bytes: the indexing stays inside the 48.
        let mut len = 0;
        let octets = v4.octets();
        // Through black_box the loop is not unrolled four times: one short loop is fewer code lines to
        // fetch on a cold start than four copies of the divisions (see `Filler::put_value`).
        for (i, &octet) in std::hint::black_box(&octets[..]).iter().enumerate() {
            if i > 0 {
                buf[len] = b'.';
                len += 1;
            }
            if octet >= 100 {
                buf[len] = b'0' + octet / 100;
                len += 1;
            }
            if octet >= 10 {
                buf[len] = b'0' + octet / 10 % 10;
                len += 1;
            }
            buf[len] = b'0' + octet % 10;
            len += 1;
        }
        return &buf[..len];
    }
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // An IP address is at most 45 characters: the write cannot fail.
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    &buf[..len]
}

/// Length of the first element of a comma-separated header value (quotes respected): the offset where
/// `split_list(value).next()` ends, or `value.len()` when there is no element or it is malformed.
///
/// The usual Via has no `"` and no `<` before its first `,`: one block scan finds that comma (or the end)
/// and only the trailing LWS is trimmed, exactly as `split_list` trims the element. A quote or angle
/// bracket first goes to `split_list`, which knows their escaping rules.
fn first_element_len(value: &[u8]) -> usize {
    let end = match Hits::new(value, [b',', b'"', b'<']).next() {
        Some(i) if value[i] == b',' => i,
        None => value.len(),
        Some(_) => return first_element_len_general(value),
    };
    // `split_list` trims LWS on both sides; an empty first element (as in ` ,x`) ends where the leading
    // LWS does. `lead <= end`: LWS is never `,`, so the comma (or the end) is not inside the leading LWS.
    let lead = value.len() - skip_lws(value).len();
    let mut n = end;
    while n > lead && is_lws(value[n - 1]) {
        n -= 1;
    }
    n
}

/// `first_element_len` for values with a quoted string or `<` in the first element.
#[cold]
fn first_element_len_general(value: &[u8]) -> usize {
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
///
/// A `"` toggles "inside quotes" (no escapes, as this function always did). Only the `;` and `"` bytes
/// are visited, found 16 at a time.
fn find_bare_param(text: &[u8], name: &[u8]) -> Option<usize> {
    let mut hits = Hits::new(text, [b';', b'"', b'"']);
    while let Some(at) = hits.next() {
        if text[at] == b'"' {
            // Skip to the closing quote; an unterminated quote hides the rest.
            loop {
                match hits.next() {
                    Some(q) if text[q] == b'"' => break,
                    Some(_) => {}
                    None => return None,
                }
            }
        } else if let Some(end) = bare_param_at(text, at + 1, name) {
            return Some(end);
        }
    }
    None
}

/// `text[start..]` (just after a `;`) is `LWS? name LWS?` followed by the end, `;` or `,`: the offset
/// just past `name`. `name` is lower case.
#[inline]
fn bare_param_at(text: &[u8], start: usize, name: &[u8]) -> Option<usize> {
    let is_blank = |b: &u8| matches!(b, b' ' | b'\t');
    let mut j = start;
    while text.get(j).is_some_and(is_blank) {
        j += 1;
    }
    // Most parameters differ in the first letter (`;branch=` before `;rport`).
    if text.get(j).map(u8::to_ascii_lowercase) != name.first().copied() {
        return None;
    }
    let end = j.checked_add(name.len())?;
    if !text.get(j..end)?.eq_ignore_ascii_case(name) {
        return None;
    }
    let mut k = end;
    while text.get(k).is_some_and(is_blank) {
        k += 1;
    }
    matches!(text.get(k), None | Some(b';' | b',')).then_some(end)
}

/// True when a To/From value carries a `tag` parameter.
fn has_tag_param(value: &[u8]) -> bool {
    // Most REGISTERs' To has no tag at all: a substring test avoids parsing the name-addr again.
    if !contains_ignore_case(value, b"tag", 2) {
        return false;
    }
    match super::header::parse_name_addr(value) {
        Ok(na) => na.params.get(b"tag").is_some(),
        Err(_) => false,
    }
}

/// Case-insensitive substring test that visits only the bytes equal to `needle[probe]` (either case),
/// found 16 at a time: pick a letter that is rare in the haystacks (`v` of "received", `g` of "tag").
fn contains_ignore_case(haystack: &[u8], needle: &[u8], probe: usize) -> bool {
    let Some(&b) = needle.get(probe) else {
        return needle.is_empty();
    };
    let (lower, upper) = (b.to_ascii_lowercase(), b.to_ascii_uppercase());
    let mut hits = Hits::new(haystack, [lower, upper, upper]);
    while let Some(at) = hits.next() {
        let found = at
            .checked_sub(probe)
            .and_then(|start| haystack.get(start..start + needle.len()))
            .is_some_and(|w| w.eq_ignore_ascii_case(needle));
        if found {
            return true;
        }
    }
    false
}

/// What `top_via` needs to know about the top Via header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TopViaScan {
    /// `first_element_len(value)`: the first via-parm, the only one annotated.
    first_len: usize,
    /// `find_bare_param(top, b"rport")` on that via-parm.
    rport_end: Option<usize>,
    /// `contains_ignore_case(top, b"received")`: only then can a client-supplied `received` be there.
    mentions_received: bool,
}

/// `scan_top_via_general`'s result, for the usual value (at most 64 bytes, no `"` or `<` before the first
/// `,`) from one 64-byte block compare; the general functions otherwise.
fn scan_top_via(value: &[u8]) -> TopViaScan {
    scan_short_via(value).unwrap_or_else(|| scan_top_via_general(value))
}

/// The reference: each fact from its own general function.
fn scan_top_via_general(value: &[u8]) -> TopViaScan {
    let first_len = first_element_len(value);
    let top = &value[..first_len];
    TopViaScan {
        first_len,
        rport_end: find_bare_param(top, b"rport"),
        mentions_received: contains_ignore_case(top, b"received", 5),
    }
}

/// `scan_top_via` for a value of at most 64 bytes without `"` or `<` before its first `,`; None otherwise.
fn scan_short_via(value: &[u8]) -> Option<TopViaScan> {
    let len = value.len();
    let mut block = [0u8; 64];
    copy_short(block.get_mut(..len)?, value);
    let m = via_masks(&block);
    // Bytes past `len` are the zero padding (never one of the searched bytes; masked anyway).
    let below = |n: usize| if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    let special = m.special & below(len);
    let end = if special == 0 {
        len
    } else {
        let p = special.trailing_zeros() as usize;
        if value.get(p) != Some(&b',') {
            return None; // a quote or `<` first: split_list's rules apply
        }
        p
    };
    // As in `first_element_len`: trim the element's trailing LWS, not into the leading LWS.
    let lead = len - skip_lws(value).len();
    let mut first_len = end;
    while first_len > lead && is_lws(value[first_len - 1]) {
        first_len -= 1;
    }
    let top = &value[..first_len];
    // No `"` in `top` (the first special byte is at or after its end): every `;` is outside quotes.
    let mut semis = m.semi & below(first_len);
    let mut rport_end = None;
    while semis != 0 {
        let at = semis.trailing_zeros() as usize;
        semis &= semis - 1;
        rport_end = bare_param_at(top, at + 1, b"rport");
        if rport_end.is_some() {
            break;
        }
    }
    // "received" has its only `v` at offset 5.
    let mut vs = m.v & below(first_len);
    let mut mentions_received = false;
    while vs != 0 && !mentions_received {
        let at = vs.trailing_zeros() as usize;
        vs &= vs - 1;
        mentions_received = at >= 5
            && top
                .get(at - 5..at + 3)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"received"));
    }
    Some(TopViaScan {
        first_len,
        rport_end,
        mentions_received,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ---- fast paths against the general logic they replace -------------------------------------

    /// The per-byte `find_bare_param` this module used before the block scan.
    fn reference_find_bare_param(text: &[u8], name: &[u8]) -> Option<usize> {
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

    fn reference_contains(haystack: &[u8], needle: &[u8]) -> bool {
        needle.is_empty()
            || haystack
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle))
    }

    /// Each fact from the general code as it was before the fast paths.
    fn reference_scan(value: &[u8]) -> TopViaScan {
        let first_len = first_element_len_general(value);
        let top = &value[..first_len];
        TopViaScan {
            first_len,
            rport_end: reference_find_bare_param(top, b"rport"),
            mentions_received: reference_contains(top, b"received"),
        }
    }

    /// `top_via` as it was written before (Vec appends, general functions).
    fn reference_top_via(value: &[u8], source: SocketAddr) -> Vec<u8> {
        let mut out = Vec::new();
        let first_len = first_element_len_general(value);
        let (top, rest) = value.split_at(first_len);
        let ip = source.ip().to_string();
        let ip = ip.as_bytes();
        out.extend_from_slice(b"Via: ");
        let rport_at = reference_find_bare_param(top, b"rport");
        match rport_at {
            Some(end) => {
                out.extend_from_slice(&top[..end]);
                out.extend_from_slice(b"=");
                out.extend_from_slice(source.port().to_string().as_bytes());
                out.extend_from_slice(&top[end..]);
            }
            None => out.extend_from_slice(top),
        }
        let needs_received = if rport_at.is_some() {
            !reference_contains(top, b"received")
                || super::super::header::parse_via(top)
                    .is_ok_and(|v| v.params.get(b"received").is_none())
        } else {
            match super::super::header::parse_via(top) {
                Ok(v) => v.params.get(b"received").is_none() && !sent_by_is(v.host, ip),
                Err(_) => true,
            }
        };
        if needs_received {
            out.extend_from_slice(b";received=");
            out.extend_from_slice(ip);
        }
        out.extend_from_slice(rest);
        out.extend_from_slice(b"\r\n");
        out
    }

    fn fast_top_via(value: &[u8], source: SocketAddr) -> Vec<u8> {
        top_via_with(value, source, None)
    }

    fn top_via_with(value: &[u8], source: SocketAddr, known: Option<ViaFacts<'_>>) -> Vec<u8> {
        let mut out = b"prefix".to_vec();
        let mut f = Filler::new(&mut out, value.len() + DIALOG_FIXED_LEN);
        top_via(&mut f, value, source, known);
        f.done();
        out.split_off(b"prefix".len())
    }

    /// Via-like texts built from the pieces that matter: separators, quotes, escapes, LWS, `rport` and
    /// `received` in any case, with or without values.
    fn via_text() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(&b"SIP/2.0/UDP "[..]),
            Just(&b"192.0.2.7"[..]),
            Just(&b"[2001:db8::1]"[..]),
            Just(&b":5060"[..]),
            Just(&b";"[..]),
            Just(&b","[..]),
            Just(&b"\""[..]),
            Just(&b"\\"[..]),
            Just(&b"<"[..]),
            Just(&b">"[..]),
            Just(&b" "[..]),
            Just(&b"\t"[..]),
            Just(&b"\r\n "[..]),
            Just(&b"rport"[..]),
            Just(&b"RPort"[..]),
            Just(&b"=5"[..]),
            Just(&b"received"[..]),
            Just(&b"ReCeIvEd=1.2.3.4"[..]),
            Just(&b"v"[..]),
            Just(&b"branch=z9hG4bK776"[..]),
            Just(&b"x"[..]),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|ps| ps.concat())
    }

    /// Mostly valid Via values: a sent-protocol and host, then parameters, LWS and more via-parms.
    fn valid_via_text() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(&b";rport"[..]),
            Just(&b";RPort"[..]),
            Just(&b";rport=5"[..]),
            Just(&b";branch=z9hG4bK1"[..]),
            Just(&b";received=1.2.3.4"[..]),
            Just(&b";x=\";rport\""[..]),
            Just(&b";rportx"[..]),
            Just(&b" "[..]),
            Just(&b" ;v "[..]),
            Just(&b", SIP/2.0/UDP h2;rport"[..]),
        ];
        let lead = prop_oneof![
            Just(&b"SIP/2.0/UDP 192.0.2.7:5060"[..]),
            Just(&b" SIP/2.0/TCP h.example"[..]),
            Just(&b"SIP / 2.0 / UDP [2001:db8::1]"[..]),
        ];
        (lead, proptest::collection::vec(piece, 0..8))
            .prop_map(|(l, ps)| [l.to_vec(), ps.concat()].concat())
    }

    fn source_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            Just("192.0.2.7:5060".parse().expect("addr")),
            Just("10.0.0.1:1".parse().expect("addr")),
            Just("[2001:db8::1]:65535".parse().expect("addr")),
            Just("[::ffff:1.2.3.4]:5061".parse().expect("addr")),
        ]
    }

    /// The first element of a Via value as request validation takes it, and its facts (None when that
    /// element does not parse: validation refuses the request then).
    fn validation_facts(v: &[u8]) -> Option<(&[u8], ViaFacts<'_>)> {
        use super::super::header::{parse_via, sole_element, split_list};
        let element = match sole_element(v) {
            Some(e) => e,
            None => split_list(v).next()?.ok()?,
        };
        let via = parse_via(element).ok()?;
        Some((element, ViaFacts::of_top(&via, element, v)))
    }

    #[test]
    fn facts_of_the_top_element_examples() {
        let vias: [&[u8]; 5] = [
            b"SIP/2.0/UDP 127.0.0.1:5100;branch=z9hG4bK-1-0",
            b"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx;received=192.0.2.9;rport",
            b"SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKx;rport ",
            b" SIP/2.0/TCP [2001:db8::1]:5061;rport;branch=z9hG4bKy , SIP/2.0/UDP b.example;rport",
            b"SIP/2.0/UDP h;x=\";rport\";RPort;branch=z9hG4bKz",
        ];
        for via in vias {
            let (_, known) = validation_facts(via).expect("valid via");
            let (scan, layout) = (scan_top_via(via), known.scan_of(via).expect("layout"));
            assert_eq!(
                (layout.first_len, layout.rport_end),
                (scan.first_len, scan.rport_end)
            );
            // Another value (a copy elsewhere) gets no borrowed layout.
            let copy = via.to_vec();
            assert_eq!(known.scan_of(&copy), None);
        }
    }

    #[test]
    fn top_via_with_known_facts_examples() {
        let vias: [&[u8]; 4] = [
            b"SIP/2.0/UDP 127.0.0.1:5100;branch=z9hG4bK-1-0",
            b"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx;received=192.0.2.9",
            b"SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKx;rport",
            b"SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKy, SIP/2.0/UDP b.example;branch=z9hG4bKz",
        ];
        for via in vias {
            let first = &via[..first_element_len(via)];
            let known = ViaFacts::of(&super::super::header::parse_via(first).expect("valid via"));
            for src in [
                "127.0.0.1:5100",
                "192.0.2.7:5060",
                "10.0.0.1:9",
                "[2001:db8::1]:5061",
            ] {
                let src: SocketAddr = src.parse().expect("addr");
                assert_eq!(
                    top_via_with(via, src, Some(known)),
                    reference_top_via(via, src),
                    "{}",
                    String::from_utf8_lossy(via)
                );
            }
        }
    }

    proptest! {
        #[test]
        fn top_via_scan_matches_general_logic(v in via_text()) {
            prop_assert_eq!(scan_top_via(&v), reference_scan(&v));
            prop_assert_eq!(scan_top_via_general(&v), reference_scan(&v));
            prop_assert_eq!(first_element_len(&v), first_element_len_general(&v));
            prop_assert_eq!(
                find_bare_param(&v, b"rport"),
                reference_find_bare_param(&v, b"rport")
            );
        }

        /// With the facts request validation hands over (its `parse_via` of the first via-parm), the
        /// line is the old writer's.
        #[test]
        fn top_via_with_known_facts_matches_parsing_here(v in via_text(), source in source_addr()) {
            let first = &v[..first_element_len(&v)];
            if let Ok(via) = super::super::header::parse_via(first) {
                let known = ViaFacts::of(&via);
                prop_assert_eq!(top_via_with(&v, source, Some(known)), reference_top_via(&v, source));
            }
        }

        /// The facts validation hands over (`of_top` of the first element it parses, as it finds it)
        /// carry the scan `top_via` would do, and the line is the old writer's.
        #[test]
        fn facts_of_the_top_element_carry_the_scan(
            v in prop_oneof![via_text(), valid_via_text()],
            source in source_addr(),
        ) {
            if let Some((element, known)) = validation_facts(&v) {
                let (scan, layout) = (scan_top_via(&v), known.scan_of(&v));
                // `mentions_received` is the scan's prefilter (the text occurs); the parse knows exactly.
                prop_assert_eq!(
                    layout.map(|l| (l.first_len, l.rport_end)),
                    Some((scan.first_len, scan.rport_end)),
                    "element {:?}",
                    element
                );
                prop_assert_eq!(top_via_with(&v, source, Some(known)), reference_top_via(&v, source));
            }
        }

        #[test]
        fn top_via_line_matches_old_writer(v in via_text(), source in source_addr()) {
            prop_assert_eq!(fast_top_via(&v, source), reference_top_via(&v, source));
        }

        #[test]
        fn contains_matches_windows(
            h in proptest::collection::vec(prop_oneof![Just(b'r'), Just(b'E'), Just(b'c'), Just(b'e'), Just(b'i'), Just(b'V'), Just(b'd'), Just(b't'), Just(b'A'), Just(b'g'), any::<u8>()], 0..80),
        ) {
            prop_assert_eq!(contains_ignore_case(&h, b"received", 5), reference_contains(&h, b"received"));
            prop_assert_eq!(contains_ignore_case(&h, b"tag", 2), reference_contains(&h, b"tag"));
            prop_assert_eq!(contains_ignore_case(&h, b"tag", 0), reference_contains(&h, b"tag"));
        }

        #[test]
        fn filler_appends_like_extend(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..8),
            room in 0usize..400,
        ) {
            let mut expected = b"start".to_vec();
            let mut out = expected.clone();
            {
                let mut f = Filler::new(&mut out, room);
                for p in &parts {
                    f.put(p);
                }
            }
            for p in &parts {
                expected.extend_from_slice(p);
            }
            prop_assert_eq!(out, expected);
        }
    }

    #[test]
    fn status_lines_match_the_formatted_ones() {
        for code in 100..=699 {
            let mut formatted = Vec::new();
            write_status_line(&mut formatted, code);
            let mut written = Vec::new();
            let _ = ResponseWriter::start(&mut written, code);
            assert_eq!(written, formatted, "{code}");
            assert_eq!(status_line(code).is_some(), reason(code) != "Unknown");
        }
    }

    #[test]
    fn top_via_examples() {
        let src: SocketAddr = "192.0.2.7:5060".parse().expect("addr");
        let cases: [(&[u8], &[u8]); 6] = [
            (
                b"SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1;rport",
                b"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1;rport=5060;received=192.0.2.7\r\n",
            ),
            (
                b"SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1",
                b"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1\r\n",
            ),
            (
                b"SIP/2.0/UDP h.example;branch=z9hG4bK1 , SIP/2.0/UDP x;rport",
                b"Via: SIP/2.0/UDP h.example;branch=z9hG4bK1;received=192.0.2.7 , SIP/2.0/UDP x;rport\r\n",
            ),
            (
                b"SIP/2.0/UDP h;rport;received=1.2.3.4",
                b"Via: SIP/2.0/UDP h;rport=5060;received=1.2.3.4\r\n",
            ),
            (
                b"SIP/2.0/UDP h;x=\";rport\";rport",
                b"Via: SIP/2.0/UDP h;x=\";rport\";rport=5060;received=192.0.2.7\r\n",
            ),
            (
                b"SIP/2.0/UDP h;branch=received;RPORT",
                b"Via: SIP/2.0/UDP h;branch=received;RPORT=5060;received=192.0.2.7\r\n",
            ),
        ];
        for (via, line) in cases {
            assert_eq!(
                String::from_utf8_lossy(&fast_top_via(via, src)),
                String::from_utf8_lossy(line)
            );
            assert_eq!(fast_top_via(via, src), reference_top_via(via, src));
        }
    }

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
        assert!(contains_ignore_case(b"<sip:a@b>;TAG=1", b"tag", 2));
        assert!(contains_ignore_case(b"x;tAg=1", b"tag", 2));
        assert!(!contains_ignore_case(b"<sip:ta@b>;ta", b"tag", 2));
        assert!(contains_ignore_case(
            b"SIP/2.0/UDP h;Received=1.2.3.4",
            b"received",
            5
        ));
        assert!(!contains_ignore_case(b"", b"tag", 2));
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
