//! Decision-path tests for [`Authenticator`], driven with a fake clock and a client built from the
//! digest functions (the RFC vectors in `corereg_sip::digest` pin those down independently).

use super::*;
use crate::sip::digest::{expected_response, ha1_hex};

const START: u64 = 1_700_000_000;
const T0: u64 = START + 10;
const REALM: &str = "example.com";
const RURI: &str = "sip:example.com";
const ALICE_AOR: &[u8] = b"sip:alice@example.com";

fn src(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn store(alice_password: &str) -> Arc<CredentialStore> {
    let text = format!(
        "default_realm = \"example.com\"\n\
         [[user]]\nusername = \"alice\"\npassword = \"{alice_password}\"\n\
         [[user]]\nusername = \"pbx\"\npassword = \"pbxpw\"\naors = [\"sip:frontdesk@example.com\"]\n\
         [[user]]\nusername = \"legacy\"\nha1_md5 = \"{}\"\n\
         [[user]]\nusername = 'qu\"ote'\npassword = \"pw\"\n",
        ha1_hex(Algorithm::Md5, "legacy", REALM, "old")
    );
    Arc::new(CredentialStore::from_toml_str(&text, None).unwrap())
}

/// Both challenges, SHA-256 first, so that both digests are exercised.
fn config() -> AuthConfig {
    AuthConfig {
        challenge_algorithms: [Some(Algorithm::Sha256), Some(Algorithm::Md5)],
        guard: GuardConfig {
            max_failures: 3,
            window_s: 60,
            cooldown_s: 600,
            capacity: 64,
        },
        ..AuthConfig::default()
    }
}

fn authenticator(config: AuthConfig) -> Authenticator {
    // Started a little before T0: nonces issued in the start-up second are re-challenged once.
    Authenticator::new(
        config,
        NonceKey::from_bytes(&[7; 32]).unwrap(),
        store("secret"),
        START,
    )
}

/// `name="value"` from a challenge line.
fn param(line: &str, name: &str) -> String {
    let start = line.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    let len = line[start..].find('"').unwrap();
    line[start..start + len].to_owned()
}

struct Challenge {
    nonce: String,
    opaque: String,
}

fn challenge(a: &mut Authenticator, aor: &[u8], source: IpAddr, now_s: u64) -> Challenge {
    let mut out = Vec::new();
    a.write_challenges(REALM.as_bytes(), aor, source, now_s, false, &mut out);
    let text = String::from_utf8(out).unwrap();
    Challenge {
        nonce: param(&text, "nonce"),
        opaque: param(&text, "opaque"),
    }
}

#[allow(clippy::too_many_arguments)]
fn authorization(alg: Algorithm, user: &str, password: &str, ch: &Challenge, nc: u32) -> String {
    let ha1 = ha1_hex(alg, user, REALM, password);
    let nc = format!("{nc:08x}");
    let resp = expected_response(
        alg,
        ha1.as_bytes(),
        b"REGISTER",
        RURI.as_bytes(),
        ch.nonce.as_bytes(),
        nc.as_bytes(),
        b"0a4f113b",
        Some(b"auth"),
    )
    .unwrap();
    let user = user.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{}\", uri=\"{RURI}\", response=\"{}\", \
         algorithm={alg}, cnonce=\"0a4f113b\", opaque=\"{}\", qop=auth, nc={nc}",
        ch.nonce,
        resp.as_str(),
        ch.opaque
    )
}

fn request<'a>(
    aor: &'a [u8],
    to_user: &'a [u8],
    source: IpAddr,
    auths: &'a [&'a [u8]],
) -> AuthRequest<'a> {
    AuthRequest {
        method: b"REGISTER",
        request_uri: Some(RURI.as_bytes()),
        aor,
        to_user,
        realm: REALM.as_bytes(),
        source,
        authorizations: auths,
    }
}

/// One REGISTER from alice with the given header.
fn alice(a: &mut Authenticator, header: &str, source: IpAddr, now_s: u64) -> AuthDecision<'static> {
    let auths = [header.as_bytes()];
    match a.check(request(ALICE_AOR, b"alice", source, &auths), now_s) {
        // Detach the borrowed user name so tests can compare decisions easily.
        AuthDecision::Accept { user } => {
            assert_eq!(user, b"alice");
            AuthDecision::Accept { user: b"alice" }
        }
        AuthDecision::Challenge { stale } => AuthDecision::Challenge { stale },
        AuthDecision::Forbidden(r) => AuthDecision::Forbidden(r),
    }
}

const ACCEPT: AuthDecision<'static> = AuthDecision::Accept { user: b"alice" };
const CHALLENGE: AuthDecision<'static> = AuthDecision::Challenge { stale: false };
const STALE: AuthDecision<'static> = AuthDecision::Challenge { stale: true };
const COOLDOWN: AuthDecision<'static> = AuthDecision::Forbidden(ForbiddenReason::TooManyFailures);

#[test]
fn no_credentials_gets_challenges_sha256_first() {
    let mut a = authenticator(config());
    assert_eq!(
        a.check(request(ALICE_AOR, b"alice", src(1), &[]), T0),
        CHALLENGE
    );
    assert_eq!(a.stats().no_credentials, 1);

    let mut out = b"SIP/2.0 401 Unauthorized\r\n".to_vec();
    a.write_challenges(b"example.com", ALICE_AOR, src(1), T0, false, &mut out);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.split_terminator("\r\n").skip(1).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("WWW-Authenticate: Digest realm=\"example.com\", nonce=\""));
    assert!(lines[0].contains("algorithm=SHA-256") && lines[1].contains("algorithm=MD5"));
    for line in &lines {
        assert!(line.contains(", qop=\"auth\"") && !line.contains("stale"));
        assert_eq!(param(line, "nonce").len(), nonce::NONCE_LEN);
        assert_eq!(param(line, "opaque").len(), 16);
    }
    assert_eq!(param(lines[0], "nonce"), param(lines[1], "nonce"));
    assert!(text.ends_with("\r\n"));

    let mut out = Vec::new();
    a.write_challenges(b"Ex \"Corp\"", ALICE_AOR, src(1), T0, true, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches(", stale=true\r\n").count(), 2);
    assert!(text.starts_with("WWW-Authenticate: Digest realm=\"Ex \\\"Corp\\\"\""));
    // Each challenge carries a new nonce.
    assert_ne!(
        challenge(&mut a, ALICE_AOR, src(1), T0).nonce,
        challenge(&mut a, ALICE_AOR, src(1), T0).nonce
    );
}

#[test]
fn fresh_nonce_accepted_with_both_algorithms() {
    let mut a = authenticator(config());
    for alg in Algorithm::ALL {
        let ch = challenge(&mut a, ALICE_AOR, src(1), T0);
        let d = alice(
            &mut a,
            &authorization(alg, "alice", "secret", &ch, 1),
            src(1),
            T0 + 1,
        );
        assert_eq!(d, ACCEPT, "{alg}: {:?}", a.stats());
    }
    assert_eq!(a.stats().accepted, 2);
}

#[test]
fn increasing_nc_reuses_nonce_and_replays_are_refused() {
    let mut a = authenticator(config());
    let ch = challenge(&mut a, ALICE_AOR, src(1), T0);
    let first = authorization(Algorithm::Sha256, "alice", "secret", &ch, 1);
    assert_eq!(alice(&mut a, &first, src(1), T0), ACCEPT);
    // A captured copy, from anywhere: refused, and the UA gets a fresh nonce if it was its own.
    assert_eq!(alice(&mut a, &first, src(9), T0 + 1), STALE);
    assert_eq!(
        alice(
            &mut a,
            &authorization(Algorithm::Sha256, "alice", "secret", &ch, 2),
            src(1),
            T0 + 2
        ),
        ACCEPT
    );
    assert_eq!(
        alice(
            &mut a,
            &authorization(Algorithm::Sha256, "alice", "secret", &ch, 2),
            src(1),
            T0 + 3
        ),
        STALE
    );
    assert_eq!(a.stats().replayed, 2);
    // Replays are not password failures.
    assert_eq!(a.guard_stats().failures, 0);
}

#[test]
fn stale_nonce_with_right_password_gets_stale_challenge() {
    let mut a = authenticator(config());
    let ch = challenge(&mut a, ALICE_AOR, src(1), T0);
    let ttl = a.config().nonce_ttl_s;
    let good = authorization(Algorithm::Sha256, "alice", "secret", &ch, 1);
    assert_eq!(alice(&mut a, &good, src(1), T0 + ttl + 1), STALE);
    // Wrong password on a stale nonce: a plain failure, no stale hint.
    let bad = authorization(Algorithm::Sha256, "alice", "guess", &ch, 1);
    assert_eq!(alice(&mut a, &bad, src(1), T0 + ttl + 1), CHALLENGE);
    assert_eq!(
        (
            a.stats().stale,
            a.stats().bad_response,
            a.guard_stats().failures
        ),
        (1, 1, 1)
    );
    // At exactly the TTL it is still fresh.
    let ch = challenge(&mut a, ALICE_AOR, src(1), T0);
    let good = authorization(Algorithm::Sha256, "alice", "secret", &ch, 1);
    assert_eq!(alice(&mut a, &good, src(1), T0 + ttl), ACCEPT);
}

#[test]
fn forged_or_foreign_nonces_are_rejected_without_state() {
    let mut a = authenticator(config());
    let ch = challenge(&mut a, ALICE_AOR, src(1), T0);
    // Altered nonce (the client signs what it sends, so the response itself is consistent).
    let mut forged = Challenge {
        nonce: ch.nonce.clone(),
        opaque: ch.opaque.clone(),
    };
    forged
        .nonce
        .replace_range(0..1, if ch.nonce.starts_with('A') { "B" } else { "A" });
    // Nonce issued for bob's AoR, used for alice's.
    let bobs = challenge(&mut a, b"sip:bob@example.com", src(1), T0);
    // Nonce from another deployment's key.
    let other_key = NonceKey::from_bytes(&[8; 32]).unwrap();
    let foreign = Challenge {
        nonce: other_key
            .issue(T0, REALM.as_bytes(), ALICE_AOR, None, 1)
            .as_str()
            .to_owned(),
        opaque: ch.opaque.clone(),
    };
    // Nonce from the future.
    let future = Challenge {
        nonce: NonceKey::from_bytes(&[7; 32])
            .unwrap()
            .issue(T0 + 60, REALM.as_bytes(), ALICE_AOR, None, 1)
            .as_str()
            .into(),
        opaque: ch.opaque.clone(),
    };
    for _ in 0..100 {
        for c in [&forged, &bobs, &foreign, &future] {
            let h = authorization(Algorithm::Md5, "alice", "guess", c, 1);
            assert_eq!(alice(&mut a, &h, src(1), T0), CHALLENGE);
        }
    }
    assert_eq!(a.stats().invalid_nonce, 400);
    assert_eq!(
        a.guard_stats(),
        GuardStats::default(),
        "a forged flood records nothing"
    );
    assert_eq!(a.replay_stats(), ReplayStats::default());
    // Alice is unaffected.
    assert_eq!(
        alice(
            &mut a,
            &authorization(Algorithm::Md5, "alice", "secret", &ch, 1),
            src(1),
            T0
        ),
        ACCEPT
    );
}

#[test]
fn opaque_qop_and_uri_must_match() {
    let mut a = authenticator(config());
    let ch = challenge(&mut a, ALICE_AOR, src(1), T0);
    let good = authorization(Algorithm::Sha256, "alice", "secret", &ch, 1);
    let wrong_opaque = good.replace(&format!("opaque=\"{}\"", ch.opaque), "opaque=\"xyz\"");
    assert_eq!(alice(&mut a, &wrong_opaque, src(1), T0), CHALLENGE);
    assert_eq!(a.stats().invalid_nonce, 1);
    // Without qop (RFC 2069 style) there is no nc, hence no replay protection: refused.
    let no_qop = good.replace(", qop=auth", "");
    assert_eq!(alice(&mut a, &no_qop, src(1), T0), CHALLENGE);
    let wrong_uri = good.replace("uri=\"sip:example.com\"", "uri=\"sip:other.com\"");
    assert_eq!(alice(&mut a, &wrong_uri, src(1), T0), CHALLENGE);
    assert_eq!(a.stats().unsupported, 2);
    // Omitted opaque is tolerated (some UAs drop it); the nonce MAC is what protects us.
    let no_opaque = good.replace(&format!(", opaque=\"{}\"", ch.opaque), "");
    assert_eq!(alice(&mut a, &no_opaque, src(1), T0), ACCEPT);
}

#[test]
fn credentials_for_other_realms_or_schemes_are_skipped() {
    let mut a = authenticator(config());
    let ch = challenge(&mut a, ALICE_AOR, src(1), T0);
    let ours = authorization(Algorithm::Sha256, "alice", "secret", &ch, 1);
    let other_realm = ours.replace("realm=\"example.com\"", "realm=\"upstream.net\"");
    let auths: [&[u8]; 4] = [
        b"Basic YWxpY2U6c2VjcmV0",
        b"Digest garbage",
        other_realm.as_bytes(),
        ours.as_bytes(),
    ];
    assert_eq!(
        a.check(request(ALICE_AOR, b"alice", src(1), &auths), T0),
        AuthDecision::Accept { user: b"alice" }
    );
    assert_eq!(
        a.check(request(ALICE_AOR, b"alice", src(1), &auths[..3]), T0),
        CHALLENGE
    );
    assert_eq!(a.stats().malformed, 1);
}

#[test]
fn wrong_user_for_aor_is_forbidden() {
    let mut a = authenticator(config());
    let bob = b"sip:bob@example.com";
    let ch = challenge(&mut a, bob, src(1), T0);
    let h = authorization(Algorithm::Sha256, "alice", "secret", &ch, 1);
    let auths = [h.as_bytes()];
    assert_eq!(
        a.check(request(bob, b"bob", src(1), &auths), T0),
        AuthDecision::Forbidden(ForbiddenReason::NotOwner)
    );
    assert_eq!(a.stats().forbidden_not_owner, 1);
}

#[test]
fn allow_listed_third_party_registration() {
    let mut a = authenticator(config());
    let desk = b"sip:frontdesk@example.com";
    let ch = challenge(&mut a, desk, src(1), T0);
    let h = authorization(Algorithm::Md5, "pbx", "pbxpw", &ch, 1);
    let auths = [h.as_bytes()];
    assert_eq!(
        a.check(request(desk, b"frontdesk", src(1), &auths), T0),
        AuthDecision::Accept { user: b"pbx" }
    );
    // Not for AoRs outside its list.
    let other = b"sip:ceo@example.com";
    let ch = challenge(&mut a, other, src(1), T0);
    let h = authorization(Algorithm::Md5, "pbx", "pbxpw", &ch, 1);
    let auths = [h.as_bytes()];
    assert_eq!(
        a.check(request(other, b"ceo", src(1), &auths), T0),
        AuthDecision::Forbidden(ForbiddenReason::NotOwner)
    );
}

#[test]
fn unknown_user_is_a_failure() {
    let mut a = authenticator(config());
    let ch = challenge(&mut a, ALICE_AOR, src(1), T0);
    assert_eq!(
        alice(
            &mut a,
            &authorization(Algorithm::Sha256, "mallory", "x", &ch, 1),
            src(1),
            T0
        ),
        CHALLENGE
    );
    assert_eq!((a.stats().unknown_user, a.guard_stats().failures), (1, 1));
}

#[test]
fn user_with_md5_only_cannot_answer_sha256() {
    let mut a = authenticator(config());
    let aor = b"sip:legacy@example.com";
    let ch = challenge(&mut a, aor, src(1), T0);
    let sha = authorization(Algorithm::Sha256, "legacy", "old", &ch, 1);
    let md5 = authorization(Algorithm::Md5, "legacy", "old", &ch, 1);
    let (sha, md5) = ([sha.as_bytes()], [md5.as_bytes()]);
    assert_eq!(
        a.check(request(aor, b"legacy", src(1), &sha), T0),
        CHALLENGE
    );
    assert_eq!(
        (a.stats().no_ha1_for_algorithm, a.guard_stats().failures),
        (1, 0)
    );
    assert_eq!(
        a.check(request(aor, b"legacy", src(1), &md5), T0),
        AuthDecision::Accept { user: b"legacy" }
    );
}

#[test]
fn escaped_username() {
    let mut a = authenticator(config());
    let aor = b"sip:qu%22ote@example.com";
    let ch = challenge(&mut a, aor, src(1), T0);
    let h = authorization(Algorithm::Sha256, "qu\"ote", "pw", &ch, 1);
    let auths = [h.as_bytes()];
    // The To user compares unescaped; the decision hands back the raw header form.
    assert_eq!(
        a.check(request(aor, b"qu\"ote", src(1), &auths), T0),
        AuthDecision::Accept { user: b"qu\\\"ote" }
    );
}

#[test]
fn brute_force_cooldown_by_source_and_its_expiry() {
    let mut a = authenticator(config());
    let attacker = src(66);
    for i in 0..3 {
        let ch = challenge(&mut a, ALICE_AOR, attacker, T0);
        let h = authorization(Algorithm::Sha256, "alice", &format!("guess{i}"), &ch, 1);
        // Every failing attempt up to the limit gets a new challenge.
        assert_eq!(alice(&mut a, &h, attacker, T0 + i), CHALLENGE);
    }
    // Now even the right password, or no credentials at all, is refused from that address.
    let ch = challenge(&mut a, ALICE_AOR, attacker, T0 + 10);
    let good = authorization(Algorithm::Sha256, "alice", "secret", &ch, 1);
    assert_eq!(alice(&mut a, &good, attacker, T0 + 10), COOLDOWN);
    assert_eq!(
        a.check(request(ALICE_AOR, b"alice", attacker, &[]), T0 + 10),
        COOLDOWN
    );
    // Alice herself, at her own address, is not: failures from elsewhere never lock her out.
    let ch = challenge(&mut a, ALICE_AOR, src(1), T0 + 10);
    let good_elsewhere = authorization(Algorithm::Sha256, "alice", "secret", &ch, 1);
    assert_eq!(alice(&mut a, &good_elsewhere, src(1), T0 + 10), ACCEPT);
    // After the cool-down (600 s from the third failure at T0 + 2), all is well again.
    let later = T0 + 2 + 600;
    let ch = challenge(&mut a, ALICE_AOR, attacker, later);
    let good = authorization(Algorithm::Sha256, "alice", "secret", &ch, 1);
    assert_eq!(alice(&mut a, &good, attacker, later), ACCEPT);
    assert_eq!(a.stats().forbidden_cooldown, 2);
    assert_eq!(a.guard_stats().users_blocked, 1);
    assert_eq!(a.guard_stats().sources_blocked, 1);
}

#[test]
fn wrong_answers_from_many_sources_never_lock_the_user_out() {
    let mut a = authenticator(config());
    for i in 0..30u8 {
        let ch = challenge(&mut a, ALICE_AOR, src(100 + i), T0);
        let h = authorization(Algorithm::Md5, "alice", "guess", &ch, 1);
        assert_eq!(alice(&mut a, &h, src(100 + i), T0), CHALLENGE);
    }
    let ch = challenge(&mut a, ALICE_AOR, src(1), T0);
    let good = authorization(Algorithm::Md5, "alice", "secret", &ch, 1);
    assert_eq!(alice(&mut a, &good, src(1), T0 + 1), ACCEPT);
    // Each guessing address is still limited: its fourth attempt at alice is refused.
    for _ in 0..2 {
        let ch = challenge(&mut a, ALICE_AOR, src(100), T0 + 2);
        let h = authorization(Algorithm::Md5, "alice", "guess", &ch, 1);
        assert_eq!(alice(&mut a, &h, src(100), T0 + 2), CHALLENGE);
    }
    let ch = challenge(&mut a, ALICE_AOR, src(100), T0 + 2);
    let h = authorization(Algorithm::Md5, "alice", "secret", &ch, 1);
    assert_eq!(alice(&mut a, &h, src(100), T0 + 2), COOLDOWN);
    // Other users at a clean address are unaffected.
    let desk = b"sip:frontdesk@example.com";
    let ch = challenge(&mut a, desk, src(1), T0);
    let h = authorization(Algorithm::Md5, "pbx", "pbxpw", &ch, 1);
    let auths = [h.as_bytes()];
    assert_eq!(
        a.check(request(desk, b"frontdesk", src(1), &auths), T0 + 1),
        AuthDecision::Accept { user: b"pbx" }
    );
}

#[test]
fn success_resets_user_failures() {
    let mut a = authenticator(config());
    for round in 0..3u64 {
        for i in 0..2u8 {
            let ch = challenge(&mut a, ALICE_AOR, src(10 * round as u8 + i), T0);
            let h = authorization(Algorithm::Md5, "alice", "typo", &ch, 1);
            assert_eq!(
                alice(&mut a, &h, src(10 * round as u8 + i), T0 + round),
                CHALLENGE
            );
        }
        let ch = challenge(&mut a, ALICE_AOR, src(200), T0);
        let good = authorization(Algorithm::Md5, "alice", "secret", &ch, 1);
        assert_eq!(
            alice(&mut a, &good, src(200), T0 + round),
            ACCEPT,
            "round {round}"
        );
    }
}

#[test]
fn reload_credentials() {
    let mut a = authenticator(config());
    let ch = challenge(&mut a, ALICE_AOR, src(1), T0);
    a.set_credentials(store("new-secret"));
    assert_eq!(
        alice(
            &mut a,
            &authorization(Algorithm::Sha256, "alice", "secret", &ch, 1),
            src(1),
            T0
        ),
        CHALLENGE
    );
    // The nonce issued before the reload is still good.
    assert_eq!(
        alice(
            &mut a,
            &authorization(Algorithm::Sha256, "alice", "new-secret", &ch, 2),
            src(1),
            T0
        ),
        ACCEPT
    );
    a.set_credentials(Arc::new(CredentialStore::empty()));
    assert_eq!(
        alice(
            &mut a,
            &authorization(Algorithm::Sha256, "alice", "new-secret", &ch, 3),
            src(1),
            T0
        ),
        CHALLENGE
    );
}

#[test]
fn nonce_bound_to_source_when_configured() {
    let mut a = authenticator(AuthConfig {
        bind_nonce_to_source: true,
        ..config()
    });
    let ch = challenge(&mut a, ALICE_AOR, src(1), T0);
    let h = authorization(Algorithm::Sha256, "alice", "secret", &ch, 1);
    assert_eq!(alice(&mut a, &h, src(2), T0), CHALLENGE);
    assert_eq!(alice(&mut a, &h, src(1), T0), ACCEPT);
}

/// Right after a (re)start every phone comes back at once: a challenge issued in the second the
/// authenticator started is answered and accepted, the first time.
#[test]
fn own_nonce_from_the_start_up_second_is_accepted_at_once() {
    let mut b = Authenticator::new(
        config(),
        NonceKey::from_bytes(&[7; 32]).unwrap(),
        store("secret"),
        T0,
    );
    let ch = challenge(&mut b, ALICE_AOR, src(1), T0);
    let h = authorization(Algorithm::Md5, "alice", "secret", &ch, 1);
    assert_eq!(alice(&mut b, &h, src(1), T0), ACCEPT);
    assert_eq!(b.stats().replay_forgotten, 0);
    // The same nonce presented to another shard's authenticator (same key) is not its own: re-challenged.
    let mut c = Authenticator::new(
        config(),
        NonceKey::from_bytes(&[7; 32]).unwrap(),
        store("secret"),
        T0,
    );
    let h2 = authorization(Algorithm::Md5, "alice", "secret", &ch, 2);
    assert_eq!(alice(&mut c, &h2, src(1), T0), STALE);
}

#[test]
fn nonce_from_before_start_is_rechallenged_once() {
    // A process restarted with the same key file does not know which nonce-counts were used.
    let mut a = authenticator(config());
    let old = Challenge {
        nonce: NonceKey::from_bytes(&[7; 32])
            .unwrap()
            .issue(START, REALM.as_bytes(), ALICE_AOR, None, 1)
            .as_str()
            .into(),
        opaque: challenge(&mut a, ALICE_AOR, src(1), T0).opaque,
    };
    assert_eq!(
        alice(
            &mut a,
            &authorization(Algorithm::Md5, "alice", "secret", &old, 5),
            src(1),
            T0
        ),
        STALE
    );
    assert_eq!(a.stats().replay_forgotten, 1);
}

#[test]
fn challenge_order_follows_the_configured_algorithms() {
    use crate::sip::digest::Algorithm;
    let lines = |config: AuthConfig| {
        let creds = Arc::new(CredentialStore::empty());
        let key = NonceKey::generate().expect("key");
        let mut auth = Authenticator::new(config, key, creds, 1_000);
        let mut out = Vec::new();
        auth.write_challenges(
            b"example.com",
            b"sip:a@example.com",
            "192.0.2.1".parse().expect("ip"),
            1_000,
            false,
            &mut out,
        );
        String::from_utf8(out).expect("utf8")
    };
    let default = lines(AuthConfig::default());
    assert_eq!(default.matches("WWW-Authenticate").count(), 1, "{default}");
    assert!(
        default.contains("algorithm=MD5"),
        "MD5 alone by default:\n{default}"
    );
    let both = lines(
        AuthConfig::default()
            .with_algorithms(&[Algorithm::Sha256, Algorithm::Md5])
            .expect("valid"),
    );
    let sha = both.find("algorithm=SHA-256").expect("sha-256 offered");
    let md5 = both.find("algorithm=MD5").expect("md5 offered");
    assert!(sha < md5, "SHA-256 first when configured so:\n{both}");
    let md5_only = lines(
        AuthConfig::default()
            .with_algorithms(&[Algorithm::Md5])
            .expect("valid"),
    );
    assert_eq!(
        md5_only.matches("WWW-Authenticate").count(),
        1,
        "{md5_only}"
    );
    assert!(md5_only.contains("algorithm=MD5"));
    let md5_first = lines(
        AuthConfig::default()
            .with_algorithms(&[Algorithm::Md5, Algorithm::Sha256])
            .expect("valid"),
    );
    assert!(md5_first.find("algorithm=MD5") < md5_first.find("algorithm=SHA-256"));
    assert!(AuthConfig::default().with_algorithms(&[]).is_none());
    assert!(AuthConfig::default()
        .with_algorithms(&[Algorithm::Md5, Algorithm::Md5])
        .is_none());
}
