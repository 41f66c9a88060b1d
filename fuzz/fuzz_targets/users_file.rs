//! The users file parsers (TOML and CSV, `auth::credentials`) on arbitrary text. Nothing may panic:
//! a bad file is an error with a line number. The first byte picks the format and the default realm.

#![no_main]

use corereg::auth::credentials::{CredentialStore, CredentialsError};
use corereg::sip::digest::Algorithm;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let default_realm = match selector >> 1 & 3 {
        0 => None,
        1 => Some("example.com"),
        2 => Some(""),
        _ => Some("Example Corp"),
    };
    let parsed = if selector & 1 == 0 {
        CredentialStore::from_toml_str(&text, default_realm)
    } else {
        CredentialStore::from_csv_str(&text, default_realm)
    };
    match parsed {
        Ok(store) => probe(&store, &text),
        Err(e) => {
            // The message is what the operator reads: it must render, and name a line within the file.
            let message = e.to_string();
            assert!(!message.is_empty());
            if let CredentialsError::Syntax { line, .. } | CredentialsError::Entry { line, .. } = e
            {
                assert!(
                    line <= text.lines().count() + 1,
                    "line {line} of a {}-line file: {message}",
                    text.lines().count()
                );
            }
        }
    }
});

/// Look up what the file may have defined (names taken from its own words), and use what is found.
fn probe(store: &CredentialStore, text: &str) {
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || ".-_@:*".contains(c)))
        .filter(|w| !w.is_empty())
        .take(32)
        .collect();
    for realm in words.iter().copied().chain(["example.com", ""]) {
        for user in &words {
            let Some(u) = store.lookup(realm.as_bytes(), user.as_bytes()) else {
                continue;
            };
            for alg in Algorithm::ALL {
                if let Some(ha1) = u.ha1(alg) {
                    assert_eq!(ha1.algorithm(), alg);
                    assert_eq!(ha1.expose_hex().len(), alg.hex_len());
                }
            }
            for aor in u.aors() {
                assert!(u.allows_aor(aor), "an allow-listed AoR is allowed");
            }
            let _ = u.allows_aor(format!("sip:{user}@{realm}").as_bytes());
        }
    }
}
