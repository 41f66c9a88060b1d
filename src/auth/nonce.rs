//! Stateless digest nonces, valid on every shard and in every process that shares the key.
//!
//! A nonce is `base64url(ts_s | key_id | counter | mac)` without padding, 44 ASCII characters:
//!
//! | bytes | field      | why                                                                   |
//! |-------|------------|-----------------------------------------------------------------------|
//! | 8     | `ts_s`     | issue time (Unix seconds, big-endian): gives staleness without state  |
//! | 1     | `key_id`   | which key made the MAC: another key's nonce is refused without a MAC  |
//! | 8     | `counter`  | makes nonces issued in the same second unique (the replay window key) |
//! | 16    | `mac`      | HMAC-SHA256(key, ts, key_id, counter, realm, aor[, source ip]), truncated |
//!
//! Binding the MAC to the realm and AoR means a nonce obtained for one AoR cannot be used for another;
//! binding to the source address is optional because NAT rebinding would turn it into spurious
//! re-challenges. Nothing is stored per nonce: an unauthenticated flood costs one HMAC per challenge
//! and no memory.
//!
//! The key is 32 to 64 random bytes, generated at start-up or read from a key file (hex, so several
//! processes behind one address can share it). The key id is derived from the key itself (first byte of
//! a SHA-256 of it), so processes sharing a file agree on ids without extra configuration.

use core::fmt;
use std::net::IpAddr;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Length of an encoded nonce in ASCII characters.
pub const NONCE_LEN: usize = 44;
/// Length of a decoded nonce: 8 + 1 + 8 + 16.
const RAW_LEN: usize = 33;
const MAC_LEN: usize = 16;
/// Accepted clock difference for timestamps from the future (processes sharing a key may disagree a
/// little about the time). Beyond it, the nonce is treated as forged.
pub const MAX_CLOCK_SKEW_S: u64 = 5;
/// Key sizes accepted: at least the HMAC-SHA256 output size, at most one SHA-256 block.
pub const MIN_KEY_LEN: usize = 32;
pub const MAX_KEY_LEN: usize = 64;
/// Key files are tiny; refuse to read anything big (a wrong path, say a log file).
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Why a nonce key could not be created.
#[derive(Debug, thiserror::Error)]
pub enum NonceKeyError {
    #[error("operating system random source failed: {0}")]
    Random(getrandom::Error),
    #[error("nonce key must be {MIN_KEY_LEN} to {MAX_KEY_LEN} bytes (twice as many hex digits), got {0} bytes")]
    BadLength(usize),
    #[error("nonce key file is not hex (invalid character at offset {0})")]
    NotHex(usize),
    #[error("nonce key file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nonce key file {path} is larger than {MAX_KEY_FILE_LEN} bytes")]
    FileTooLarge { path: String },
}

/// One HMAC key for nonces, with its id.
#[derive(Clone)]
pub struct NonceKey {
    key_id: u8,
    /// Keyed HMAC state, cloned per use: saves re-hashing the key's two pads on every nonce.
    mac: HmacSha256,
    /// `opaque` value derived from the key (16 base64url chars), identical in processes sharing it.
    opaque: [u8; 16],
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// An encoded nonce (ASCII, fixed size, no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Nonce([u8; NONCE_LEN]);

impl Nonce {
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        // base64url output is ASCII; never fails.
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.as_str())
    }
}

/// Why a nonce was rejected outright (for metrics; the client just gets a new challenge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceInvalid {
    /// Wrong length or not base64url.
    Malformed,
    /// Made by another key (another deployment's, or this one's before a restart with a new key).
    UnknownKey,
    /// MAC mismatch: forged, altered, or for another realm/AoR/source.
    BadMac,
    /// Timestamp later than now + [`MAX_CLOCK_SKEW_S`].
    Future,
}

/// Result of checking a nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum NonceCheck {
    /// Ours, for this realm and AoR, within its time to live.
    Fresh { issued_s: u64, counter: u64 },
    /// Ours, but older than the TTL: challenge again with `stale=true`.
    Stale { issued_s: u64, counter: u64 },
    /// Not a valid nonce of ours.
    Invalid(NonceInvalid),
}

impl NonceKey {
    /// A fresh random 32-byte key from the operating system.
    pub fn generate() -> Result<Self, NonceKeyError> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).map_err(NonceKeyError::Random)?;
        let k = Self::from_bytes(&key);
        key.fill(0);
        k
    }

    /// 64 random hex digits, the content of a new key file (`corereg nonce-key > key.hex`).
    pub fn generate_hex() -> Result<String, NonceKeyError> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).map_err(NonceKeyError::Random)?;
        let hex = key.iter().map(|b| format!("{b:02x}")).collect();
        key.fill(0);
        Ok(hex)
    }

    /// A key from raw bytes (32 to 64).
    pub fn from_bytes(key: &[u8]) -> Result<Self, NonceKeyError> {
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
            return Err(NonceKeyError::BadLength(key.len()));
        }
        let mut id_hash = Sha256::new();
        // Domain-separated so the id reveals nothing usable about MAC outputs.
        id_hash.update(b"corereg nonce key id\0");
        id_hash.update(key);
        let key_id = id_hash.finalize()[0];
        let mac =
            HmacSha256::new_from_slice(key).map_err(|_| NonceKeyError::BadLength(key.len()))?;
        let opaque_mac = mac
            .clone()
            .chain_update(b"corereg opaque\0")
            .finalize()
            .into_bytes();
        let mut opaque = [0u8; 16];
        // 12 bytes encode to exactly 16 characters.
        let n = URL_SAFE_NO_PAD
            .encode_slice(&opaque_mac[..12], &mut opaque)
            .unwrap_or(0);
        debug_assert_eq!(n, 16);
        Ok(Self {
            key_id,
            mac,
            opaque,
        })
    }

    /// A key from the text of a key file: hex digits, surrounding whitespace ignored.
    pub fn from_hex(text: &[u8]) -> Result<Self, NonceKeyError> {
        let text = text.trim_ascii();
        let mut key = [0u8; MAX_KEY_LEN];
        if !text.len().is_multiple_of(2) || text.len() / 2 > MAX_KEY_LEN {
            return Err(NonceKeyError::BadLength(text.len() / 2));
        }
        for (i, pair) in text.chunks_exact(2).enumerate() {
            let hi = hex_digit(pair[0]).ok_or(NonceKeyError::NotHex(2 * i))?;
            let lo = hex_digit(pair[1]).ok_or(NonceKeyError::NotHex(2 * i + 1))?;
            key[i] = (hi << 4) | lo;
        }
        let k = Self::from_bytes(&key[..text.len() / 2]);
        key.fill(0);
        k
    }

    /// Reads a key file (see [`NonceKey::from_hex`]).
    pub fn load(path: &Path) -> Result<Self, NonceKeyError> {
        let shown = path.display().to_string();
        let io = |source| NonceKeyError::Io {
            path: shown.clone(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_KEY_FILE_LEN {
            return Err(NonceKeyError::FileTooLarge { path: shown });
        }
        let mut text = std::fs::read(path).map_err(io)?;
        let k = Self::from_hex(&text);
        text.fill(0);
        k
    }

    #[must_use]
    pub fn key_id(&self) -> u8 {
        self.key_id
    }

    /// The `opaque` value to put in challenges (derived from the key, ASCII).
    #[must_use]
    pub fn opaque(&self) -> &[u8] {
        &self.opaque
    }

    fn mac_tag(
        &self,
        head: &[u8; 17],
        realm: &[u8],
        aor: &[u8],
        source: Option<IpAddr>,
    ) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(head);
        // Length prefixes: without them realm "ab"+aor "c" would MAC like realm "a"+aor "bc".
        mac.update(&(realm.len() as u64).to_be_bytes());
        mac.update(realm);
        mac.update(&(aor.len() as u64).to_be_bytes());
        mac.update(aor);
        match source.map(|ip| ip.to_canonical()) {
            None => mac.update(&[0]),
            Some(IpAddr::V4(v4)) => {
                mac.update(&[4]);
                mac.update(&v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                mac.update(&[6]);
                mac.update(&v6.octets());
            }
        }
        mac
    }

    /// Issues a nonce for `realm` and `aor` (and `source`, if binding to it is configured).
    /// `counter` should differ between nonces issued in the same second (any per-shard counter).
    #[must_use]
    pub fn issue(
        &self,
        now_s: u64,
        realm: &[u8],
        aor: &[u8],
        source: Option<IpAddr>,
        counter: u64,
    ) -> Nonce {
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&now_s.to_be_bytes());
        raw[8] = self.key_id;
        raw[9..17].copy_from_slice(&counter.to_be_bytes());
        let mut head = [0u8; 17];
        head.copy_from_slice(&raw[..17]);
        let tag = self
            .mac_tag(&head, realm, aor, source)
            .finalize()
            .into_bytes();
        raw[17..].copy_from_slice(&tag[..MAC_LEN]);
        let mut out = [0u8; NONCE_LEN];
        // 33 bytes encode to exactly 44 characters.
        let n = URL_SAFE_NO_PAD.encode_slice(raw, &mut out).unwrap_or(0);
        debug_assert_eq!(n, NONCE_LEN);
        Nonce(out)
    }

    /// Checks a nonce made by this key: fresh or stale (with its issue time and counter), or why not ours.
    pub fn check(
        &self,
        nonce: &[u8],
        now_s: u64,
        realm: &[u8],
        aor: &[u8],
        source: Option<IpAddr>,
        ttl_s: u64,
    ) -> NonceCheck {
        match decode(nonce) {
            Ok(raw) => self.check_raw(&raw, now_s, realm, aor, source, ttl_s),
            Err(e) => NonceCheck::Invalid(e),
        }
    }

    fn check_raw(
        &self,
        raw: &[u8; RAW_LEN],
        now_s: u64,
        realm: &[u8],
        aor: &[u8],
        source: Option<IpAddr>,
        ttl_s: u64,
    ) -> NonceCheck {
        if raw[8] != self.key_id {
            return NonceCheck::Invalid(NonceInvalid::UnknownKey);
        }
        let mut head = [0u8; 17];
        head.copy_from_slice(&raw[..17]);
        // Constant-time comparison of the truncated tag (hmac's verify uses subtle).
        if self
            .mac_tag(&head, realm, aor, source)
            .verify_truncated_left(&raw[17..])
            .is_err()
        {
            return NonceCheck::Invalid(NonceInvalid::BadMac);
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&raw[..8]);
        let issued_s = u64::from_be_bytes(ts);
        let mut c = [0u8; 8];
        c.copy_from_slice(&raw[9..17]);
        let counter = u64::from_be_bytes(c);
        if issued_s > now_s.saturating_add(MAX_CLOCK_SKEW_S) {
            return NonceCheck::Invalid(NonceInvalid::Future);
        }
        if now_s.saturating_sub(issued_s) > ttl_s {
            NonceCheck::Stale { issued_s, counter }
        } else {
            NonceCheck::Fresh { issued_s, counter }
        }
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn decode(nonce: &[u8]) -> Result<[u8; RAW_LEN], NonceInvalid> {
    if nonce.len() != NONCE_LEN {
        return Err(NonceInvalid::Malformed);
    }
    let mut raw = [0u8; RAW_LEN];
    match URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw) {
        Ok(RAW_LEN) => Ok(raw),
        _ => Err(NonceInvalid::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REALM: &[u8] = b"example.com";
    const AOR: &[u8] = b"sip:alice@example.com";
    const T0: u64 = 1_700_000_000;
    const TTL: u64 = 300;

    fn key(byte: u8) -> NonceKey {
        NonceKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn roundtrip_fresh_then_stale() {
        let k = key(1);
        let n = k.issue(T0, REALM, AOR, None, 7);
        assert_eq!(n.as_bytes().len(), NONCE_LEN);
        assert!(n
            .as_bytes()
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_'));
        let check = |now| k.check(n.as_bytes(), now, REALM, AOR, None, TTL);
        let fresh = NonceCheck::Fresh {
            issued_s: T0,
            counter: 7,
        };
        assert_eq!(check(T0), fresh);
        assert_eq!(check(T0 + TTL), fresh);
        assert_eq!(
            check(T0 + TTL + 1),
            NonceCheck::Stale {
                issued_s: T0,
                counter: 7
            }
        );
        // A clock slightly behind the issuer is tolerated; far behind means forged.
        assert_eq!(check(T0 - MAX_CLOCK_SKEW_S), fresh);
        assert_eq!(
            check(T0 - MAX_CLOCK_SKEW_S - 1),
            NonceCheck::Invalid(NonceInvalid::Future)
        );
    }

    #[test]
    fn counter_makes_nonces_unique() {
        let k = key(1);
        assert_ne!(
            k.issue(T0, REALM, AOR, None, 1),
            k.issue(T0, REALM, AOR, None, 2)
        );
    }

    #[test]
    fn bound_to_realm_aor_and_source() {
        let k = key(1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let n = k.issue(T0, REALM, AOR, Some(ip), 1);
        let bad = NonceCheck::Invalid(NonceInvalid::BadMac);
        assert_eq!(
            k.check(n.as_bytes(), T0, REALM, AOR, Some(ip), TTL),
            NonceCheck::Fresh {
                issued_s: T0,
                counter: 1
            }
        );
        // IPv4-mapped IPv6 is the same source.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            k.check(n.as_bytes(), T0, REALM, AOR, Some(mapped), TTL),
            NonceCheck::Fresh {
                issued_s: T0,
                counter: 1
            }
        );
        assert_eq!(k.check(n.as_bytes(), T0, REALM, AOR, None, TTL), bad);
        assert_eq!(
            k.check(
                n.as_bytes(),
                T0,
                REALM,
                AOR,
                Some("192.0.2.2".parse().unwrap()),
                TTL
            ),
            bad
        );
        assert_eq!(
            k.check(n.as_bytes(), T0, b"other.com", AOR, Some(ip), TTL),
            bad
        );
        assert_eq!(
            k.check(
                n.as_bytes(),
                T0,
                REALM,
                b"sip:bob@example.com",
                Some(ip),
                TTL
            ),
            bad
        );
        // Realm/AoR boundary is unambiguous.
        let n2 = k.issue(T0, b"ab", b"c", None, 1);
        assert_eq!(k.check(n2.as_bytes(), T0, b"a", b"bc", None, TTL), bad);
    }

    #[test]
    fn tampering_and_garbage_are_invalid() {
        let k = key(1);
        let n = k.issue(T0, REALM, AOR, None, 1);
        for i in 0..NONCE_LEN {
            let mut t = *n.as_bytes().first_chunk::<NONCE_LEN>().unwrap();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            assert!(
                matches!(
                    k.check(&t, T0, REALM, AOR, None, TTL),
                    NonceCheck::Invalid(_)
                ),
                "byte {i} altered"
            );
        }
        let malformed = NonceCheck::Invalid(NonceInvalid::Malformed);
        assert_eq!(k.check(b"", T0, REALM, AOR, None, TTL), malformed);
        assert_eq!(
            k.check(&n.as_bytes()[1..], T0, REALM, AOR, None, TTL),
            malformed
        );
        assert_eq!(
            k.check(&[b'!'; NONCE_LEN], T0, REALM, AOR, None, TTL),
            malformed
        );
        assert_eq!(
            k.check(&[b'='; NONCE_LEN], T0, REALM, AOR, None, TTL),
            malformed
        );
    }

    #[test]
    fn other_key_is_rejected() {
        let (a, b) = (key(1), key(2));
        let n = a.issue(T0, REALM, AOR, None, 1);
        let r = b.check(n.as_bytes(), T0, REALM, AOR, None, TTL);
        assert!(matches!(
            r,
            NonceCheck::Invalid(NonceInvalid::UnknownKey | NonceInvalid::BadMac)
        ));
        assert_eq!(
            a.check(n.as_bytes(), T0, REALM, AOR, None, TTL),
            NonceCheck::Fresh {
                issued_s: T0,
                counter: 1
            }
        );
    }

    #[test]
    fn key_file_forms() {
        let hex = NonceKey::generate_hex().unwrap();
        assert_eq!(hex.len(), 64);
        let k1 = NonceKey::from_hex(format!("  {hex}\n").as_bytes()).unwrap();
        let k2 = NonceKey::from_hex(hex.to_uppercase().as_bytes()).unwrap();
        // Same key text => same id, same nonces, same opaque: processes can share the file.
        assert_eq!(k1.key_id(), k2.key_id());
        assert_eq!(k1.opaque(), k2.opaque());
        assert_eq!(
            k1.issue(T0, REALM, AOR, None, 5),
            k2.issue(T0, REALM, AOR, None, 5)
        );
        assert!(matches!(
            NonceKey::from_hex(b"abcd"),
            Err(NonceKeyError::BadLength(2))
        ));
        assert!(matches!(
            NonceKey::from_hex(&[b'a'; 63]),
            Err(NonceKeyError::BadLength(_))
        ));
        assert!(matches!(
            NonceKey::from_hex(&[b'g'; 64]),
            Err(NonceKeyError::NotHex(0))
        ));
        assert!(matches!(
            NonceKey::from_hex(&[b'a'; 130]),
            Err(NonceKeyError::BadLength(65))
        ));
        assert!(NonceKey::generate().is_ok());
        assert!(!format!("{k1:?}").contains(&hex));
    }

    #[test]
    fn load_from_file() {
        let dir = std::env::temp_dir().join(format!("corereg-nonce-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.hex");
        std::fs::write(&path, "00".repeat(32)).unwrap();
        assert!(NonceKey::load(&path).is_ok());
        std::fs::write(&path, "0".repeat(5000)).unwrap();
        assert!(matches!(
            NonceKey::load(&path),
            Err(NonceKeyError::FileTooLarge { .. })
        ));
        assert!(matches!(
            NonceKey::load(&dir.join("missing")),
            Err(NonceKeyError::Io { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
