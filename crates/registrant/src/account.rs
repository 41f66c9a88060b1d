//! One registrant's account: a row with OpenSIPS's `registrant` columns, checked into an [`Account`]
//! the state machine can use.
//!
//! Every text column is bounded ([`MAX_FIELD_BYTES`]) and may not hold control characters, so that no
//! value can end a header line of the REGISTER it goes into. URIs are parsed with the SIP toolkit's
//! parser, as the registrar parses what it receives.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use corereg_sip::header::parse_name_addr;
use corereg_sip::uri::{parse_uri, Scheme};
use thiserror::Error;

/// Longest value of any column, in bytes (OpenSIPS's columns are at most 255 characters).
pub const MAX_FIELD_BYTES: usize = 512;

/// The SIP port used when a URI names none.
pub const DEFAULT_SIP_PORT: u16 = 5060;

/// A row as a source hands it over: OpenSIPS's columns, each possibly absent (NULL). Empty strings are
/// taken as absent for the optional columns.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RawRow {
    pub registrar: Option<String>,
    pub proxy: Option<String>,
    pub aor: Option<String>,
    pub third_party_registrant: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub binding_uri: Option<String>,
    pub binding_params: Option<String>,
    pub expiry: Option<i64>,
    pub forced_socket: Option<String>,
    pub cluster_shtag: Option<String>,
    pub state: Option<i64>,
}

impl fmt::Debug for RawRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawRow")
            .field("registrar", &self.registrar)
            .field("proxy", &self.proxy)
            .field("aor", &self.aor)
            .field("third_party_registrant", &self.third_party_registrant)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("binding_uri", &self.binding_uri)
            .field("binding_params", &self.binding_params)
            .field("expiry", &self.expiry)
            .field("forced_socket", &self.forced_socket)
            .field("cluster_shtag", &self.cluster_shtag)
            .field("state", &self.state)
            .finish()
    }
}

/// Why a row cannot be used. The messages name the column, never a password's value.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RowError {
    #[error("column {0} is required")]
    Missing(&'static str),
    #[error("column {0} is longer than {MAX_FIELD_BYTES} bytes")]
    TooLong(&'static str),
    #[error("column {0} holds a control character")]
    ControlCharacter(&'static str),
    #[error("column {column} is not a usable SIP URI: {reason}")]
    BadUri {
        column: &'static str,
        reason: String,
    },
    #[error("column binding_params is not a parameter list (`;name=value;...`) without expires")]
    BadBindingParams,
    #[error("column expiry must be between 0 and {max} (got {got})")]
    BadExpiry { got: i64, max: u32 },
    #[error("column state must be 0 (enabled) or 1 (disabled), got {0}")]
    BadState(i64),
    #[error("column password is required when username is set")]
    UsernameWithoutPassword,
    #[error("column forced_socket must be `udp:IP:PORT` or `IP:PORT` (got {0:?})")]
    BadForcedSocket(String),
    #[error("duplicate of {0}: (aor, binding_URI, registrar) must be unique")]
    Duplicate(String),
    #[error("{0}")]
    Source(String),
}

/// A password, kept out of every `Debug` and log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }
    /// The secret itself, for the digest computation only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where REGISTERs go: an address, or a host name the shell resolves (the core does no I/O).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Addr(SocketAddr),
    Name { host: String, port: u16 },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Addr(a) => write!(f, "{a}"),
            Target::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A checked registrant row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The Request-URI of the REGISTERs.
    pub registrar: String,
    /// Where the REGISTERs are sent when set (an outbound proxy); else to `registrar`.
    pub proxy: Option<String>,
    /// The To URI: the address-of-record registered.
    pub aor: String,
    /// The From URI when someone else registers the AoR; else the AoR.
    pub third_party_registrant: Option<String>,
    /// Digest credentials; None: a challenge cannot be answered.
    pub username: Option<String>,
    pub password: Option<Password>,
    /// The Contact URI.
    pub binding_uri: String,
    /// Contact parameters written after the URI, starting with `;` (empty: none).
    pub binding_params: String,
    /// Expiry to ask for, seconds; None: the configured default.
    pub expiry: Option<u32>,
    /// The local address to send from (`udp:IP:PORT`), as OpenSIPS's column gives it.
    pub forced_socket: Option<SocketAddr>,
    /// OpenSIPS's clustering sharing tag; kept for listing, not acted on.
    pub cluster_shtag: Option<String>,
    /// `state` 0: the account registers; 1: it does not.
    pub enabled: bool,
}

impl Account {
    /// Checks a row. `max_expiry` bounds the `expiry` column.
    pub fn from_row(row: RawRow, max_expiry: u32) -> Result<Account, RowError> {
        let text = |v: Option<String>, column: &'static str| -> Result<Option<String>, RowError> {
            match v {
                None => Ok(None),
                Some(s) if s.trim().is_empty() => Ok(None),
                Some(s) => {
                    let s = s.trim().to_owned();
                    if s.len() > MAX_FIELD_BYTES {
                        return Err(RowError::TooLong(column));
                    }
                    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
                        return Err(RowError::ControlCharacter(column));
                    }
                    Ok(Some(s))
                }
            }
        };
        let registrar = text(row.registrar, "registrar")?.ok_or(RowError::Missing("registrar"))?;
        check_sip_uri(&registrar, "registrar", true)?;
        let proxy = text(row.proxy, "proxy")?;
        if let Some(p) = &proxy {
            check_sip_uri(p, "proxy", true)?;
        }
        let aor = text(row.aor, "aor")?.ok_or(RowError::Missing("aor"))?;
        check_sip_uri(&aor, "aor", false)?;
        let third_party_registrant = text(row.third_party_registrant, "third_party_registrant")?;
        if let Some(t) = &third_party_registrant {
            check_sip_uri(t, "third_party_registrant", false)?;
        }
        let binding_uri =
            text(row.binding_uri, "binding_URI")?.ok_or(RowError::Missing("binding_URI"))?;
        check_sip_uri(&binding_uri, "binding_URI", false)?;
        let binding_params = match text(row.binding_params, "binding_params")? {
            None => String::new(),
            Some(p) if p.starts_with(';') => p,
            Some(p) => format!(";{p}"),
        };
        let contact = format!("<{binding_uri}>{binding_params}");
        match parse_name_addr(contact.as_bytes()) {
            // The expiry is the `expiry` column's: an `expires` here would clash with the one written
            // when unregistering.
            Ok(na) if na.params.get(b"expires").is_none() => {}
            _ => return Err(RowError::BadBindingParams),
        }
        // The password is not trimmed: it is compared byte for byte by the registrar.
        let password = match row.password {
            Some(p) if !p.is_empty() => {
                if p.len() > MAX_FIELD_BYTES {
                    return Err(RowError::TooLong("password"));
                }
                if p.bytes().any(|b| b < 0x20 || b == 0x7f) {
                    return Err(RowError::ControlCharacter("password"));
                }
                Some(Password(p))
            }
            _ => None,
        };
        let mut username = text(row.username, "username")?;
        match (&username, &password) {
            (Some(_), None) => return Err(RowError::UsernameWithoutPassword),
            (None, Some(_)) => {
                // As the AoR's user part: the usual account name.
                username = parse_uri(aor.as_bytes())
                    .ok()
                    .and_then(|u| u.user)
                    .map(|u| String::from_utf8_lossy(u).into_owned());
                if username.is_none() {
                    return Err(RowError::Missing("username"));
                }
            }
            _ => {}
        }
        let expiry = match row.expiry {
            None | Some(0) => None,
            Some(e) if e < 0 || e > i64::from(max_expiry) => {
                return Err(RowError::BadExpiry {
                    got: e,
                    max: max_expiry,
                })
            }
            Some(e) => Some(e as u32),
        };
        let forced_socket = match text(row.forced_socket, "forced_socket")? {
            None => None,
            Some(s) => Some(parse_forced_socket(&s).ok_or(RowError::BadForcedSocket(s))?),
        };
        let cluster_shtag = text(row.cluster_shtag, "cluster_shtag")?;
        let enabled = match row.state {
            None | Some(0) => true,
            Some(1) => false,
            Some(s) => return Err(RowError::BadState(s)),
        };
        Ok(Account {
            registrar,
            proxy,
            aor,
            third_party_registrant,
            username,
            password,
            binding_uri,
            binding_params,
            expiry,
            forced_socket,
            cluster_shtag,
            enabled,
        })
    }

    /// What makes a registrant unique, as OpenSIPS's table does: `aor`, `binding_URI`, `registrar`.
    pub fn key(&self) -> String {
        format!("{}|{}|{}", self.aor, self.binding_uri, self.registrar)
    }

    /// Where the REGISTERs go: `proxy` when set, else `registrar`.
    pub fn target(&self) -> Target {
        let uri = self.proxy.as_deref().unwrap_or(&self.registrar);
        target_of(uri).unwrap_or(Target::Name {
            host: String::new(),
            port: DEFAULT_SIP_PORT,
        })
    }

    /// The Contact as written in REGISTERs: `<binding_URI>binding_params`.
    pub fn contact(&self) -> String {
        format!("<{}>{}", self.binding_uri, self.binding_params)
    }

    /// The `+sip.instance` of the binding when `binding_params` also has a `reg-id` (RFC 5626): the
    /// binding is then kept unique for that instance.
    pub fn outbound_instance(&self) -> Option<String> {
        let contact = self.contact();
        let na = parse_name_addr(contact.as_bytes()).ok()?;
        na.params.get(b"reg-id")?;
        let instance = na.params.get(b"+sip.instance")??;
        Some(String::from_utf8_lossy(instance).into_owned())
    }
}

fn check_sip_uri(s: &str, column: &'static str, udp_only: bool) -> Result<(), RowError> {
    let bad = |reason: &str| RowError::BadUri {
        column,
        reason: reason.to_owned(),
    };
    let uri = parse_uri(s.as_bytes()).map_err(|e| bad(&e.to_string()))?;
    if udp_only {
        if uri.scheme != Scheme::Sip {
            return Err(bad("only sip: over UDP is supported"));
        }
        if let Some(Some(t)) = uri.params.get(b"transport") {
            if !t.eq_ignore_ascii_case(b"udp") {
                return Err(bad("only transport=udp is supported"));
            }
        }
        if uri.host.is_empty() {
            return Err(bad("no host"));
        }
    }
    Ok(())
}

/// The destination of a `sip:` URI: its host and port (5060 when absent); an IP literal becomes an
/// address, a name is left for the shell to resolve. `maddr` is not honoured.
pub fn target_of(uri: &str) -> Option<Target> {
    let u = parse_uri(uri.as_bytes()).ok()?;
    let port = u.port.unwrap_or(DEFAULT_SIP_PORT);
    let host = std::str::from_utf8(u.host).ok()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => Some(Target::Addr(SocketAddr::new(ip, port))),
        Err(_) => Some(Target::Name {
            host: host.to_ascii_lowercase(),
            port,
        }),
    }
}

/// `udp:IP:PORT`, `IP:PORT` or `udp:IP` (port 5060).
fn parse_forced_socket(s: &str) -> Option<SocketAddr> {
    let rest = match s.split_once(':') {
        Some((proto, rest)) if proto.eq_ignore_ascii_case("udp") => rest,
        Some((proto, _)) if proto.chars().all(|c| c.is_ascii_alphabetic()) => return None,
        _ => s,
    };
    if let Ok(a) = rest.parse::<SocketAddr>() {
        return Some(a);
    }
    let bare = rest.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, DEFAULT_SIP_PORT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> RawRow {
        RawRow {
            registrar: Some("sip:192.0.2.10:5060".into()),
            aor: Some("sip:trunk1@example.net".into()),
            binding_uri: Some("sip:trunk1@198.51.100.1:5060".into()),
            username: Some("trunk1".into()),
            password: Some("s3cret".into()),
            ..RawRow::default()
        }
    }

    #[test]
    fn a_minimal_row_is_an_account() {
        let a = Account::from_row(row(), 86400).expect("valid");
        assert!(a.enabled);
        assert_eq!(a.expiry, None);
        assert_eq!(
            a.target(),
            Target::Addr("192.0.2.10:5060".parse().expect("addr"))
        );
        assert_eq!(a.contact(), "<sip:trunk1@198.51.100.1:5060>");
        assert_eq!(a.outbound_instance(), None);
        assert!(!format!("{a:?}").contains("s3cret"));
        assert!(!format!("{:?}", row()).contains("s3cret"));
    }

    #[test]
    fn proxy_is_the_target_and_names_are_left_to_the_shell() {
        let mut r = row();
        r.proxy = Some("sip:Edge.Example.net".into());
        let a = Account::from_row(r, 86400).expect("valid");
        assert_eq!(
            a.target(),
            Target::Name {
                host: "edge.example.net".into(),
                port: 5060
            }
        );
        assert_eq!(
            target_of("sip:[2001:db8::1]:5070"),
            Some(Target::Addr("[2001:db8::1]:5070".parse().expect("addr")))
        );
    }

    #[test]
    fn bad_rows_are_refused_with_the_column() {
        type Change = Box<dyn Fn(&mut RawRow)>;
        let cases: Vec<(Change, RowError)> = vec![
            (Box::new(|r| r.aor = None), RowError::Missing("aor")),
            (
                Box::new(|r| r.registrar = Some("  ".into())),
                RowError::Missing("registrar"),
            ),
            (
                Box::new(|r| r.binding_uri = None),
                RowError::Missing("binding_URI"),
            ),
            (
                Box::new(|r| r.aor = Some("sip:a@b\r\nX: y".into())),
                RowError::ControlCharacter("aor"),
            ),
            (Box::new(|r| r.state = Some(2)), RowError::BadState(2)),
            (
                Box::new(|r| r.expiry = Some(-5)),
                RowError::BadExpiry {
                    got: -5,
                    max: 86400,
                },
            ),
            (
                Box::new(|r| r.password = None),
                RowError::UsernameWithoutPassword,
            ),
            (
                Box::new(|r| r.forced_socket = Some("tcp:1.2.3.4:5060".into())),
                RowError::BadForcedSocket("tcp:1.2.3.4:5060".into()),
            ),
            (
                Box::new(|r| r.binding_params = Some(";a=1, <sip:x@y>".into())),
                RowError::BadBindingParams,
            ),
            (
                Box::new(|r| r.password = Some("x".repeat(600))),
                RowError::TooLong("password"),
            ),
            (
                Box::new(|r| r.binding_params = Some(";q=0.5;expires=60".into())),
                RowError::BadBindingParams,
            ),
        ];
        for (change, want) in cases {
            let mut r = row();
            change(&mut r);
            assert_eq!(Account::from_row(r, 86400).err(), Some(want));
        }
        for bad in ["sips:r@x", "sip:x;transport=tcp", "not a uri"] {
            let mut r = row();
            r.registrar = Some(bad.into());
            assert!(matches!(
                Account::from_row(r, 86400),
                Err(RowError::BadUri {
                    column: "registrar",
                    ..
                })
            ));
        }
    }

    #[test]
    fn optional_columns() {
        let mut r = row();
        r.username = None;
        r.binding_params = Some(
            "reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"".into(),
        );
        r.forced_socket = Some("udp:127.0.0.1:5080".into());
        r.state = Some(1);
        r.expiry = Some(600);
        let a = Account::from_row(r, 86400).expect("valid");
        assert_eq!(a.username.as_deref(), Some("trunk1"));
        assert!(a.binding_params.starts_with(";reg-id=1"));
        assert_eq!(
            a.outbound_instance().as_deref(),
            Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
        );
        assert_eq!(
            a.forced_socket,
            Some("127.0.0.1:5080".parse().expect("addr"))
        );
        assert!(!a.enabled);
        assert_eq!(a.expiry, Some(600));
    }
}
