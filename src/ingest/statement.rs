//! CREATE / ALTER / DROP SUBSCRIPTION: PostgreSQL's syntax and option names where they apply
//! (`copy_data`, `enabled`, `slot_name`, `create_slot`), plus Lakegate's own options
//! (`target_schema`, `format`, `mode`, `max_latency`, `max_rows`, `password_file`); and the
//! connection string, whose password is kept but never shown back.
//!
//! Parsed from sqlparser's tokens by hand: sqlparser 0.61 has none of these statements.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SqlState};

/// How a subscription writes its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The target table equals the source table.
    #[default]
    Mirror,
    /// Every change appended as a row (operation, commit LSN and time, transaction id).
    Changelog,
}

/// A subscription as CREATE SUBSCRIPTION defined it (and ALTER changed it); kept in the
/// warehouse's metadata folder (`subscriptions.json`), never shown with its password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub name: String,
    pub oid: u32,
    pub owner: String,
    /// The connection string's settings (`host`, `port`, `dbname`, `user`, `password` ...).
    pub connection: BTreeMap<String, String>,
    pub publications: Vec<String>,
    pub slot_name: String,
    pub enabled: bool,
    pub copy_data: bool,
    /// Where the tables go (None: the source's schema name).
    pub target_schema: Option<String>,
    pub mode: Mode,
    /// The format of the tables it creates: Delta, or Iceberg for changelog subscriptions
    /// (appends only).
    #[serde(default)]
    pub format: crate::config::TableFormat,
    pub max_latency_ms: u64,
    /// The foreign server this connects to, when it is one (None: a subscription's
    /// publisher); what connection errors name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub max_rows: usize,
}

impl Definition {
    /// The connection string as the catalogs show it: without `password`.
    pub fn shown_connection(&self) -> String {
        conninfo(&self.connection, false)
    }

    /// The connection string with its password (from `password_file` when given).
    pub fn connection_string(&self) -> Result<String> {
        let mut c = self.connection.clone();
        if let Some(path) = c.remove("password_file") {
            let pw = std::fs::read_to_string(&path).map_err(|e| {
                Error::InvalidParameter(format!("could not read password_file \"{path}\": {e}"))
            })?;
            c.insert(
                "password".into(),
                pw.trim_end_matches(['\n', '\r']).to_string(),
            );
        }
        Ok(conninfo(&c, true))
    }

    /// The USING clause of the tables it creates.
    pub fn using(&self) -> &'static str {
        match self.format {
            crate::config::TableFormat::Iceberg => " USING iceberg",
            _ => "",
        }
    }

    /// The application id its positions are committed under (Delta's `txn` action, an
    /// Iceberg snapshot's summary).
    pub fn app_id(&self) -> String {
        format!("lakegate-cdc:{}", self.slot_name)
    }
}

/// `key=value` pairs in libpq's form (values quoted where needed).
fn conninfo(c: &BTreeMap<String, String>, with_password: bool) -> String {
    c.iter()
        .filter(|(k, _)| {
            with_password || (k.as_str() != "password" && k.as_str() != "password_file")
        })
        .map(|(k, v)| {
            if v.is_empty() || v.contains([' ', '\'', '\\']) {
                format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parse a libpq connection string (`host=h port=5432 dbname='my db'`); URIs are refused.
pub fn parse_conninfo(s: &str) -> Result<BTreeMap<String, String>> {
    let bad = |m: &str| Error::Data {
        sqlstate: SqlState::SyntaxError,
        message: format!("invalid connection string syntax: {m}"),
    };
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        return Err(bad(
            "use the key=value form (host=... port=... dbname=... user=...)",
        ));
    }
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(bad(&format!("missing \"=\" after \"{key}\"")));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(bad("unterminated quoted string")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    chars.next();
                    value.extend(chars.next());
                    continue;
                }
                value.push(c);
                chars.next();
            }
        }
        const KNOWN: &[&str] = &[
            "host",
            "hostaddr",
            "port",
            "dbname",
            "user",
            "password",
            "password_file",
            "sslmode",
            "sslrootcert",
            "connect_timeout",
            "application_name",
            "keepalives",
            "keepalives_idle",
            "keepalives_interval",
            "keepalives_count",
        ];
        if !KNOWN.contains(&key.as_str()) {
            return Err(bad(&format!("invalid connection option \"{key}\"")));
        }
        out.insert(key, value);
    }
    Ok(out)
}

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Create {
        name: String,
        connection: String,
        publications: Vec<String>,
        options: Vec<(String, String)>,
    },
    Alter {
        name: String,
        action: AlterAction,
    },
    Drop {
        name: String,
        if_exists: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlterAction {
    Enable,
    Disable,
    RefreshPublication(Vec<(String, String)>),
    SetPublication(Vec<String>, Vec<(String, String)>),
    Connection(String),
    Set(Vec<(String, String)>),
}

/// The tokens of `sql` without white space and comments.
pub(crate) struct Tokens {
    t: Vec<Token>,
    i: usize,
}

impl Tokens {
    pub(crate) fn new(sql: &str) -> Result<Tokens> {
        let t = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .map_err(|e| Error::Syntax(e.to_string()))?
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .filter(|t| !matches!(t, Token::SemiColon))
            .collect();
        Ok(Tokens { t, i: 0 })
    }

    pub(crate) fn peek(&self) -> Option<&Token> {
        self.t.get(self.i)
    }

    pub(crate) fn next(&mut self) -> Option<Token> {
        let t = self.t.get(self.i).cloned();
        self.i += 1;
        t
    }

    pub(crate) fn keyword(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw) => {
                self.i += 1;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn expect(&mut self, kw: &str) -> Result<()> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {kw}")))
        }
    }

    pub(crate) fn error(&self, what: &str) -> Error {
        let near = self
            .peek()
            .map(|t| format!("at or near \"{t}\""))
            .unwrap_or_else(|| "at end of input".into());
        Error::Syntax(format!("syntax error {near}: {what}"))
    }

    /// A name: folded to lower case unless quoted.
    pub(crate) fn name(&mut self) -> Result<String> {
        match self.next() {
            Some(Token::Word(w)) if w.quote_style.is_some() => Ok(w.value),
            Some(Token::Word(w)) => Ok(w.value.to_lowercase()),
            _ => {
                self.i = self.i.saturating_sub(1);
                Err(self.error("expected a name"))
            }
        }
    }

    pub(crate) fn string(&mut self) -> Result<String> {
        match self.next() {
            Some(Token::SingleQuotedString(s)) | Some(Token::EscapedStringLiteral(s)) => Ok(s),
            Some(Token::DollarQuotedString(d)) => Ok(d.value),
            _ => {
                self.i = self.i.saturating_sub(1);
                Err(self.error("expected a string"))
            }
        }
    }

    pub(crate) fn names(&mut self) -> Result<Vec<String>> {
        let mut out = vec![self.name()?];
        while matches!(self.peek(), Some(Token::Comma)) {
            self.i += 1;
            out.push(self.name()?);
        }
        Ok(out)
    }

    /// `WITH (a = 1, b, c = 'x')` when present (an option without value is `true`).
    pub(crate) fn with_options(&mut self) -> Result<Vec<(String, String)>> {
        if !self.keyword("with") {
            return Ok(vec![]);
        }
        self.options()
    }

    pub(crate) fn options(&mut self) -> Result<Vec<(String, String)>> {
        if !matches!(self.next(), Some(Token::LParen)) {
            return Err(self.error("expected ("));
        }
        let mut out = vec![];
        loop {
            let key = self.name()?;
            let value = if matches!(self.peek(), Some(Token::Eq)) {
                self.i += 1;
                match self.next() {
                    Some(Token::Word(w)) => w.value,
                    Some(Token::SingleQuotedString(s)) => s,
                    Some(Token::Number(n, _)) => n,
                    _ => return Err(self.error("expected an option value")),
                }
            } else {
                "true".into()
            };
            out.push((key, value));
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::RParen) => break,
                _ => return Err(self.error("expected , or )")),
            }
        }
        Ok(out)
    }

    /// A punctuation token (`.`, `,`).
    pub(crate) fn punct(&mut self, c: char) -> bool {
        let hit = matches!(
            (self.peek(), c),
            (Some(Token::Period), '.') | (Some(Token::Comma), ',')
        );
        if hit {
            self.i += 1;
        }
        hit
    }

    /// `OPTIONS (key 'value', ...)` (postgres_fdw's form) when present.
    pub(crate) fn fdw_options(&mut self) -> Result<Vec<(String, String)>> {
        if !self.keyword("options") {
            return Ok(vec![]);
        }
        if !matches!(self.next(), Some(Token::LParen)) {
            return Err(self.error("expected ("));
        }
        let mut out = vec![];
        loop {
            let _ = self.keyword("add") || self.keyword("set");
            let key = self.name()?;
            out.push((key, self.string()?));
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::RParen) => break,
                _ => return Err(self.error("expected , or )")),
            }
        }
        Ok(out)
    }

    /// `(a, b)`: names in parentheses.
    pub(crate) fn paren_names(&mut self) -> Result<Vec<String>> {
        if !matches!(self.next(), Some(Token::LParen)) {
            return Err(self.error("expected ("));
        }
        let names = self.names()?;
        if !matches!(self.next(), Some(Token::RParen)) {
            return Err(self.error("expected )"));
        }
        Ok(names)
    }

    /// `(name type, ...)`: each column's type as written (up to its `,` or `)`), without
    /// constraints (`NOT NULL`, `OPTIONS (...)` are read and left out).
    pub(crate) fn column_list(&mut self) -> Result<Vec<(String, String)>> {
        if !matches!(self.next(), Some(Token::LParen)) {
            return Err(self.error("expected ("));
        }
        let mut out = vec![];
        loop {
            let name = self.name()?;
            let mut ty = String::new();
            let mut depth = 0usize;
            loop {
                match self.peek() {
                    None => return Err(self.error("expected )")),
                    Some(Token::Comma | Token::RParen) if depth == 0 => break,
                    Some(Token::Word(w))
                        if depth == 0
                            && ["not", "null", "options", "default", "collate"]
                                .iter()
                                .any(|k| w.value.eq_ignore_ascii_case(k)) =>
                    {
                        // Constraints and column options: skipped to the column's end.
                        let mut d = 0usize;
                        while let Some(t) = self.peek() {
                            match t {
                                Token::LParen => d += 1,
                                Token::RParen if d == 0 => break,
                                Token::RParen => d -= 1,
                                Token::Comma if d == 0 => break,
                                _ => {}
                            }
                            self.i += 1;
                        }
                        break;
                    }
                    Some(t) => {
                        match t {
                            Token::LParen => depth += 1,
                            Token::RParen => depth = depth.saturating_sub(1),
                            _ => {}
                        }
                        let text = t.to_string();
                        if !ty.is_empty()
                            && !text.starts_with(['(', ')', ',', '[', ']'])
                            && !ty.ends_with(['(', '['])
                        {
                            ty.push(' ');
                        }
                        ty.push_str(&text);
                        self.i += 1;
                    }
                }
            }
            if ty.is_empty() {
                return Err(self.error("expected a column type"));
            }
            out.push((name, ty));
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::RParen) => break,
                _ => return Err(self.error("expected , or )")),
            }
        }
        Ok(out)
    }

    pub(crate) fn end(&self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("unexpected text")),
        }
    }
}

/// Parse CREATE / ALTER / DROP SUBSCRIPTION.
pub fn parse(sql: &str) -> Result<Statement> {
    let mut t = Tokens::new(sql)?;
    let stmt = if t.keyword("create") {
        t.expect("subscription")?;
        let name = t.name()?;
        t.expect("connection")?;
        let connection = t.string()?;
        t.expect("publication")?;
        let publications = t.names()?;
        let options = t.with_options()?;
        Statement::Create {
            name,
            connection,
            publications,
            options,
        }
    } else if t.keyword("alter") {
        t.expect("subscription")?;
        let name = t.name()?;
        let action = if t.keyword("enable") {
            AlterAction::Enable
        } else if t.keyword("disable") {
            AlterAction::Disable
        } else if t.keyword("refresh") {
            t.expect("publication")?;
            AlterAction::RefreshPublication(t.with_options()?)
        } else if t.keyword("connection") {
            AlterAction::Connection(t.string()?)
        } else if t.keyword("set") {
            if t.keyword("publication") {
                let names = t.names()?;
                AlterAction::SetPublication(names, t.with_options()?)
            } else {
                AlterAction::Set(t.options()?)
            }
        } else {
            return Err(t.error(
                "expected ENABLE, DISABLE, REFRESH PUBLICATION, SET PUBLICATION, SET (...) or CONNECTION",
            ));
        };
        Statement::Alter { name, action }
    } else if t.keyword("drop") {
        t.expect("subscription")?;
        let if_exists = if t.keyword("if") {
            t.expect("exists")?;
            true
        } else {
            false
        };
        let name = t.name()?;
        // CASCADE / RESTRICT are accepted and mean nothing here, as in PostgreSQL.
        let _ = t.keyword("cascade") || t.keyword("restrict");
        Statement::Drop { name, if_exists }
    } else {
        return Err(t.error("expected CREATE, ALTER or DROP SUBSCRIPTION"));
    };
    t.end()?;
    Ok(stmt)
}

/// A boolean option value as PostgreSQL takes it.
pub fn boolean(key: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" | "yes" => Ok(true),
        "false" | "off" | "0" | "no" => Ok(false),
        _ => Err(Error::InvalidParameter(format!(
            "{key} requires a Boolean value"
        ))),
    }
}

/// A duration option (`max_latency`): milliseconds, or a number with `ms`, `s` or `min`.
pub fn duration_ms(key: &str, v: &str) -> Result<u64> {
    let v = v.trim().to_ascii_lowercase();
    let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix("min") {
        (n, 60_000)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else {
        (v.as_str(), 1)
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(|n| n.saturating_mul(scale))
        .ok_or_else(|| {
            Error::InvalidParameter(format!(
                "invalid value for {key}: \"{v}\" (e.g. '500ms', '2s')"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_statements_and_hides_the_password() -> Result<()> {
        let s = parse(
            "CREATE SUBSCRIPTION s1 CONNECTION 'host=127.0.0.1 port=5433 dbname=shop user=rep password=''se cret''' \
             PUBLICATION p1, \"P2\" WITH (copy_data = false, mode = 'changelog', enabled)",
        )?;
        let Statement::Create {
            name,
            connection,
            publications,
            options,
        } = s
        else {
            return Err(Error::internal("not a create"));
        };
        assert_eq!(name, "s1");
        assert_eq!(publications, vec!["p1".to_string(), "P2".to_string()]);
        assert_eq!(options.len(), 3);
        let c = parse_conninfo(&connection)?;
        assert_eq!(c.get("password").map(String::as_str), Some("se cret"));
        let shown = conninfo(&c, false);
        assert!(!shown.contains("cret"), "{shown}");
        assert_eq!(
            parse("alter subscription s1 refresh publication")?,
            Statement::Alter {
                name: "s1".into(),
                action: AlterAction::RefreshPublication(vec![])
            }
        );
        assert_eq!(
            parse("DROP SUBSCRIPTION IF EXISTS s1;")?,
            Statement::Drop {
                name: "s1".into(),
                if_exists: true
            }
        );
        assert!(parse("CREATE SUBSCRIPTION s CONNECTION 'x=1' PUBLICATION p").is_ok());
        assert!(parse_conninfo("x=1").is_err());
        assert!(parse("CREATE SUBSCRIPTION s PUBLICATION p").is_err());
        assert_eq!(duration_ms("max_latency", "2s")?, 2000);
        Ok(())
    }
}
