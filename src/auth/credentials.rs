//! The credentials file: who may register, with which secret, for which AoRs.
//!
//! Loaded at start-up and again on SIGHUP (the shell builds a new [`CredentialStore`] and hands an
//! `Arc` of it to every shard; bindings are untouched). A file that fails to load leaves the old store
//! in place, and the error names the line.
//!
//! # TOML format (`users.toml`)
//!
//! ```toml
//! # Realm for entries that do not name one (optional).
//! default_realm = "example.com"
//!
//! [[user]]
//! username = "alice"
//! realm = "example.com"     # optional when default_realm is set
//! password = "secret"       # HA1 for MD5 and SHA-256 is derived at load; the password is not kept
//!
//! [[user]]
//! username = "bob"
//! # Preferred: store HA1 only (`corereg ha1 bob example.com <password>` prints these lines).
//! ha1_md5 = "0d7e8a9a2f3ac4c5bc9b0f1ff4a8d0c3"
//! ha1_sha256 = "<64 hex digits>"
//! # Other AoRs bob may register (third-party registration). `sip:*@host` allows any user at host.
//! aors = ["sip:frontdesk@example.com", "sip:*@pbx.example.com"]
//! ```
//!
//! # CSV format (`users.csv`)
//!
//! The first non-comment line is a header naming the columns, in any order: `username` (required),
//! `realm`, `password`, `ha1_md5`, `ha1_sha256`, `aors` (AoRs separated by spaces). Empty fields are
//! absent values. Fields may be double-quoted (`""` inside quotes is a quote); lines starting with `#`
//! and blank lines are skipped.
//!
//! ```text
//! username,realm,password,ha1_md5,ha1_sha256,aors
//! alice,example.com,secret,,,
//! bob,example.com,,0d7e8a9a2f3ac4c5bc9b0f1ff4a8d0c3,<64 hex digits>,sip:frontdesk@example.com
//! ```
//!
//! # Rules (both formats)
//!
//! - Each entry has either `password` or at least one of `ha1_md5` / `ha1_sha256`, never both kinds.
//!   An entry with only `ha1_md5` cannot answer a SHA-256 challenge: give both, or the password.
//! - HA1 is `H(username:realm:password)`, so it must be computed with the realm the entry is in.
//! - `(realm, username)` is unique. A user may register the AoR whose user part equals the username
//!   (within the realm, which the registrar chooses from the To host) plus the `aors` listed.
//! - Limits: [`MAX_FILE_LEN`] bytes, [`MAX_USERS`] entries, [`MAX_AORS_PER_USER`] AoRs per entry,
//!   [`MAX_FIELD_LEN`] bytes per name or AoR.

use core::fmt;
use std::path::Path;
use std::sync::Arc;

use hashbrown::HashMap;
use serde::Deserialize;

use crate::sip::digest::{Algorithm, Ha1};

/// Largest credentials file read (a wrong path should fail fast, not eat memory).
pub const MAX_FILE_LEN: u64 = 256 << 20;
/// Most entries in one file.
pub const MAX_USERS: usize = 5_000_000;
/// Most extra AoRs per entry.
pub const MAX_AORS_PER_USER: usize = 1024;
/// Longest username, realm or AoR, in bytes.
pub const MAX_FIELD_LEN: usize = 256;

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("username is empty")]
    EmptyUsername,
    #[error("no realm and no default_realm")]
    MissingRealm,
    #[error("neither password nor ha1_md5/ha1_sha256 given")]
    MissingSecret,
    #[error("both password and ha1_* given; keep one")]
    PasswordAndHa1,
    #[error("{0} is not {1} hex digits")]
    BadHa1(&'static str, usize),
    #[error("{0} is longer than {MAX_FIELD_LEN} bytes or contains control characters or spaces")]
    BadField(&'static str),
    #[error("more than {MAX_AORS_PER_USER} aors")]
    TooManyAors,
    #[error("user {user:?} in realm {realm:?} already defined on line {first_line}")]
    Duplicate {
        user: String,
        realm: String,
        first_line: usize,
    },
    #[error("more than {MAX_USERS} users")]
    TooManyUsers,
}

/// Why a credentials file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_FILE_LEN} bytes")]
    TooLarge { path: String },
    #[error("{path}: unknown format (expected a .toml or .csv file name)")]
    UnknownFormat { path: String },
    #[error("{path}: {error}")]
    InFile {
        path: String,
        #[source]
        error: Box<CredentialsError>,
    },
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("line {line}: {error}")]
    Entry { line: usize, error: EntryError },
}

/// One user's secrets and extra AoRs.
#[derive(Clone, Debug)]
pub struct UserCredentials {
    ha1_md5: Option<Ha1>,
    ha1_sha256: Option<Ha1>,
    /// Extra AoRs (canonical form) or `sip:*@host` patterns.
    aors: Box<[Box<[u8]>]>,
    /// Line of the entry in the file, for duplicate reports.
    line: usize,
}

impl UserCredentials {
    /// HA1 for `alg`, if the file gave (or let us derive) one.
    #[must_use]
    pub fn ha1(&self, alg: Algorithm) -> Option<&Ha1> {
        match alg {
            Algorithm::Md5 => self.ha1_md5.as_ref(),
            Algorithm::Sha256 => self.ha1_sha256.as_ref(),
        }
    }

    /// Whether the allow-list grants `aor` (exact match, or a `scheme:*@host` pattern with the same
    /// scheme and host).
    #[must_use]
    pub fn allows_aor(&self, aor: &[u8]) -> bool {
        self.aors.iter().any(|pattern| aor_matches(pattern, aor))
    }

    /// The listed extra AoRs and patterns.
    pub fn aors(&self) -> impl Iterator<Item = &[u8]> {
        self.aors.iter().map(|a| &a[..])
    }
}

fn aor_matches(pattern: &[u8], aor: &[u8]) -> bool {
    if pattern == aor {
        return true;
    }
    // "sip:*@host": split both at the scheme colon and the '@'.
    let Some(star) = pattern.windows(3).position(|w| w == b":*@") else {
        return false;
    };
    let (scheme, host) = (&pattern[..star], &pattern[star + 3..]);
    let Some(rest) = aor.strip_prefix(scheme).and_then(|r| r.strip_prefix(b":")) else {
        return false;
    };
    match rest.iter().rposition(|&c| c == b'@') {
        Some(at) => at > 0 && rest[at + 1..].eq_ignore_ascii_case(host),
        None => false,
    }
}

type Users = HashMap<Box<[u8]>, UserCredentials, ahash::RandomState>;

/// All users, by realm then username. Immutable once built; replace it wholesale to reload.
#[derive(Default)]
pub struct CredentialStore {
    realms: HashMap<Box<[u8]>, Users, ahash::RandomState>,
    users: usize,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never list entries: they hold HA1 (redacted anyway) and user names.
        f.debug_struct("CredentialStore")
            .field("realms", &self.realms.len())
            .field("users", &self.users)
            .finish()
    }
}

/// An entry as read from either format, before validation.
#[derive(Default)]
struct RawEntry {
    username: String,
    realm: Option<String>,
    password: Option<String>,
    ha1_md5: Option<String>,
    ha1_sha256: Option<String>,
    aors: Vec<String>,
}

impl Drop for RawEntry {
    fn drop(&mut self) {
        // Best effort: do not leave plain passwords lying in freed memory.
        if let Some(p) = self.password.take() {
            let mut bytes = p.into_bytes();
            bytes.fill(0);
            core::hint::black_box(&bytes);
        }
    }
}

fn valid_field(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_FIELD_LEN && !s.bytes().any(|c| c <= b' ' || c == 0x7f)
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.is_empty())
}

impl CredentialStore {
    /// A store with no users (every authentication fails).
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users == 0
    }

    /// The entry for `username` in `realm` (both compared byte for byte).
    #[must_use]
    pub fn lookup(&self, realm: &[u8], username: &[u8]) -> Option<&UserCredentials> {
        self.realms.get(realm)?.get(username)
    }

    /// Loads a `.toml` or `.csv` file (by extension). `default_realm` applies to entries without a
    /// realm (a TOML file's own `default_realm` takes precedence).
    pub fn load(path: &Path, default_realm: Option<&str>) -> Result<Arc<Self>, CredentialsError> {
        let shown = path.display().to_string();
        let io = |source| CredentialsError::Io {
            path: shown.clone(),
            source,
        };
        if std::fs::metadata(path).map_err(io)?.len() > MAX_FILE_LEN {
            return Err(CredentialsError::TooLarge { path: shown });
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let parse: fn(&str, Option<&str>) -> Result<Self, CredentialsError> = match ext.as_deref() {
            Some("toml") => Self::from_toml_str,
            Some("csv") => Self::from_csv_str,
            _ => return Err(CredentialsError::UnknownFormat { path: shown }),
        };
        let mut bytes = std::fs::read(path).map_err(io)?;
        let store = match std::str::from_utf8(&bytes) {
            Ok(text) => parse(text, default_realm),
            Err(e) => Err(CredentialsError::Syntax {
                line: line_of_bytes(&bytes, e.valid_up_to()),
                message: "not UTF-8".into(),
            }),
        };
        // The file may hold passwords: wipe our copy.
        bytes.fill(0);
        core::hint::black_box(&bytes);
        store
            .map(Arc::new)
            .map_err(|error| CredentialsError::InFile {
                path: shown,
                error: Box::new(error),
            })
    }

    /// Parses the TOML format (see the module docs).
    pub fn from_toml_str(
        text: &str,
        default_realm: Option<&str>,
    ) -> Result<Self, CredentialsError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            default_realm: Option<String>,
            #[serde(default)]
            user: Vec<toml::Spanned<User>>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct User {
            username: String,
            realm: Option<String>,
            password: Option<String>,
            ha1_md5: Option<String>,
            ha1_sha256: Option<String>,
            #[serde(default)]
            aors: Vec<String>,
        }
        let file: File = toml::from_str(text).map_err(|e| CredentialsError::Syntax {
            line: e.span().map_or(0, |s| line_of(text, s.start)),
            message: e.message().to_owned(),
        })?;
        let default_realm = file.default_realm.as_deref().or(default_realm);
        let mut store = Self::default();
        for spanned in file.user {
            let line = line_of(text, spanned.span().start);
            let u = spanned.into_inner();
            let raw = RawEntry {
                username: u.username,
                realm: u.realm,
                password: u.password,
                ha1_md5: u.ha1_md5,
                ha1_sha256: u.ha1_sha256,
                aors: u.aors,
            };
            store
                .add(line, raw, default_realm)
                .map_err(|error| CredentialsError::Entry { line, error })?;
        }
        Ok(store)
    }

    /// Parses the CSV format (see the module docs).
    pub fn from_csv_str(text: &str, default_realm: Option<&str>) -> Result<Self, CredentialsError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Col {
            Username,
            Realm,
            Password,
            Ha1Md5,
            Ha1Sha256,
            Aors,
        }
        let mut header: Option<Vec<Col>> = None;
        let mut store = Self::default();
        for (i, line_text) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = line_text.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let fields = split_csv_line(line_text).map_err(|message| CredentialsError::Syntax {
                line,
                message: message.to_owned(),
            })?;
            let Some(cols) = &header else {
                let mut cols = Vec::with_capacity(fields.len());
                for name in &fields {
                    let col = match name.trim().to_ascii_lowercase().as_str() {
                        "username" => Col::Username,
                        "realm" => Col::Realm,
                        "password" => Col::Password,
                        "ha1_md5" => Col::Ha1Md5,
                        "ha1_sha256" => Col::Ha1Sha256,
                        "aors" => Col::Aors,
                        other => {
                            return Err(CredentialsError::Syntax {
                                line,
                                message: format!("unknown column {other:?}"),
                            })
                        }
                    };
                    if cols.contains(&col) {
                        return Err(CredentialsError::Syntax {
                            line,
                            message: format!("column {name:?} twice"),
                        });
                    }
                    cols.push(col);
                }
                if !cols.contains(&Col::Username) {
                    return Err(CredentialsError::Syntax {
                        line,
                        message: "header lacks a username column".into(),
                    });
                }
                header = Some(cols);
                continue;
            };
            if fields.len() != cols.len() {
                return Err(CredentialsError::Syntax {
                    line,
                    message: format!("{} fields, header has {}", fields.len(), cols.len()),
                });
            }
            let mut raw = RawEntry::default();
            for (col, value) in cols.iter().zip(fields) {
                match col {
                    Col::Username => raw.username = value,
                    Col::Realm => raw.realm = non_empty(Some(value)),
                    Col::Password => raw.password = non_empty(Some(value)),
                    Col::Ha1Md5 => raw.ha1_md5 = non_empty(Some(value)),
                    Col::Ha1Sha256 => raw.ha1_sha256 = non_empty(Some(value)),
                    Col::Aors => raw.aors = value.split_whitespace().map(str::to_owned).collect(),
                }
            }
            store
                .add(line, raw, default_realm)
                .map_err(|error| CredentialsError::Entry { line, error })?;
        }
        Ok(store)
    }

    fn add(
        &mut self,
        line: usize,
        mut raw: RawEntry,
        default_realm: Option<&str>,
    ) -> Result<(), EntryError> {
        if raw.username.is_empty() {
            return Err(EntryError::EmptyUsername);
        }
        if !valid_field(&raw.username) {
            return Err(EntryError::BadField("username"));
        }
        let realm = match raw.realm.as_deref().or(default_realm) {
            Some(r) if valid_realm(r) => r.to_owned(),
            Some(_) => return Err(EntryError::BadField("realm")),
            None => return Err(EntryError::MissingRealm),
        };
        if raw.aors.len() > MAX_AORS_PER_USER {
            return Err(EntryError::TooManyAors);
        }
        if let Some(_bad) = raw.aors.iter().find(|a| !valid_field(a)) {
            return Err(EntryError::BadField("aors"));
        }
        let has_ha1 = raw.ha1_md5.is_some() || raw.ha1_sha256.is_some();
        let (ha1_md5, ha1_sha256) = match (raw.password.take(), has_ha1) {
            (Some(_), true) => return Err(EntryError::PasswordAndHa1),
            (None, false) => return Err(EntryError::MissingSecret),
            (Some(password), false) => {
                let (u, r, p) = (
                    raw.username.as_bytes(),
                    realm.as_bytes(),
                    password.as_bytes(),
                );
                let pair = (
                    Some(Ha1::from_password(Algorithm::Md5, u, r, p)),
                    Some(Ha1::from_password(Algorithm::Sha256, u, r, p)),
                );
                let mut bytes = password.into_bytes();
                bytes.fill(0);
                core::hint::black_box(&bytes);
                pair
            }
            (None, true) => {
                let parse = |alg: Algorithm, name: &'static str, v: &Option<String>| match v {
                    None => Ok(None),
                    Some(hex) => Ha1::from_hex(alg, hex.trim().as_bytes())
                        .map(Some)
                        .ok_or(EntryError::BadHa1(name, alg.hex_len())),
                };
                (
                    parse(Algorithm::Md5, "ha1_md5", &raw.ha1_md5)?,
                    parse(Algorithm::Sha256, "ha1_sha256", &raw.ha1_sha256)?,
                )
            }
        };
        if self.users >= MAX_USERS {
            return Err(EntryError::TooManyUsers);
        }
        let users = self.realms.entry(realm.as_bytes().into()).or_default();
        if let Some(first) = users.get(raw.username.as_bytes()) {
            return Err(EntryError::Duplicate {
                user: raw.username.clone(),
                realm,
                first_line: first.line,
            });
        }
        let aors = raw.aors.iter().map(|a| a.as_bytes().into()).collect();
        users.insert(
            raw.username.as_bytes().into(),
            UserCredentials {
                ha1_md5,
                ha1_sha256,
                aors,
                line,
            },
        );
        self.users += 1;
        Ok(())
    }
}

/// Realms may contain spaces (`realm="Example Corp"`), but no control characters.
fn valid_realm(r: &str) -> bool {
    !r.is_empty() && r.len() <= MAX_FIELD_LEN && !r.bytes().any(|c| c < b' ' || c == 0x7f)
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    line_of_bytes(text.as_bytes(), offset)
}

fn line_of_bytes(bytes: &[u8], offset: usize) -> usize {
    let end = offset.min(bytes.len());
    bytes[..end].iter().filter(|&&c| c == b'\n').count() + 1
}

/// Splits one CSV line (RFC 4180 quoting, no embedded newlines); fields are trimmed when unquoted.
fn split_csv_line(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    loop {
        let mut field = String::new();
        // Skip leading spaces before a possible opening quote.
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field"),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("text after a closing quote"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim().to_owned());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("quote inside an unquoted field"),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field.trim().to_owned());
        }
    }
}

/// The TOML entry printed by `corereg ha1 <user> <realm> <password>`: HA1 for both algorithms,
/// ready to paste into `users.toml`, so plain passwords need not be stored.
#[must_use]
pub fn ha1_entry_toml(username: &str, realm: &str, password: &str) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    format!(
        "[[user]]\nusername = {}\nrealm = {}\nha1_md5 = \"{}\"\nha1_sha256 = \"{}\"\n",
        q(username),
        q(realm),
        crate::sip::digest::ha1_hex(Algorithm::Md5, username, realm, password),
        crate::sip::digest::ha1_hex(Algorithm::Sha256, username, realm, password),
    )
}

/// The header line of the users.csv printed by `corereg ha1 --csv`.
pub const HA1_CSV_HEADER: &str = "username,realm,password,ha1_md5,ha1_sha256,aors";

/// The users.csv printed by `corereg ha1 <user> <realm> <password> --csv`: [`HA1_CSV_HEADER`], then the
/// user's line with HA1 for both algorithms and no password. A users file on its own; to add the user to
/// an existing file with the same columns, append the second line.
#[must_use]
pub fn ha1_entry_csv(username: &str, realm: &str, password: &str) -> String {
    format!(
        "{HA1_CSV_HEADER}\n{},{},,{},{},\n",
        csv_field(username),
        csv_field(realm),
        super::digest::ha1_hex(Algorithm::Md5, username, realm, password),
        super::digest::ha1_hex(Algorithm::Sha256, username, realm, password),
    )
}

/// A CSV field: quoted (with `""` for a quote) when it holds a comma, a quote or surrounding blanks (an
/// unquoted field is trimmed when read).
fn csv_field(value: &str) -> String {
    if value.contains([',', '"']) || value.trim() != value {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::digest::ha1_hex;

    #[test]
    fn the_printed_csv_entry_is_a_users_file() {
        for (user, realm) in [("alice", "example.com"), ("o\"brien,jr", "Example, Corp")] {
            let text = ha1_entry_csv(user, realm, "pw");
            assert!(text.starts_with(HA1_CSV_HEADER), "{text}");
            let store = CredentialStore::from_csv_str(&text, None).expect("loads");
            assert_eq!(store.len(), 1);
            let u = store
                .lookup(realm.as_bytes(), user.as_bytes())
                .expect("the user, under its realm");
            assert_eq!(
                u.ha1(Algorithm::Md5).map(|h| h.expose_hex().to_vec()),
                Some(md5(user, realm, "pw").into_bytes())
            );
            assert!(u.ha1(Algorithm::Sha256).is_some());
        }
    }

    fn md5(u: &str, r: &str, p: &str) -> String {
        ha1_hex(Algorithm::Md5, u, r, p)
    }

    fn sha(u: &str, r: &str, p: &str) -> String {
        ha1_hex(Algorithm::Sha256, u, r, p)
    }

    fn entry_err(r: Result<CredentialStore, CredentialsError>) -> (usize, EntryError) {
        match r {
            Err(CredentialsError::Entry { line, error }) => (line, error),
            other => panic!("expected an entry error, got {:?}", other.map(|s| s.len())),
        }
    }

    #[test]
    fn toml_password_and_ha1_entries() {
        let text = format!(
            "default_realm = \"example.com\"\n\
             [[user]]\nusername = \"alice\"\npassword = \"secret\"\n\
             [[user]]\nusername = \"bob\"\nrealm = \"other.org\"\nha1_md5 = \"{}\"\naors = [\"sip:desk@other.org\", \"sip:*@pbx.other.org\"]\n",
            md5("bob", "other.org", "pw").to_uppercase()
        );
        let s = CredentialStore::from_toml_str(&text, None).unwrap();
        assert_eq!(s.len(), 2);
        let alice = s.lookup(b"example.com", b"alice").unwrap();
        assert_eq!(
            alice.ha1(Algorithm::Md5).unwrap().expose_hex(),
            md5("alice", "example.com", "secret").as_bytes()
        );
        assert_eq!(
            alice.ha1(Algorithm::Sha256).unwrap().expose_hex(),
            sha("alice", "example.com", "secret").as_bytes()
        );
        let bob = s.lookup(b"other.org", b"bob").unwrap();
        assert_eq!(
            bob.ha1(Algorithm::Md5).unwrap().expose_hex(),
            md5("bob", "other.org", "pw").as_bytes()
        );
        assert!(bob.ha1(Algorithm::Sha256).is_none());
        assert!(bob.allows_aor(b"sip:desk@other.org"));
        assert!(bob.allows_aor(b"sip:anyone@pbx.other.org"));
        assert!(bob.allows_aor(b"sip:anyone@PBX.other.org"));
        assert!(!bob.allows_aor(b"sips:anyone@pbx.other.org"));
        assert!(!bob.allows_aor(b"sip:@pbx.other.org"));
        assert!(!bob.allows_aor(b"sip:anyone@evil.pbx.other.org"));
        assert!(!bob.allows_aor(b"sip:desk2@other.org"));
        assert!(s.lookup(b"example.com", b"bob").is_none());
        assert!(s.lookup(b"other.org", b"alice").is_none());
        // Debug output holds no secrets nor names.
        let dbg = format!("{s:?} {bob:?}");
        assert!(!dbg.contains(&md5("bob", "other.org", "pw")) && !dbg.contains("alice"));
    }

    #[test]
    fn toml_errors_name_the_line() {
        let e = CredentialStore::from_toml_str(
            "[[user]]\nusername = \"a\"\npasword = \"x\"\n",
            Some("r"),
        )
        .unwrap_err();
        assert!(
            matches!(e, CredentialsError::Syntax { line: 1..=3, .. }),
            "{e}"
        );
        let e = CredentialStore::from_toml_str("[[user]]\nusername = \"a\"\n", Some("r"));
        assert_eq!(entry_err(e), (1, EntryError::MissingSecret));
        let e = CredentialStore::from_toml_str(
            "\n\n[[user]]\nusername = \"a\"\npassword = \"x\"\n",
            None,
        );
        assert_eq!(entry_err(e), (3, EntryError::MissingRealm));
        let text = "[[user]]\nusername = \"a\"\npassword = \"x\"\nha1_md5 = \"00\"\n";
        assert_eq!(
            entry_err(CredentialStore::from_toml_str(text, Some("r"))).1,
            EntryError::PasswordAndHa1
        );
        let text = "[[user]]\nusername = \"a\"\nha1_sha256 = \"00\"\n";
        assert_eq!(
            entry_err(CredentialStore::from_toml_str(text, Some("r"))).1,
            EntryError::BadHa1("ha1_sha256", 64)
        );
        let text = "[[user]]\nusername = \"a\"\npassword = \"x\"\n\n[[user]]\nusername = \"a\"\npassword = \"y\"\n";
        assert_eq!(
            entry_err(CredentialStore::from_toml_str(text, Some("r"))),
            (
                5,
                EntryError::Duplicate {
                    user: "a".into(),
                    realm: "r".into(),
                    first_line: 1
                }
            )
        );
        let text = "[[user]]\nusername = \"a b\"\npassword = \"x\"\n";
        assert_eq!(
            entry_err(CredentialStore::from_toml_str(text, Some("r"))).1,
            EntryError::BadField("username")
        );
        let text = "[[user]]\nusername = \"\"\npassword = \"x\"\n";
        assert_eq!(
            entry_err(CredentialStore::from_toml_str(text, Some("r"))).1,
            EntryError::EmptyUsername
        );
        let text = "[[user]]\nusername = \"a\"\npassword = \"x\"\naors = [\"sip:x y\"]\n";
        assert_eq!(
            entry_err(CredentialStore::from_toml_str(text, Some("r"))).1,
            EntryError::BadField("aors")
        );
        // Realms may contain spaces.
        let text = "[[user]]\nusername = \"a\"\nrealm = \"Example Corp\"\npassword = \"x\"\n";
        assert!(CredentialStore::from_toml_str(text, None)
            .unwrap()
            .lookup(b"Example Corp", b"a")
            .is_some());
    }

    #[test]
    fn csv_entries_and_quoting() {
        let text = format!(
            "# users\n\nusername, realm ,password,ha1_md5,ha1_sha256,aors\r\n\
             alice,example.com,secret,,,\n\
             \"bob\",example.com,,{},{},sip:desk@example.com sip:*@pbx.example.com\n\
             carol,,\"pa,ss\"\"word\",,,\n",
            md5("bob", "example.com", "pw"),
            sha("bob", "example.com", "pw"),
        );
        let s = CredentialStore::from_csv_str(&text, Some("default.org")).unwrap();
        assert_eq!(s.len(), 3);
        assert!(s.lookup(b"example.com", b"alice").is_some());
        let bob = s.lookup(b"example.com", b"bob").unwrap();
        assert_eq!(
            bob.ha1(Algorithm::Sha256).unwrap().expose_hex(),
            sha("bob", "example.com", "pw").as_bytes()
        );
        assert_eq!(bob.aors().count(), 2);
        let carol = s.lookup(b"default.org", b"carol").unwrap();
        assert_eq!(
            carol.ha1(Algorithm::Md5).unwrap().expose_hex(),
            md5("carol", "default.org", "pa,ss\"word").as_bytes()
        );
    }

    #[test]
    fn csv_errors_name_the_line() {
        let syntax_line = |text: &str| match CredentialStore::from_csv_str(text, Some("r")) {
            Err(CredentialsError::Syntax { line, .. }) => line,
            other => panic!("expected a syntax error, got {:?}", other.map(|s| s.len())),
        };
        assert_eq!(syntax_line("username,pass\n"), 1);
        assert_eq!(syntax_line("realm,password\n"), 1);
        assert_eq!(syntax_line("username,username\n"), 1);
        assert_eq!(syntax_line("username,password\na,b,c\n"), 2);
        assert_eq!(syntax_line("#c\nusername,password\na,\"b\n"), 3);
        assert_eq!(syntax_line("username,password\na,\"b\"c\n"), 2);
        assert_eq!(syntax_line("username,password\na,b\"c\n"), 2);
        let e = CredentialStore::from_csv_str("username,password\n\na,\n", Some("r"));
        assert_eq!(entry_err(e), (3, EntryError::MissingSecret));
        // Header only: an empty store.
        assert!(CredentialStore::from_csv_str("username,password\n", None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn load_by_extension() {
        let dir = std::env::temp_dir().join(format!("corereg-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml_path = dir.join("users.toml");
        std::fs::write(
            &toml_path,
            "[[user]]\nusername = \"a\"\nrealm = \"r\"\npassword = \"x\"\n",
        )
        .unwrap();
        assert_eq!(CredentialStore::load(&toml_path, None).unwrap().len(), 1);
        let csv_path = dir.join("users.CSV");
        std::fs::write(&csv_path, "username,password\na,x\nb\n").unwrap();
        let e = CredentialStore::load(&csv_path, Some("r")).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains("users.CSV") && shown.contains("line 3"),
            "{shown}"
        );
        let binary = dir.join("bin.toml");
        std::fs::write(&binary, b"# ok\n\xff\xfe\n").unwrap();
        let shown = CredentialStore::load(&binary, None)
            .unwrap_err()
            .to_string();
        assert!(shown.contains("line 2: not UTF-8"), "{shown}");
        let other = dir.join("users.txt");
        std::fs::write(&other, "").unwrap();
        assert!(matches!(
            CredentialStore::load(&other, None),
            Err(CredentialsError::UnknownFormat { .. })
        ));
        assert!(matches!(
            CredentialStore::load(&dir.join("none.toml"), None),
            Err(CredentialsError::Io { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ha1_command_output_loads_back() {
        let out = ha1_entry_toml("al\"ice", "example.com", "secret");
        assert!(!out.contains("secret"));
        // The name is TOML-escaped, so it reads back as written.
        let s = CredentialStore::from_toml_str(&out, None).unwrap();
        assert!(s.lookup(b"example.com", b"al\"ice").is_some());
        let out = ha1_entry_toml("alice", "Example Corp", "secret");
        let s = CredentialStore::from_toml_str(&out, None).unwrap();
        let alice = s.lookup(b"Example Corp", b"alice").unwrap();
        assert_eq!(
            alice.ha1(Algorithm::Sha256).unwrap().expose_hex(),
            sha("alice", "Example Corp", "secret").as_bytes()
        );
    }
}
