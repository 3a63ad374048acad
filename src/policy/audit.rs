//! The audit trail: exactly one JSON line per statement, allowed or denied, appended to
//! `_lakegate/audit/audit-YYYY-MM-DD.jsonl` (a file a day), readable as `lakegate.audit_log`
//! by principals with an explicit grant on it (never by a `*` grant).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Serialize;

use crate::error::{Error, Result};

/// One statement's record.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AuditRecord {
    pub time: String,
    pub principal: String,
    pub role: Option<String>,
    pub attributes: String,
    pub client: String,
    /// The statement, with its literals replaced by `?` (they may be values of masked columns
    /// or secrets).
    pub statement: String,
    pub reads: Vec<String>,
    pub writes: Vec<String>,
    pub policies: Vec<String>,
    pub policy_version: String,
    /// allowed, denied (42501) or failed (any other error)
    pub decision: String,
    pub sqlstate: Option<String>,
    pub rows: Option<u64>,
    pub duration_ms: f64,
}

/// The append-only log.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    file: Mutex<Option<(String, std::fs::File)>>,
}

impl AuditLog {
    pub fn open(dir: PathBuf) -> Result<Arc<AuditLog>> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::Config(format!(
                "cannot create the audit folder {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Arc::new(AuditLog {
            dir,
            file: Mutex::new(None),
        }))
    }

    /// Append one record (a line, written whole and flushed). A failure is logged loudly: the
    /// statement has happened by then.
    pub fn write(&self, r: &AuditRecord) {
        let line = match serde_json::to_string(r) {
            Ok(l) => l + "\n",
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize an audit record");
                return;
            }
        };
        let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let reopen = !matches!(&*guard, Some((d, _)) if *d == day);
        if reopen {
            let path = self.dir.join(format!("audit-{day}.jsonl"));
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            {
                Ok(f) => *guard = Some((day, f)),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot open the audit log");
                    return;
                }
            }
        }
        if let Some((_, f)) = guard.as_mut()
            && let Err(e) = f.write_all(line.as_bytes()).and_then(|_| f.flush())
        {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }

    /// Every record so far, as a table.
    pub fn table(&self) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
        let schema = audit_schema();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        paths.sort();
        let mut batches = vec![];
        for p in paths {
            let f = std::fs::File::open(&p)?;
            let reader = datafusion::arrow::json::ReaderBuilder::new(schema.clone())
                .build(std::io::BufReader::new(f))?;
            for b in reader {
                batches.push(b?);
            }
        }
        Ok(Arc::new(datafusion::datasource::MemTable::try_new(
            schema,
            vec![batches],
        )?))
    }
}

fn audit_schema() -> SchemaRef {
    let list = || DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    Arc::new(Schema::new(vec![
        Field::new("time", DataType::Utf8, true),
        Field::new("principal", DataType::Utf8, true),
        Field::new("role", DataType::Utf8, true),
        Field::new("attributes", DataType::Utf8, true),
        Field::new("client", DataType::Utf8, true),
        Field::new("statement", DataType::Utf8, true),
        Field::new("reads", list(), true),
        Field::new("writes", list(), true),
        Field::new("policies", list(), true),
        Field::new("policy_version", DataType::Utf8, true),
        Field::new("decision", DataType::Utf8, true),
        Field::new("sqlstate", DataType::Utf8, true),
        Field::new("rows", DataType::Int64, true),
        Field::new("duration_ms", DataType::Float64, true),
    ]))
}

/// The statement's text with every literal replaced by `?` (so that values of masked columns
/// and secrets never reach the log).
pub fn redact_literals(sql: &str) -> String {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    match Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() {
        Ok(tokens) => tokens
            .into_iter()
            .map(|t| match t {
                Token::SingleQuotedString(_)
                | Token::DoubleQuotedString(_)
                | Token::DollarQuotedString(_)
                | Token::EscapedStringLiteral(_)
                | Token::NationalStringLiteral(_)
                | Token::HexStringLiteral(_)
                | Token::Number(..) => "?".to_string(),
                other => other.to_string(),
            })
            .collect(),
        Err(_) => "<statement not shown: it does not tokenize>".into(),
    }
}

/// Attributes as one JSON text for the record.
pub fn attributes_text(a: &BTreeMap<String, toml::Value>) -> String {
    serde_json::to_string(a).unwrap_or_default()
}

/// The `lakegate` schema: `lakegate.audit_log`.
#[derive(Debug)]
pub struct SystemSchema {
    pub audit: Arc<AuditLog>,
}

#[async_trait::async_trait]
impl datafusion::catalog::SchemaProvider for SystemSchema {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn table_names(&self) -> Vec<String> {
        vec!["audit_log".into()]
    }
    async fn table(
        &self,
        name: &str,
    ) -> datafusion::error::Result<Option<Arc<dyn datafusion::catalog::TableProvider>>> {
        if name == "audit_log" {
            Ok(Some(self.audit.table()?))
        } else {
            Ok(None)
        }
    }
    fn table_exist(&self, name: &str) -> bool {
        name == "audit_log"
    }
}
