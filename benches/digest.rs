//! Cost of digest authentication on the REGISTER path.
//!
//! - `verify/*`: the full verify of one response: parse the `Authorization` value, check the nonce
//!   (base64 + HMAC-SHA256), compute the expected response (3 hashes), constant-time compare;
//! - `authenticator/*`: `Authenticator::check` end to end (adds the guard probes, the credential
//!   lookup and the replay window), with a new nonce-count each iteration;
//! - `challenge`: the 401 path (`write_challenges`: one nonce, two header lines).
//!
//! Run: `cargo bench --bench digest`.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use corereg::auth::credentials::CredentialStore;
use corereg::auth::nonce::{NonceCheck, NonceKey};
use corereg::auth::{AuthConfig, AuthDecision, AuthRequest, Authenticator};
use corereg::sip::digest::{self, expected_response, ha1_hex, Algorithm, Ha1};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const NOW: u64 = 1_700_000_000;
const REALM: &str = "example.com";
const AOR: &[u8] = b"sip:alice@example.com";
const URI: &str = "sip:example.com";

fn header(alg: Algorithm, nonce: &str, nc: u32) -> String {
    let ha1 = ha1_hex(alg, "alice", REALM, "secret");
    let nc = format!("{nc:08x}");
    let resp = expected_response(
        alg,
        ha1.as_bytes(),
        b"REGISTER",
        URI.as_bytes(),
        nonce.as_bytes(),
        nc.as_bytes(),
        b"6c1a0b2f",
        Some(b"auth"),
    )
    .expect("qop=auth");
    format!(
        "Digest username=\"alice\",realm=\"{REALM}\",nonce=\"{nonce}\",uri=\"{URI}\",\
         response=\"{}\",algorithm={alg},cnonce=\"6c1a0b2f\",qop=auth,nc={nc}",
        resp.as_str()
    )
}

fn verify_bench(c: &mut Criterion) {
    let key = NonceKey::from_bytes(&[7; 32]).expect("key");
    let nonce = key.issue(NOW, REALM.as_bytes(), AOR, None, 1);
    for alg in [Algorithm::Sha256, Algorithm::Md5] {
        let h = header(alg, nonce.as_str(), 1);
        let ha1 = Ha1::from_password(alg, b"alice", REALM.as_bytes(), b"secret");
        c.bench_function(&format!("verify/{alg}"), |b| {
            b.iter(|| {
                let creds = digest::parse_authorization(black_box(h.as_bytes())).expect("parses");
                let fresh = matches!(
                    key.check(creds.nonce.raw(), NOW, REALM.as_bytes(), AOR, None, 300),
                    NonceCheck::Fresh { .. }
                );
                fresh && digest::verify(&ha1, &creds, b"REGISTER")
            })
        });
    }
}

fn authenticator_bench(c: &mut Criterion) {
    let key = NonceKey::from_bytes(&[7; 32]).expect("key");
    let source = IpAddr::from([192, 0, 2, 1]);
    for alg in [Algorithm::Sha256, Algorithm::Md5] {
        let mut auth =
            Authenticator::new(AuthConfig::default(), key.clone(), alice_store(), NOW - 10);
        let mut out = Vec::new();
        auth.write_challenges(REALM.as_bytes(), AOR, source, NOW, false, &mut out);
        let text = String::from_utf8(out).expect("ascii");
        let start = text.find("nonce=\"").expect("nonce") + 7;
        let nonce = text[start..start + 44].to_owned();
        let mut nc = 0u32;
        c.bench_function(&format!("authenticator/{alg}"), |b| {
            b.iter_batched(
                || {
                    nc += 1;
                    header(alg, &nonce, nc)
                },
                |h| {
                    let auths = [h.as_bytes()];
                    let req = AuthRequest {
                        method: b"REGISTER",
                        request_uri: Some(URI.as_bytes()),
                        aor: AOR,
                        to_user: b"alice",
                        realm: REALM.as_bytes(),
                        source,
                        authorizations: &auths,
                    };
                    let accepted = matches!(auth.check(req, NOW), AuthDecision::Accept { .. });
                    assert!(accepted);
                },
                BatchSize::SmallInput,
            )
        });
    }
}

fn alice_store() -> Arc<CredentialStore> {
    let toml = "[[user]]\nusername = \"alice\"\nrealm = \"example.com\"\npassword = \"secret\"\n";
    Arc::new(CredentialStore::from_toml_str(toml, None).expect("store"))
}

fn challenge_bench(c: &mut Criterion) {
    let key = NonceKey::from_bytes(&[7; 32]).expect("key");
    let mut auth = Authenticator::new(
        AuthConfig::default(),
        key,
        Arc::new(CredentialStore::empty()),
        NOW,
    );
    let source = IpAddr::from([192, 0, 2, 1]);
    let mut out = Vec::with_capacity(512);
    c.bench_function("challenge", |b| {
        b.iter(|| {
            out.clear();
            auth.write_challenges(
                REALM.as_bytes(),
                black_box(AOR),
                source,
                NOW,
                false,
                &mut out,
            );
            out.len()
        })
    });
}

criterion_group!(benches, verify_bench, authenticator_bench, challenge_bench);
criterion_main!(benches);
