//! The wire format on arbitrary bytes: framing (`parse_message`), then every header parser the registrar
//! runs on its result (Via, name-addr, Contact, CSeq, numbers, q-values, option tags, URIs, the canonical
//! AoR, digest credentials), and the client side's readers of responses and challenges. Nothing may panic;
//! a few properties are checked on what parses.

#![no_main]

use corereg::sip::client::request::parse_branch;
use corereg::sip::client::response::{contact_uris, parse_response};
use corereg::sip::digest::{parse_authorization, Challenge};
use corereg::sip::header::{
    has_option_tag, parse_contact, parse_cseq, parse_name_addr, parse_qvalue, parse_u32, parse_via,
    sole_element, split_list, ContactValue, NameAddr,
};
use corereg::sip::parse::{parse_message, HeaderName, Message, ParseLimits, StartLine};
use corereg::sip::response::ViaFacts;
use corereg::sip::uri::{canonical_aor, parse_uri, uri_eq, AorBuf};
use libfuzzer_sys::fuzz_target;

/// The largest limits the configuration accepts, beside the defaults.
const WIDE: ParseLimits = ParseLimits {
    max_message_bytes: 65_507,
    max_headers: corereg::sip::parse::MAX_HEADERS,
    max_line_bytes: 65_507,
};

fuzz_target!(|data: &[u8]| {
    for limits in [ParseLimits::default(), WIDE] {
        if let Ok(msg) = parse_message(data, &limits) {
            headers(&msg);
        }
    }
    // What a client reads of a response.
    if let Ok(resp) = parse_response(data) {
        assert!((100..700).contains(&resp.status));
        let _ = resp.branch.and_then(parse_branch);
        let _ = Challenge::pick_strongest(resp.challenges().iter().copied());
    }
    let _ = contact_uris(data);
    // Header values on their own (the framing never hands a parser a CR or LF outside a fold).
    if data.len() <= 4096 {
        values(data);
    }
});

fn headers(msg: &Message<'_>) {
    assert!(msg.header_count() <= corereg::sip::parse::MAX_HEADERS);
    if let StartLine::Request { uri, .. } = msg.start {
        uri_checks(uri);
    }
    for value in msg.all(HeaderName::Via) {
        if let Some(element) = sole_element(value) {
            if let Ok(via) = parse_via(element) {
                let _ = ViaFacts::of_top(&via, element, value);
                let _ = via.branch();
            }
        }
        for element in split_list(value).flatten() {
            if let Ok(via) = parse_via(element) {
                let _ = ViaFacts::of(&via);
            }
        }
    }
    for name in [HeaderName::From, HeaderName::To] {
        for value in msg.all(name) {
            if let Ok(na) = parse_name_addr(value) {
                name_addr(&na);
            }
        }
    }
    for value in msg.all(HeaderName::Contact) {
        let elements = sole_element(value)
            .map(|e| vec![e])
            .unwrap_or_else(|| split_list(value).flatten().collect());
        for element in elements {
            if let Ok(ContactValue::Addr(na)) = parse_contact(element) {
                name_addr(&na);
                for (name, v) in na.params.iter() {
                    let Some(v) = v else { continue };
                    if name.eq_ignore_ascii_case(b"q") {
                        let _ = parse_qvalue(v);
                    } else {
                        let _ = parse_u32(v);
                    }
                }
            }
        }
    }
    for value in msg.all(HeaderName::CSeq) {
        let _ = parse_cseq(value);
    }
    for name in [
        HeaderName::Expires,
        HeaderName::MaxForwards,
        HeaderName::ContentLength,
    ] {
        for value in msg.all(name) {
            let _ = parse_u32(value);
        }
    }
    for name in [HeaderName::Require, HeaderName::Supported] {
        for value in msg.all(name) {
            let _ = has_option_tag(value, b"path");
            for tag in split_list(value).flatten() {
                let _ = has_option_tag(value, tag);
            }
        }
    }
    for value in msg.all(HeaderName::Authorization) {
        if let Ok(creds) = parse_authorization(value) {
            let _ = creds.nonce_count();
            let _ = creds.is_qop_auth();
        }
    }
    for h in msg.headers() {
        let _ = parse_name_addr(h.value);
    }
}

fn name_addr(na: &NameAddr<'_>) {
    uri_checks(na.uri);
    for (name, value) in na.params.iter() {
        let _ = (name, value);
    }
}

/// A URI that parses equals itself (RFC 3261 §19.1.4 equality is reflexive) and has a canonical AoR or a
/// clean error.
fn uri_checks(text: &[u8]) {
    let Ok(uri) = parse_uri(text) else { return };
    assert!(
        uri_eq(&uri, &uri),
        "a URI differs from itself: {:?}",
        String::from_utf8_lossy(text)
    );
    let mut aor = AorBuf::default();
    if canonical_aor(&uri, &mut aor).is_ok() {
        assert!(!aor.as_bytes().is_empty());
    } else {
        assert!(aor.as_bytes().is_empty(), "an error leaves the AoR empty");
    }
}

/// The typed parsers straight on the input, as if it were one header value.
fn values(v: &[u8]) {
    let _ = parse_via(v);
    if let Ok(na) = parse_name_addr(v) {
        name_addr(&na);
    }
    let _ = parse_contact(v);
    let _ = parse_cseq(v);
    let _ = parse_u32(v);
    let _ = parse_qvalue(v);
    let _ = has_option_tag(v, b"outbound");
    for element in split_list(v).flatten() {
        let _ = parse_contact(element);
    }
    let _ = sole_element(v);
    uri_checks(v);
    let _ = parse_authorization(v);
    let _ = Challenge::parse(v);
}
