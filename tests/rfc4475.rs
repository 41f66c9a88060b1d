//! The RFC 4475 torture messages, sent as exact bytes to the real binary.
//!
//! Expected answers come from `tests/data/rfc4475/MANIFEST.tsv` and RFC 3261 (§8.2 for non-REGISTER methods: a
//! registrar accepts OPTIONS, answers other known methods 405 and unknown ones 501; §10.3 for REGISTER).
//! Where the manifest allows a liberal reading, either answer is accepted. Responses are never answered.

mod common;

use std::collections::BTreeMap;

use common::{assert_still_serving, Client, Req, Response, Server, REPLY_TIMEOUT, SILENCE_TIMEOUT};

#[derive(Clone, Copy, Debug)]
enum Expect {
    Status(&'static [u16]),
    StatusOrSilence(&'static [u16]),
    Silence,
    /// No expectation (liveness only).
    Anything,
}

use Expect::*;

/// One expectation per file of the corpus.
fn expectations() -> BTreeMap<&'static str, Expect> {
    BTreeMap::from([
        // §3.1.1 valid
        ("wsinv.dat", Status(&[405])),
        ("intmeth.dat", Status(&[501])),
        ("esc01.dat", Status(&[405])),
        ("escnull.dat", Status(&[200])),
        ("esc02.dat", Status(&[501])),
        ("lwsdisp.dat", Status(&[200])),
        ("longreq.dat", Status(&[405])),
        ("dblreq.dat", Status(&[200])),
        ("semiuri.dat", Status(&[200])),
        ("transports.dat", Status(&[200])),
        ("mpart01.dat", Status(&[405])),
        ("unreason.dat", Silence),
        ("noreason.dat", Silence),
        // §3.1.2 invalid
        ("badinv01.dat", Status(&[400])),
        ("clerr.dat", Status(&[400])),
        ("ncl.dat", StatusOrSilence(&[400])),
        ("scalar02.dat", Status(&[400])),
        ("scalarlg.dat", Silence),
        ("quotbal.dat", Status(&[400, 405])),
        ("ltgtruri.dat", Status(&[400, 405])),
        ("lwsruri.dat", Status(&[400, 405])),
        ("lwsstart.dat", Status(&[400, 405])),
        ("trws.dat", Status(&[400, 200])),
        ("escruri.dat", Status(&[400, 405])),
        ("baddate.dat", Status(&[400, 405])),
        ("regbadct.dat", Status(&[400, 200])),
        ("badaspec.dat", Status(&[400, 200])),
        ("baddn.dat", Status(&[400, 200])),
        ("badvers.dat", Status(&[505])),
        ("mismatch01.dat", Status(&[400])),
        ("mismatch02.dat", Status(&[501, 400])),
        ("bigcode.dat", Silence),
        // §3.2, §3.3 semantic
        ("badbranch.dat", Status(&[400, 200])),
        ("insuf.dat", Status(&[400])),
        ("unkscm.dat", Status(&[416])),
        ("novelsc.dat", Status(&[416, 404])),
        ("unksm2.dat", Status(&[400])),
        ("bext01.dat", Status(&[420])),
        // A registrar refuses INVITE by method (405) before looking at the body (§8.2.1 precedes §8.2.3).
        ("invut.dat", Status(&[405, 415])),
        ("regaut01.dat", Status(&[200, 401])),
        ("multi01.dat", Status(&[400])),
        ("mcl01.dat", Status(&[400])),
        ("bcast.dat", Silence),
        ("zeromf.dat", Status(&[200, 483])),
        ("cparam01.dat", Status(&[200])),
        ("cparam02.dat", Status(&[200])),
        ("regescrt.dat", Status(&[200])),
        ("sdp01.dat", Status(&[405, 406, 400])),
        // §3.4
        ("inv2543.dat", Status(&[405])),
        ("test.dat", Anything),
    ])
}

/// (file, kind) rows of MANIFEST.tsv.
fn manifest() -> Vec<(String, String)> {
    let path = common::rfc4475_dir().join("MANIFEST.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header row").split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let (file, kind) = (col("file"), col("kind"));
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[file].to_string(), f[kind].to_string())
        })
        .collect()
}

fn read(file: &str) -> Vec<u8> {
    let path = common::rfc4475_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Sends `datagram` from a fresh client; the answer (if any) within the expectation's window.
fn exchange(server: &Server, datagram: &[u8], expect: Expect) -> Option<Response> {
    let client = Client::new(server.addr);
    client.send(datagram);
    let wait = if matches!(expect, Status(_)) {
        REPLY_TIMEOUT
    } else {
        SILENCE_TIMEOUT
    };
    client.recv(wait).map(|raw| {
        Response::parse(&raw)
            .unwrap_or_else(|| panic!("unparsable answer:\n{}", String::from_utf8_lossy(&raw)))
    })
}

#[test]
fn every_file_has_an_expectation_and_matches_the_manifest() {
    let expect = expectations();
    let rows = manifest();
    assert_eq!(
        rows.len(),
        expect.len(),
        "corpus and expectation table differ in size"
    );
    for (file, kind) in rows {
        let e = expect
            .get(file.as_str())
            .unwrap_or_else(|| panic!("{file} has no expectation"));
        if kind == "response" {
            assert!(
                matches!(e, Silence),
                "{file} is a response: it must never be answered"
            );
        }
    }
}

#[test]
fn torture_messages_get_their_answers_and_the_process_keeps_serving() {
    let server = Server::start(&[]);
    let mut failures = Vec::new();
    for (file, expect) in expectations() {
        let datagram = read(file);
        let answer = exchange(&server, &datagram, expect);
        let ok = match (expect, &answer) {
            (Anything, _) => true,
            (Status(s) | StatusOrSilence(s), Some(r)) => s.contains(&r.status),
            (StatusOrSilence(_) | Silence, None) => true,
            (Status(_), None) | (Silence, Some(_)) => false,
        };
        if !ok {
            let got = answer.map_or("no answer".to_string(), |r| r.raw);
            failures.push(format!("{file}: expected {expect:?}, got:\n{got}"));
        }
    }
    assert_still_serving(&server, "the whole RFC 4475 corpus");
    assert!(
        failures.is_empty(),
        "{} files answered wrongly:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Fetches the bindings of `aor_user@example.com` (the exact user part, escapes kept).
fn fetch(server: &Server, aor_user: &str) -> Response {
    let client = Client::new(server.addr);
    let resp = client.request(&Req::register(&client, aor_user, "example.com").build());
    assert_eq!(resp.status, 200, "fetch of {aor_user}:\n{}", resp.raw);
    resp
}

#[test]
fn valid_registers_bind_and_invalid_ones_never_do() {
    // (file, AoR user part, bindings expected after it: None = "as many as its answer says", i.e. 0 unless 2xx)
    let cases: [(&str, &str, Option<usize>); 8] = [
        ("escnull.dat", "null-%00-null", Some(2)),
        ("dblreq.dat", "j.user", Some(1)),
        ("cparam01.dat", "watson", Some(1)),
        ("cparam02.dat", "watson", Some(1)),
        ("regescrt.dat", "user", Some(1)),
        ("scalar02.dat", "user", Some(0)),
        ("regbadct.dat", "user", None),
        ("regaut01.dat", "j.user", Some(0)),
    ];
    for (file, user, want) in cases {
        // A fresh process per file: the AoRs overlap between files.
        let server = Server::start(&[]);
        let answer = exchange(&server, &read(file), Status(&[]));
        let status = answer.as_ref().map(|r| r.status);
        let want = want.unwrap_or(if matches!(status, Some(200..=299)) {
            1
        } else {
            0
        });
        let resp = fetch(&server, user);
        assert_eq!(
            resp.contacts().len(),
            want,
            "{file} (answered {status:?}) should leave {want} binding(s) for {user}:\n{}",
            resp.raw
        );
        if file == "escnull.dat" {
            let uris: Vec<String> = resp.contacts().into_iter().map(|(u, _)| u).collect();
            assert_ne!(uris[0], uris[1], "escnull's two contacts are distinct");
        }
    }
}

#[test]
fn unksm2_is_refused_without_binding_anything() {
    let server = Server::start(&[]);
    let answer = exchange(&server, &read("unksm2.dat"), Status(&[400]));
    assert_eq!(answer.map(|r| r.status), Some(400));
    assert_still_serving(&server, "unksm2");
}
