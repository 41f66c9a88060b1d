//! Table-driven tests of every RFC 3261 §10.3 step and extension, on the pure core with a fake clock.

use super::*;

const T0: u64 = 1_700_000_000;

fn src() -> SocketAddr {
    "192.0.2.10:5062".parse().expect("addr")
}

struct Req {
    method: &'static str,
    ruri: String,
    to: String,
    call_id: String,
    cseq: u32,
    /// Top Via branch; by default one per Call-ID and CSeq (what a retransmission repeats).
    branch: Option<String>,
    headers: Vec<String>,
}

impl Req {
    fn register(user: &str) -> Self {
        Req {
            method: "REGISTER",
            ruri: "sip:example.com".into(),
            to: format!("<sip:{user}@example.com>"),
            call_id: format!("cid-{user}"),
            cseq: 1,
            branch: None,
            headers: Vec::new(),
        }
    }
    fn branch(mut self, b: &str) -> Self {
        self.branch = Some(b.into());
        self
    }
    fn method(mut self, m: &'static str) -> Self {
        self.method = m;
        self
    }
    fn call_id(mut self, c: &str) -> Self {
        self.call_id = c.into();
        self
    }
    fn cseq(mut self, n: u32) -> Self {
        self.cseq = n;
        self
    }
    fn ruri(mut self, r: &str) -> Self {
        self.ruri = r.into();
        self
    }
    fn h(mut self, line: &str) -> Self {
        self.headers.push(line.into());
        self
    }
    fn contact(self, c: &str) -> Self {
        self.h(&format!("Contact: {c}"))
    }
    fn bytes(&self) -> Vec<u8> {
        let branch = self
            .branch
            .clone()
            .unwrap_or_else(|| format!("z9hG4bK-{}-{}", self.call_id, self.cseq));
        let mut s = format!(
            "{m} {r} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=ft1\r\nTo: {to}\r\nCall-ID: {c}\r\n\
             CSeq: {n} {m}\r\n",
            m = self.method,
            r = self.ruri,
            to = self.to,
            c = self.call_id,
            n = self.cseq
        );
        for h in &self.headers {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        s.into_bytes()
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Resp {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The Contact header values, whatever their form.
    fn contacts_or_none(&self) -> Vec<&str> {
        self.all("Contact")
    }
    /// (uri, expires) of every Contact, sorted by uri.
    fn contacts(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self
            .all("Contact")
            .into_iter()
            .map(|c| {
                let uri = c[c.find('<').expect("<") + 1..c.find('>').expect(">")].to_string();
                let exp = c
                    .split(";expires=")
                    .nth(1)
                    .expect("expires")
                    .split(';')
                    .next()
                    .expect("n");
                (uri, exp.parse().expect("number"))
            })
            .collect();
        v.sort();
        v
    }
}

fn parse_resp(out: &[u8]) -> Resp {
    let text = std::str::from_utf8(out).expect("utf8 response");
    assert!(
        text.ends_with("\r\n\r\n"),
        "response ends with an empty line: {text:?}"
    );
    let mut lines = text.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .expect("code")
        .parse()
        .expect("numeric code");
    let headers = lines
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("header line");
            (n.to_string(), v.to_string())
        })
        .collect();
    let resp = Resp { status, headers };
    // One response, whole: a refusal decided late leaves nothing of another response behind (no second
    // status line, no single-valued header twice).
    assert_eq!(
        text.matches("SIP/2.0 ").count(),
        1,
        "one status line: {text:?}"
    );
    for single in [
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Date",
        "Supported",
        "Content-Length",
    ] {
        assert!(resp.all(single).len() <= 1, "{single} repeated: {text:?}");
    }
    resp
}

struct Harness {
    reg: Registrar,
    now_s: u64,
    out: Vec<u8>,
}

impl Harness {
    fn new() -> Self {
        Self::with(RegistrarConfig::default())
    }
    fn with(cfg: RegistrarConfig) -> Self {
        Harness {
            reg: Registrar::new(cfg, Now::from_secs(T0)),
            now_s: T0,
            out: Vec::new(),
        }
    }
    fn send(&mut self, r: &Req) -> Resp {
        self.send_raw(&r.bytes())
    }
    fn send_raw(&mut self, bytes: &[u8]) -> Resp {
        self.send_raw_from(bytes, src())
    }
    fn send_from(&mut self, r: &Req, source: SocketAddr) -> Resp {
        self.send_raw_from(&r.bytes(), source)
    }
    fn send_raw_from(&mut self, bytes: &[u8], source: SocketAddr) -> Resp {
        match self
            .reg
            .handle(bytes, source, Now::from_secs(self.now_s), &mut self.out)
        {
            Outcome::Reply { status, .. } => {
                let r = parse_resp(&self.out);
                assert_eq!(r.status, status);
                r
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }
    fn fetch(&mut self, user: &str) -> Vec<(String, u64)> {
        let r = self.send(
            &Req::register(user)
                .call_id("fetcher")
                .cseq(self.now_s as u32),
        );
        assert_eq!(r.status, 200);
        r.contacts()
    }
    fn advance(&mut self, secs: u64) {
        self.now_s += secs;
        while self.reg.handle_timeout(Now::from_secs(self.now_s)) {}
    }
}

#[test]
fn reserved_arenas_hold_max_bindings_without_growing() {
    let mut h = Harness::with(RegistrarConfig {
        max_bindings: 3_000,
        reserve_arenas: true,
        ..RegistrarConfig::default()
    });
    let reserved = h.reg.reserved_capacity();
    assert!(reserved >= 3_000, "reserved {reserved}");
    for n in 0..3_000 {
        let user = format!("u{n}");
        let r = h.send(&Req::register(&user).contact(&format!("<sip:{user}@192.0.2.1>")));
        assert_eq!(r.status, 200);
    }
    assert_eq!(h.reg.binding_count(), 3_000);
    assert_eq!(h.reg.reserved_capacity(), reserved, "no arena grew");
    // Full: the next new binding is refused, nothing grows.
    let r = h.send(&Req::register("late").contact("<sip:late@192.0.2.1>"));
    assert_eq!(r.status, 503);
    assert_eq!(h.reg.reserved_capacity(), reserved);

    let lazy = Harness::new();
    assert_eq!(
        lazy.reg.reserved_capacity(),
        0,
        "off by default: nothing reserved"
    );
}

fn c(uri: &str, exp: u64) -> (String, u64) {
    (uri.to_string(), exp)
}

#[test]
fn register_then_fetch_lists_binding_with_remaining_expiry() {
    let mut h = Harness::new();
    let r = h.send(
        &Req::register("alice")
            .contact("<sip:alice@192.0.2.10:5062>")
            .h("Expires: 600"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.contacts(), vec![c("sip:alice@192.0.2.10:5062", 600)]);
    h.now_s += 100;
    assert_eq!(h.fetch("alice"), vec![c("sip:alice@192.0.2.10:5062", 500)]);
    assert_eq!(h.reg.binding_count(), 1);
}

#[test]
fn ok_carries_date_to_tag_supported_and_annotated_via() {
    let mut h = Harness::new();
    let r = h.send(&Req::register("alice").contact("<sip:alice@host>"));
    assert!(r.get("Date").is_some_and(|d| d.ends_with(" GMT")));
    assert!(r.get("To").is_some_and(|t| t.contains(";tag=")));
    assert_eq!(r.get("Supported"), Some("path, outbound"));
    assert_eq!(r.get("Call-ID"), Some("cid-alice"));
    assert_eq!(r.get("CSeq"), Some("1 REGISTER"));
    assert_eq!(r.get("From"), Some("<sip:alice@example.com>;tag=ft1"));
    let via = r.get("Via").expect("via");
    assert!(via.contains(";rport=5062"), "{via}");
    assert!(via.contains("branch=z9hG4bK-cid-alice-1"), "{via}");
    // sent-by equals the source address: with rport, received is still added (RFC 3581).
    assert!(via.contains(";received=192.0.2.10"), "{via}");
}

#[test]
fn same_to_tag_for_retransmissions() {
    let mut h = Harness::new();
    let req = Req::register("alice").contact("<sip:alice@host>");
    let a = h.send(&req).get("To").map(str::to_string);
    let b = h.send(&req).get("To").map(str::to_string);
    assert_eq!(a, b);
}

#[test]
fn refresh_updates_expiry_without_new_binding() {
    let mut h = Harness::new();
    h.send(
        &Req::register("alice")
            .contact("<sip:alice@host>")
            .h("Expires: 600"),
    );
    h.now_s += 300;
    let r = h.send(
        &Req::register("alice")
            .cseq(2)
            .contact("<sip:alice@host>")
            .h("Expires: 600"),
    );
    assert_eq!(r.contacts(), vec![c("sip:alice@host", 600)]);
    assert_eq!(h.reg.binding_count(), 1);
}

#[test]
fn uri_equality_not_bytes_identifies_the_binding() {
    let mut h = Harness::new();
    h.send(&Req::register("alice").contact("<sip:alice@HOST.example.com>"));
    let r = h.send(
        &Req::register("alice")
            .cseq(2)
            .contact("<sip:alice@host.EXAMPLE.com>;expires=0"),
    );
    assert_eq!(r.contacts(), vec![]);
}

#[test]
fn unregister_by_expires_param_and_by_header() {
    let mut h = Harness::new();
    h.send(
        &Req::register("alice")
            .contact("<sip:a@1>")
            .contact("<sip:a@2>"),
    );
    let r = h.send(
        &Req::register("alice")
            .cseq(2)
            .contact("<sip:a@1>;expires=0"),
    );
    assert_eq!(r.contacts(), vec![c("sip:a@2", 3600)]);
    let r = h.send(
        &Req::register("alice")
            .cseq(3)
            .contact("<sip:a@2>")
            .h("Expires: 0"),
    );
    assert_eq!(r.contacts(), vec![]);
    assert_eq!(h.reg.binding_count(), 0);
}

#[test]
fn unregistering_an_unknown_contact_is_fine() {
    let mut h = Harness::new();
    let r = h.send(&Req::register("alice").contact("<sip:nobody@1>;expires=0"));
    assert_eq!(r.status, 200);
    assert_eq!(r.contacts(), vec![]);
}

#[test]
fn star_with_expires_zero_removes_everything() {
    let mut h = Harness::new();
    h.send(&Req::register("alice").contact("<sip:a@1>, <sip:a@2>"));
    h.send(&Req::register("alice").call_id("other").contact("<sip:a@3>"));
    let r = h.send(&Req::register("alice").cseq(2).contact("*").h("Expires: 0"));
    assert_eq!(r.status, 200);
    assert_eq!(r.contacts(), vec![]);
    assert_eq!(h.reg.binding_count(), 0);
}

#[test]
fn star_misuse_is_400_and_changes_nothing() {
    let mut h = Harness::new();
    h.send(&Req::register("alice").contact("<sip:a@1>"));
    for req in [
        Req::register("alice").cseq(2).contact("*").h("Expires: 10"),
        Req::register("alice").cseq(2).contact("*"),
        Req::register("alice")
            .cseq(2)
            .contact("*")
            .contact("<sip:a@2>")
            .h("Expires: 0"),
        Req::register("alice")
            .cseq(2)
            .contact("*, <sip:a@2>")
            .h("Expires: 0"),
    ] {
        assert_eq!(h.send(&req).status, 400);
    }
    assert_eq!(h.fetch("alice"), vec![c("sip:a@1", 3600)]);
}

#[test]
fn star_with_same_call_id_and_old_cseq_is_refused() {
    let mut h = Harness::new();
    h.send(&Req::register("alice").cseq(5).contact("<sip:a@1>"));
    let r = h.send(&Req::register("alice").cseq(4).contact("*").h("Expires: 0"));
    assert_eq!(r.status, 400);
    assert_eq!(h.reg.binding_count(), 1);
}

#[test]
fn expiry_below_minimum_is_423_with_min_expires_then_retry_succeeds() {
    let mut h = Harness::new();
    let r = h.send(&Req::register("alice").contact("<sip:a@1>").h("Expires: 30"));
    assert_eq!(r.status, 423);
    assert_eq!(r.get("Min-Expires"), Some("60"));
    assert_eq!(h.reg.binding_count(), 0);
    let r = h.send(
        &Req::register("alice")
            .cseq(2)
            .contact("<sip:a@1>")
            .h("Expires: 60"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.contacts(), vec![c("sip:a@1", 60)]);
}

#[test]
fn expiry_above_maximum_is_capped_and_default_applies() {
    let mut h = Harness::new();
    let r = h.send(&Req::register("alice").contact("<sip:a@1>;expires=999999"));
    assert_eq!(r.contacts(), vec![c("sip:a@1", 86400)]);
    let r = h.send(&Req::register("bob").contact("<sip:b@1>"));
    assert_eq!(r.contacts(), vec![c("sip:b@1", 3600)]);
    // Larger than 32 bits is still a number: capped too.
    let r = h.send(
        &Req::register("carol")
            .contact("<sip:c@1>")
            .h("Expires: 99999999999999999999"),
    );
    assert_eq!(r.contacts(), vec![c("sip:c@1", 86400)]);
}

#[test]
fn contact_expires_param_beats_expires_header() {
    let mut h = Harness::new();
    let r = h.send(
        &Req::register("alice")
            .contact("<sip:a@1>;expires=120")
            .contact("<sip:a@2>")
            .h("Expires: 300"),
    );
    assert_eq!(r.contacts(), vec![c("sip:a@1", 120), c("sip:a@2", 300)]);
}

/// §10.3 step 7: an equal CSeq is only the same request when it is the same transaction (top-Via branch)
/// from the same source; a new transaction reusing the CSeq fails like a lower one and changes nothing.
#[test]
fn equal_cseq_in_a_new_transaction_is_refused() {
    let mut h = Harness::new();
    let first = Req::register("alice")
        .cseq(10)
        .branch("z9hG4bK-first")
        .contact("<sip:a@1>")
        .h("Expires: 600");
    assert_eq!(h.send(&first).status, 200);
    h.now_s += 10;
    // The same request again (its 200 was lost): answered from state.
    let again = h.send(&first);
    assert_eq!(again.status, 200);
    assert_eq!(again.contacts(), vec![c("sip:a@1", 590)]);
    // Same Call-ID and CSeq, another branch: a new transaction with a CSeq that is not higher.
    let other_branch = Req::register("alice")
        .cseq(10)
        .branch("z9hG4bK-second")
        .contact("<sip:a@1>")
        .h("Expires: 100");
    assert_eq!(h.send(&other_branch).status, 400);
    // The same bytes from another address are not a retransmission either.
    let elsewhere: SocketAddr = "198.51.100.7:5060".parse().expect("addr");
    assert_eq!(h.send_from(&first, elsewhere).status, 400);
    let c_all = Req::register("alice")
        .cseq(10)
        .branch("z9hG4bK-third")
        .contact("*")
        .h("Expires: 0");
    assert_eq!(
        h.send(&c_all).status,
        400,
        "Contact: * is held to step 7 too"
    );
    assert_eq!(h.fetch("alice"), vec![c("sip:a@1", 590)], "nothing changed");
}

#[test]
fn same_call_id_lower_cseq_aborts_and_equal_cseq_is_a_retransmission() {
    let mut h = Harness::new();
    h.send(
        &Req::register("alice")
            .cseq(10)
            .contact("<sip:a@1>")
            .h("Expires: 600"),
    );
    h.now_s += 10;
    let lower = h.send(
        &Req::register("alice")
            .cseq(9)
            .contact("<sip:a@1>")
            .h("Expires: 100"),
    );
    assert_eq!(lower.status, 400);
    let same = h.send(
        &Req::register("alice")
            .cseq(10)
            .contact("<sip:a@1>")
            .h("Expires: 100"),
    );
    assert_eq!(same.status, 200);
    assert_eq!(
        same.contacts(),
        vec![c("sip:a@1", 590)],
        "a retransmission changes nothing"
    );
    // Another Call-ID may use any CSeq.
    let other = h.send(
        &Req::register("alice")
            .call_id("x")
            .cseq(1)
            .contact("<sip:a@1>")
            .h("Expires: 100"),
    );
    assert_eq!(other.contacts(), vec![c("sip:a@1", 100)]);
}

#[test]
fn a_failing_contact_leaves_every_binding_untouched() {
    let mut h = Harness::new();
    h.send(
        &Req::register("alice")
            .contact("<sip:a@1>")
            .h("Expires: 600"),
    );
    for req in [
        Req::register("alice")
            .cseq(2)
            .contact("<sip:a@1>;expires=0")
            .contact("<sip:a@2>;q=7"),
        Req::register("alice")
            .cseq(2)
            .contact("<sip:a@1>;expires=0")
            .contact("<sip:a@2>;expires=5"),
        Req::register("alice")
            .cseq(2)
            .contact("<sip:a@1>;expires=0")
            .contact("<sip:a@2>;expires=x"),
        Req::register("alice")
            .cseq(2)
            .contact("<sip:a@1>;expires=0")
            .contact("<sip:a@2")
            .h("Expires: 100"),
    ] {
        let r = h.send(&req);
        assert!(r.status >= 400, "{r:?}");
    }
    assert_eq!(h.fetch("alice"), vec![c("sip:a@1", 600)]);
}

#[test]
fn domain_policy_answers_404_for_foreign_domains() {
    let cfg = RegistrarConfig {
        domains: vec!["example.com".into()],
        ..RegistrarConfig::default()
    };
    let mut h = Harness::with(cfg);
    assert_eq!(
        h.send(
            &Req::register("alice")
                .ruri("sip:other.org")
                .contact("<sip:a@1>")
        )
        .status,
        404
    );
    let mut foreign_to = Req::register("alice").contact("<sip:a@1>");
    foreign_to.to = "<sip:alice@other.org>".into();
    assert_eq!(h.send(&foreign_to).status, 404);
    assert_eq!(
        h.send(
            &Req::register("alice")
                .ruri("sip:EXAMPLE.com")
                .contact("<sip:a@1>")
        )
        .status,
        200
    );
}

#[test]
fn unsupported_require_is_420_listing_the_tags() {
    let mut h = Harness::new();
    let r = h.send(
        &Req::register("alice")
            .contact("<sip:a@1>")
            .h("Require: foo, path, bar"),
    );
    assert_eq!(r.status, 420);
    assert_eq!(r.get("Unsupported"), Some("foo, bar"));
    assert_eq!(h.reg.binding_count(), 0);
    let r = h.send(
        &Req::register("alice")
            .contact("<sip:a@1>")
            .h("Require: path, outbound"),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn path_is_stored_and_echoed_only_when_supported() {
    let mut h = Harness::new();
    let r = h.send(
        &Req::register("alice")
            .contact("<sip:a@1>")
            .h("Path: <sip:edge1.example.com;lr>")
            .h("Path: <sip:edge2.example.com;lr>")
            .h("Supported: path"),
    );
    assert_eq!(
        r.all("Path"),
        vec!["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]
    );
    let rec = h.reg.store().find_aor(
        h.reg.store().hash_aor(b"sip:alice@example.com"),
        b"sip:alice@example.com",
    );
    let stored: Vec<_> = h
        .reg
        .store()
        .bindings_of(rec.expect("aor"))
        .map(|(_, b)| b.path().to_vec())
        .collect();
    assert_eq!(
        stored,
        vec![b"<sip:edge1.example.com;lr>, <sip:edge2.example.com;lr>".to_vec()]
    );
    let r = h.send(
        &Req::register("bob")
            .contact("<sip:b@1>")
            .h("Path: <sip:edge1.example.com;lr>"),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.all("Path").is_empty(),
        "no Path echo without Supported: path"
    );
}

#[test]
fn outbound_instance_and_reg_id_replace_the_binding_even_with_a_new_uri() {
    let mut h = Harness::new();
    let inst = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\"";
    let r = h.send(
        &Req::register("alice")
            .contact(&format!("<sip:a@192.0.2.1:5060>;{inst};reg-id=1"))
            .h("Supported: outbound"),
    );
    assert_eq!(r.get("Require"), Some("outbound"));
    let r = h.send(
        &Req::register("alice")
            .cseq(2)
            .contact(&format!("<sip:a@198.51.100.7:5070>;{inst};reg-id=1")),
    );
    assert_eq!(r.contacts(), vec![c("sip:a@198.51.100.7:5070", 3600)]);
    let line = r.get("Contact").expect("contact");
    assert!(line.contains(inst), "{line}");
    assert!(line.contains(";reg-id=1"), "{line}");
    // A second flow (reg-id 2) is a second binding.
    let r = h.send(
        &Req::register("alice")
            .cseq(3)
            .contact(&format!("<sip:a@203.0.113.9>;{inst};reg-id=2")),
    );
    assert_eq!(r.contacts().len(), 2);
}

/// RFC 5626 §6: through an edge proxy (a second via-parm) whose Path URI lacks `ob`, outbound processing does
/// not apply: 439 when the UA requires it (`Supported: outbound` with reg-id), else a plain registration.
#[test]
fn outbound_through_a_first_hop_without_ob() {
    let inst = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\"";
    let ua_via = "Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bK-ua";
    let outbound = |user: &str, path: &str, cseq: u32, host: &str| {
        Req::register(user)
            .cseq(cseq)
            .h(ua_via)
            .h(path)
            .contact(&format!("<sip:a@{host}>;{inst};reg-id=1"))
    };
    let mut h = Harness::new();
    let no_ob = "Path: <sip:edge.example.com;lr>";
    let r = h.send(&outbound("alice", no_ob, 1, "192.0.2.1").h("Supported: outbound"));
    assert_eq!(r.status, 439);
    assert_eq!(h.reg.binding_count(), 0);

    // Without Supported: outbound the reg-id is ignored: bound by URI, no Require: outbound.
    let r = h.send(&outbound("bob", no_ob, 1, "192.0.2.1"));
    assert_eq!(r.status, 200);
    assert_eq!(r.get("Require"), None);
    assert!(
        r.get("Contact").is_some_and(|c| !c.contains("reg-id")),
        "{r:?}"
    );
    let r = h.send(&outbound("bob", no_ob, 2, "192.0.2.2"));
    assert_eq!(r.contacts().len(), 2, "a new URI is a new binding");

    // A first hop that supports outbound (ob in the first Path URI): outbound processing.
    let ob = "Path: <sip:edge.example.com;lr;ob>, <sip:core.example.com;lr>";
    let r = h.send(&outbound("carol", ob, 1, "192.0.2.1").h("Supported: outbound"));
    assert_eq!(r.status, 200);
    assert_eq!(r.get("Require"), Some("outbound"));
    let r = h.send(&outbound("carol", ob, 2, "192.0.2.2"));
    assert_eq!(
        r.contacts(),
        vec![c("sip:a@192.0.2.2", 3600)],
        "replaced by instance and reg-id"
    );
    // Only the first Path URI counts.
    let late_ob = "Path: <sip:core.example.com;lr>, <sip:edge.example.com;lr;ob>";
    let r = h.send(&outbound("dave", late_ob, 1, "192.0.2.1").h("Supported: outbound"));
    assert_eq!(r.status, 439);
}

/// Memory per binding is bounded: a REGISTER whose binding would store more than `max_binding_bytes`
/// (contact URI, Call-ID, Path, instance, User-Agent, AoR) gets 413 and changes nothing; a real phone with
/// push parameters behind four Path hops fits the default.
#[test]
fn binding_bytes_are_bounded() {
    // Header lines long enough that the binding limit, not the line limit, is what refuses.
    let mut h = Harness::with(RegistrarConfig {
        parse: ParseLimits {
            max_line_bytes: 8000,
            ..ParseLimits::default()
        },
        ..RegistrarConfig::default()
    });
    let limit = h.reg.config().max_binding_bytes;
    assert_eq!(limit, 2048);
    // An iOS phone with RFC 8599 push parameters, an instance id, four Path hops, a long User-Agent.
    let token = "a".repeat(64);
    let push = format!(
        "<sip:alice@192.0.2.10:52011;transport=tls;pn-provider=apns.dev;pn-prid={token}:remote&{token}:voip;\
         pn-param=ABCD1234.org.example.phone.remote&voip;pn-silent=1;pn-timeout=0>;\
         +sip.instance=\"<urn:uuid:0d1f3a44-7b1e-4c6f-9a55-3c9e6f1b2a77>\""
    );
    let path = "Path: <sip:edge1.access.example.net:5060;transport=udp;lr;ob>, \
                <sip:sbc2.access.example.net:5060;transport=udp;lr>, \
                <sip:core3.example.net:5060;transport=udp;lr>, <sip:core4.example.net:5060;lr>";
    let phone = |ua: &str| {
        Req::register("alice")
            .contact(&push)
            .h(path)
            .h(&format!("User-Agent: {ua}"))
    };
    let ua = "ExamplePhone/5.1.0 (iPhone14,2; iOS 17.1) ExampleSDK/5.3.12 (belle-sip/5.3.12)";
    assert_eq!(h.send(&phone(ua)).status, 200);
    // Padding in a Path over the limit: 413, nothing stored. (A contact URI over 512 bytes is already a
    // 400: it is parsed, and URIs are bounded.)
    let pad = "x".repeat(limit);
    let r = h.send(
        &Req::register("bob")
            .contact("<sip:bob@192.0.2.1>")
            .h(&format!("Path: <sip:edge.example.net;lr;pad={pad}>")),
    );
    assert_eq!(r.status, 413);
    assert_eq!(h.reg.binding_count(), 1);
    // The same bytes spread over the other stored fields count as well.
    let half = "y".repeat(limit / 2);
    let r = h.send(
        &Req::register("bob")
            .cseq(2)
            .call_id(&half)
            .contact("<sip:bob@192.0.2.1>")
            .h(&format!("User-Agent: {half}")),
    );
    assert_eq!(r.status, 413);
    // A refresh of alice that would grow her binding over the limit is refused; her binding stays.
    let r = h.send(&phone(&pad).cseq(2));
    assert_eq!(r.status, 413);
    assert_eq!(h.reg.binding_count(), 1);
    // Removing a binding stores nothing: a removal is never refused for its size.
    let r = h.send(
        &Req::register("alice")
            .cseq(3)
            .contact(&format!("{push};expires=0"))
            .h(path)
            .h(&format!("User-Agent: {pad}")),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(h.reg.binding_count(), 0);
}

#[test]
fn reg_id_without_instance_is_ignored() {
    let mut h = Harness::new();
    h.send(&Req::register("alice").contact("<sip:a@1>;reg-id=1"));
    let r = h.send(&Req::register("alice").cseq(2).contact("<sip:a@2>;reg-id=1"));
    assert_eq!(
        r.contacts().len(),
        2,
        "no instance: matched by URI, not reg-id"
    );
    assert!(r.get("Contact").is_some_and(|c| !c.contains("reg-id")));
    assert_eq!(r.get("Require"), None);
}

#[test]
fn q_values_are_stored_and_returned() {
    let mut h = Harness::new();
    let r = h.send(
        &Req::register("alice")
            .contact("<sip:a@1>;q=0.5, <sip:a@2>;q=1, <sip:a@3>;q=0.125, <sip:a@4>"),
    );
    let mut lines: Vec<_> = r.all("Contact").into_iter().map(str::to_string).collect();
    lines.sort();
    assert!(lines[0].ends_with(";q=0.5"), "{lines:?}");
    assert!(lines[1].ends_with(";q=1"), "{lines:?}");
    assert!(lines[2].ends_with(";q=0.125"), "{lines:?}");
    assert!(!lines[3].contains(";q="), "{lines:?}");
}

fn limited(policy: OverLimitPolicy) -> Harness {
    Harness::with(RegistrarConfig {
        max_contacts_per_aor: 2,
        over_limit: policy,
        ..RegistrarConfig::default()
    })
}

#[test]
fn max_contacts_reject_403_and_503() {
    for (policy, status) in [
        (OverLimitPolicy::Reject403, 403),
        (OverLimitPolicy::Reject503, 503),
    ] {
        let mut h = limited(policy);
        h.send(&Req::register("alice").contact("<sip:a@1>, <sip:a@2>"));
        let r = h.send(&Req::register("alice").cseq(2).contact("<sip:a@3>"));
        assert_eq!(r.status, status);
        if status == 503 {
            assert_eq!(r.get("Retry-After"), Some("5"));
        }
        assert_eq!(h.fetch("alice").len(), 2);
        // Replacing within the limit is fine.
        let r = h.send(
            &Req::register("alice")
                .cseq(3)
                .contact("<sip:a@1>;expires=0, <sip:a@3>"),
        );
        assert_eq!(r.status, 200);
    }
}

#[test]
fn max_contacts_evict_oldest() {
    let mut h = limited(OverLimitPolicy::EvictOldest);
    h.send(&Req::register("alice").contact("<sip:a@1>"));
    h.now_s += 10;
    h.send(&Req::register("alice").cseq(2).contact("<sip:a@2>"));
    h.now_s += 10;
    let r = h.send(&Req::register("alice").cseq(3).contact("<sip:a@3>"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.contacts().into_iter().map(|c| c.0).collect::<Vec<_>>(),
        vec!["sip:a@2", "sip:a@3"]
    );
    // More new contacts than the AoR may hold at all cannot be made room for.
    let r = h.send(
        &Req::register("alice")
            .cseq(4)
            .contact("<sip:a@4>, <sip:a@5>, <sip:a@6>"),
    );
    assert_eq!(r.status, 403);
}

#[test]
fn full_store_is_503_with_retry_after() {
    let mut h = Harness::with(RegistrarConfig {
        max_bindings: 2,
        ..RegistrarConfig::default()
    });
    h.send(&Req::register("a").contact("<sip:a@1>"));
    h.send(&Req::register("b").contact("<sip:b@1>"));
    let r = h.send(&Req::register("c").contact("<sip:c@1>"));
    assert_eq!(r.status, 503);
    assert!(r.get("Retry-After").is_some());
    // Refreshes and removals still work at the limit.
    assert_eq!(
        h.send(&Req::register("a").cseq(2).contact("<sip:a@1>"))
            .status,
        200
    );
    assert_eq!(
        h.send(&Req::register("b").cseq(2).contact("<sip:b@1>;expires=0"))
            .status,
        200
    );
    assert_eq!(
        h.send(&Req::register("c").cseq(2).contact("<sip:c@1>"))
            .status,
        200
    );
}

#[test]
fn binding_expires_exactly_on_time() {
    let mut h = Harness::new();
    h.send(&Req::register("alice").contact("<sip:a@1>").h("Expires: 60"));
    assert_eq!(h.reg.next_timeout(), Some(T0 + 60));
    h.advance(59);
    assert_eq!(h.reg.binding_count(), 1, "still there one tick before");
    h.advance(2);
    assert_eq!(h.reg.binding_count(), 0, "gone one tick after");
    assert_eq!(h.reg.stats().expired, 1);
    assert_eq!(h.fetch("alice"), vec![]);
}

#[test]
fn refresh_moves_the_expiry_timer() {
    let mut h = Harness::new();
    h.send(&Req::register("alice").contact("<sip:a@1>").h("Expires: 60"));
    h.advance(50);
    h.send(
        &Req::register("alice")
            .cseq(2)
            .contact("<sip:a@1>")
            .h("Expires: 60"),
    );
    h.advance(20);
    assert_eq!(
        h.reg.binding_count(),
        1,
        "refreshed binding survives its first deadline"
    );
    h.advance(41);
    assert_eq!(h.reg.binding_count(), 0);
}

/// Refreshes re-arm lazily (the wheel entry stays at the old deadline and is re-armed when it fires), yet a
/// binding still goes exactly on time, whether the refresh lengthened or shortened its expiry.
#[test]
fn lazily_rearmed_bindings_expire_exactly_on_time() {
    let mut h = Harness::new();
    h.send(&Req::register("alice").contact("<sip:a@1>").h("Expires: 60"));
    h.advance(30);
    // Lengthened: 30 + 100 = T0 + 130. The entry armed at T0 + 60 fires, finds it not due, re-arms it.
    h.send(
        &Req::register("alice")
            .cseq(2)
            .contact("<sip:a@1>")
            .h("Expires: 100"),
    );
    h.advance(99); // T0 + 129
    assert_eq!(h.reg.binding_count(), 1, "still there one tick before");
    assert_eq!(h.reg.next_timeout(), Some(T0 + 130));
    h.advance(2);
    assert_eq!(h.reg.binding_count(), 0, "gone one tick after");

    // Shortened: 3600 then 60 from T0 + 131: the entry must move earlier at once.
    h.send(&Req::register("bob").contact("<sip:b@1>").h("Expires: 3600"));
    h.send(
        &Req::register("bob")
            .cseq(2)
            .contact("<sip:b@1>")
            .h("Expires: 60"),
    );
    assert_eq!(h.reg.next_timeout(), Some(h.now_s + 60));
    h.advance(59);
    assert_eq!(h.reg.binding_count(), 1, "still there one tick before");
    h.advance(2);
    assert_eq!(h.reg.binding_count(), 0, "gone one tick after");
    assert_eq!(h.reg.stats().expired, 2);
}

#[test]
fn expired_but_unswept_bindings_are_not_listed() {
    let mut h = Harness::new();
    h.send(&Req::register("alice").contact("<sip:a@1>").h("Expires: 60"));
    h.now_s += 61; // no handle_timeout call
    assert_eq!(h.fetch("alice"), vec![]);
    assert_eq!(h.reg.binding_count(), 0);
}

#[test]
fn other_methods() {
    let mut h = Harness::new();
    let r = h.send(&Req::register("alice").method("OPTIONS"));
    assert_eq!(r.status, 200);
    assert_eq!(r.get("Allow"), Some("REGISTER, OPTIONS"));
    let r = h.send(&Req::register("alice").method("INVITE"));
    assert_eq!(r.status, 405);
    assert_eq!(r.get("Allow"), Some("REGISTER, OPTIONS"));
    let r = h.send(&Req::register("alice").method("FOOBAR"));
    assert_eq!(r.status, 501);
    assert_eq!(r.get("Allow"), Some("REGISTER, OPTIONS"));
    let ack = Req::register("alice").method("ACK").bytes();
    assert_eq!(
        h.reg.handle(&ack, src(), Now::from_secs(T0), &mut h.out),
        Outcome::Silent(Silence::Ack)
    );
    let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert_eq!(
        h.reg.handle(resp, src(), Now::from_secs(T0), &mut h.out),
        Outcome::Silent(Silence::Response)
    );
}

#[test]
fn unsupported_request_uri_scheme_is_416_and_non_sip_to_is_400() {
    let mut h = Harness::new();
    assert_eq!(
        h.send(
            &Req::register("alice")
                .ruri("tel:+15551234")
                .contact("<sip:a@1>")
        )
        .status,
        416
    );
    let mut r = Req::register("alice").contact("<sip:a@1>");
    r.to = "<tel:+15551234>".into();
    assert_eq!(h.send(&r).status, 400);
    assert_eq!(h.reg.binding_count(), 0);
}

#[test]
fn malformed_requests_get_400_and_change_nothing() {
    let mut h = Harness::new();
    let base = Req::register("alice").contact("<sip:a@1>");
    let good = String::from_utf8(base.bytes()).expect("utf8");
    let cases = [
        good.replace(
            "Call-ID: cid-alice\r\n",
            "Call-ID: cid-alice\r\nCall-ID: other\r\n",
        ),
        good.replace(
            "CSeq: 1 REGISTER\r\n",
            "CSeq: 1 REGISTER\r\nCSeq: 2 REGISTER\r\n",
        ),
        good.replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE"),
        good.replace("CSeq: 1 REGISTER", "CSeq: 99999999999 REGISTER"),
        good.replace("Call-ID: cid-alice\r\n", ""),
        good.replace("To: <sip:alice@example.com>\r\n", ""),
        good.replace("To: <sip:alice@example.com>", "To: <sip:alice@example.com"),
        good.replace("Content-Length: 0", "Content-Length: 50"),
        good.replace(
            "Via: SIP/2.0/UDP 192.0.2.10:5062;",
            "Via: SIP/2.0/UDP 192.0.2.10:5062;;,",
        ),
    ];
    for case in &cases {
        let r = h.send_raw(case.as_bytes());
        assert_eq!(r.status, 400, "{case}");
    }
    assert_eq!(h.reg.binding_count(), 0);
    let bad_version = good.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia");
    assert_eq!(h.send_raw(bad_version.as_bytes()).status, 505);
}

#[test]
fn unanswerable_input_is_dropped_silently() {
    let mut h = Harness::new();
    let no_via = String::from_utf8(Req::register("alice").contact("<sip:a@1>").bytes())
        .expect("utf8")
        .replace(
            "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-cid-alice-1;rport\r\n",
            "",
        );
    for case in [&b""[..], b"\0\0\0\0", b"hello world", no_via.as_bytes()] {
        assert!(matches!(
            h.reg.handle(case, src(), Now::from_secs(T0), &mut h.out),
            Outcome::Silent(_)
        ));
    }
}

#[test]
fn oversized_datagram_gets_513() {
    let mut h = Harness::new();
    let mut big = Req::register("alice").contact("<sip:a@1>");
    big = big.h(&format!("X-Padding: {}", "p".repeat(9000)));
    let bytes = big.bytes();
    assert!(bytes.len() > RegistrarConfig::default().parse.max_message_bytes);
    // The header line is too long too; whichever limit trips, nothing is registered.
    match h.reg.handle(&bytes, src(), Now::from_secs(T0), &mut h.out) {
        Outcome::Reply { status, .. } => assert!(status == 513 || status == 400, "{status}"),
        other => assert_eq!(other, Outcome::Silent(Silence::Unanswerable)),
    }
    assert_eq!(h.reg.binding_count(), 0);
    // A large body (not a long line) over the limit: the head is intact, so 513 is answered.
    let mut text =
        String::from_utf8(Req::register("alice").contact("<sip:a@1>").bytes()).expect("utf8");
    text = text.replace("Content-Length: 0\r\n\r\n", "Content-Length: 9000\r\n\r\n");
    text.push_str(&"b".repeat(9000));
    assert_eq!(h.send_raw(text.as_bytes()).status, 513);
    assert_eq!(h.reg.binding_count(), 0);
}

#[test]
fn fetch_of_unknown_aor_is_an_empty_200() {
    let mut h = Harness::new();
    let r = h.send(&Req::register("nobody"));
    assert_eq!(r.status, 200);
    assert!(r.all("Contact").is_empty());
}

#[test]
fn aor_is_canonical_escapes_decoded_params_dropped() {
    let mut h = Harness::new();
    let mut a = Req::register("alice").contact("<sip:a@1>");
    a.to = "<sip:%61lice@EXAMPLE.com;user=phone>".into();
    h.send(&a);
    assert_eq!(h.fetch("alice"), vec![c("sip:a@1", 3600)]);
}

#[test]
fn qvalue_formatting() {
    for (q, text) in [
        (0, "0"),
        (1000, "1"),
        (500, "0.5"),
        (50, "0.05"),
        (125, "0.125"),
        (7, "0.007"),
    ] {
        let mut buf = Vec::new();
        super::reply::write_qvalue(&mut buf, q);
        assert_eq!(buf, text.as_bytes());
    }
}

/// Which of `shards` partitioned registrars sharing `cfg` (and so its hash seed, as the shards of a process
/// do) owns `datagram`: the one that answers it, while every other hands it to that one. None when every one
/// answers it (nothing to route by).
fn owner_among(cfg: &RegistrarConfig, datagram: &[u8], shards: usize) -> Option<usize> {
    let (mut answered, mut named) = (Vec::new(), Vec::new());
    for shard in 0..shards {
        let mut reg = Registrar::new(cfg.clone(), Now::from_secs(T0));
        reg.set_partition(shard, shards);
        match reg.handle(datagram, src(), Now::from_secs(T0), &mut Vec::new()) {
            Outcome::HandOff { owner } => named.push(owner),
            _ => answered.push(shard),
        }
    }
    if named.is_empty() {
        return None;
    }
    assert_eq!(answered.len(), 1, "one owner answers: {answered:?}");
    assert!(
        named.iter().all(|&owner| owner == answered[0]),
        "every other shard names the owner: {named:?}, owner {answered:?}"
    );
    Some(answered[0])
}

#[test]
fn each_aor_has_one_owning_shard_stable_per_aor_and_spread() {
    let cfg = RegistrarConfig::default();
    let a1 = Req::register("alice").contact("<sip:a@1>").bytes();
    let a2 = Req::register("alice")
        .call_id("other")
        .cseq(9)
        .contact("<sip:a@2>")
        .bytes();
    let mut escaped = Req::register("alice");
    escaped.to = "<sip:%61lice@EXAMPLE.COM;transport=udp>".into();
    let owner = owner_among(&cfg, &a1, 4);
    assert!(owner.is_some());
    assert_eq!(owner_among(&cfg, &a2, 4), owner);
    assert_eq!(
        owner_among(&cfg, &escaped.bytes(), 4),
        owner,
        "routing uses the canonical AoR"
    );
    let owners: std::collections::HashSet<_> = (0..64)
        .filter_map(|u| owner_among(&cfg, &Req::register(&format!("u{u}")).bytes(), 4))
        .collect();
    assert_eq!(owners.len(), 4, "64 AoRs reach every one of 4 shards");
    assert_eq!(
        owner_among(&cfg, &Req::register("alice").method("OPTIONS").bytes(), 4),
        None
    );
    assert_eq!(owner_among(&cfg, &a1, 1), None);
    assert_eq!(owner_among(&cfg, b"garbage", 4), None);
}

/// A REGISTER another shard owns goes to it as soon as its AoR is known, before the rest of the checks:
/// whatever is wrong with it past To (an unsupported Require, a Request-URI of another domain, a bad Via
/// parameter) is answered by the owner, as one shard would answer it.
#[test]
fn a_register_owned_elsewhere_is_handed_over_before_the_later_checks_and_refused_by_its_owner() {
    let cfg = RegistrarConfig {
        domains: vec!["example.com".into()],
        ..RegistrarConfig::default()
    };
    let cases = [
        (Req::register("alice").h("Require: frobnicate"), 420),
        (Req::register("alice").ruri("sip:other.example"), 404),
        (
            Req::register("alice")
                .method("REGISTER")
                .branch("z9hG4bK;;"),
            400,
        ),
    ];
    for (req, status) in cases {
        let bytes = req.bytes();
        let owner = owner_among(&cfg, &bytes, 4).expect("handed to one owner by every other shard");
        let mut reg = Registrar::new(cfg.clone(), Now::from_secs(T0));
        reg.set_partition(owner, 4);
        let mut out = Vec::new();
        let outcome = reg.handle(&bytes, src(), Now::from_secs(T0), &mut out);
        assert_eq!(
            outcome,
            Outcome::Reply {
                status,
                bindings_changed: false
            },
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(reg.binding_count(), 0);
    }
    // Refused before To is known: every shard answers it alike.
    let no_to =
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n\
                  From: <sip:a@example.com>;tag=1\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\r\n";
    assert_eq!(owner_among(&cfg, no_to, 4), None);
}

#[test]
fn reject_overloaded_is_503_with_retry_after_and_changes_nothing() {
    let mut h = Harness::new();
    let req = Req::register("alice").contact("<sip:a@1>").bytes();
    let outcome = h
        .reg
        .reject_overloaded(&req, src(), Now::from_secs(T0), &mut h.out);
    assert_eq!(
        outcome,
        Outcome::Reply {
            status: 503,
            bindings_changed: false
        }
    );
    let r = parse_resp(&h.out);
    assert_eq!(r.get("Retry-After"), Some("5"));
    assert_eq!(r.get("Call-ID"), Some("cid-alice"));
    assert_eq!(h.reg.binding_count(), 0);
}

mod auth {
    use super::*;
    use crate::auth::credentials::CredentialStore;
    use crate::auth::nonce::NonceKey;
    use crate::auth::{AuthConfig, Authenticator};
    use crate::sip::digest::{expected_response, Algorithm, Ha1};
    use std::sync::Arc;

    const USERS: &str = r#"
default_realm = "example.com"
[[user]]
username = "alice"
password = "wonderland"
[[user]]
username = "bob"
password = "builder"
"#;

    fn harness() -> Harness {
        let mut h = Harness::new();
        let creds = CredentialStore::from_toml_str(USERS, None).expect("credentials");
        let key = NonceKey::generate().expect("key");
        // The replay window re-challenges nonces issued in the second it started (they could come from a
        // previous process sharing the key); start it a second before the test's clock.
        // Both challenges, SHA-256 first, so that both digests are exercised.
        let config = AuthConfig::default()
            .with_algorithms(&[Algorithm::Sha256, Algorithm::Md5])
            .expect("two algorithms");
        let auth = Authenticator::new(config, key, Arc::new(creds), T0 - 1);
        h.reg.set_authenticator(Some(auth));
        h
    }

    /// (algorithm, nonce, opaque, stale) of each WWW-Authenticate challenge, in order.
    fn challenges(r: &Resp) -> Vec<(String, String, String, bool)> {
        r.all("WWW-Authenticate")
            .into_iter()
            .map(|c| {
                let field = |name: &str| -> String {
                    let start = c
                        .find(&format!("{name}="))
                        .map(|i| i + name.len() + 1)
                        .expect(name);
                    let rest = &c[start..];
                    let rest = rest.strip_prefix('"').unwrap_or(rest);
                    rest.split(['"', ',']).next().expect("value").to_string()
                };
                (
                    field("algorithm"),
                    field("nonce"),
                    field("opaque"),
                    c.contains("stale=true"),
                )
            })
            .collect()
    }

    fn authorization(
        user: &str,
        password: &str,
        alg: Algorithm,
        nonce: &str,
        opaque: &str,
        nc: u32,
    ) -> String {
        let ha1 = Ha1::from_password(alg, user.as_bytes(), b"example.com", password.as_bytes());
        let nc = format!("{nc:08x}");
        let resp = expected_response(
            alg,
            ha1.expose_hex(),
            b"REGISTER",
            b"sip:example.com",
            nonce.as_bytes(),
            nc.as_bytes(),
            b"0a4f113b",
            Some(b"auth"),
        )
        .expect("response");
        let alg = if alg == Algorithm::Md5 {
            "MD5"
        } else {
            "SHA-256"
        };
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"example.com\", nonce=\"{nonce}\", \
             uri=\"sip:example.com\", response=\"{}\", algorithm={alg}, cnonce=\"0a4f113b\", opaque=\"{opaque}\", \
             qop=auth, nc={nc}",
            resp.as_str()
        )
    }

    #[test]
    fn unauthenticated_register_is_challenged_sha256_first_and_binds_nothing() {
        let mut h = harness();
        let r = h.send(&Req::register("alice").contact("<sip:a@1>"));
        assert_eq!(r.status, 401);
        let algs: Vec<_> = challenges(&r).into_iter().map(|c| c.0).collect();
        assert_eq!(algs, vec!["SHA-256", "MD5"]);
        assert!(r
            .all("WWW-Authenticate")
            .iter()
            .all(|c| c.contains("qop=\"auth\"")));
        assert_eq!(h.reg.binding_count(), 0);
    }

    #[test]
    fn md5_and_sha256_answers_register_and_wrong_password_does_not() {
        for (i, alg) in [Algorithm::Md5, Algorithm::Sha256].into_iter().enumerate() {
            let mut h = harness();
            let r = h.send(&Req::register("alice").contact("<sip:a@1>"));
            let (_, nonce, opaque, _) = challenges(&r)[i ^ 1].clone();
            let wrong = authorization("alice", "guess", alg, &nonce, &opaque, 1);
            let r = h.send(
                &Req::register("alice")
                    .cseq(2)
                    .contact("<sip:a@1>")
                    .h(&wrong),
            );
            assert_eq!(r.status, 401, "{alg:?}: wrong password");
            assert_eq!(h.reg.binding_count(), 0);
            let right = authorization("alice", "wonderland", alg, &nonce, &opaque, 1);
            let r = h.send(
                &Req::register("alice")
                    .cseq(3)
                    .contact("<sip:a@1>")
                    .h(&right),
            );
            assert_eq!(r.status, 200, "{alg:?}");
            assert_eq!(r.contacts(), vec![c("sip:a@1", 3600)]);
        }
    }

    #[test]
    fn replayed_authorization_is_refused_but_a_retransmission_gets_its_200() {
        let mut h = harness();
        let r = h.send(&Req::register("alice").contact("<sip:a@1>"));
        let (_, nonce, opaque, _) = challenges(&r)[1].clone();
        let creds = authorization("alice", "wonderland", Algorithm::Md5, &nonce, &opaque, 1);
        let accepted = Req::register("alice")
            .cseq(2)
            .contact("<sip:a@1>")
            .h(&creds);
        assert_eq!(h.send(&accepted).status, 200);
        // The same datagram again (lost 200): answered from state, nothing changes.
        assert_eq!(h.send(&accepted).status, 200);
        // The captured Authorization on a new request (here: removing the binding) is a replay.
        let replay = Req::register("alice")
            .cseq(3)
            .contact("<sip:a@1>;expires=0")
            .h(&creds);
        let r = h.send(&replay);
        assert_eq!(r.status, 401);
        assert!(challenges(&r).iter().all(|c| c.3), "replay gets stale=true");
        assert_eq!(h.reg.binding_count(), 1);
        // The next nonce count works.
        let next = authorization("alice", "wonderland", Algorithm::Md5, &nonce, &opaque, 2);
        assert_eq!(
            h.send(
                &Req::register("alice")
                    .cseq(4)
                    .contact("<sip:a@1>;expires=0")
                    .h(&next)
            )
            .status,
            200
        );
        assert_eq!(h.reg.binding_count(), 0);
    }

    /// Any Authorization with the Call-ID and CSeq of a live binding used to be answered 200 with the AoR's
    /// contacts before the digest was checked. Only the same request from the same source is answered from
    /// state now; everything else is verified.
    #[test]
    fn a_junk_authorization_with_a_live_call_id_and_cseq_is_challenged() {
        let mut h = harness();
        let r = h.send(&Req::register("alice").contact("<sip:a@1>"));
        let (_, nonce, opaque, _) = challenges(&r)[1].clone();
        let creds = authorization("alice", "wonderland", Algorithm::Md5, &nonce, &opaque, 1);
        let accepted = Req::register("alice")
            .cseq(2)
            .contact("<sip:a@1>")
            .h(&creds);
        assert_eq!(h.send(&accepted).status, 200);
        let attacker: SocketAddr = "203.0.113.66:5060".parse().expect("addr");
        for junk in [
            "Authorization: x",
            "Authorization: Digest username=\"alice\"",
        ] {
            // Another source, and the victim's own address with another branch.
            let forged = Req::register("alice").cseq(2).h(junk);
            let r = h.send_from(&forged, attacker);
            assert_eq!(r.status, 401, "{junk} from elsewhere");
            assert!(r.contacts_or_none().is_empty(), "no contact disclosed");
            let r = h.send(&forged.branch("z9hG4bK-forged"));
            assert_eq!(r.status, 401, "{junk} in a new transaction");
            assert!(r.contacts_or_none().is_empty(), "no contact disclosed");
        }
        // The captured credentials themselves, replayed from elsewhere in the same transaction: verified,
        // and refused as a replay (their nonce count is used).
        let r = h.send_from(&accepted, attacker);
        assert_eq!(r.status, 401);
        assert!(r.contacts_or_none().is_empty());
        // The true retransmission still gets its 200.
        assert_eq!(h.send(&accepted).status, 200);
        assert_eq!(h.reg.binding_count(), 1);
    }

    /// A 401 goes to whatever address a request claims: with the default single challenge it stays within
    /// 2.6 times the smallest REGISTER that draws it (compact headers; 366 B for 143 B), no Date, no Server.
    #[test]
    fn a_challenge_stays_small() {
        let mut h = Harness::new();
        let creds = CredentialStore::from_toml_str(USERS, None).expect("credentials");
        let key = NonceKey::generate().expect("key");
        let auth = Authenticator::new(AuthConfig::default(), key, Arc::new(creds), T0 - 1);
        h.reg.set_authenticator(Some(auth));
        let tiny = b"REGISTER sip:example.com SIP/2.0\r\nv:SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                     f:<sip:a@example.com>;tag=1\r\nt:<sip:a@example.com>\r\ni:1\r\nCSeq:1 REGISTER\r\n\r\n";
        let r = h.send_raw(tiny);
        assert_eq!(r.status, 401);
        assert!(
            r.get("Date").is_none() && r.get("Server").is_none(),
            "{r:?}"
        );
        let factor = h.out.len() as f64 / tiny.len() as f64;
        assert!(
            factor <= 2.6,
            "401 of {} B for {} B: {factor:.2}x",
            h.out.len(),
            tiny.len()
        );
    }

    #[test]
    fn expired_nonce_gets_stale_then_the_retry_succeeds() {
        let mut h = harness();
        let r = h.send(&Req::register("alice").contact("<sip:a@1>"));
        let (_, nonce, opaque, _) = challenges(&r)[1].clone();
        h.now_s += 301;
        let old = authorization("alice", "wonderland", Algorithm::Md5, &nonce, &opaque, 1);
        let r = h.send(&Req::register("alice").cseq(2).contact("<sip:a@1>").h(&old));
        assert_eq!(r.status, 401);
        let fresh = challenges(&r);
        assert!(fresh.iter().all(|c| c.3), "stale=true on every challenge");
        let (_, nonce, opaque, _) = fresh[1].clone();
        let new = authorization("alice", "wonderland", Algorithm::Md5, &nonce, &opaque, 1);
        assert_eq!(
            h.send(&Req::register("alice").cseq(3).contact("<sip:a@1>").h(&new))
                .status,
            200
        );
    }

    #[test]
    fn a_user_cannot_bind_someone_elses_aor() {
        let mut h = harness();
        let r = h.send(&Req::register("alice").contact("<sip:evil@1>"));
        let (_, nonce, opaque, _) = challenges(&r)[1].clone();
        let bob = authorization("bob", "builder", Algorithm::Md5, &nonce, &opaque, 1);
        let r = h.send(
            &Req::register("alice")
                .cseq(2)
                .contact("<sip:evil@1>")
                .h(&bob),
        );
        assert_eq!(r.status, 403);
        assert_eq!(h.reg.binding_count(), 0);
    }
}

#[test]
fn a_partitioned_registrar_hands_off_what_it_does_not_own_and_changes_nothing() {
    let mut shards: Vec<Harness> = (0..2).map(|_| Harness::new()).collect();
    // Same seed on both (as the shell does): clone one config.
    let cfg = RegistrarConfig::default();
    for (i, h) in shards.iter_mut().enumerate() {
        h.reg = Registrar::new(cfg.clone(), Now::from_secs(T0));
        h.reg.set_partition(i, 2);
    }
    let mut owned = [0usize; 2];
    for u in 0..32 {
        let req = Req::register(&format!("u{u}")).contact("<sip:x@1>").bytes();
        let outcomes: Vec<Outcome> = shards
            .iter_mut()
            .map(|h| h.reg.handle(&req, src(), Now::from_secs(T0), &mut h.out))
            .collect();
        let owner = outcomes
            .iter()
            .position(|o| matches!(o, Outcome::Reply { status: 200, .. }))
            .unwrap_or_else(|| panic!("one shard applies a REGISTER: {outcomes:?}"));
        owned[owner] += 1;
        for (i, (h, outcome)) in shards.iter().zip(&outcomes).enumerate() {
            if i != owner {
                assert_eq!(*outcome, Outcome::HandOff { owner });
                assert!(h.out.is_empty());
            }
        }
    }
    assert!(
        owned[0] > 0 && owned[1] > 0,
        "AoRs spread over both shards: {owned:?}"
    );
    assert_eq!(
        shards[0].reg.binding_count(),
        owned[0],
        "each binding lives on its owner only"
    );
    assert_eq!(shards[1].reg.binding_count(), owned[1]);
    // Stateless answers stay local: OPTIONS and malformed requests are never handed off.
    let options = Req::register("u1").method("OPTIONS").bytes();
    for h in &mut shards {
        let outcome = h
            .reg
            .handle(&options, src(), Now::from_secs(T0), &mut h.out);
        assert!(matches!(outcome, Outcome::Reply { status: 200, .. }));
    }
}

/// Findings of the fuzz targets (`fuzz/`), each reduced to the shortest sequence that shows it.
mod fuzz_regressions {
    use super::*;
    use crate::auth::credentials::CredentialStore;
    use crate::auth::nonce::NonceKey;
    use crate::auth::{AuthConfig, Authenticator};
    use crate::sip::digest::{expected_response, Algorithm, Ha1};
    use std::sync::Arc;

    /// A harness with `--auth required` and one user, alice / wonderland, MD5 challenges only.
    fn auth_harness() -> Harness {
        let mut h = Harness::new();
        let users = "default_realm = \"example.com\"\n[[user]]\nusername = \"alice\"\npassword = \"wonderland\"\n";
        let creds = CredentialStore::from_toml_str(users, None).expect("credentials");
        let key = NonceKey::generate().expect("key");
        let auth = Authenticator::new(AuthConfig::default(), key, Arc::new(creds), T0 - 1);
        h.reg.set_authenticator(Some(auth));
        h
    }

    /// An Authorization answering the challenge of `r` (a 401) for alice, with nonce count `nc`.
    fn answer(r: &Resp, nc: u32) -> String {
        let challenge = r.get("WWW-Authenticate").expect("a challenge");
        let field = |name: &str| {
            let start = challenge.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
            challenge[start..]
                .split('"')
                .next()
                .expect("value")
                .to_string()
        };
        let (nonce, opaque) = (field("nonce"), field("opaque"));
        let ha1 = Ha1::from_password(Algorithm::Md5, b"alice", b"example.com", b"wonderland");
        let nc = format!("{nc:08x}");
        let response = expected_response(
            Algorithm::Md5,
            ha1.expose_hex(),
            b"REGISTER",
            b"sip:example.com",
            nonce.as_bytes(),
            nc.as_bytes(),
            b"0a4f113b",
            Some(b"auth"),
        )
        .expect("qop=auth");
        format!(
            "Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", \
             uri=\"sip:example.com\", response=\"{}\", algorithm=MD5, cnonce=\"0a4f113b\", \
             opaque=\"{opaque}\", qop=auth, nc={nc}",
            response.as_str()
        )
    }

    /// With `--auth required`, a retransmission of an accepted REGISTER is answered 200 from the state
    /// before any credential check. That 200 listed every stored binding of the AoR, including one
    /// already expired but not yet swept by the timer wheel (as `expires=0`), while every other 200
    /// leaves those out (§10.3 step 8: the current bindings).
    #[test]
    fn an_authenticated_retransmission_does_not_list_expired_bindings() {
        let mut h = auth_harness();
        let challenge = h.send(&Req::register("alice").contact("<sip:a@1>"));
        assert_eq!(challenge.status, 401);
        let first = Req::register("alice")
            .cseq(2)
            .contact("<sip:a@1>;expires=60")
            .h(&answer(&challenge, 1));
        assert_eq!(h.send(&first).status, 200);
        let second = Req::register("alice")
            .call_id("second-device")
            .cseq(1)
            .contact("<sip:a@2>;expires=3600")
            .h(&answer(&challenge, 2));
        assert_eq!(h.send(&second).status, 200);
        // sip:a@1 expires; no handle_timeout runs before the second device's 200 is lost and resent.
        h.now_s += 100;
        let r = h.send(&second);
        assert_eq!(r.status, 200);
        assert_eq!(r.contacts(), vec![c("sip:a@2", 3500)]);
        h.reg
            .check_invariants(Now::from_secs(h.now_s))
            .expect("invariants");
    }

    /// A REGISTER that adds one Contact and removes another, on a shard whose binding table is full.
    /// The plan counts the removal and lets the insert through, but the actions are applied in the
    /// request's order: the insert comes first, finds the table still full and is dropped (a debug
    /// assertion in `register::apply`; in release builds the phone gets a 200 without its new binding).
    /// Applying removals and evictions before inserts fixes it.
    #[test]
    fn a_full_table_takes_a_contact_that_replaces_a_removed_one_in_the_same_request() {
        let mut h = Harness::with(RegistrarConfig {
            max_bindings: 1,
            ..RegistrarConfig::default()
        });
        assert_eq!(
            h.send(&Req::register("bob").contact("<sip:b@1>")).status,
            200
        );
        let r = h.send(
            &Req::register("bob")
                .cseq(2)
                .contact("<sip:b@2>")
                .contact("<sip:b@1>;expires=0"),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.contacts(), vec![c("sip:b@2", 3600)]);
        assert_eq!(h.reg.binding_count(), 1);
        h.reg
            .check_invariants(Now::from_secs(h.now_s))
            .expect("invariants");
    }
}
