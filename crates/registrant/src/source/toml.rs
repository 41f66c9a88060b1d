//! `[[registrant]]` tables in a TOML file, one per row, keys named as OpenSIPS's columns.

use std::path::Path;

use serde::Deserialize;
use toml::{Spanned, Table, Value};

use super::{column, set_int, set_text, LoadLimits, Location, Rows, SourceError};
use crate::account::{RawRow, RowError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    registrant: Vec<Spanned<Table>>,
}

pub(super) fn rows(path: &Path, text: &str, limits: &LoadLimits) -> Result<Rows, SourceError> {
    let file: File = ::toml::from_str(text).map_err(|e| SourceError::Format {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if file.registrant.len() > limits.max_rows {
        return Err(SourceError::TooManyRows {
            path: path.to_owned(),
            max: limits.max_rows,
        });
    }
    // The tables come in file order: their lines are counted in one pass.
    let (mut offset, mut newlines) = (0, 0);
    Ok(file
        .registrant
        .into_iter()
        .map(|t| {
            let start = t.span().start.clamp(offset, text.len());
            newlines += text.as_bytes()[offset..start]
                .iter()
                .filter(|&&c| c == b'\n')
                .count();
            offset = start;
            (Location::Line(newlines + 1), row(t.into_inner()))
        })
        .collect())
}

fn row(table: Table) -> Result<RawRow, RowError> {
    let mut row = RawRow::default();
    for (key, value) in table {
        let col =
            column(&key).ok_or_else(|| RowError::Source(format!("unknown column {key:?}")))?;
        match value {
            Value::String(s) => set_text(&mut row, col, Some(s))?,
            Value::Integer(n) if col.is_integer() => set_int(&mut row, col, Some(n))?,
            _ => {
                return Err(RowError::Source(format!(
                    "column {} must be {}",
                    col.name(),
                    if col.is_integer() {
                        "an integer"
                    } else {
                        "a string"
                    }
                )))
            }
        }
    }
    Ok(row)
}
