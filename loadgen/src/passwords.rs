//! Where a simulated user's password comes from: a pattern (`pw-{user}`) or a CSV file of
//! `user,password` lines, so the load generator can authenticate against any registrar's users.

use std::collections::HashMap;
use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PasswordError {
    #[error("cannot read password file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("password file line {line}: expected `user,password`")]
    BadLine { line: usize },
}

#[derive(Debug, Clone)]
pub enum Passwords {
    /// `{user}` is replaced by the user name (e.g. `u000042`).
    Pattern(String),
    Table(HashMap<Vec<u8>, Vec<u8>>),
}

impl Passwords {
    pub fn from_csv(path: &Path) -> Result<Passwords, PasswordError> {
        let text = std::fs::read_to_string(path).map_err(|source| PasswordError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_csv(&text)
    }

    pub fn parse_csv(text: &str) -> Result<Passwords, PasswordError> {
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, pw) = line
                .split_once(',')
                .ok_or(PasswordError::BadLine { line: i + 1 })?;
            map.insert(
                user.trim().as_bytes().to_vec(),
                pw.trim().as_bytes().to_vec(),
            );
        }
        Ok(Passwords::Table(map))
    }

    /// The password of `user`; a user missing from the table gets an empty password (the
    /// registrar then rejects it, which the report shows as 401/403 failures).
    pub fn lookup(&self, user: &[u8]) -> Vec<u8> {
        match self {
            Passwords::Pattern(p) => expand(p, user),
            Passwords::Table(t) => t.get(user).cloned().unwrap_or_default(),
        }
    }
}

pub fn expand(pattern: &str, user: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pattern.len() + user.len());
    let mut rest = pattern.as_bytes();
    while let Some(i) = memchr::memmem::find(rest, b"{user}") {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(user);
        rest = &rest[i + 6..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_and_csv() {
        let p = Passwords::Pattern("pw-{user}-{user}".into());
        assert_eq!(p.lookup(b"u1"), b"pw-u1-u1");
        let t = Passwords::parse_csv("# comment\nu1,secret\n u2 , two \n").expect("valid");
        assert_eq!(t.lookup(b"u1"), b"secret");
        assert_eq!(t.lookup(b"u2"), b"two");
        assert_eq!(t.lookup(b"u3"), b"");
        assert!(Passwords::parse_csv("nocomma\n").is_err());
    }
}
