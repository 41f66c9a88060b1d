//! The registrant's state machine (`corereg-registrant`) against a hostile upstream: steps separated by a
//! 0 byte, each an op byte and its bytes. Ops: a response built on the last REGISTER's transaction (so
//! that it matches and reaches the state machine) with the step's bytes as its status digit and header
//! lines; the step's bytes as a raw datagram; a timeout; enable, disable, shutdown. Nothing may panic, one
//! request goes out at a time, every request fits the bound, work in progress has a timer, and the row
//! sources parse the step's bytes as a file without panicking.

#![no_main]

use std::sync::Arc;

use corereg_registrant::account::{Account, RawRow};
use corereg_registrant::machine::{Effect, Registrant, Settings};
use libfuzzer_sys::fuzz_target;

fn header<'a>(req: &'a str, name: &str) -> &'a str {
    req.split("\r\n")
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or("")
}

fuzz_target!(|data: &[u8]| {
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
    let Ok(account) = Account::from_row(row, 86_400) else {
        return;
    };
    let mut r = Registrant::new(account, settings.clone(), 1);
    let mut now = 1_000_000u64;
    let mut out = Vec::new();
    let mut last = String::new();
    r.enable(now, &mut out);
    for step in data.split(|&b| b == 0).take(64) {
        let Some((&op, rest)) = step.split_first() else {
            continue;
        };
        for e in out.drain(..) {
            if let Effect::Send { datagram, .. } = e {
                last = String::from_utf8_lossy(&datagram).into_owned();
            }
        }
        match op % 8 {
            0..=2 => {
                let (digits, extra) = rest.split_at(rest.len().min(3));
                let status = std::str::from_utf8(digits).unwrap_or("200");
                let mut resp = format!("SIP/2.0 {status} X\r\n");
                for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                    resp += &format!("{name}: {}\r\n", header(&last, name));
                }
                let mut bytes = resp.into_bytes();
                bytes.extend_from_slice(extra);
                bytes.extend_from_slice(b"\r\n\r\n");
                r.handle_response(&bytes, now, &mut out);
            }
            3 => {
                r.handle_response(rest, now, &mut out);
            }
            4 => {
                now = r.next_timeout().filter(|&t| t >= now).unwrap_or(now + 1000);
                r.handle_timeout(now, &mut out);
            }
            5 => r.enable(now, &mut out),
            6 => r.disable(now, &mut out),
            _ => r.shutdown(now, &mut out),
        }
        let mut sends = 0;
        for e in &out {
            if let Effect::Send { datagram, .. } = e {
                assert!(datagram.len() <= settings.max_request_bytes);
                sends += 1;
            }
        }
        assert!(sends <= 1, "one request at a time");
        if !r.is_idle() {
            assert!(r.next_timeout().is_some(), "work in progress has a timer");
        }
    }
});
