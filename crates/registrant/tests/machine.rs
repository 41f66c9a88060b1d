//! The registrant state machine driven with a fake clock against a scripted upstream.

use std::sync::Arc;

use corereg_registrant::account::{Account, RawRow, Target};
use corereg_registrant::machine::{Disposition, Effect, Registrant, Settings, State};
use corereg_registrant::spread::start_offset_ms;
use corereg_sip::digest::{self, Algorithm, Ha1};
use corereg_sip::parse::{parse_message, HeaderName, ParseLimits, StartLine};

const T0: u64 = 1_700_000_000_000;
const REGISTRAR: &str = "sip:192.0.2.10:5060";

fn row(user: &str) -> RawRow {
    RawRow {
        registrar: Some(REGISTRAR.into()),
        aor: Some(format!("sip:{user}@example.net")),
        binding_uri: Some(format!("sip:{user}@198.51.100.1:5080")),
        username: Some(user.into()),
        password: Some("s3cret".into()),
        expiry: Some(600),
        ..RawRow::default()
    }
}

fn settings() -> Arc<Settings> {
    Arc::new(Settings {
        via_sent_by: "198.51.100.1:5080".into(),
        ..Settings::default()
    })
}

fn registrant_with(r: RawRow, s: Arc<Settings>) -> Registrant {
    let account = Account::from_row(r, 86_400).expect("valid row");
    Registrant::new(account, s, 42)
}

fn registrant(user: &str) -> Registrant {
    registrant_with(row(user), settings())
}

/// A registrant enabled at T0: it, an emptied effects buffer, and the REGISTER it sent.
fn enabled(user: &str) -> (Registrant, Vec<Effect>, String) {
    let mut r = registrant(user);
    let mut out = Vec::new();
    r.enable(T0, &mut out);
    let req = one(&out);
    out.clear();
    (r, out, req)
}

/// The datagrams sent, as text.
fn sent(out: &[Effect]) -> Vec<String> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Send { datagram, .. } => {
                Some(String::from_utf8(datagram.clone()).expect("utf-8"))
            }
            _ => None,
        })
        .collect()
}

fn states(out: &[Effect]) -> Vec<(u8, u8, Option<u16>)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::State { from, to, status } => Some((from.code(), to.code(), *status)),
            _ => None,
        })
        .collect()
}

/// Exactly one datagram sent.
fn one(out: &[Effect]) -> String {
    let s = sent(out);
    assert_eq!(s.len(), 1, "one datagram: {out:?}");
    s.into_iter().next().expect("one")
}

fn header(req: &str, name: &str) -> Option<String> {
    let msg = parse_message(req.as_bytes(), &ParseLimits::default()).expect("frames");
    let found = msg
        .headers()
        .find(|h| h.raw_name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| String::from_utf8_lossy(h.value).into_owned());
    found
}

fn branch(req: &str) -> String {
    let via = header(req, "Via").expect("Via");
    via.split("branch=").nth(1).expect("branch").to_owned()
}

fn cseq(req: &str) -> u32 {
    header(req, "CSeq")
        .expect("CSeq")
        .split(' ')
        .next()
        .expect("n")
        .parse()
        .expect("number")
}

/// A response to `req` with `extra` header lines (each ending CRLF).
fn respond(req: &str, status: u16, extra: &str) -> Vec<u8> {
    let mut s = format!("SIP/2.0 {status} Whatever\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        let v = header(req, name).expect(name);
        let v = if name == "To" {
            format!("{v};tag=up")
        } else {
            v
        };
        s.push_str(&format!("{name}: {v}\r\n"));
    }
    s.push_str(extra);
    s.push_str("Content-Length: 0\r\n\r\n");
    s.into_bytes()
}

/// Advances the fake clock to the registrant's next timeout and handles it.
fn fire(r: &mut Registrant, out: &mut Vec<Effect>) -> u64 {
    let at = r.next_timeout().expect("a timer is armed");
    r.handle_timeout(at, out);
    at
}

/// Registers `r` (started at T0): returns the time of the 200 and the REGISTER answered.
fn register(r: &mut Registrant, out: &mut Vec<Effect>, grant: &str) -> (u64, String) {
    r.start(T0);
    let at = fire(r, out);
    let req = one(out);
    out.clear();
    assert_eq!(
        r.handle_response(&respond(&req, 200, grant), at + 20, out),
        Disposition::Handled
    );
    (at + 20, req)
}

#[test]
fn registers_refreshes_and_unregisters() {
    let mut r = registrant("alice");
    let mut out = Vec::new();
    r.start(T0);
    let offset = start_offset_ms(r.account().key().as_bytes(), 100_000);
    assert_eq!(r.next_timeout(), Some(T0 + offset));
    assert_eq!(r.state(), State::NotRegistered);
    let at = fire(&mut r, &mut out);
    let req = one(&out);
    assert!(
        req.starts_with("REGISTER sip:192.0.2.10:5060 SIP/2.0\r\n"),
        "{req}"
    );
    assert_eq!(
        header(&req, "To").as_deref(),
        Some("<sip:alice@example.net>")
    );
    assert!(header(&req, "From")
        .expect("From")
        .starts_with("<sip:alice@example.net>;tag="));
    assert_eq!(
        header(&req, "Contact").as_deref(),
        Some("<sip:alice@198.51.100.1:5080>")
    );
    assert_eq!(header(&req, "Expires").as_deref(), Some("600"));
    assert_eq!(header(&req, "Call-ID").as_deref(), Some(r.call_id()));
    assert_eq!(cseq(&req), 1);
    assert!(branch(&req).starts_with("z9hG4bK"));
    assert!(header(&req, "Via")
        .expect("Via")
        .starts_with("SIP/2.0/UDP 198.51.100.1:5080;rport;"));
    assert!(
        matches!(&out[0], Effect::Send { to: Target::Addr(a), .. } if a.to_string() == "192.0.2.10:5060")
    );
    assert_eq!(states(&out), [(0, 1, None)]);
    out.clear();

    // 200 granting 300 s for our contact (the Expires header says otherwise: the contact wins).
    let ok = respond(
        &req,
        200,
        "Contact: <sip:alice@198.51.100.1:5080>;expires=300\r\nExpires: 900\r\n",
    );
    assert_eq!(
        r.handle_response(&ok, at + 10, &mut out),
        Disposition::Handled
    );
    assert_eq!(states(&out), [(1, 3, Some(200))]);
    assert!(sent(&out).is_empty());
    assert_eq!(r.registered_until_ms(), Some(at + 10 + 300_000));
    // Refreshed 60 s (the margin) before the expiry.
    assert_eq!(r.next_timeout(), Some(at + 10 + 240_000));
    // A retransmitted 200 is ignored.
    assert_eq!(
        r.handle_response(&ok, at + 20, &mut out),
        Disposition::NoTransaction
    );
    out.clear();

    let at2 = fire(&mut r, &mut out);
    let refresh = one(&out);
    assert_eq!(header(&refresh, "Call-ID"), header(&req, "Call-ID"));
    assert_eq!(header(&refresh, "From"), header(&req, "From"));
    assert_eq!(cseq(&refresh), 2);
    assert_ne!(branch(&refresh), branch(&req));
    assert_eq!(states(&out), [(3, 1, None)]);
    out.clear();
    r.handle_response(
        &respond(&refresh, 200, "Expires: 600\r\n"),
        at2 + 5,
        &mut out,
    );
    assert_eq!(r.state(), State::Registered);
    assert_eq!(r.next_timeout(), Some(at2 + 5 + 540_000));
    out.clear();

    r.disable(at2 + 1000, &mut out);
    let unreg = one(&out);
    assert_eq!(header(&unreg, "Expires").as_deref(), Some("0"));
    assert_eq!(
        header(&unreg, "Contact").as_deref(),
        Some("<sip:alice@198.51.100.1:5080>;expires=0")
    );
    assert_eq!(cseq(&unreg), 3);
    assert_eq!(states(&out), [(3, 8, None)]);
    out.clear();
    r.handle_response(&respond(&unreg, 200, ""), at2 + 1010, &mut out);
    assert_eq!(states(&out), [(8, 0, Some(200))]);
    assert!(r.is_idle() && !r.enabled());
    assert_eq!(r.next_timeout(), None);
    assert_eq!(r.registered_until_ms(), None);
}

#[test]
fn third_party_registrant_and_binding_params() {
    let mut rr = row("bob");
    rr.third_party_registrant = Some("sip:admin@example.net".into());
    rr.binding_params = Some(";transport=udp;q=0.5".into());
    rr.proxy = Some("sip:proxy.example.net:5070".into());
    let mut r = registrant_with(rr, settings());
    let mut out = Vec::new();
    r.enable(T0, &mut out);
    let req = one(&out);
    assert!(header(&req, "From")
        .expect("From")
        .starts_with("<sip:admin@example.net>;tag="));
    assert_eq!(header(&req, "To").as_deref(), Some("<sip:bob@example.net>"));
    assert_eq!(
        header(&req, "Contact").as_deref(),
        Some("<sip:bob@198.51.100.1:5080>;transport=udp;q=0.5")
    );
    // Sent to the proxy, a name the shell resolves; the Request-URI stays the registrar.
    assert!(req.starts_with("REGISTER sip:192.0.2.10:5060 SIP/2.0"));
    assert!(
        matches!(&out[0], Effect::Send { to: Target::Name { host, port: 5070 }, .. } if host == "proxy.example.net")
    );
}

#[test]
fn retransmits_on_timer_e_and_times_out_on_timer_f_then_retries_with_back_off() {
    let mut r = registrant("carol");
    let mut out = Vec::new();
    r.enable(T0, &mut out);
    let first = one(&out);
    out.clear();
    let mut times = Vec::new();
    while r.state() == State::Registering {
        let at = fire(&mut r, &mut out);
        if let [Effect::Send { datagram, .. }] = &out[..] {
            assert_eq!(
                datagram,
                first.as_bytes(),
                "a retransmission is the same bytes"
            );
            times.push(at - T0);
        }
        if r.state() != State::Registering {
            break;
        }
        out.clear();
    }
    assert_eq!(
        times,
        [500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    assert_eq!(states(&out), [(1, 4, Some(408))]);
    assert_eq!(r.state(), State::RegisterTimeout);
    assert_eq!(r.last_status(), Some(408));
    // The retry: 30 s after the timeout, a new transaction.
    assert_eq!(r.next_timeout(), Some(T0 + 32_000 + 30_000));
    out.clear();
    fire(&mut r, &mut out);
    let retry = one(&out);
    assert_ne!(branch(&retry), branch(&first));
    assert_eq!(cseq(&retry), 2);
    assert_eq!(states(&out), [(4, 1, None)]);
    out.clear();
    // Second failure in a row: 60 s; then 120 s, ... capped at 900 s.
    let mut at = 0;
    while r.state() == State::Registering {
        at = fire(&mut r, &mut out);
    }
    assert_eq!(r.next_timeout(), Some(at + 60_000));
    for _ in 0..10 {
        let mut last = 0;
        fire(&mut r, &mut out);
        while r.state() == State::Registering {
            last = fire(&mut r, &mut out);
        }
        at = last;
    }
    assert_eq!(r.next_timeout(), Some(at + 900_000));
    // A 200 at last resets the back-off.
    out.clear();
    fire(&mut r, &mut out);
    let req = one(&out);
    r.handle_response(
        &respond(&req, 200, "Expires: 600\r\n"),
        at + 900_100,
        &mut out,
    );
    assert_eq!(r.state(), State::Registered);
    assert_eq!(r.retry_delay_ms(None), 30_000);
}

#[test]
fn a_failed_refresh_is_retried_before_the_binding_expires() {
    let mut r = registrant("sam");
    let mut out = Vec::new();
    // Granted 120 s: refreshed at 60 s (half), 60 s before the expiry.
    let (at, _) = register(&mut r, &mut out, "Expires: 120\r\n");
    let until = r.registered_until_ms().expect("registered");
    out.clear();
    let refresh_at = fire(&mut r, &mut out);
    assert_eq!(refresh_at, at + 60_000);
    let mut timed_out = refresh_at;
    while r.state() == State::Registering {
        timed_out = fire(&mut r, &mut out);
    }
    assert_eq!(r.state(), State::RegisterTimeout);
    // 28 s left: retried in 14 s, not after the 30 s back-off.
    assert_eq!(timed_out, refresh_at + 32_000);
    assert_eq!(r.next_timeout(), Some(timed_out + (until - timed_out) / 2));
    // The 503 of that retry: 7 s left, retried in 3.5 s.
    out.clear();
    let retry_at = fire(&mut r, &mut out);
    let req = one(&out);
    out.clear();
    r.handle_response(&respond(&req, 503, ""), retry_at, &mut out);
    assert_eq!(r.state(), State::RegistrarError);
    assert_eq!(r.next_timeout(), Some(retry_at + (until - retry_at) / 2));
}

#[test]
fn a_provisional_response_slows_retransmissions_to_t2() {
    let (mut r, mut out, req) = enabled("dave");
    assert_eq!(fire(&mut r, &mut out), T0 + 500);
    assert_eq!(
        r.handle_response(&respond(&req, 100, ""), T0 + 600, &mut out),
        Disposition::Handled
    );
    assert_eq!(r.next_timeout(), Some(T0 + 4600));
    fire(&mut r, &mut out);
    assert_eq!(r.next_timeout(), Some(T0 + 8600));
    assert_eq!(r.state(), State::Registering);
}

fn verify_auth(req: &str, header_name: &str, realm: &str, alg: Algorithm, nc: u32) {
    let value = header(req, header_name).unwrap_or_else(|| panic!("{header_name} in {req}"));
    let creds = digest::parse_authorization(value.as_bytes()).expect("credentials parse");
    assert_eq!(creds.algorithm, alg);
    assert!(creds.realm.eq_unescaped(realm.as_bytes()));
    assert!(creds.uri.eq_unescaped(REGISTRAR.as_bytes()));
    assert_eq!(creds.nonce_count(), Some(nc));
    let ha1 = Ha1::from_password(alg, b"erin", realm.as_bytes(), b"s3cret");
    assert!(
        digest::verify(&ha1, &creds, b"REGISTER"),
        "digest verifies: {value}"
    );
    let wrong = Ha1::from_password(alg, b"erin", realm.as_bytes(), b"other");
    assert!(!digest::verify(&wrong, &creds, b"REGISTER"));
}

#[test]
fn answers_a_401_with_md5_and_reuses_the_credentials_on_refresh() {
    let (mut r, mut out, req) = enabled("erin");
    let challenge = "WWW-Authenticate: Digest realm=\"example.net\", nonce=\"n1\", qop=\"auth\", opaque=\"op\"\r\n";
    r.handle_response(&respond(&req, 401, challenge), T0 + 10, &mut out);
    let auth = one(&out);
    assert_eq!(states(&out), [(1, 2, Some(401))]);
    assert_eq!(cseq(&auth), 2);
    assert_eq!(header(&auth, "Call-ID"), header(&req, "Call-ID"));
    verify_auth(&auth, "Authorization", "example.net", Algorithm::Md5, 1);
    assert!(header(&auth, "Authorization")
        .expect("auth")
        .contains("opaque=\"op\""));
    out.clear();
    r.handle_response(&respond(&auth, 200, "Expires: 600\r\n"), T0 + 20, &mut out);
    assert_eq!(states(&out), [(2, 3, Some(200))]);
    out.clear();
    // The refresh carries the credentials again, nonce count 2.
    fire(&mut r, &mut out);
    let refresh = one(&out);
    verify_auth(&refresh, "Authorization", "example.net", Algorithm::Md5, 2);
    out.clear();
    // The nonce went stale: the new one is answered.
    let stale = "WWW-Authenticate: Digest realm=\"example.net\", nonce=\"n2\", qop=\"auth\", stale=true\r\n";
    let at = T0 + 600_000;
    r.handle_response(&respond(&refresh, 401, stale), at, &mut out);
    let again = one(&out);
    verify_auth(&again, "Authorization", "example.net", Algorithm::Md5, 1);
    assert_eq!(r.state(), State::Authenticating);
}

#[test]
fn answers_a_407_with_sha256() {
    let (mut r, mut out, req) = enabled("erin");
    let challenges = "Proxy-Authenticate: Digest realm=\"proxy\", nonce=\"m\", qop=\"auth\"\r\n\
Proxy-Authenticate: Digest realm=\"proxy\", nonce=\"s\", qop=\"auth,auth-int\", algorithm=SHA-256\r\n";
    r.handle_response(&respond(&req, 407, challenges), T0 + 10, &mut out);
    let auth = one(&out);
    assert!(header(&auth, "Authorization").is_none());
    verify_auth(&auth, "Proxy-Authorization", "proxy", Algorithm::Sha256, 1);
    out.clear();
    // Then the registrar's own 401: both credentials go in the next request.
    let www = "WWW-Authenticate: Digest realm=\"registrar\", nonce=\"w\"\r\n";
    r.handle_response(&respond(&auth, 401, www), T0 + 20, &mut out);
    let both = one(&out);
    verify_auth(&both, "Proxy-Authorization", "proxy", Algorithm::Sha256, 2);
    let value = header(&both, "Authorization").expect("Authorization");
    let creds = digest::parse_authorization(value.as_bytes()).expect("parses");
    assert_eq!(creds.nonce_count(), None, "no qop offered: RFC 2069 form");
    let ha1 = Ha1::from_password(Algorithm::Md5, b"erin", b"registrar", b"s3cret");
    assert!(digest::verify(&ha1, &creds, b"REGISTER"));
    out.clear();
    r.handle_response(&respond(&both, 200, "Expires: 600\r\n"), T0 + 30, &mut out);
    assert_eq!(r.state(), State::Registered);
}

#[test]
fn the_same_nonce_challenged_again_means_wrong_credentials() {
    let mut r = registrant("erin");
    let mut out = Vec::new();
    r.enable(T0, &mut out);
    let req = one(&out);
    let challenge = "WWW-Authenticate: Digest realm=\"x\", nonce=\"n1\", qop=\"auth\"\r\n";
    out.clear();
    r.handle_response(&respond(&req, 401, challenge), T0 + 10, &mut out);
    let auth = one(&out);
    out.clear();
    r.handle_response(&respond(&auth, 401, challenge), T0 + 20, &mut out);
    assert!(sent(&out).is_empty());
    assert_eq!(states(&out), [(2, 6, Some(401))]);
    assert_eq!(r.state(), State::WrongCredentials);
    assert_eq!(r.last_status(), Some(401));
    // Retried later, from scratch (no credentials sent before a challenge).
    assert_eq!(r.next_timeout(), Some(T0 + 20 + 30_000));
    out.clear();
    fire(&mut r, &mut out);
    let retry = one(&out);
    assert!(header(&retry, "Authorization").is_none());
}

#[test]
fn endless_fresh_challenges_end_in_wrong_credentials() {
    let mut r = registrant("erin");
    let mut out = Vec::new();
    r.enable(T0, &mut out);
    let mut req = one(&out);
    for i in 0..10 {
        out.clear();
        let c = format!("WWW-Authenticate: Digest realm=\"x\", nonce=\"n{i}\"\r\n");
        r.handle_response(&respond(&req, 401, &c), T0 + i, &mut out);
        if r.state() == State::WrongCredentials {
            assert_eq!(i, 3, "three rounds answered");
            return;
        }
        req = one(&out);
    }
    panic!("never gave up");
}

#[test]
fn a_challenge_without_credentials_is_wrong_credentials() {
    let mut rr = row("frank");
    rr.username = None;
    rr.password = None;
    let mut r = registrant_with(rr, settings());
    let mut out = Vec::new();
    r.enable(T0, &mut out);
    let req = one(&out);
    out.clear();
    r.handle_response(
        &respond(
            &req,
            401,
            "WWW-Authenticate: Digest realm=\"x\", nonce=\"n\"\r\n",
        ),
        T0 + 1,
        &mut out,
    );
    assert_eq!(r.state(), State::WrongCredentials);
}

#[test]
fn error_replies_are_registrar_errors_retried_with_back_off() {
    for (status, extra, delay) in [
        (503, "Retry-After: 120\r\n", 120_000),
        (503, "Retry-After: 99999999\r\n", 900_000),
        (500, "", 30_000),
        (403, "", 30_000),
        (404, "", 30_000),
        (302, "Contact: <sip:elsewhere@192.0.2.99>\r\n", 30_000),
        (606, "", 30_000),
        (401, "", 30_000),
        (401, "WWW-Authenticate: Basic realm=\"x\"\r\n", 30_000),
        (
            407,
            "Proxy-Authenticate: Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512\r\n",
            30_000,
        ),
    ] {
        let mut r = registrant("gina");
        let mut out = Vec::new();
        r.enable(T0, &mut out);
        let req = one(&out);
        out.clear();
        r.handle_response(&respond(&req, status, extra), T0 + 10, &mut out);
        assert_eq!(states(&out), [(1, 7, Some(status))], "{status} {extra}");
        assert!(sent(&out).is_empty());
        assert_eq!(r.next_timeout(), Some(T0 + 10 + delay), "{status} {extra}");
    }
}

#[test]
fn a_423_is_retried_with_its_min_expires() {
    let (mut r, mut out, req) = enabled("hugo");
    r.handle_response(
        &respond(&req, 423, "Min-Expires: 1800\r\n"),
        T0 + 10,
        &mut out,
    );
    let again = one(&out);
    assert_eq!(header(&again, "Expires").as_deref(), Some("1800"));
    assert_eq!(cseq(&again), 2);
    assert_eq!(r.state(), State::Registering);
    out.clear();
    r.handle_response(&respond(&again, 200, ""), T0 + 20, &mut out);
    // Granted what was asked (no expiry in the 200): refreshed 60 s before.
    assert_eq!(r.next_timeout(), Some(T0 + 20 + 1_740_000));
    out.clear();
    fire(&mut r, &mut out);
    assert_eq!(
        header(&one(&out), "Expires").as_deref(),
        Some("1800"),
        "the refresh keeps it"
    );

    // A Min-Expires that is absent, no higher than asked, or absurd: REGISTRAR_ERROR.
    for extra in [
        "",
        "Min-Expires: 600\r\n",
        "Min-Expires: 4294967295\r\n",
        "Min-Expires: 99999999999999\r\n",
    ] {
        let mut r = registrant("hugo");
        let mut out = Vec::new();
        r.enable(T0, &mut out);
        let req = one(&out);
        out.clear();
        r.handle_response(&respond(&req, 423, extra), T0 + 10, &mut out);
        assert_eq!(r.state(), State::RegistrarError, "{extra:?}");
        assert!(sent(&out).is_empty());
    }
}

#[test]
fn refresh_interval_follows_the_grant() {
    for (grant, expected_s) in [
        ("Contact: <sip:ivan@198.51.100.1:5080>;expires=120\r\n", 60),
        (
            "Contact: <sip:other@198.51.100.1:5080>;expires=120\r\nExpires: 3600\r\n",
            3540,
        ),
        // The same URI (RFC 3261 §19.1.4: a parameter in one only is not compared).
        (
            "Contact: <sip:ivan@198.51.100.1:5080;ob>;expires=100\r\n",
            50,
        ),
        // Not the same URI: transport must match when either has it.
        (
            "Contact: <sip:ivan@198.51.100.1:5080;transport=tcp>;expires=100\r\n",
            540,
        ),
        (
            "Contact: <sip:ivan@198.51.100.1:5080>\r\nExpires: 200\r\n",
            140,
        ),
        ("", 540),
        ("Expires: 10\r\n", 5),
        ("Expires: 999999999\r\n", 86_400 - 60),
    ] {
        let mut r = registrant("ivan");
        let mut out = Vec::new();
        let (at, _) = register(&mut r, &mut out, grant);
        assert_eq!(r.state(), State::Registered, "{grant}");
        assert_eq!(r.next_timeout(), Some(at + expected_s * 1000), "{grant}");
    }
    // Our contact listed with expires=0: not registered.
    let mut r = registrant("ivan");
    let mut out = Vec::new();
    register(
        &mut r,
        &mut out,
        "Contact: <sip:ivan@198.51.100.1:5080>;expires=0\r\n",
    );
    assert_eq!(r.state(), State::RegistrarError);
}

#[test]
fn other_bindings_of_the_instance_are_removed() {
    let instance = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";
    let mut rr = row("jane");
    rr.binding_params = Some(format!(";reg-id=1;+sip.instance=\"{instance}\""));
    let mut r = registrant_with(rr, settings());
    let mut out = Vec::new();
    r.enable(T0, &mut out);
    let req = one(&out);
    assert_eq!(
        header(&req, "Contact"),
        Some(format!(
            "<sip:jane@198.51.100.1:5080>;reg-id=1;+sip.instance=\"{instance}\""
        ))
    );
    out.clear();
    let listed = format!(
        "Contact: <sip:jane@198.51.100.1:5080>;expires=600;reg-id=1;+sip.instance=\"{instance}\"\r\n\
Contact: <sip:jane@203.0.113.7:5080>;expires=300;reg-id=1;+sip.instance=\"{}\"\r\n\
Contact: <sip:jane@203.0.113.8:5080>;expires=300;+sip.instance=\"<urn:uuid:other>\"\r\n\
Contact: <sip:jane@203.0.113.9:5080>;expires=300\r\n",
        instance.to_ascii_lowercase()
    );
    r.handle_response(&respond(&req, 200, &listed), T0 + 10, &mut out);
    assert_eq!(r.state(), State::Registered);
    let cleanup = one(&out);
    assert_eq!(
        header(&cleanup, "Contact"),
        Some(format!(
            "<sip:jane@198.51.100.1:5080>;reg-id=1;+sip.instance=\"{instance}\", <sip:jane@203.0.113.7:5080>;expires=0"
        ))
    );
    assert_eq!(header(&cleanup, "Expires").as_deref(), Some("600"));
    out.clear();
    // The 200 still lists it (a registrar that did not remove it): no second cleanup, no loop.
    r.handle_response(&respond(&cleanup, 200, &listed), T0 + 20, &mut out);
    assert!(sent(&out).is_empty());
    assert_eq!(r.state(), State::Registered);
    assert!(r.is_idle());
    assert_eq!(r.next_timeout(), Some(T0 + 20 + 540_000));
    // The next refresh looks again.
    out.clear();
    fire(&mut r, &mut out);
    let refresh = one(&out);
    out.clear();
    r.handle_response(&respond(&refresh, 200, &listed), T0 + 600_000, &mut out);
    assert_eq!(sent(&out).len(), 1);
}

#[test]
fn responses_that_do_not_match_are_ignored() {
    let mut r = registrant("kate");
    let mut out = Vec::new();
    assert_eq!(
        r.handle_response(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n", T0, &mut out),
        Disposition::NoTransaction
    );
    r.enable(T0, &mut out);
    let req = one(&out);
    out.clear();
    let ok = String::from_utf8(respond(&req, 200, "")).expect("utf-8");
    let b = branch(&req);
    let call_id = header(&req, "Call-ID").expect("Call-ID");
    for forged in [
        ok.replace(&b, "z9hG4bK-forged"),
        ok.replace(&call_id, "other@host"),
        ok.replace("CSeq: 1 REGISTER", "CSeq: 2 REGISTER"),
        ok.replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE"),
        ok.replace(&format!("Call-ID: {call_id}\r\n"), ""),
    ] {
        assert_eq!(
            r.handle_response(forged.as_bytes(), T0 + 1, &mut out),
            Disposition::Mismatch,
            "{forged}"
        );
    }
    for garbage in [
        &b""[..],
        b"\xff\xfe",
        b"REGISTER sip:x SIP/2.0\r\n\r\n",
        b"SIP/2.0 200",
    ] {
        assert_ne!(
            r.handle_response(garbage, T0 + 1, &mut out),
            Disposition::Handled
        );
    }
    let mut huge = ok.clone().into_bytes();
    huge.splice(20..20, std::iter::repeat_n(b'X', 20_000).chain(*b": y\r\n"));
    assert_eq!(
        r.handle_response(&huge, T0 + 1, &mut out),
        Disposition::NotAResponse
    );
    assert!(out.is_empty());
    assert_eq!(r.state(), State::Registering);
    assert_eq!(
        r.handle_response(ok.as_bytes(), T0 + 2, &mut out),
        Disposition::Handled
    );
    assert_eq!(r.state(), State::Registered);
}

#[test]
fn hostile_challenges_and_responses_never_panic() {
    let big_nonce = "n".repeat(100_000);
    let many_params: String = (0..2000).map(|i| format!(", p{i}=\"v\"")).collect();
    let hostile = [
        format!("WWW-Authenticate: Digest realm=\"x\", nonce=\"{big_nonce}\"\r\n"),
        format!("WWW-Authenticate: Digest realm=\"x\", nonce=\"n\"{many_params}\r\n"),
        "WWW-Authenticate: Digest realm=\"x\", nonce=\"n\", nonce=\"m\"\r\n".into(),
        "WWW-Authenticate: Digest realm=\"x\r\n".into(),
        "WWW-Authenticate: Digest realm=x, nonce=\"\\\"\\\\\", qop=\"auth\", opaque=\"\\\"\"\r\n"
            .into(),
        "WWW-Authenticate: Digest , , ,\r\n".repeat(50),
        "Contact: <sip:a@b>;expires=99999999999999999999\r\n".into(),
        format!("Contact: {}\r\n", "<sip:a@b>, ".repeat(5000)),
    ];
    let s = Arc::new(Settings {
        max_response_bytes: 65_535,
        ..(*settings()).clone()
    });
    for extra in &hostile {
        let mut r = registrant_with(row("leo"), s.clone());
        let mut out = Vec::new();
        r.enable(T0, &mut out);
        let req = one(&out);
        out.clear();
        for status in [401, 200] {
            let _ = r.handle_response(&respond(&req, status, extra), T0 + 1, &mut out);
        }
        // Whatever it did, at most one request is in flight and a timer is armed.
        assert!(sent(&out).len() <= 1);
        assert!(r.next_timeout().is_some());
        if let Some(req) = sent(&out).first() {
            assert!(req.len() <= s.max_request_bytes);
        }
    }
}

#[test]
fn a_request_that_does_not_fit_is_an_internal_error() {
    let s = Arc::new(Settings {
        max_request_bytes: 200,
        ..(*settings()).clone()
    });
    let mut r = registrant_with(row("mia"), s);
    let mut out = Vec::new();
    r.enable(T0, &mut out);
    assert!(sent(&out).is_empty());
    assert_eq!(states(&out), [(0, 5, None)]);
    assert_eq!(r.next_timeout(), Some(T0 + 30_000));
}

#[test]
fn shutdown_unregisters_only_what_may_be_bound() {
    // Never registered: nothing to send.
    let mut r = registrant("nina");
    let mut out = Vec::new();
    r.start(T0);
    r.shutdown(T0 + 5, &mut out);
    assert!(sent(&out).is_empty());
    assert!(r.is_idle());
    assert_eq!(r.next_timeout(), None);
    assert!(r.enabled(), "shutdown keeps the account enabled");

    // Registered: unREGISTER, with the cached credentials.
    let (mut r, mut out, req) = enabled("erin");
    r.handle_response(
        &respond(
            &req,
            401,
            "WWW-Authenticate: Digest realm=\"x\", nonce=\"n\", qop=\"auth\"\r\n",
        ),
        T0 + 1,
        &mut out,
    );
    let auth = one(&out);
    out.clear();
    r.handle_response(&respond(&auth, 200, "Expires: 600\r\n"), T0 + 2, &mut out);
    out.clear();
    r.shutdown(T0 + 100, &mut out);
    let unreg = one(&out);
    assert_eq!(header(&unreg, "Expires").as_deref(), Some("0"));
    verify_auth(&unreg, "Authorization", "x", Algorithm::Md5, 2);
    assert!(!r.is_idle());
    assert_eq!(r.state(), State::Unregistering);
    out.clear();
    // Challenged again: AUTHENTICATING_UNREGISTER, then done.
    r.handle_response(
        &respond(
            &unreg,
            401,
            "WWW-Authenticate: Digest realm=\"x\", nonce=\"n2\", qop=\"auth\"\r\n",
        ),
        T0 + 101,
        &mut out,
    );
    assert_eq!(r.state(), State::AuthenticatingUnregister);
    let unreg2 = one(&out);
    out.clear();
    r.handle_response(&respond(&unreg2, 200, ""), T0 + 102, &mut out);
    assert_eq!(r.state(), State::NotRegistered);
    assert!(r.is_idle());
    assert_eq!(r.next_timeout(), None);
    // No re-registration after shutdown.
    r.enable(T0 + 200, &mut out);
    assert_eq!(r.next_timeout(), None);

    // A REGISTER in flight when disabled: unregistered too; the late 200 is ignored.
    let (mut r, mut out, req) = enabled("olga");
    r.disable(T0 + 10, &mut out);
    let unreg = one(&out);
    assert_eq!(header(&unreg, "Expires").as_deref(), Some("0"));
    out.clear();
    assert_eq!(
        r.handle_response(&respond(&req, 200, ""), T0 + 20, &mut out),
        Disposition::Mismatch
    );
    // An unregistration that times out is not retried.
    while !r.is_idle() {
        fire(&mut r, &mut out);
    }
    assert_eq!(r.state(), State::RegisterTimeout);
    assert_eq!(r.next_timeout(), None);
}

#[test]
fn a_refused_registration_is_not_unregistered() {
    let (mut r, mut out, req) = enabled("rita");
    let c = "WWW-Authenticate: Digest realm=\"x\", nonce=\"n\"\r\n";
    r.handle_response(&respond(&req, 401, c), T0 + 1, &mut out);
    let auth = one(&out);
    out.clear();
    r.handle_response(&respond(&auth, 401, c), T0 + 2, &mut out);
    assert_eq!(r.state(), State::WrongCredentials);
    out.clear();
    r.shutdown(T0 + 3, &mut out);
    assert!(sent(&out).is_empty(), "nothing was bound");
    assert_eq!(r.state(), State::NotRegistered);
    assert!(r.is_idle());
}

#[test]
fn enable_registers_now_and_disabled_rows_wait() {
    let mut rr = row("paul");
    rr.state = Some(1);
    let mut r = registrant_with(rr, settings());
    let mut out = Vec::new();
    r.start(T0);
    assert_eq!(r.next_timeout(), None);
    r.enable(T0 + 7, &mut out);
    assert_eq!(sent(&out).len(), 1);
    assert!(r.enabled() && r.account().enabled);
    // Enabling again while registering sends nothing more.
    r.enable(T0 + 8, &mut out);
    assert_eq!(sent(&out).len(), 1);
}

/// 10,000 registrants loaded at once: their first REGISTERs spread over the 100 s window.
#[test]
fn ten_thousand_first_registers_spread_over_the_window() {
    let s = settings();
    let window_s = u64::from(s.start_spread_s);
    let mut per_second = vec![0u32; window_s as usize];
    for i in 0..10_000 {
        let mut r = registrant_with(row(&format!("u{i:05}")), s.clone());
        r.start(T0);
        let at = r.next_timeout().expect("scheduled");
        assert!(at >= T0 && at < T0 + window_s * 1000);
        per_second[((at - T0) / 1000) as usize] += 1;
    }
    let peak = *per_second.iter().max().expect("seconds");
    let low = *per_second.iter().min().expect("seconds");
    println!("10,000 registrants over {window_s} s: peak {peak}/s, lowest {low}/s, mean 100/s");
    assert!(peak <= 150, "peak {peak}/s");
    assert!(low >= 60, "lowest {low}/s");
}

#[test]
fn states_keep_opensips_numbers() {
    let all = [
        State::NotRegistered,
        State::Registering,
        State::Authenticating,
        State::Registered,
        State::RegisterTimeout,
        State::InternalError,
        State::WrongCredentials,
        State::RegistrarError,
        State::Unregistering,
        State::AuthenticatingUnregister,
    ];
    for (i, s) in all.iter().enumerate() {
        assert_eq!(usize::from(s.code()), i);
        assert!(s.name().ends_with("_STATE"));
    }
}

#[test]
fn requests_are_well_formed_sip() {
    let mut r = registrant("quinn");
    let mut out = Vec::new();
    r.enable(T0, &mut out);
    let req = one(&out);
    let msg = parse_message(req.as_bytes(), &ParseLimits::default()).expect("frames");
    assert!(matches!(msg.start, StartLine::Request { .. }));
    assert_eq!(msg.first(HeaderName::ContentLength), Some(&b"0"[..]));
    assert_eq!(msg.first(HeaderName::MaxForwards), Some(&b"70"[..]));
}
