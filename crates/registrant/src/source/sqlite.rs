//! A SQLite table named `registrant` with OpenSIPS's columns, as OpenSIPS's own schema makes it or as
//! an OpenSIPS table exported to SQLite: NULL where OpenSIPS allows it. Columns missing from an older
//! schema (`forced_socket`, `cluster_shtag`, ...) read as NULL; `registrar`, `aor` and `binding_URI`
//! must exist. Rows are keyed by their rowid (OpenSIPS's `id` when it is the INTEGER PRIMARY KEY).

use std::path::Path;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::{column, set_int, set_text, Column, LoadLimits, Location, Rows, SourceError};
use crate::account::{RawRow, RowError};

/// How long a statement waits for a lock held by another writer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> SourceError + '_ {
    move |e| SourceError::Sqlite {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn open(path: &Path, flags: OpenFlags) -> Result<Connection, SourceError> {
    if !path.exists() {
        return Err(SourceError::Io {
            path: path.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sql_error(path))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_error(path))?;
    Ok(conn)
}

pub(super) fn rows(path: &Path, limits: &LoadLimits) -> Result<Rows, SourceError> {
    let err = sql_error(path);
    let conn = open(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    // The columns this table has.
    let mut present = Vec::new();
    {
        let mut info = conn
            .prepare("SELECT name FROM pragma_table_info('registrant')")
            .map_err(&err)?;
        let names = info
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(&err)?;
        for name in names {
            if let Some(col) = column(&name.map_err(&err)?) {
                if col != Column::Id {
                    present.push(col);
                }
            }
        }
    }
    if present.is_empty() {
        return Err(SourceError::Sqlite {
            path: path.to_owned(),
            message: "no table named registrant".into(),
        });
    }
    for required in [Column::Registrar, Column::Aor, Column::BindingUri] {
        if !present.contains(&required) {
            return Err(SourceError::Sqlite {
                path: path.to_owned(),
                message: format!("table registrant has no column {}", required.name()),
            });
        }
    }
    let select: Vec<&str> = present.iter().map(|c| c.name()).collect();
    let sql = format!(
        "SELECT rowid, {} FROM registrant ORDER BY rowid",
        select.join(", ")
    );
    let mut stmt = conn.prepare(&sql).map_err(&err)?;
    let mut result = stmt.query([]).map_err(&err)?;
    let mut out = Vec::new();
    while let Some(r) = result.next().map_err(&err)? {
        if out.len() >= limits.max_rows {
            return Err(SourceError::TooManyRows {
                path: path.to_owned(),
                max: limits.max_rows,
            });
        }
        let id: i64 = r.get(0).map_err(&err)?;
        let mut row = RawRow::default();
        let filled = present.iter().enumerate().try_for_each(|(i, &col)| {
            let value = r
                .get_ref(i + 1)
                .map_err(|e| RowError::Source(e.to_string()))?;
            match value {
                ValueRef::Null => set_text(&mut row, col, None),
                ValueRef::Integer(n) if col.is_integer() => set_int(&mut row, col, Some(n)),
                ValueRef::Integer(n) => set_text(&mut row, col, Some(n.to_string())),
                ValueRef::Text(t) => {
                    let s = std::str::from_utf8(t).map_err(|_| {
                        RowError::Source(format!("column {} is not UTF-8", col.name()))
                    })?;
                    set_text(&mut row, col, Some(s.to_owned()))
                }
                ValueRef::Real(_) | ValueRef::Blob(_) => Err(RowError::Source(format!(
                    "column {} has a value of the wrong type",
                    col.name()
                ))),
            }
        });
        out.push((Location::Id(id), filled.map(|()| row)));
    }
    Ok(out)
}

/// Writes `state` (0 enabled, 1 disabled) of the row `id` back to the table; false when no row has
/// that id. Blocking: call it off the shards.
pub fn write_state(path: &Path, id: i64, enabled: bool) -> Result<bool, SourceError> {
    let conn = open(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let has_state: bool = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('registrant') WHERE lower(name) = 'state'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(sql_error(path))?
        > 0;
    if !has_state {
        return Err(SourceError::Sqlite {
            path: path.to_owned(),
            message: "table registrant has no column state (OpenSIPS before 3.4); add it with: \
                      ALTER TABLE registrant ADD COLUMN state INTEGER DEFAULT 0 NOT NULL"
                .into(),
        });
    }
    let changed = conn
        .execute(
            "UPDATE registrant SET state = ?1 WHERE rowid = ?2",
            rusqlite::params![if enabled { 0 } else { 1 }, id],
        )
        .map_err(sql_error(path))?;
    Ok(changed > 0)
}
