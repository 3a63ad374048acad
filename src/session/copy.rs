//! `COPY table [(columns)] TO STDOUT` and `COPY (query) TO STDOUT`, in text, CSV and binary:
//! the rows come from the same governed, audited plan a `SELECT` of them gets (so COPY carries
//! only what the user may see), and are written in PostgreSQL's COPY formats by the wire layer
//! (`wire::copy_out`). DataFusion's parser only knows `COPY ... TO 'file'`, so the statement is
//! recognised here with sqlparser's PostgreSQL dialect first. `COPY ... FROM STDIN` answers
//! 0A000 for now; `COPY ... TO/FROM` a server file is refused (42501): no user reads or writes
//! the server's files.

use datafusion::sql::sqlparser::ast::{
    CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{Error, Result};

/// The COPY formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Csv,
    Binary,
}

/// How COPY TO writes rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    pub kind: Kind,
    pub delimiter: char,
    pub null: String,
    pub header: bool,
    pub quote: char,
    pub escape: char,
}

/// A COPY TO STDOUT: the SELECT giving its rows, and the format.
#[derive(Debug, Clone)]
pub struct CopyOut {
    pub query: String,
    pub format: CopyFormat,
}

/// Recognise a COPY statement (None: not one; the caller parses it as usual).
pub fn parse(sql: &str) -> Result<Option<CopyOut>> {
    let head = sql.trim_start().get(..4).unwrap_or_default();
    if !head.eq_ignore_ascii_case("copy") {
        return Ok(None);
    }
    let mut stmts =
        Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| Error::Syntax(e.to_string()))?;
    if stmts.len() != 1 {
        return Ok(None);
    }
    let Some(Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    }) = stmts.pop()
    else {
        return Ok(None);
    };
    match (&target, to) {
        (CopyTarget::Stdout, true) => {}
        (CopyTarget::Stdin, false) => {
            return Err(Error::unsupported(
                "COPY ... FROM STDIN is not supported yet: use INSERT",
            ));
        }
        _ => {
            return Err(Error::PermissionDenied(
                "permission denied to COPY to or from a file or program on the server: use \
                 COPY ... TO STDOUT / FROM STDIN (psql \\copy)"
                    .into(),
            ));
        }
    }
    let query = match source {
        CopySource::Table {
            table_name,
            columns,
        } => {
            let cols = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("SELECT {cols} FROM {table_name}")
        }
        CopySource::Query(q) => q.to_string(),
    };
    Ok(Some(CopyOut {
        query,
        format: format(&options, &legacy_options)?,
    }))
}

fn format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat> {
    let mut kind = Kind::Text;
    let mut delimiter = None;
    let mut null = None;
    let mut header = false;
    let mut quote = '"';
    let mut escape = None;
    let bad = |m: String| Error::Data {
        sqlstate: "22023",
        message: m,
    };
    for o in options {
        match o {
            CopyOption::Format(f) => {
                kind = match f.value.to_ascii_lowercase().as_str() {
                    "text" => Kind::Text,
                    "csv" => Kind::Csv,
                    "binary" => Kind::Binary,
                    other => return Err(bad(format!("COPY format \"{other}\" not recognized"))),
                }
            }
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(s) => null = Some(s.clone()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Quote(c) => quote = *c,
            CopyOption::Escape(c) => escape = Some(*c),
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => {
                return Err(Error::unsupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Binary => kind = Kind::Binary,
            CopyLegacyOption::Csv(_) => kind = Kind::Csv,
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(s) => null = Some(s.clone()),
            CopyLegacyOption::Header => header = true,
            other => {
                return Err(Error::unsupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    if kind == Kind::Binary && (delimiter.is_some() || null.is_some() || header) {
        return Err(bad(
            "cannot specify DELIMITER, NULL or HEADER in BINARY mode".into(),
        ));
    }
    if kind == Kind::Text && header {
        return Err(Error::unsupported(
            "COPY HEADER is available in CSV mode here",
        ));
    }
    Ok(CopyFormat {
        kind,
        delimiter: delimiter.unwrap_or(if kind == Kind::Csv { ',' } else { '\t' }),
        null: null.unwrap_or_else(|| {
            if kind == Kind::Csv {
                String::new()
            } else {
                "\\N".into()
            }
        }),
        header,
        quote,
        escape: escape.unwrap_or(quote),
    })
}

/// One row of COPY text format from its fields' text (None: NULL), newline included.
pub fn text_line(fields: &[Option<&[u8]>], f: &CopyFormat) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for (i, v) in fields.iter().enumerate() {
        if i > 0 {
            push_char(&mut out, f.delimiter);
        }
        match v {
            None => out.extend_from_slice(f.null.as_bytes()),
            Some(bytes) => {
                for &b in bytes.iter() {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b if b == f.delimiter as u8 && f.delimiter.is_ascii() => {
                            out.push(b'\\');
                            out.push(b);
                        }
                        b => out.push(b),
                    }
                }
            }
        }
    }
    out.push(b'\n');
    out
}

/// One row of COPY CSV format (quoted where PostgreSQL quotes: the delimiter, quote, CR/LF, a
/// value equal to the NULL string, and the empty string when NULL is empty).
pub fn csv_line(fields: &[Option<&[u8]>], f: &CopyFormat) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut d = [0u8; 4];
    let delim = f.delimiter.encode_utf8(&mut d).as_bytes().to_vec();
    for (i, v) in fields.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(&delim);
        }
        match v {
            None => out.extend_from_slice(f.null.as_bytes()),
            Some(bytes) => {
                let needs = bytes.is_empty() && f.null.is_empty()
                    || *bytes == f.null.as_bytes()
                    || bytes
                        .windows(delim.len().max(1))
                        .any(|w| w == delim.as_slice())
                    || bytes.iter().any(|&b| {
                        b == f.quote as u8 || b == b'\n' || b == b'\r' || b == f.escape as u8
                    });
                if needs {
                    out.push(f.quote as u8);
                    for &b in bytes.iter() {
                        if b == f.quote as u8 || b == f.escape as u8 {
                            out.push(f.escape as u8);
                        }
                        out.push(b);
                    }
                    out.push(f.quote as u8);
                } else {
                    out.extend_from_slice(bytes);
                }
            }
        }
    }
    out.push(b'\n');
    out
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut b = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
}

/// PGCOPY's binary header (signature, flags, no extension).
pub const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn statements_and_formats() -> Result<()> {
        let c = parse("COPY hr.emp (id, name) TO STDOUT WITH (FORMAT csv, HEADER)")?.expect("copy");
        assert_eq!(c.query, "SELECT id, name FROM hr.emp");
        assert_eq!(c.format.kind, Kind::Csv);
        assert!(c.format.header);
        let c = parse("copy (select 1) to stdout binary")?.expect("copy");
        assert_eq!(c.format.kind, Kind::Binary);
        assert!(parse("SELECT 1")?.is_none());
        assert!(parse("COPY t TO '/etc/passwd'").is_err());
        assert!(parse("COPY t FROM PROGRAM 'id'").is_err());
        Ok(())
    }

    #[test]
    fn text_and_csv_escape_like_postgres() -> Result<()> {
        let text = parse("COPY t TO STDOUT")?.expect("copy").format;
        let row: Vec<Option<&[u8]>> = vec![Some(b"a\tb\\c\nd"), None, Some(b"")];
        assert_eq!(text_line(&row, &text), b"a\\tb\\\\c\\nd\t\\N\t\n");
        let csv = parse("COPY t TO STDOUT (FORMAT csv)")?
            .expect("copy")
            .format;
        let row: Vec<Option<&[u8]>> = vec![Some(b"x,y"), None, Some(b""), Some(b"say \"hi\"")];
        assert_eq!(csv_line(&row, &csv), b"\"x,y\",,\"\",\"say \"\"hi\"\"\"\n");
        Ok(())
    }
}
