//! Session configuration parameters (`SET`, `SHOW`, `RESET`), with PostgreSQL's names and defaults.
//! None of them changes who the user is: identity comes from authentication only.

use std::collections::BTreeMap;

use super::{CommandTag, Outcome, Session};
use crate::config::PG_VERSION;
use crate::error::{Error, Result, SqlState};
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use std::sync::Arc;

/// Parameters whose value the server owns; `SET` on them is refused like PostgreSQL does.
const READ_ONLY: &[&str] = &[
    "server_version",
    "server_version_num",
    "server_encoding",
    "integer_datetimes",
    "is_superuser",
    "session_authorization",
    "max_identifier_length",
    "lc_collate",
    "lc_ctype",
    "block_size",
    "max_connections",
    "in_hot_standby",
];

/// Parameters a client may set that Lakegate accepts and reports back.
const SETTABLE: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("timezone", "UTC"),
    ("search_path", "\"$user\", public"),
    ("extra_float_digits", "1"),
    ("statement_timeout", "0"),
    ("lock_timeout", "0"),
    ("idle_in_transaction_session_timeout", "0"),
    ("standard_conforming_strings", "on"),
    ("default_table_access_method", "heap"),
    ("transaction_isolation", "read committed"),
    ("default_transaction_isolation", "read committed"),
    // Materialized-view rewrite, the result cache and the reuse of optimized plans, on unless
    // a session turns them off.
    ("lakegate.mv_rewrite", "on"),
    ("lakegate.result_cache", "on"),
    ("lakegate.plan_cache", "on"),
    ("transaction_read_only", "off"),
    ("default_transaction_read_only", "off"),
    ("bytea_output", "hex"),
    ("client_min_messages", "notice"),
    ("lc_messages", "C"),
    ("lc_monetary", "C"),
    ("lc_numeric", "C"),
    ("lc_time", "C"),
    ("geqo", "on"),
    ("jit", "off"),
    ("work_mem", "4MB"),
    ("synchronous_commit", "on"),
    ("row_security", "on"),
    ("enable_seqscan", "on"),
    ("escape_string_warning", "on"),
    ("backslash_quote", "safe_encoding"),
    ("xmloption", "content"),
    ("default_text_search_config", "pg_catalog.english"),
    ("tcp_keepalives_idle", "0"),
    ("tcp_keepalives_interval", "0"),
    ("tcp_keepalives_count", "0"),
    ("max_parallel_workers_per_gather", "2"),
];

/// The values of one session.
#[derive(Debug, Clone)]
pub struct Settings {
    values: BTreeMap<String, String>,
    fixed: BTreeMap<String, String>,
    /// Unique to these values: taken from a process-wide counter at every change, so settings
    /// restored from a copy (a rolled-back SET LOCAL) get their old number back, never
    /// another state's.
    generation: u64,
    /// The user's `[[limits]] statement_timeout`: the default and the ceiling of
    /// `statement_timeout` (a SET beyond it, or to 0, keeps the ceiling).
    timeout_ceiling: Option<std::time::Duration>,
}

fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// PostgreSQL's canonical spelling of a parameter name, as reported by ParameterStatus / SHOW.
pub fn display_name(name: &str) -> &str {
    match name {
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        "timezone" => "TimeZone",
        other => other,
    }
}

impl Settings {
    pub fn new(user: &str, is_admin: bool, max_connections: usize) -> Settings {
        let values = SETTABLE
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let num = version_num(PG_VERSION);
        let fixed = [
            ("server_version", PG_VERSION.to_string()),
            ("server_version_num", num),
            ("server_encoding", "UTF8".into()),
            ("integer_datetimes", "on".into()),
            ("is_superuser", if is_admin { "on" } else { "off" }.into()),
            ("session_authorization", user.to_string()),
            ("max_identifier_length", "63".into()),
            ("lc_collate", "C".into()),
            ("lc_ctype", "C".into()),
            ("block_size", "8192".into()),
            ("max_connections", max_connections.to_string()),
            ("in_hot_standby", "off".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Settings {
            values,
            fixed,
            generation: next_generation(),
            timeout_ceiling: None,
        }
    }

    /// Identifies these values (see the field).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Take over the client's startup parameters that are settings (application_name, DateStyle ...).
    /// Unknown or invalid ones are ignored, as identity-bearing ones (user, database) are.
    pub fn apply_startup(&mut self, params: &std::collections::HashMap<String, String>) {
        for (k, v) in params {
            let k = k.to_ascii_lowercase();
            if k == "user" || k == "database" || k == "options" || k == "replication" {
                continue;
            }
            if self.values.contains_key(&k) {
                let _ = self.set(&k, v);
            }
        }
    }

    pub fn get(&self, name: &str) -> Result<String> {
        let key = name.to_ascii_lowercase();
        if let Some(v) = self.fixed.get(&key).or_else(|| self.values.get(&key)) {
            return Ok(v.clone());
        }
        Err(Error::UndefinedObject(format!(
            "unrecognized configuration parameter \"{name}\""
        )))
    }

    /// All parameters, for `SHOW ALL`.
    pub fn all(&self) -> Vec<(String, String)> {
        let mut all: Vec<_> = self
            .fixed
            .iter()
            .chain(self.values.iter())
            .map(|(k, v)| (display_name(k).to_string(), v.clone()))
            .collect();
        all.sort();
        all
    }

    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let key = name.to_ascii_lowercase();
        if READ_ONLY.contains(&key.as_str()) {
            return Err(Error::Data {
                sqlstate: SqlState::CantChangeRuntimeParam,
                message: format!("parameter \"{name}\" cannot be changed"),
            });
        }
        let value = match key.as_str() {
            "timezone" => normalize_timezone(value)?,
            "datestyle" => normalize_datestyle(value)?,
            "client_encoding" => {
                let v = value.to_ascii_uppercase().replace('-', "");
                if v != "UTF8" && v != "UNICODE" {
                    return Err(Error::unsupported(format!(
                        "client_encoding {value} is not supported; Lakegate speaks UTF8 only"
                    )));
                }
                "UTF8".into()
            }
            "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => {
                if crate::config::parse_duration(value).is_none() {
                    return Err(Error::InvalidParameter(format!(
                        "invalid value for parameter \"{name}\": \"{value}\""
                    )));
                }
                value.to_string()
            }
            "intervalstyle" => {
                let v = value.to_ascii_lowercase();
                if !["postgres", "postgres_verbose", "sql_standard", "iso_8601"]
                    .contains(&v.as_str())
                {
                    return Err(Error::InvalidParameter(format!(
                        "invalid value for parameter \"IntervalStyle\": \"{value}\""
                    )));
                }
                v
            }
            "lakegate.mv_rewrite" | "lakegate.result_cache" | "lakegate.plan_cache" => {
                match value.to_ascii_lowercase().as_str() {
                    "on" | "true" | "yes" | "1" => "on".into(),
                    "off" | "false" | "no" | "0" => "off".into(),
                    _ => {
                        return Err(Error::InvalidParameter(format!(
                            "parameter \"{name}\" requires a Boolean value"
                        )));
                    }
                }
            }
            _ => value.to_string(),
        };
        if self.values.contains_key(&key) || key.contains('.') {
            self.values.insert(key, value);
            self.generation = next_generation();
            self.clamp_timeout();
            Ok(())
        } else {
            Err(Error::UndefinedObject(format!(
                "unrecognized configuration parameter \"{name}\""
            )))
        }
    }

    /// Bound `statement_timeout` by the user's limit (see `timeout_ceiling`).
    pub fn limit_statement_timeout(&mut self, ceiling: std::time::Duration) {
        self.timeout_ceiling = Some(ceiling);
        self.clamp_timeout();
    }

    fn clamp_timeout(&mut self) {
        let Some(ceiling) = self.timeout_ceiling else {
            return;
        };
        let within = self
            .statement_timeout()
            .is_some_and(|current| current <= ceiling);
        if !within {
            self.values
                .insert("statement_timeout".into(), duration_text(ceiling));
            self.generation = next_generation();
        }
    }

    pub fn reset(&mut self, name: &str) -> Result<()> {
        let key = name.to_ascii_lowercase();
        match SETTABLE.iter().find(|(k, _)| *k == key) {
            Some((_, v)) => {
                self.values.insert(key, v.to_string());
                self.generation = next_generation();
                self.clamp_timeout();
                Ok(())
            }
            None if key.contains('.') => {
                self.values.remove(&key);
                self.generation = next_generation();
                Ok(())
            }
            None => Err(Error::UndefinedObject(format!(
                "unrecognized configuration parameter \"{name}\""
            ))),
        }
    }

    pub fn reset_all(&mut self) {
        self.generation = next_generation();
        self.values = SETTABLE
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.clamp_timeout();
    }

    /// The session time zone, for rendering `timestamptz` values.
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.values
            .get("timezone")
            .and_then(|z| z.parse().ok())
            .unwrap_or(chrono_tz::UTC)
    }

    /// `statement_timeout` (milliseconds, or with a unit: ms, s, min, h, d); `None` when 0.
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        let v = self.values.get("statement_timeout")?;
        crate::config::parse_duration(v).filter(|d| !d.is_zero())
    }

    /// The first existing schema of the search path.
    pub fn search_path(&self) -> Vec<String> {
        let raw = self.values.get("search_path").cloned().unwrap_or_default();
        raw.split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty() && s != "$user")
            .collect()
    }
}

/// A duration as PostgreSQL shows a time setting: in its largest whole unit ("20s", "5min").
fn duration_text(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1000, "s"),
    ]
    .iter()
    .find(|(unit, _)| ms.is_multiple_of(*unit))
    .map(|(unit, name)| format!("{}{name}", ms / unit))
    .unwrap_or_else(|| format!("{ms}ms"))
}

fn version_num(v: &str) -> String {
    let mut parts = v.split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(15);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    format!("{}", major * 10000 + minor)
}

fn normalize_timezone(v: &str) -> Result<String> {
    let t = v.trim().trim_matches('\'');
    if t.eq_ignore_ascii_case("local") || t.eq_ignore_ascii_case("default") {
        return Ok("UTC".into());
    }
    if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("gmt") || t.eq_ignore_ascii_case("z")
    {
        return Ok(if t.eq_ignore_ascii_case("gmt") {
            "GMT".into()
        } else {
            "UTC".into()
        });
    }
    match t.parse::<chrono_tz::Tz>() {
        Ok(z) => Ok(z.name().to_string()),
        Err(_) => Err(Error::InvalidParameter(format!(
            "invalid value for parameter \"TimeZone\": \"{t}\""
        ))),
    }
}

/// DateStyle as PostgreSQL reports it (`ISO, DMY`): Lakegate renders ISO dates, so the output
/// style must be ISO (or left out); the field order is kept as asked.
fn normalize_datestyle(v: &str) -> Result<String> {
    let l = v.to_ascii_lowercase();
    let words: Vec<&str> = l
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    if words
        .iter()
        .any(|w| matches!(*w, "sql" | "german" | "postgres"))
    {
        return Err(Error::unsupported(format!(
            "DateStyle {v} is not supported; use ISO"
        )));
    }
    let order = words
        .iter()
        .find_map(|w| match *w {
            "dmy" | "euro" | "european" => Some("DMY"),
            "ymd" => Some("YMD"),
            "mdy" | "us" | "noneuro" | "noneuropean" => Some("MDY"),
            _ => None,
        })
        .unwrap_or("MDY");
    Ok(format!("ISO, {order}"))
}

impl Session {
    pub(super) fn set(&mut self, set: &ast::Set) -> Result<Outcome> {
        use ast::Set as S;
        match set {
            S::SingleAssignment {
                variable, values, ..
            } => {
                let name = variable.to_string();
                let value = values.iter().map(set_value).collect::<Vec<_>>().join(", ");
                if name.eq_ignore_ascii_case("role")
                    || name.eq_ignore_ascii_case("session_authorization")
                {
                    return self.set_role(&value);
                }
                if value.eq_ignore_ascii_case("default") {
                    self.settings.reset(&name)?;
                } else {
                    self.settings.set(&name, &value)?;
                }
            }
            S::SetTimeZone { value, .. } => {
                self.settings.set("timezone", &set_value(value))?;
            }
            S::SetNames { charset_name, .. } => {
                self.settings.set("client_encoding", &charset_name.value)?;
            }
            S::SetRole { role_name, .. } => {
                return self.set_role(
                    &role_name
                        .as_ref()
                        .map(|r| r.value.clone())
                        .unwrap_or_default(),
                );
            }
            S::SetSessionAuthorization(p) => {
                return self.set_role(&p.to_string());
            }
            // The isolation level asked for is recorded (SHOW TRANSACTION ISOLATION LEVEL says
            // it); every statement reads one committed snapshot of each table whatever it is.
            S::SetTransaction { modes, session, .. } => {
                for m in modes {
                    if let ast::TransactionMode::IsolationLevel(level) = m {
                        let level = super::transaction::isolation_name(level);
                        if *session {
                            self.settings.set("default_transaction_isolation", level)?;
                        }
                        if *session && !self.in_transaction || !*session && self.in_transaction {
                            self.settings.set("transaction_isolation", level)?;
                        }
                    }
                }
            }
            S::SetSessionParam(_) => {}
            other => return Err(Error::unsupported(format!("{other} is not supported"))),
        }
        self.rebuild_context();
        Ok(Outcome::Command(CommandTag::new("SET")))
    }

    /// SET ROLE / SESSION AUTHORIZATION: to oneself, back to none, or to a role the policies
    /// grant this user; then that role's grants decide.
    pub(super) fn set_role(&mut self, role: &str) -> Result<Outcome> {
        let r = role.trim().trim_matches('\'').trim_matches('"');
        let r_lower = r.to_ascii_lowercase();
        if r.is_empty() || r_lower == "none" || r_lower == "default" || r == self.principal.name {
            self.principal.role = None;
            self.rebuild_context();
            Ok(Outcome::Command(CommandTag::new("SET")))
        } else if self
            .engine
            .policies()
            .roles_held(&crate::policy::Subject {
                name: self.principal.name.clone(),
                ..self.principal.subject()
            })
            .iter()
            .any(|g| g == r)
        {
            self.principal.role = Some(r.to_string());
            self.rebuild_context();
            Ok(Outcome::Command(CommandTag::new("SET")))
        } else {
            Err(Error::PermissionDenied(format!(
                "permission denied to set role \"{r}\""
            )))
        }
    }

    pub(super) fn show(&self, variable: &[ast::Ident]) -> Result<Outcome> {
        let name = show_name(variable);
        let (schema, columns): (SchemaRef, Vec<Arc<dyn Array>>) = if name == "all" {
            let all = self.settings.all();
            let schema = self
                .utility_schema(&show_stmt(variable))
                .ok_or_else(|| Error::internal("show schema"))?;
            let names = StringArray::from_iter_values(all.iter().map(|(k, _)| k.as_str()));
            let values = StringArray::from_iter_values(all.iter().map(|(_, v)| v.as_str()));
            (schema, vec![Arc::new(names), Arc::new(values)])
        } else {
            let value = self.settings.get(&name)?;
            let schema = self
                .utility_schema(&show_stmt(variable))
                .ok_or_else(|| Error::internal("show schema"))?;
            (schema, vec![Arc::new(StringArray::from(vec![value]))])
        };
        let names = schema.fields().iter().map(|f| f.name().clone()).collect();
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let stream = MemoryStream::try_new(vec![batch], schema.clone(), None)?;
        Ok(Outcome::Rows {
            schema,
            names,
            stream: Box::pin(stream),
            command: super::RowsKind::Show,
        })
    }

    /// `SELECT set_config(name, value, is_local)`: the statement answered the value; the
    /// setting changes as `SET` would change it (a role through the same checks as SET ROLE).
    pub(super) fn apply_pending_settings(&mut self) -> Result<()> {
        let pending = self.pending_settings.take();
        if pending.is_empty() {
            return Ok(());
        }
        for (name, value) in pending {
            if name.eq_ignore_ascii_case("role")
                || name.eq_ignore_ascii_case("session_authorization")
            {
                self.set_role(&value)?;
            } else {
                self.settings.set(&name, &value)?;
            }
        }
        self.rebuild_context();
        Ok(())
    }

    /// RESET name | RESET ALL (a role too).
    pub(super) fn reset(&mut self, r: &datafusion::sql::parser::ResetStatement) -> Result<Outcome> {
        use datafusion::sql::parser::ResetStatement;
        match r {
            ResetStatement::Variable(name) => {
                let n = name.to_string();
                if n.eq_ignore_ascii_case("all") {
                    self.settings.reset_all();
                    self.principal.role = None;
                } else if n.eq_ignore_ascii_case("role")
                    || n.eq_ignore_ascii_case("session_authorization")
                {
                    self.principal.role = None;
                } else {
                    self.settings.reset(&n)?;
                }
            }
        }
        self.rebuild_context();
        Ok(Outcome::Command(CommandTag::new("RESET")))
    }

    /// DISCARD ALL: cursors closed, settings and role reset. (Nothing else is kept.)
    pub(super) fn discard(&mut self, object_type: ast::DiscardObject) -> Result<Outcome> {
        if object_type == ast::DiscardObject::ALL {
            let _ = self.cursors.close(None);
            self.settings.reset_all();
            self.principal.role = None;
            self.rebuild_context();
        }
        Ok(Outcome::Command(CommandTag::new(&format!(
            "DISCARD {object_type}"
        ))))
    }
}

pub(super) fn show_stmt(variable: &[ast::Ident]) -> DfStatement {
    DfStatement::Statement(Box::new(SqlStatement::ShowVariable {
        variable: variable.to_vec(),
    }))
}

pub(super) fn show_name(variable: &[ast::Ident]) -> String {
    let joined = variable
        .iter()
        .map(|i| i.value.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    match joined.as_str() {
        "time zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        "session authorization" => "session_authorization".into(),
        // `SHOW lakegate.plan_cache`: the parser gives a dotted name's parts (PostgreSQL's
        // custom parameters have two); no other two-word name is a parameter.
        other if variable.len() == 2 => other.replace(' ', "."),
        other => other.replace(' ', "_"),
    }
}

pub(super) fn set_value(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        ast::Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// DEALLOCATE [ALL]: SQL-level prepared statements are not kept (PREPARE is refused), so there
/// is nothing to free; drivers send DEALLOCATE ALL when they reset (psycopg).
pub(super) fn deallocate(name: &str) -> Outcome {
    Outcome::Command(CommandTag::new(if name.eq_ignore_ascii_case("all") {
        "DEALLOCATE ALL"
    } else {
        "DEALLOCATE"
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_postgres() -> Result<()> {
        let s = Settings::new("u", false, 100);
        assert_eq!(s.get("DateStyle")?, "ISO, MDY");
        assert_eq!(s.get("server_version")?, PG_VERSION);
        assert_eq!(s.get("server_version_num")?, "150020");
        assert_eq!(
            s.get("nope").err().map(|e| e.state()),
            Some(SqlState::UndefinedObject)
        );
        Ok(())
    }

    #[test]
    fn identity_cannot_be_set() {
        let mut s = Settings::new("u", false, 100);
        assert!(s.set("session_authorization", "admin").is_err());
        assert!(s.set("is_superuser", "on").is_err());
    }

    #[test]
    fn statement_timeout_units() -> Result<()> {
        let mut s = Settings::new("u", false, 100);
        assert_eq!(s.statement_timeout(), None);
        s.set("statement_timeout", "1500")?;
        assert_eq!(
            s.statement_timeout(),
            Some(std::time::Duration::from_millis(1500))
        );
        s.set("statement_timeout", "2s")?;
        assert_eq!(
            s.statement_timeout(),
            Some(std::time::Duration::from_secs(2))
        );
        assert!(s.set("statement_timeout", "soon").is_err());
        Ok(())
    }

    #[test]
    fn timezones_normalize() -> Result<()> {
        let mut s = Settings::new("u", false, 100);
        s.set("TimeZone", "Europe/Paris")?;
        assert_eq!(s.get("timezone")?, "Europe/Paris");
        assert!(s.set("TimeZone", "Mars/Olympus").is_err());
        Ok(())
    }
}
