//! A CSV file: a header row naming OpenSIPS's columns (any order, any case; `id` allowed and
//! ignored), then one row per registrant. An empty field is NULL; lines starting with `#` are comments.

use std::path::Path;

use super::{column, set_text, Column, LoadLimits, Location, Rows, SourceError};
use crate::account::{RawRow, RowError};

pub(super) fn rows(path: &Path, text: &str, limits: &LoadLimits) -> Result<Rows, SourceError> {
    let format = |message: String| SourceError::Format {
        path: path.to_owned(),
        message,
    };
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(::csv::Trim::None)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format(format!("header row: {e}")))?
        .clone();
    let mut columns = Vec::with_capacity(headers.len());
    for name in headers.iter() {
        let col = column(name.trim())
            .ok_or_else(|| format(format!("header row: unknown column {name:?}")))?;
        if columns.contains(&col) {
            return Err(format(format!("header row: column {name:?} twice")));
        }
        columns.push(col);
    }
    for required in [Column::Registrar, Column::Aor, Column::BindingUri] {
        if !columns.contains(&required) {
            return Err(format(format!("header row: no column {}", required.name())));
        }
    }
    let mut out = Vec::new();
    let mut lines = LineCounter::default();
    for record in reader.records() {
        if out.len() >= limits.max_rows {
            return Err(SourceError::TooManyRows {
                path: path.to_owned(),
                max: limits.max_rows,
            });
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| lines.line_of(text, p.byte()));
                out.push((Location::Line(line), Err(RowError::Source(e.to_string()))));
                if matches!(e.kind(), ::csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        };
        let line = record
            .position()
            .map_or(0, |p| lines.line_of(text, p.byte()));
        let at = Location::Line(line);
        if record.len() != columns.len() {
            out.push((
                at,
                Err(RowError::Source(format!(
                    "{} fields, the header has {}",
                    record.len(),
                    columns.len()
                ))),
            ));
            continue;
        }
        let mut row = RawRow::default();
        let filled = columns
            .iter()
            .zip(record.iter())
            .try_for_each(|(&col, field)| {
                let value = (!field.is_empty()).then(|| field.to_owned());
                set_text(&mut row, col, value)
            });
        out.push((at, filled.map(|()| row)));
    }
    Ok(out)
}

/// Lines counted as the records go by: each record's line in time proportional to its own length.
#[derive(Default)]
struct LineCounter {
    offset: usize,
    /// Newlines before `offset`.
    newlines: usize,
}

impl LineCounter {
    /// 1-based line of the record at byte `offset` (the csv crate does not count comment lines, and a
    /// record's position is before the comment lines that precede it). Offsets only grow.
    fn line_of(&mut self, text: &str, offset: u64) -> usize {
        let bytes = text.as_bytes();
        let mut offset = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        while bytes.get(offset) == Some(&b'#') {
            match bytes[offset..].iter().position(|&c| c == b'\n') {
                Some(n) => offset += n + 1,
                None => break,
            }
        }
        if offset < self.offset {
            *self = LineCounter::default();
        }
        self.newlines += bytes[self.offset..offset]
            .iter()
            .filter(|&&c| c == b'\n')
            .count();
        self.offset = offset;
        self.newlines + 1
    }
}
