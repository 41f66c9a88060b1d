//! The real binary over loopback UDP: the REGISTER life cycle (RFC 3261 §10.3) and the answers to other methods.

mod common;

use common::{Client, Req, Response, Server};

fn contact_of(client: &Client, user: &str) -> String {
    format!("<sip:{user}@{}>", client.local)
}

/// Checks every 2xx to REGISTER must carry (§10.3 step 8, §8.2.6).
fn assert_well_formed_ok(req: &Req, resp: &Response) {
    assert_eq!(resp.status, 200, "{}", resp.raw);
    assert!(
        resp.header("Date").is_some(),
        "200 without Date:\n{}",
        resp.raw
    );
    assert!(resp.to_tag().is_some(), "200 without To tag:\n{}", resp.raw);
    assert!(
        resp.header("Supported").is_some(),
        "200 without Supported:\n{}",
        resp.raw
    );
    let via = resp
        .header("Via")
        .unwrap_or_else(|| panic!("no Via:\n{}", resp.raw));
    assert!(
        via.starts_with(&req.via),
        "Via not copied: sent {:?}, got {via:?}",
        req.via
    );
    assert_eq!(
        resp.header("Call-ID"),
        Some(req.call_id.as_str()),
        "{}",
        resp.raw
    );
    let cseq = resp.header("CSeq").unwrap_or_default();
    assert_eq!(
        cseq.split_whitespace().collect::<Vec<_>>(),
        [req.cseq.to_string().as_str(), "REGISTER"]
    );
    let from = resp.header("From").unwrap_or_default();
    assert!(
        from.contains(&format!("tag={}", req.from_tag)),
        "From not copied: {from:?}"
    );
}

#[test]
fn register_refresh_fetch_unregister() {
    let server = Server::start(&[]);
    let client = server.client();
    let contact = contact_of(&client, "alice");
    let uri = contact.trim_matches(|c| c == '<' || c == '>').to_string();

    let reg = Req::register(&client, "alice", "example.com")
        .contact(&contact)
        .expires("600");
    let resp = client.request(&reg.build());
    assert_well_formed_ok(&reg, &resp);
    let contacts = resp.contacts();
    assert_eq!(contacts.len(), 1, "{}", resp.raw);
    assert_eq!(contacts[0].0, uri);
    assert!(matches!(contacts[0].1, Some(599..=600)), "{}", resp.raw);

    // Refresh: same Call-ID, CSeq + 1, a different expiry.
    let refresh = reg.next().contact(&format!("{contact};expires=1200"));
    let resp = client.request(&refresh.build());
    assert_well_formed_ok(&refresh, &resp);
    let contacts = resp.contacts();
    assert_eq!(
        contacts.len(),
        1,
        "refresh must not add a binding:\n{}",
        resp.raw
    );
    assert!(matches!(contacts[0].1, Some(1199..=1200)), "{}", resp.raw);

    // Fetch: no Contact, the 200 lists the binding with its remaining expiry.
    let fetch = refresh.next();
    let resp = client.request(&fetch.build());
    assert_well_formed_ok(&fetch, &resp);
    let contacts = resp.contacts();
    assert_eq!(contacts.len(), 1, "{}", resp.raw);
    assert_eq!(contacts[0].0, uri);
    assert!(matches!(contacts[0].1, Some(1190..=1200)), "{}", resp.raw);

    // Unregister with expires=0, then a fetch shows nothing.
    let unreg = fetch.next().contact(&format!("{contact};expires=0"));
    let resp = client.request(&unreg.build());
    assert_well_formed_ok(&unreg, &resp);
    assert!(resp.contacts().is_empty(), "{}", resp.raw);
    let fetch = unreg.next();
    let resp = client.request(&fetch.build());
    assert_eq!(resp.status, 200, "{}", resp.raw);
    assert!(resp.contacts().is_empty(), "{}", resp.raw);
}

#[test]
fn default_and_clamped_expiry() {
    let server = Server::start(&["--default-expires", "1800", "--max-expires", "7200"]);
    let client = server.client();
    let reg = Req::register(&client, "dflt", "example.com").contact(&contact_of(&client, "dflt"));
    let resp = client.request(&reg.build());
    assert_eq!(resp.status, 200, "{}", resp.raw);
    assert!(
        matches!(resp.contacts()[..], [(_, Some(1799..=1800))]),
        "default expiry:\n{}",
        resp.raw
    );

    let long = reg
        .next()
        .contact(&contact_of(&client, "dflt"))
        .expires("99999");
    let resp = client.request(&long.build());
    assert_eq!(resp.status, 200, "{}", resp.raw);
    assert!(
        matches!(resp.contacts()[..], [(_, Some(7199..=7200))]),
        "clamped to max:\n{}",
        resp.raw
    );
}

#[test]
fn star_with_expires_zero_removes_every_binding() {
    let server = Server::start(&[]);
    let client = server.client();
    let reg = Req::register(&client, "bob", "example.com")
        .contact(&contact_of(&client, "bob1"))
        .contact(&contact_of(&client, "bob2"))
        .expires("600");
    let resp = client.request(&reg.build());
    assert_eq!(resp.status, 200, "{}", resp.raw);
    assert_eq!(resp.contacts().len(), 2, "{}", resp.raw);

    let star = reg.next().contact("*").expires("0");
    let resp = client.request(&star.build());
    assert_well_formed_ok(&star, &resp);
    assert!(resp.contacts().is_empty(), "{}", resp.raw);

    let resp = client.request(&star.next().build());
    assert_eq!(resp.status, 200, "{}", resp.raw);
    assert!(resp.contacts().is_empty(), "{}", resp.raw);
}

#[test]
fn star_with_nonzero_expires_is_400() {
    let server = Server::start(&[]);
    let client = server.client();
    let reg = Req::register(&client, "carol", "example.com")
        .contact(&contact_of(&client, "carol"))
        .expires("600");
    assert_eq!(client.request(&reg.build()).status, 200);

    let star = reg.next().contact("*").expires("3600");
    let resp = client.request(&star.build());
    assert_eq!(resp.status, 400, "{}", resp.raw);

    // Nothing changed.
    let resp = client.request(&star.next().build());
    assert_eq!(resp.contacts().len(), 1, "{}", resp.raw);
}

#[test]
fn too_brief_gets_423_with_min_expires_then_retry_succeeds() {
    let server = Server::start(&["--min-expires", "120"]);
    let client = server.client();
    let reg = Req::register(&client, "dave", "example.com")
        .contact(&contact_of(&client, "dave"))
        .expires("30");
    let resp = client.request(&reg.build());
    assert_eq!(resp.status, 423, "{}", resp.raw);
    let min: u32 = resp
        .header("Min-Expires")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("423 without a numeric Min-Expires:\n{}", resp.raw));
    assert_eq!(min, 120);

    let retry = reg
        .next()
        .contact(&contact_of(&client, "dave"))
        .expires(&min.to_string());
    let resp = client.request(&retry.build());
    assert_well_formed_ok(&retry, &resp);
    assert!(
        matches!(resp.contacts()[..], [(_, Some(119..=120))]),
        "{}",
        resp.raw
    );
}

#[test]
fn options_gets_200_with_allow() {
    let server = Server::start(&[]);
    let client = server.client();
    let req = Req::register(&client, "erin", "example.com").method("OPTIONS", "sip:example.com");
    let resp = client.request(&req.build());
    assert_eq!(resp.status, 200, "{}", resp.raw);
    let allow = resp.list("Allow");
    assert!(
        allow.iter().any(|m| m.eq_ignore_ascii_case("REGISTER")),
        "{}",
        resp.raw
    );
}

#[test]
fn invite_gets_405_with_allow() {
    let server = Server::start(&[]);
    let client = server.client();
    let req =
        Req::register(&client, "frank", "example.com").method("INVITE", "sip:frank@example.com");
    let resp = client.request(&req.build());
    assert_eq!(resp.status, 405, "{}", resp.raw);
    assert!(
        resp.list("Allow")
            .iter()
            .any(|m| m.eq_ignore_ascii_case("REGISTER")),
        "{}",
        resp.raw
    );
}

#[test]
fn unknown_method_gets_501() {
    let server = Server::start(&[]);
    let client = server.client();
    let req = Req::register(&client, "gina", "example.com").method("FOOBAR", "sip:example.com");
    let resp = client.request(&req.build());
    assert_eq!(resp.status, 501, "{}", resp.raw);
}

#[test]
fn unsupported_require_gets_420() {
    let server = Server::start(&[]);
    let client = server.client();
    let req = Req::register(&client, "hank", "example.com")
        .contact(&contact_of(&client, "hank"))
        .header("Require: foo");
    let resp = client.request(&req.build());
    assert_eq!(resp.status, 420, "{}", resp.raw);
    assert!(
        resp.list("Unsupported").iter().any(|t| t == "foo"),
        "{}",
        resp.raw
    );
    // No binding was made.
    let resp = client.request(&req.next().build());
    assert_eq!(resp.status, 200, "{}", resp.raw);
    assert!(resp.contacts().is_empty(), "{}", resp.raw);
}

#[test]
fn foreign_domain_gets_404_when_domains_are_set() {
    let server = Server::start(&["--domain", "example.com"]);
    let client = server.client();
    let foreign =
        Req::register(&client, "ivan", "elsewhere.net").contact(&contact_of(&client, "ivan"));
    let resp = client.request(&foreign.build());
    assert_eq!(resp.status, 404, "{}", resp.raw);
    let ours = Req::register(&client, "ivan", "example.com").contact(&contact_of(&client, "ivan"));
    let resp = client.request(&ours.build());
    assert_well_formed_ok(&ours, &resp);
}

#[test]
fn sigterm_stops_the_process_cleanly() {
    // Both modes: the stub shares the shell; the registrar adds the expiry task to the shutdown path.
    for args in [&["--stateless-stub"][..], &[][..]] {
        let mut server = Server::start(args);
        common::assert_still_serving(&server, "start-up");
        let status = server
            .terminate(std::time::Duration::from_secs(5))
            .expect("exit within 5 s of SIGTERM");
        assert!(
            status.success(),
            "{args:?}: exit status {status:?}; log:\n{}",
            server.log_text()
        );
        assert!(!server.is_running());
    }
}

#[test]
fn invalid_configuration_is_refused_with_a_clear_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corereg"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--min-expires",
            "7200",
            "--default-expires",
            "3600",
        ])
        .output()
        .expect("run corereg");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--min-expires <= --default-expires"),
        "{stderr}"
    );
}

#[test]
fn config_file_is_read_and_flags_override_it() {
    let dir = std::env::temp_dir().join(format!(
        "corereg-test-{}-{}",
        std::process::id(),
        common::unique()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("corereg.toml");
    std::fs::write(
        &path,
        "domain = [\"example.org\"]\nmin-expires = 300\ndefault-expires = 600\n",
    )
    .expect("write");
    let server = Server::start(&[
        "--config",
        path.to_str().expect("utf-8 path"),
        "--min-expires",
        "100",
    ]);
    let client = server.client();
    let reg = Req::register(&client, "judy", "example.org")
        .contact(&contact_of(&client, "judy"))
        .expires("50");
    let resp = client.request(&reg.build());
    assert_eq!(resp.status, 423, "{}", resp.raw);
    assert_eq!(
        resp.header("Min-Expires"),
        Some("100"),
        "flag beats file:\n{}",
        resp.raw
    );
    let foreign =
        Req::register(&client, "judy", "example.com").contact(&contact_of(&client, "judy"));
    assert_eq!(
        client.request(&foreign.build()).status,
        404,
        "domain from the file"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stateless_stub_answers_every_request_with_a_bare_200() {
    let server = Server::start(&["--stateless-stub"]);
    let client = server.client();
    let req = Req::register(&client, "stub", "example.com").contact(&contact_of(&client, "stub"));
    let resp = client.request(&req.build());
    assert_eq!(resp.status, 200, "{}", resp.raw);
    assert!(
        resp.header("Via").is_some_and(|v| v == req.via),
        "{}",
        resp.raw
    );
    assert_eq!(resp.header("Call-ID"), Some(req.call_id.as_str()));
    assert!(
        resp.contacts().is_empty(),
        "the stub keeps no state:\n{}",
        resp.raw
    );
    // Responses are never answered.
    assert!(client
        .expect_silence(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x\r\n\r\n")
        .is_ok());
}

/// Authentication off on an address other than loopback: the start-up log says, once, that anyone can bind
/// any AoR. On loopback it says nothing.
#[test]
fn auth_off_off_loopback_warns_once_at_start_up() {
    let needle = "anyone who reaches it can bind any address-of-record";
    let open = Server::start_at("0.0.0.0:0", &[]);
    let log = open.log_text();
    assert_eq!(log.matches(needle).count(), 1, "{log}");
    assert!(log.contains("WARN"), "{log}");
    let closed = Server::start(&[]);
    assert!(!closed.log_text().contains(needle), "{}", closed.log_text());
}
