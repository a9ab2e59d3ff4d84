//! CSV files read with the `csv` crate (RFC 4180: quoted fields with `""` escapes and line
//! breaks inside quotes, CRLF or LF line ends), plus a UTF-8 byte-order mark. It keeps the line
//! number of every record so that errors can point at the line a user has to fix.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A CSV file held as strings: a header and records of the same width.
#[derive(Clone, Debug)]
pub struct Table {
    pub path: PathBuf,
    pub header: Vec<String>,
    pub records: Vec<Vec<String>>,
    /// The 1-based line on which each record starts.
    pub lines: Vec<usize>,
}

/// What a column holds, for a "what was found" listing.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnSummary {
    pub name: String,
    /// Distinct values, missing ones not counted.
    pub distinct: usize,
    /// Cells that are missing (empty or one of the missing markers).
    pub missing: usize,
    /// The most frequent values with their counts, most frequent first (ties by name).
    pub top: Vec<(String, usize)>,
}

/// The delimiter for a file: a tab for `.tsv`/`.tab`, else a comma.
pub fn default_delimiter(path: &Path) -> u8 {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("tsv" | "tab") => b'\t',
        _ => b',',
    }
}

/// Reads a CSV file whose first record is the header.
pub fn read_table(path: &Path, delimiter: u8) -> Result<Table> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read the CSV file: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::file(
            path,
            format!(
                "not UTF-8 text (first bad byte at offset {}); save the CSV as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    parse_table(path, &text, delimiter)
}

/// Parses CSV text; `path` only names the source in errors.
pub fn parse_table(path: &Path, text: &str, delimiter: u8) -> Result<Table> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = read_records(path, text, delimiter)?.into_iter();
    let Some((_, header)) = rows.next() else {
        return Err(Error::file(path, "the CSV file is empty; it needs a header line and one line per image"));
    };
    let header: Vec<String> = header.into_iter().map(|h| h.trim().to_string()).collect();
    check_header(path, &header)?;
    let mut records = Vec::with_capacity(rows.len());
    let mut lines = Vec::with_capacity(rows.len());
    for (line, rec) in rows {
        if rec.len() != header.len() {
            return Err(Error::file(
                path,
                format!(
                    "line {line} has {} fields but the header has {}; quote fields that contain '{}'",
                    rec.len(),
                    header.len(),
                    delimiter as char
                ),
            ));
        }
        records.push(rec);
        lines.push(line);
    }
    if records.is_empty() {
        return Err(Error::file(path, "the CSV file has a header but no data lines"));
    }
    Ok(Table { path: path.to_path_buf(), header, records, lines })
}

fn check_header(path: &Path, header: &[String]) -> Result<()> {
    let mut seen = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        if let Some(j) = seen.insert(h.as_str(), i) {
            return Err(Error::file(
                path,
                format!("the header names column '{h}' twice (columns {} and {})", j + 1, i + 1),
            ));
        }
    }
    Ok(())
}

/// Every record (the header too) with the 1-based line it starts on. Blank lines are skipped.
fn read_records(path: &Path, text: &str, delimiter: u8) -> Result<Vec<(usize, Vec<String>)>> {
    // Flexible: a ragged row is reported below with its line and a hint, not as the crate's error.
    let mut reader =
        csv::ReaderBuilder::new().delimiter(delimiter).has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut out = Vec::new();
    let mut start = 0;
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(String::new(), |p| format!("line {}: ", p.line()));
            Error::file(path, format!("{line}{e}"))
        })?;
        let pos = rec.position().expect("the csv reader gives every record its position");
        // The position is where the reader stood after the previous record: before that record's
        // line end (the `\n` of a CRLF) and any blank lines, which the reader then skips.
        let skipped = &text.as_bytes()[pos.byte() as usize..];
        let skipped = &skipped[..skipped.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count()];
        start = pos.byte() as usize + skipped.len();
        let line = pos.line() as usize + skipped.iter().filter(|&&b| b == b'\n').count();
        out.push((line, rec.iter().map(str::to_string).collect()));
    }
    // The reader takes an unclosed quote as running to the end of the file, without an error;
    // only the last record can hold one.
    if let Some((line, _)) = out.last() {
        if ends_inside_quotes(&text.as_bytes()[start..], delimiter) {
            return Err(Error::file(
                path,
                format!("line {line}: a quoted field is never closed; add the closing '\"'"),
            ));
        }
    }
    Ok(out)
}

/// Whether `raw` ends inside a quoted field, with the csv reader's rules: a quote opens one only
/// at the start of a field, and `""` inside it is a quote.
fn ends_inside_quotes(raw: &[u8], delimiter: u8) -> bool {
    let (mut inside, mut field_start) = (false, true);
    let mut bytes = raw.iter().peekable();
    while let Some(&b) = bytes.next() {
        if inside {
            if b == b'"' && bytes.next_if_eq(&&b'"').is_none() {
                inside = false;
            }
        } else {
            inside = b == b'"' && field_start;
            field_start = b == delimiter || b == b'\n' || b == b'\r';
        }
    }
    inside
}

impl Table {
    /// The index of a column, or an error that names it and lists the columns there are.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            // A header of one column holding the others' names: another separator.
            let sep = [(';', "semicolons"), ('\t', "tabs"), ('|', "bars")]
                .into_iter()
                .find(|(c, _)| self.header.len() == 1 && self.header[0].contains(*c));
            let hint = sep.map_or(String::new(), |(_, what)| {
                format!(" (one column: the file seems separated by {what}; tailor reads comma-separated CSV)")
            });
            Error::file(
                &self.path,
                format!("no column named '{name}'; the columns are: {}{hint}", self.header.join(", ")),
            )
        })
    }

    /// The cell at `record`, `col`, trimmed.
    pub fn cell(&self, record: usize, col: usize) -> &str {
        self.records[record][col].trim()
    }

    /// Column name, distinct values, missing count and most frequent values of every column.
    pub fn summary(&self, missing: &[String], top: usize) -> Vec<ColumnSummary> {
        (0..self.header.len()).map(|c| self.column_summary(c, missing, top)).collect()
    }

    fn column_summary(&self, col: usize, missing: &[String], top: usize) -> ColumnSummary {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut n_missing = 0;
        for r in 0..self.records.len() {
            let v = self.cell(r, col);
            if is_missing(v, missing) {
                n_missing += 1;
            } else {
                *counts.entry(v).or_default() += 1;
            }
        }
        let mut sorted: Vec<(String, usize)> = counts.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let distinct = sorted.len();
        sorted.truncate(top);
        ColumnSummary { name: self.header[col].clone(), distinct, missing: n_missing, top: sorted }
    }
}

/// The markers read as a missing value (besides an empty cell): pandas' common ones.
pub fn default_missing() -> Vec<String> {
    ["NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "#N/A"].iter().map(|s| s.to_string()).collect()
}

/// Whether a (trimmed) cell is missing: empty or one of the markers.
pub fn is_missing(v: &str, markers: &[String]) -> bool {
    v.is_empty() || markers.iter().any(|m| m == v)
}
