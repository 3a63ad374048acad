//! PostgreSQL's COPY text format as the source sends it (`COPY ... TO STDOUT`: tab-separated,
//! `\N` for NULL, backslash escapes) read straight into one Arrow string column per source
//! column: the hot loop of the initial copy and of foreign-table scans.
//!
//! Written here rather than with `session::copy::RowParser` (COPY FROM's parser, with every
//! option COPY takes, which makes a `String` per value) or arrow-csv (no backslash escapes):
//! values without a backslash go from the received bytes into the column's buffer as they are.

use datafusion::arrow::array::{StringArray, StringBuilder};
use memchr::{memchr, memchr2};

use crate::error::{Error, Result, SqlState};

/// The columns read so far.
pub struct TextColumns {
    columns: Vec<StringBuilder>,
    /// The start of a line whose end has not come yet.
    partial: Vec<u8>,
    /// A value being unescaped.
    scratch: Vec<u8>,
    rows: usize,
    /// The end-of-data marker (`\.`) was seen: what follows is ignored.
    done: bool,
}

fn bad_format(message: String) -> Error {
    Error::Data {
        sqlstate: SqlState::BadCopyFileFormat,
        message,
    }
}

fn utf8(b: &[u8]) -> Result<&str> {
    std::str::from_utf8(b).map_err(|_| Error::Data {
        sqlstate: SqlState::CharacterNotInRepertoire,
        message: "invalid byte sequence for encoding \"UTF8\"".into(),
    })
}

impl TextColumns {
    pub fn new(columns: usize) -> TextColumns {
        TextColumns {
            columns: (0..columns).map(|_| StringBuilder::new()).collect(),
            partial: vec![],
            scratch: vec![],
            rows: 0,
            done: false,
        }
    }

    /// Rows read and not yet taken.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Take `data`: every line it completes is read.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<()> {
        if !self.partial.is_empty() {
            let Some(i) = memchr(b'\n', data) else {
                self.partial.extend_from_slice(data);
                return Ok(());
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&data[..i]);
            self.line(&line)?;
            line.clear();
            self.partial = line;
            data = &data[i + 1..];
        }
        while let Some(i) = memchr(b'\n', data) {
            self.line(&data[..i])?;
            data = &data[i + 1..];
        }
        self.partial.extend_from_slice(data);
        Ok(())
    }

    /// The end of the data: a last line without its newline is read.
    pub fn finish(&mut self) -> Result<()> {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.line(&rest)?;
        }
        Ok(())
    }

    /// The rows read so far, one column each; the reader starts over empty.
    pub fn take(&mut self) -> Vec<StringArray> {
        self.rows = 0;
        self.columns.iter_mut().map(StringBuilder::finish).collect()
    }

    fn line(&mut self, line: &[u8]) -> Result<()> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.done {
            return Ok(());
        }
        if line == b"\\." {
            self.done = true;
            return Ok(());
        }
        let mut column = 0;
        let (mut start, mut at, mut escaped) = (0, 0, false);
        loop {
            match memchr2(b'\t', b'\\', &line[at..]) {
                Some(j) if line[at + j] == b'\\' => {
                    // The escaped byte is never a separator.
                    escaped = true;
                    at = (at + j + 2).min(line.len());
                }
                Some(j) => {
                    self.value(column, &line[start..at + j], escaped)?;
                    column += 1;
                    (start, at, escaped) = (at + j + 1, at + j + 1, false);
                }
                None => {
                    self.value(column, &line[start..], escaped)?;
                    column += 1;
                    break;
                }
            }
        }
        if column < self.columns.len() {
            return Err(bad_format(format!(
                "missing data for column {}",
                column + 1
            )));
        }
        self.rows += 1;
        Ok(())
    }

    fn value(&mut self, column: usize, raw: &[u8], escaped: bool) -> Result<()> {
        let Some(b) = self.columns.get_mut(column) else {
            return Err(bad_format("extra data after last expected column".into()));
        };
        if raw == b"\\N" {
            b.append_null();
        } else if !escaped {
            b.append_value(utf8(raw)?);
        } else {
            self.scratch.clear();
            unescape(raw, &mut self.scratch);
            b.append_value(utf8(&self.scratch)?);
        }
        Ok(())
    }
}

/// A value's backslash escapes: `\b \f \n \r \t \v`, octal `\ooo`, hex `\xhh`, and any other
/// byte after a backslash as itself.
fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' || i == raw.len() {
            out.push(b);
            continue;
        }
        let n = raw[i];
        i += 1;
        match n {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(n - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::copy::{CopyFormat, RowParser};

    fn columns(chunks: &[&[u8]], n: usize) -> Result<Vec<Vec<Option<String>>>> {
        let mut t = TextColumns::new(n);
        for c in chunks {
            t.feed(c)?;
        }
        t.finish()?;
        let rows = t.rows();
        let cols = t.take();
        Ok((0..rows)
            .map(|r| {
                cols.iter()
                    .map(|c| {
                        use datafusion::arrow::array::Array;
                        (!c.is_null(r)).then(|| c.value(r).to_string())
                    })
                    .collect()
            })
            .collect())
    }

    #[test]
    fn reads_as_copy_from_does() {
        let data: &[u8] = b"1\tplain\t\\N\n2\ttab\\there\\\\ back\\nnl\t\\101\\x41\\q\n3\t\t\xc3\xa9\r\n4\t\\\ttab\tlast";
        let mut p = RowParser::new(CopyFormat::text(), 3);
        let mut want = p.feed(data).unwrap();
        want.extend(p.finish().unwrap());
        // Whole, and cut at every byte.
        assert_eq!(columns(&[data], 3).unwrap(), want);
        for cut in 1..data.len() {
            assert_eq!(
                columns(&[&data[..cut], &data[cut..]], 3).unwrap(),
                want,
                "cut at {cut}"
            );
        }
        assert_eq!(want[1][2].as_deref(), Some("AAq"));
    }

    #[test]
    fn counts_columns_and_stops_at_the_end_marker() {
        assert!(columns(&[b"1\t2\t3\n"], 2).is_err());
        assert!(columns(&[b"1\n"], 2).is_err());
        assert!(columns(&[b"\xff\t1\n"], 2).is_err());
        assert_eq!(columns(&[b"1\t2\n\\.\nx\n"], 2).unwrap().len(), 1);
    }
}
