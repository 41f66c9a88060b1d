//! The byte classes of the SIP grammar (RFC 3261 §25.1) as bits of one shared table.
//!
//! Why one table and not one `[bool; 256]` per class: a shard that sleeps between datagrams starts each
//! REGISTER with cold caches, and every class table a REGISTER consults is a cache line or two to fetch
//! (ASCII text reads entries 0x20..0x7f, the second half of a 128-byte table, and often the first). With a
//! dozen classes in one `[u16; 256]`, all the printable ASCII entries sit in three 64-byte lines
//! (bytes 0x20..0x7f are entries 64..256) whichever classes the request needs.

/// A set of bytes: one bit of [`TABLE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Class(u16);

impl Class {
    /// Whether `b` is in the class.
    #[inline(always)]
    pub(crate) fn has(self, b: u8) -> bool {
        TABLE.0[b as usize] & self.0 != 0
    }
}

/// `token` (RFC 3261 §25.1).
pub(crate) const TOKEN: Class = Class(1 << 0);
/// Characters of an unquoted parameter name or value. Deliberately a superset of both header `gen-value`
/// (token / host) and URI `paramchar` (`[ ] / : & + $`, unreserved, `%`): every visible ASCII character
/// except the ones that delimit parameters, lists, quoted strings and URIs.
pub(crate) const PARAM_CHAR: Class = Class(1 << 1);
/// Characters of a URI in a header: visible ASCII except `<`, `>` and `"`, plus (for non-SIP schemes,
/// e.g. IRIs) bytes >= 0x80. `parse_uri` checks sip:/sips: URIs precisely.
pub(crate) const URI_TEXT: Class = Class(1 << 2);
/// URI_TEXT without `;`, `,` and `?`: the bytes of an addr-spec URI outside angle brackets.
pub(crate) const ADDR_SPEC: Class = Class(1 << 3);
/// Scheme characters after the first letter (RFC 3986 `scheme`).
pub(crate) const SCHEME: Class = Class(1 << 4);
/// SIP URI `user` characters (unreserved / user-unreserved; escapes are handled apart).
pub(crate) const USER: Class = Class(1 << 5);
/// SIP URI `password` characters (escapes apart).
pub(crate) const PASSWORD: Class = Class(1 << 6);
/// SIP URI `paramchar` (escapes apart).
pub(crate) const PARAM: Class = Class(1 << 7);
/// SIP URI header `hname` / `hvalue` characters (escapes apart).
pub(crate) const HNV: Class = Class(1 << 8);
/// The inside of an IPv6 reference: hex digits, `:` and `.` (a trailing IPv4 part).
pub(crate) const IPV6: Class = Class(1 << 9);
/// Alphanumerics and `-`: the bytes after the first of a hostname label.
pub(crate) const HOST_LABEL: Class = Class(1 << 10);
/// ASCII letters and digits: the first byte of a hostname label.
pub(crate) const ALNUM: Class = Class(1 << 11);

/// A 256-entry table aligned to a cache line, so that entries 0x20..0x7f are exactly lines 1-3.
#[repr(align(64))]
struct Table([u16; 256]);

/// Every class's members, bit by bit.
static TABLE: Table = Table({
    let mut t = [0u16; 256];
    add(&mut t, TOKEN, true, b"-.!%*_+`'~");
    add(&mut t, PARAM_CHAR, true, b"-.!%*_+`'~[]/:&$()@{}|^#");
    add(&mut t, SCHEME, true, b"+-.");
    add(&mut t, USER, true, b"-_.!~*'()&=+$,;?/");
    add(&mut t, PASSWORD, true, b"-_.!~*'()&=+$,");
    add(&mut t, PARAM, true, b"-_.!~*'()[]/:&+$");
    add(&mut t, HNV, true, b"-_.!~*'()[]/?:+$");
    add(&mut t, IPV6, false, b"0123456789abcdefABCDEF:.");
    add(&mut t, HOST_LABEL, true, b"-");
    add(&mut t, ALNUM, true, b"");
    let mut c = 0x21;
    while c < 256 {
        let b = c as u8;
        if !matches!(b, 0x7f | b'<' | b'>' | b'"') {
            t[c] |= URI_TEXT.0;
            if !matches!(b, b';' | b',' | b'?') {
                t[c] |= ADDR_SPEC.0;
            }
        }
        c += 1;
    }
    t
});

/// Adds ASCII letters and digits (when `alnum`) and `extra` to `class`.
const fn add(t: &mut [u16; 256], class: Class, alnum: bool, extra: &[u8]) {
    let mut c = 0;
    while c < 256 {
        if alnum && (c as u8).is_ascii_alphanumeric() {
            t[c] |= class.0;
        }
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] |= class.0;
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each class against its definition written out as a predicate, over every byte.
    #[test]
    fn classes_match_their_definitions() {
        let alnum = |b: u8| b.is_ascii_alphanumeric();
        let in_set = |set: &[u8], b: u8| set.contains(&b);
        let uri_text = |b: u8| b > 0x20 && !matches!(b, 0x7f | b'<' | b'>' | b'"');
        let cases: [(Class, &dyn Fn(u8) -> bool); 12] = [
            (TOKEN, &|b| alnum(b) || in_set(b"-.!%*_+`'~", b)),
            (PARAM_CHAR, &|b| {
                alnum(b) || in_set(b"-.!%*_+`'~[]/:&$()@{}|^#", b)
            }),
            (URI_TEXT, &uri_text),
            (ADDR_SPEC, &|b| uri_text(b) && !in_set(b";,?", b)),
            (SCHEME, &|b| alnum(b) || in_set(b"+-.", b)),
            (USER, &|b| alnum(b) || in_set(b"-_.!~*'()&=+$,;?/", b)),
            (PASSWORD, &|b| alnum(b) || in_set(b"-_.!~*'()&=+$,", b)),
            (PARAM, &|b| alnum(b) || in_set(b"-_.!~*'()[]/:&+$", b)),
            (HNV, &|b| alnum(b) || in_set(b"-_.!~*'()[]/?:+$", b)),
            (IPV6, &|b| b.is_ascii_hexdigit() || in_set(b":.", b)),
            (HOST_LABEL, &|b| alnum(b) || b == b'-'),
            (ALNUM, &alnum),
        ];
        for (class, want) in cases {
            for b in 0..=255u8 {
                assert_eq!(class.has(b), want(b), "{class:?} byte {b:#04x}");
            }
        }
        // Non-ASCII bytes are only URI text.
        assert!((0x80..=0xffu8).all(|b| TABLE.0[b as usize] == URI_TEXT.0 | ADDR_SPEC.0));
    }
}
