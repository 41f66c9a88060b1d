//! The parser against hostile input: the 50 RFC 4475 torture messages (`tests/data/rfc4475/`) and
//! property tests with random bytes and mutated REGISTERs. Nothing may panic; valid messages must frame.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use corereg::sip::header::{
    has_option_tag, parse_contact, parse_cseq, parse_name_addr, parse_qvalue, parse_u32, parse_via,
    split_list, ContactValue, HeaderError, Params,
};
use corereg::sip::parse::{
    parse_message, BodyError, FramingError, HeaderName, Message, Method, ParseLimits, StartLine,
    StartLineError,
};
use corereg::sip::uri::{
    canonical_aor, parse_uri, uri_eq, AorBuf, Scheme, SipUri, UriError, MAX_URI_BYTES,
};
use proptest::prelude::*;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc4475");

struct Torture {
    name: String,
    class: String,
    bytes: Vec<u8>,
}

fn corpus() -> Vec<Torture> {
    let dir = Path::new(CORPUS);
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv"))
        .unwrap_or_else(|e| panic!("{CORPUS}/MANIFEST.tsv must exist beside the repo: {e}"));
    let classes: HashMap<&str, &str> = manifest
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split('\t');
            (f.next().unwrap(), f.nth(1).unwrap())
        })
        .collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            let class = classes
                .get(name.as_str())
                .unwrap_or_else(|| panic!("{name} not in manifest"))
                .to_string();
            Torture {
                name,
                class,
                bytes: std::fs::read(&p).unwrap(),
            }
        })
        .collect()
}

fn get<'a>(corpus: &'a [Torture], name: &str) -> &'a [u8] {
    &corpus.iter().find(|t| t.name == name).unwrap().bytes
}

fn parse(buf: &[u8]) -> Message<'_> {
    parse_message(buf, &ParseLimits::default()).unwrap()
}

/// Run every typed parser on a value, and on whatever it yields. Returns nothing: the point is not panicking
/// (plus a few properties that must hold for anything that parses).
fn exercise_value(v: &[u8]) {
    let _ = parse_cseq(v);
    let _ = parse_u32(v);
    let _ = parse_qvalue(v);
    let p = Params { raw: v };
    let _ = p.iter().count();
    let _ = p.get(b"expires");
    exercise_uri(v);
    if let Ok(na) = parse_name_addr(v) {
        exercise_uri(na.uri);
        let _ = na.params.iter().count();
    }
    for element in split_list(v).flatten() {
        if let Ok(ContactValue::Addr(na)) = parse_contact(element) {
            exercise_uri(na.uri);
            let _ = na.params.get(b"q").flatten().map(parse_qvalue);
        }
        if let Ok(via) = parse_via(element) {
            let _ = via.branch();
            let _ = via.params.iter().count();
        }
    }
    let _ = has_option_tag(v, b"path");
}

fn exercise_uri(text: &[u8]) {
    if let Ok(u) = parse_uri(text) {
        assert!(
            uri_eq(&u, &u),
            "uri_eq is reflexive: {}",
            String::from_utf8_lossy(text)
        );
        let mut aor = AorBuf::default();
        assert_eq!(
            canonical_aor(&u, &mut aor),
            Ok(()),
            "a parsed URI always has a canonical AoR"
        );
        let _ = u.params.iter().count();
    }
}

fn exercise(buf: &[u8]) {
    let limits = ParseLimits::default();
    if let Ok(m) = parse_message(buf, &limits) {
        let range = buf.as_ptr_range();
        for h in m.headers() {
            assert!(
                range.contains(&h.value.as_ptr()) || h.value.is_empty(),
                "values borrow from the datagram"
            );
            exercise_value(h.value);
        }
        for name in [HeaderName::Via, HeaderName::Contact, HeaderName::Other] {
            assert_eq!(m.all(name).count(), m.count(name));
            assert_eq!(m.first(name), m.all(name).next());
        }
        if let StartLine::Request { uri, .. } = m.start {
            exercise_uri(uri);
        }
        assert!(m.body.len() <= buf.len());
    }
    // And every function on the raw bytes themselves.
    exercise_value(buf);
}

#[test]
fn all_fifty_files_parse_without_panicking_and_valid_ones_frame() {
    let corpus = corpus();
    assert_eq!(corpus.len(), 50, "RFC 4475 has 50 message files");
    for t in &corpus {
        exercise(&t.bytes);
        let framed = parse_message(&t.bytes, &ParseLimits::default());
        if matches!(t.class.as_str(), "valid" | "semantic") {
            let m = framed.unwrap_or_else(|e| panic!("{} ({}) must frame: {e}", t.name, t.class));
            assert!(
                matches!(
                    m.start,
                    StartLine::Request { .. } | StartLine::Response { .. }
                ),
                "{}: {:?}",
                t.name,
                m.start
            );
            // Semantic mcl01 (two Content-Lengths) is well formed but unframeable: its body_error is checked
            // in rfc4475_specific_expectations.
            if t.class == "valid" {
                assert!(m.body_error.is_none(), "{}: {:?}", t.name, m.body_error);
            }
        }
    }
}

/// Well-formed requests: their Via, From, To and CSeq values parse with the typed parsers.
#[test]
fn valid_requests_have_parseable_core_headers() {
    for t in corpus().iter().filter(|t| t.class == "valid") {
        let m = parse(&t.bytes);
        if !matches!(m.start, StartLine::Request { .. }) {
            continue;
        }
        for via in m.all(HeaderName::Via) {
            for element in split_list(via) {
                let element = element.unwrap();
                parse_via(element).unwrap_or_else(|e| {
                    panic!(
                        "{}: Via {:?}: {e}",
                        t.name,
                        String::from_utf8_lossy(element)
                    )
                });
            }
        }
        for name in [HeaderName::From, HeaderName::To] {
            let v = m.first(name).unwrap();
            parse_name_addr(v)
                .unwrap_or_else(|e| panic!("{}: {:?}: {e}", t.name, String::from_utf8_lossy(v)));
        }
        parse_cseq(m.first(HeaderName::CSeq).unwrap())
            .unwrap_or_else(|e| panic!("{}: CSeq: {e}", t.name));
    }
}

fn start_error(buf: &[u8]) -> Option<StartLineError> {
    match parse(buf).start {
        StartLine::Invalid(e) => Some(e),
        _ => None,
    }
}

#[test]
fn rfc4475_specific_expectations() {
    let c = corpus();
    use StartLineError::*;
    // Strict request line.
    assert_eq!(start_error(get(&c, "badvers.dat")), Some(BadVersion));
    for f in [
        "lwsstart.dat",
        "trws.dat",
        "lwsruri.dat",
        "ltgtruri.dat",
        "test.dat",
    ] {
        assert_eq!(start_error(get(&c, f)), Some(Malformed), "{f}");
    }
    // Content-Length over UDP.
    assert_eq!(
        parse(get(&c, "clerr.dat")).body_error,
        Some(BodyError::ContentLengthExceedsDatagram)
    );
    assert_eq!(
        parse(get(&c, "ncl.dat")).body_error,
        Some(BodyError::BadContentLength)
    );
    assert_eq!(
        parse(get(&c, "mcl01.dat")).body_error,
        Some(BodyError::BadContentLength)
    );
    let dbl = parse(get(&c, "dblreq.dat"));
    assert!(matches!(
        dbl.start,
        StartLine::Request {
            method: Method::Register,
            ..
        }
    ));
    assert!(dbl.body.is_empty() && dbl.body_error.is_none());
    assert_eq!(
        dbl.count(HeaderName::Via),
        1,
        "the trailing INVITE is not read as headers"
    );
    // Responses that cannot be parsed are dropped.
    assert_eq!(
        parse_message(get(&c, "bigcode.dat"), &ParseLimits::default()).unwrap_err(),
        FramingError::Garbage
    );
    assert!(matches!(
        parse(get(&c, "scalarlg.dat")).start,
        StartLine::Response { code: 503 }
    ));
    // Overlarge scalars.
    let s = parse(get(&c, "scalar02.dat"));
    assert_eq!(
        parse_cseq(s.first(HeaderName::CSeq).unwrap()),
        Err(HeaderError::NumberOutOfRange)
    );
    assert_eq!(
        parse_u32(s.first(HeaderName::Expires).unwrap()),
        Err(HeaderError::NumberOutOfRange)
    );
    // Methods.
    assert!(matches!(
        parse(get(&c, "esc02.dat")).start,
        StartLine::Request {
            method: Method::Other,
            ..
        }
    ));
    assert!(matches!(
        parse(get(&c, "intmeth.dat")).start,
        StartLine::Request {
            method: Method::Other,
            ..
        }
    ));
    // Header syntax errors.
    let q = parse(get(&c, "quotbal.dat"));
    assert_eq!(
        parse_name_addr(q.first(HeaderName::To).unwrap()).unwrap_err(),
        HeaderError::UnterminatedQuote
    );
    let r = parse(get(&c, "regbadct.dat"));
    assert!(parse_contact(r.first(HeaderName::Contact).unwrap()).is_err());
    let b = parse(get(&c, "badinv01.dat"));
    assert!(split_list(b.first(HeaderName::Via).unwrap())
        .any(|e| e.map_or(true, |e| parse_via(e).is_err())));
    assert!(parse_contact(b.first(HeaderName::Contact).unwrap()).is_err());
    let d = parse(get(&c, "baddn.dat"));
    assert!(parse_name_addr(d.first(HeaderName::From).unwrap()).is_err());
    let a = parse(get(&c, "badaspec.dat"));
    assert!(parse_name_addr(a.first(HeaderName::To).unwrap()).is_err());
    // Schemes.
    for f in ["unkscm.dat", "novelsc.dat"] {
        let StartLine::Request { uri, .. } = parse(get(&c, f)).start else {
            panic!("{f}")
        };
        assert_eq!(
            parse_uri(uri).unwrap_err(),
            UriError::UnsupportedScheme,
            "{f}"
        );
    }
    let u = parse(get(&c, "unksm2.dat"));
    let to = parse_name_addr(u.first(HeaderName::To).unwrap()).unwrap();
    assert_eq!(parse_uri(to.uri).unwrap_err(), UriError::UnsupportedScheme);
    // Escaped nulls: two distinct contacts, and a usable AoR.
    let e = parse(get(&c, "escnull.dat"));
    let contacts: Vec<_> = e
        .all(HeaderName::Contact)
        .map(|v| match parse_contact(v).unwrap() {
            ContactValue::Addr(na) => parse_uri(na.uri).unwrap(),
            ContactValue::Star => panic!("star"),
        })
        .collect();
    assert_eq!(contacts.len(), 2);
    assert!(!uri_eq(&contacts[0], &contacts[1]));
    let to = parse_uri(
        parse_name_addr(e.first(HeaderName::To).unwrap())
            .unwrap()
            .uri,
    )
    .unwrap();
    let mut aor = AorBuf::default();
    canonical_aor(&to, &mut aor).unwrap();
    assert_eq!(aor.as_bytes(), b"sip:null-\0-null@example.com");
    // Contact parameter vs URI parameter.
    let c1 = parse(get(&c, "cparam01.dat"));
    let ContactValue::Addr(na) = parse_contact(c1.first(HeaderName::Contact).unwrap()).unwrap()
    else {
        panic!()
    };
    assert_eq!(na.params.get(b"unknownparam"), Some(None));
    assert!(parse_uri(na.uri)
        .unwrap()
        .params
        .get(b"unknownparam")
        .is_none());
    let c2 = parse(get(&c, "cparam02.dat"));
    let ContactValue::Addr(na) = parse_contact(c2.first(HeaderName::Contact).unwrap()).unwrap()
    else {
        panic!()
    };
    assert_eq!(na.params.get(b"unknownparam"), None);
    assert_eq!(
        parse_uri(na.uri).unwrap().params.get(b"unknownparam"),
        Some(None)
    );
    // Escaped header kept in the contact URI.
    let rc = parse(get(&c, "regescrt.dat"));
    let ContactValue::Addr(na) = parse_contact(rc.first(HeaderName::Contact).unwrap()).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        parse_uri(na.uri).unwrap().headers,
        b"Route=%3Csip:sip.example.com%3E"
    );
    // Require / Proxy-Require.
    let bx = parse(get(&c, "bext01.dat"));
    assert!(bx.count(HeaderName::Require) + bx.count(HeaderName::ProxyRequire) >= 1);
    // Duplicated singleton headers are countable.
    let mu = parse(get(&c, "multi01.dat"));
    assert_eq!(
        (mu.count(HeaderName::CSeq), mu.count(HeaderName::CallId)),
        (2, 2)
    );
    assert_eq!(
        (mu.count(HeaderName::To), mu.count(HeaderName::From)),
        (2, 2)
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests

/// Valid messages to mutate: two REGISTERs and the 200 OK answering the first.
const SEEDS: &[&[u8]] = &[
    b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: \"Bob\" <sip:bob@example.com>\r\n\
From: Bob <sip:bob@example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4;transport=udp>;expires=3600;q=0.7;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"\r\n\
Expires: 7200\r\n\
Content-Length: 0\r\n\
\r\n",
    b"REGISTER sips:[2001:db8::1]:5061 SIP/2.0\r\n\
v: SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bKx\r\n\
f: <sips:%61lice@example.com>;tag=a\r\n\
t: sips:%61lice@example.com\r\n\
i: abc\r\n\
CSeq: 7\r\n REGISTER\r\n\
m: <sips:alice@[2001:db8::9]:5061>, \"A, B\" <sip:alice@h;lr>;expires=0, *\r\n\
Path: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>\r\n\
k: path, gruu\r\n\
l: 0\r\n\
\r\n",
    b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;received=192.0.2.100\r\n\
To: <sip:bob@example.com>;tag=2493k59kd\r\n\
From: <sip:bob@example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4>;expires=7200\r\n\
Content-Length: 0\r\n\
\r\n",
];

fn mutate(seed: &[u8], ops: &[(u8, usize, u8)]) -> Vec<u8> {
    const SPECIAL: &[u8] = b"\r\n\0\"<>;,: %\\\t@=?";
    let mut buf = seed.to_vec();
    for &(op, at, byte) in ops {
        let at = if buf.is_empty() {
            0
        } else {
            at % (buf.len() + 1)
        };
        match op % 5 {
            0 => buf.truncate(at),
            1 => {
                if let Some(b) = buf.get_mut(at) {
                    *b ^= 1 << (byte % 8);
                }
            }
            2 => buf.insert(at, SPECIAL[usize::from(byte) % SPECIAL.len()]),
            3 => {
                let end = (at + usize::from(byte % 16)).min(buf.len());
                buf.drain(at..end);
            }
            _ => buf.insert(at, byte),
        }
    }
    buf
}

/// 2000 cases per property unless PROPTEST_CASES says otherwise (e.g. for a longer soak).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        exercise(&bytes);
    }

    #[test]
    fn sip_shaped_text_never_panics(text in "[A-Za-z0-9 :;,<>\"=@%\\\\/.\\[\\]?&*\r\n\t-]{0,400}") {
        exercise(text.as_bytes());
        let framed = format!("REGISTER sip:a@b SIP/2.0\r\nContact: {text}\r\nVia: SIP/2.0/UDP {text}\r\n\r\n");
        exercise(framed.as_bytes());
    }

    /// `SipUri` has public fields: the functions taking one must hold up whatever it contains.
    #[test]
    fn uri_functions_never_panic_on_arbitrary_components(
        parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 5),
        port in proptest::option::of(any::<u16>()),
        sips in any::<bool>(),
    ) {
        let uri = SipUri {
            scheme: if sips { Scheme::Sips } else { Scheme::Sip },
            user: (!parts[0].is_empty()).then_some(&parts[0][..]),
            password: (!parts[1].is_empty()).then_some(&parts[1][..]),
            host: &parts[2],
            port,
            params: Params { raw: &parts[3] },
            headers: &parts[4],
        };
        prop_assert!(uri_eq(&uri, &uri));
        let mut aor = AorBuf::default();
        match canonical_aor(&uri, &mut aor) {
            Ok(()) => prop_assert!(aor.as_bytes().len() <= MAX_URI_BYTES),
            Err(e) => {
                prop_assert_eq!(e, UriError::TooLong);
                prop_assert!(aor.as_bytes().is_empty());
            }
        }
    }

    #[test]
    fn mutated_registers_never_panic(
        seed in 0..SEEDS.len(),
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8),
    ) {
        exercise(&mutate(SEEDS[seed], &ops));
    }
}

#[test]
fn seeds_are_valid_messages() {
    for seed in SEEDS {
        let m = parse(seed);
        match m.start {
            StartLine::Request { method, .. } => assert_eq!(method, Method::Register),
            StartLine::Response { code } => assert_eq!(code, 200),
            StartLine::Invalid(e) => panic!("{e}"),
        }
        for v in m.all(HeaderName::Contact) {
            for e in split_list(v) {
                parse_contact(e.unwrap()).unwrap();
            }
        }
    }
}
