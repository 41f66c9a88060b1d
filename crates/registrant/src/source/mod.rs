//! Where the registrants come from: a TOML or CSV file, or a SQLite table named `registrant`, each with
//! OpenSIPS's columns.
//!
//! A source that cannot be read at all (missing file, syntax error in TOML, a CSV without the required
//! header, a database without the table) is an error. A row that cannot be used is reported with its
//! line (files) or its rowid (SQLite) and skipped; the other rows load.
//!
//! Loading is blocking I/O: the shell runs it on a plain thread, never on a shard.

mod csv;
mod sqlite;
mod toml;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::account::{Account, RawRow, RowError};

pub use sqlite::write_state;

/// The rows a source read, each with where it came from, before they are checked.
pub(crate) type Rows = Vec<(Location, Result<RawRow, RowError>)>;

/// Where a row came from: its line in a file, or its rowid in SQLite (OpenSIPS's `id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    Line(usize),
    Id(i64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Id(id) => write!(f, "id {id}"),
        }
    }
}

/// A row left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRow {
    pub at: Location,
    pub error: RowError,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.error)
    }
}

/// What a source held: the usable accounts (in source order) and the rows left out.
#[derive(Debug, Default)]
pub struct Loaded {
    pub accounts: Vec<(Location, Account)>,
    pub bad: Vec<BadRow>,
}

/// Why a source could not be read.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{path}: more than {max} rows")]
    TooManyRows { path: PathBuf, max: usize },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Sqlite { path: PathBuf, message: String },
    #[error("{0}: the file name must end in .toml or .csv (or use sqlite:PATH)")]
    UnknownKind(PathBuf),
}

/// Bounds on what a source may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadLimits {
    /// Rows (usable or not) in one source.
    pub max_rows: usize,
    /// Bytes of a TOML or CSV file.
    pub max_file_bytes: u64,
    /// Largest `expiry` accepted.
    pub max_expiry_s: u32,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            max_rows: 100_000,
            max_file_bytes: 64 << 20,
            max_expiry_s: 86_400,
        }
    }
}

/// A source as named on the command line: `sqlite:PATH`, or a `.toml` or `.csv` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    Toml(PathBuf),
    Csv(PathBuf),
    Sqlite(PathBuf),
}

impl Spec {
    pub fn parse(s: &str) -> Result<Spec, SourceError> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            return Ok(Spec::Sqlite(PathBuf::from(path)));
        }
        let path = PathBuf::from(s);
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("toml") => Ok(Spec::Toml(path)),
            Some(e) if e.eq_ignore_ascii_case("csv") => Ok(Spec::Csv(path)),
            _ => Err(SourceError::UnknownKind(path)),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Spec::Toml(p) | Spec::Csv(p) | Spec::Sqlite(p) => p,
        }
    }

    /// Whether enable and disable are written back (SQLite only).
    pub fn writes_state(&self) -> bool {
        matches!(self, Spec::Sqlite(_))
    }

    /// Reads every row.
    pub fn load(&self, limits: &LoadLimits) -> Result<Loaded, SourceError> {
        let rows = match self {
            Spec::Toml(p) => toml::rows(p, &read_file(p, limits)?, limits)?,
            Spec::Csv(p) => csv::rows(p, &read_file(p, limits)?, limits)?,
            Spec::Sqlite(p) => sqlite::rows(p, limits)?,
        };
        Ok(check_rows(rows, limits))
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spec::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Spec::Toml(p) | Spec::Csv(p) => write!(f, "{}", p.display()),
        }
    }
}

fn read_file(path: &Path, limits: &LoadLimits) -> Result<String, SourceError> {
    let io = |source| SourceError::Io {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > limits.max_file_bytes {
        return Err(SourceError::TooLarge {
            path: path.to_owned(),
            max: limits.max_file_bytes,
        });
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Checks each row and the uniqueness of (aor, binding_URI, registrar): a later duplicate is left out.
fn check_rows(rows: Rows, limits: &LoadLimits) -> Loaded {
    let mut loaded = Loaded::default();
    let mut seen: HashMap<String, Location> = HashMap::new();
    for (at, row) in rows {
        match row.and_then(|r| Account::from_row(r, limits.max_expiry_s)) {
            Ok(account) => {
                let key = account.key();
                if let Some(first) = seen.get(&key) {
                    loaded.bad.push(BadRow {
                        at,
                        error: RowError::Duplicate(first.to_string()),
                    });
                    continue;
                }
                seen.insert(key, at);
                loaded.accounts.push((at, account));
            }
            Err(error) => loaded.bad.push(BadRow { at, error }),
        }
    }
    loaded
}

/// The column a name designates (case-insensitive, as SQL and OpenSIPS's `binding_URI` allow).
pub(crate) fn column(name: &str) -> Option<Column> {
    use Column::*;
    Some(match name.to_ascii_lowercase().as_str() {
        "registrar" => Registrar,
        "proxy" => Proxy,
        "aor" => Aor,
        "third_party_registrant" => ThirdPartyRegistrant,
        "username" => Username,
        "password" => Password,
        "binding_uri" => BindingUri,
        "binding_params" => BindingParams,
        "expiry" => Expiry,
        "forced_socket" => ForcedSocket,
        "cluster_shtag" => ClusterShtag,
        "state" => State,
        "id" => Id,
        _ => return None,
    })
}

/// OpenSIPS's columns (and `id`, which only keys the row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Column {
    Registrar,
    Proxy,
    Aor,
    ThirdPartyRegistrant,
    Username,
    Password,
    BindingUri,
    BindingParams,
    Expiry,
    ForcedSocket,
    ClusterShtag,
    State,
    Id,
}

impl Column {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Column::Registrar => "registrar",
            Column::Proxy => "proxy",
            Column::Aor => "aor",
            Column::ThirdPartyRegistrant => "third_party_registrant",
            Column::Username => "username",
            Column::Password => "password",
            Column::BindingUri => "binding_URI",
            Column::BindingParams => "binding_params",
            Column::Expiry => "expiry",
            Column::ForcedSocket => "forced_socket",
            Column::ClusterShtag => "cluster_shtag",
            Column::State => "state",
            Column::Id => "id",
        }
    }

    /// Integer columns.
    pub(crate) fn is_integer(self) -> bool {
        matches!(self, Column::Expiry | Column::State | Column::Id)
    }
}

/// A text value for a row column; integers are parsed from text (CSV, lenient TOML).
pub(crate) fn set_text(
    row: &mut RawRow,
    col: Column,
    value: Option<String>,
) -> Result<(), RowError> {
    let slot = match col {
        Column::Registrar => &mut row.registrar,
        Column::Proxy => &mut row.proxy,
        Column::Aor => &mut row.aor,
        Column::ThirdPartyRegistrant => &mut row.third_party_registrant,
        Column::Username => &mut row.username,
        Column::Password => &mut row.password,
        Column::BindingUri => &mut row.binding_uri,
        Column::BindingParams => &mut row.binding_params,
        Column::ForcedSocket => &mut row.forced_socket,
        Column::ClusterShtag => &mut row.cluster_shtag,
        Column::Expiry | Column::State => {
            let n = match value.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(v) => Some(v.parse::<i64>().map_err(|_| {
                    RowError::Source(format!("column {} must be an integer", col.name()))
                })?),
            };
            return set_int(row, col, n);
        }
        Column::Id => return Ok(()),
    };
    *slot = value;
    Ok(())
}

/// An integer value for a row column.
pub(crate) fn set_int(row: &mut RawRow, col: Column, value: Option<i64>) -> Result<(), RowError> {
    match col {
        Column::Expiry => row.expiry = value,
        Column::State => row.state = value,
        Column::Id => {}
        _ => {
            return Err(RowError::Source(format!(
                "column {} must be text",
                col.name()
            )))
        }
    }
    Ok(())
}
