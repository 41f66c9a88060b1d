//! Properties of the registrant under any sequence of responses, timeouts and commands: it never panics,
//! keeps at most one transaction, always has a timer while it has work, and sends only bounded requests.

use std::sync::Arc;

use corereg_registrant::account::{Account, RawRow};
use corereg_registrant::machine::{Effect, Registrant, Settings, State};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    /// A response to the last request sent: status and extra header lines (from a menu).
    Respond(u16, usize, bool),
    /// A datagram of bytes.
    Garbage(Vec<u8>),
    /// Advance to the next timeout (or by this many ms when none).
    Tick(u64),
    Enable,
    Disable,
    Shutdown,
}

const EXTRAS: &[&str] = &[
    "",
    "WWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"\r\n",
    "WWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", stale=true\r\n",
    "WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\", algorithm=SHA-256\r\n",
    "Proxy-Authenticate: Digest realm=\"p\", nonce=\"x\", qop=\"auth\"\r\n",
    "Min-Expires: 1200\r\n",
    "Min-Expires: 4294967295\r\n",
    "Retry-After: 40000\r\n",
    "Contact: <sip:u@198.51.100.1:5080>;expires=30\r\n",
    "Contact: <sip:u@198.51.100.1:5080>;expires=0\r\n",
    "Contact: <sip:u@203.0.113.1>;expires=99;+sip.instance=\"<urn:uuid:1>\"\r\nExpires: 77\r\n",
    "Expires: 99999999999\r\n",
];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (prop::sample::select(vec![100u16, 200, 202, 302, 401, 403, 407, 423, 480, 500, 503, 606]),
              0..EXTRAS.len(), any::<bool>())
            .prop_map(|(s, e, m)| Step::Respond(s, e, m)),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Step::Garbage),
        3 => (0u64..100_000).prop_map(Step::Tick),
        1 => Just(Step::Enable),
        1 => Just(Step::Disable),
        1 => Just(Step::Shutdown),
    ]
}

fn header<'a>(req: &'a str, name: &str) -> &'a str {
    req.split("\r\n")
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or("")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn any_sequence_keeps_the_machine_sound(steps in prop::collection::vec(step(), 1..60)) {
        let row = RawRow {
            registrar: Some("sip:192.0.2.10".into()),
            aor: Some("sip:u@example.net".into()),
            binding_uri: Some("sip:u@198.51.100.1:5080".into()),
            binding_params: Some(";reg-id=1;+sip.instance=\"<urn:uuid:1>\"".into()),
            username: Some("u".into()),
            password: Some("pw".into()),
            ..RawRow::default()
        };
        let settings = Arc::new(Settings::default());
        let mut r = Registrant::new(Account::from_row(row, 86_400).expect("row"), settings.clone(), 7);
        let mut now = 1_000_000u64;
        let mut out = Vec::new();
        let mut last_request: Option<String> = None;
        r.start(now);
        for step in steps {
            out.clear();
            match step {
                Step::Respond(status, extra, matching) => {
                    if let Some(req) = &last_request {
                        let mut resp = format!("SIP/2.0 {status} X\r\n");
                        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                            let v = header(req, name);
                            let v = if !matching && name == "Via" { "SIP/2.0/UDP h;branch=z9hG4bK-other" } else { v };
                            resp += &format!("{name}: {v}\r\n");
                        }
                        resp += EXTRAS[extra];
                        resp += "\r\n";
                        r.handle_response(resp.as_bytes(), now, &mut out);
                    }
                }
                Step::Garbage(bytes) => { r.handle_response(&bytes, now, &mut out); }
                Step::Tick(ms) => {
                    now = match r.next_timeout() { Some(t) if t >= now => t, _ => now + ms };
                    r.handle_timeout(now, &mut out);
                }
                Step::Enable => r.enable(now, &mut out),
                Step::Disable => r.disable(now, &mut out),
                Step::Shutdown => r.shutdown(now, &mut out),
            }
            let sends: Vec<&Vec<u8>> = out.iter().filter_map(|e| match e {
                Effect::Send { datagram, .. } => Some(datagram),
                _ => None,
            }).collect();
            prop_assert!(sends.len() <= 1, "one request at a time: {out:?}");
            if let Some(d) = sends.first() {
                prop_assert!(d.len() <= settings.max_request_bytes);
                last_request = Some(String::from_utf8(d.to_vec()).expect("utf-8"));
            }
            // Work in progress always has a timer; an idle, disabled or shut-down one may have none.
            if !r.is_idle() {
                prop_assert!(r.next_timeout().is_some());
            }
            if let Some(t) = r.next_timeout() {
                prop_assert!(t >= now.saturating_sub(1), "no timer in the past: {t} < {now}");
            }
            let transient = matches!(r.state(), State::Registering | State::Authenticating | State::Unregistering | State::AuthenticatingUnregister);
            prop_assert_eq!(transient, !r.is_idle() && r.state() != State::Registered, "state {:?}", r.state());
        }
    }
}
