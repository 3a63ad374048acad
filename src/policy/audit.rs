//! The audit trail: exactly one JSON line per statement, allowed or denied, appended to
//! `_lakegate/audit/audit-YYYY-MM-DD-NNN.jsonl` (rotated daily and every `MAX_FILE_BYTES`; each
//! line is written whole before the statement's answer completes, and synced to disk before it
//! too or by a background thread, as `policy.audit_sync` says),
//! readable as `lakegate.audit_log` by principals with an explicit grant on it (never by a `*`
//! grant). Files are only ever appended to; nothing here deletes one.

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

/// A file is closed and the next one started past this size.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The file being appended to: its day, sequence number, handle and size.
#[derive(Debug)]
struct Current {
    day: String,
    seq: u32,
    file: Arc<std::fs::File>,
    size: u64,
}

/// The append-only log. With [`AuditSync::Statement`] records are synced in groups (group
/// commit): a statement appends its line, then waits until a sync begun after its append has
/// finished, so concurrent statements share one `fdatasync` and each still completes only once
/// its own line is on disk. With [`AuditSync::Background`] a statement only appends its line;
/// the syncing thread syncs what was appended at most every [`BACKGROUND_SYNC`].
/// Statements that return rows wait without holding a runtime thread ([`AuditLog::write_async`]):
/// a dedicated thread syncs whatever was appended; a blocking [`AuditLog::write`] syncs itself
/// unless a sync already covered it.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    file: Mutex<Option<Current>>,
    max_bytes: u64,
    /// Lines appended so far (under `file`'s lock).
    appended: std::sync::atomic::AtomicU64,
    /// How many of them are known to be on disk; its lock is held while syncing.
    synced: Mutex<u64>,
    /// The same count, for statements awaiting their line.
    synced_watch: tokio::sync::watch::Sender<u64>,
    /// Wakes the syncing thread (None when it could not be started: callers sync themselves).
    syncer: Option<Arc<Wake>>,
    mode: AuditSync,
    /// The log could not be written: statements are refused until it can (logged once each
    /// way).
    failing: std::sync::atomic::AtomicBool,
    /// Change notices for the folder's attributes and files (None: not watchable), and the
    /// count of changes at the last check that found it writable ([`NOT_CHECKED`] before one):
    /// while no change came since, a statement need not look at the folder again.
    layout: Option<crate::storage::watch::Watch>,
    checked: std::sync::atomic::AtomicU64,
}

/// [`AuditLog::checked`] when no check passed since the last change.
const NOT_CHECKED: u64 = u64::MAX;

pub use crate::config::AuditSync;

/// How often the syncing thread syncs at most with [`AuditSync::Background`].
const BACKGROUND_SYNC: std::time::Duration = std::time::Duration::from_millis(100);

/// "Lines are waiting to be synced", for the syncing thread.
#[derive(Debug, Default)]
struct Wake {
    pending: Mutex<bool>,
    cv: std::sync::Condvar,
}

impl AuditLog {
    pub fn open(dir: PathBuf, mode: AuditSync) -> Result<Arc<AuditLog>> {
        Self::with_max_bytes(dir, MAX_FILE_BYTES, mode)
    }

    /// The same log rotating at `max_bytes` (tests).
    pub fn with_max_bytes(dir: PathBuf, max_bytes: u64, mode: AuditSync) -> Result<Arc<AuditLog>> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::Config(format!(
                "cannot create the audit folder {}: {e}",
                dir.display()
            ))
        })?;
        let wake = Arc::new(Wake::default());
        let log = Arc::new_cyclic(|weak: &std::sync::Weak<AuditLog>| {
            let weak = weak.clone();
            let thread_wake = wake.clone();
            let started = std::thread::Builder::new()
                .name("lakegate-audit-sync".into())
                .spawn(move || sync_loop(weak, thread_wake, mode));
            if let Err(e) = &started {
                tracing::warn!(error = %e, "no audit sync thread: statements sync the log themselves");
            }
            AuditLog {
                file: Mutex::new(None),
                max_bytes,
                appended: Default::default(),
                synced: Mutex::new(0),
                synced_watch: tokio::sync::watch::channel(0).0,
                syncer: started.ok().map(|_| wake),
                mode,
                failing: Default::default(),
                layout: crate::storage::watch::Watch::layout(&dir),
                checked: std::sync::atomic::AtomicU64::new(NOT_CHECKED),
                dir,
            }
        });
        Ok(log)
    }

    fn path(&self, day: &str, seq: u32) -> PathBuf {
        self.dir.join(format!("audit-{day}-{seq:03}.jsonl"))
    }

    /// Open the file to append `more` bytes to for `day`: the day's last one while it has
    /// room, else the next.
    fn open_for(&self, day: &str, from: u32, more: u64) -> std::io::Result<Current> {
        let mut seq = from;
        while self.path(day, seq + 1).exists() {
            seq += 1;
        }
        loop {
            let path = self.path(day, seq);
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if size > 0 && size + more > self.max_bytes {
                seq += 1;
                continue;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            return Ok(Current {
                day: day.to_string(),
                seq,
                file: Arc::new(file),
                size,
            });
        }
    }

    /// Whether a statement may start: the audit folder is a writable folder and the file being
    /// appended to is still in it. A statement that could not leave its record does not run
    /// (writes commit nothing): SQLSTATE 58030 naming the folder, until it is writable again.
    /// (A failure of the record's own write, e.g. a full disk, is reported by [`Self::write`].)
    ///
    /// The folder is looked at again only when its change notices report a change since the
    /// last look (a chmod, a file moved, removed or created) or the log is failing: three path
    /// lookups per statement cost a prepared `SELECT count(*)` a fifth of its rate. Whatever
    /// changed before the statement started is seen (see `storage::watch`); a change the
    /// notices cannot tell (a full disk) fails the record's write instead.
    pub fn ready(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let changes = self.layout.as_ref().and_then(|w| w.count());
        if let Some(n) = changes
            && n == self.checked.load(Ordering::SeqCst)
            && !self.failing.load(Ordering::SeqCst)
        {
            return Ok(());
        }
        let ready = self.look();
        let passed = match (&ready, changes) {
            (Ok(()), Some(n)) => n,
            _ => NOT_CHECKED,
        };
        self.checked.store(passed, Ordering::SeqCst);
        ready
    }

    /// [`Self::ready`] by looking at the folder and the file.
    fn look(&self) -> Result<()> {
        let problem = match std::fs::metadata(&self.dir) {
            Err(e) => Some(e.to_string()),
            Ok(m) if !m.is_dir() => Some("it is not a folder".to_string()),
            Ok(m) if m.permissions().readonly() => Some("it is not writable".to_string()),
            Ok(_) => self.current_moved(),
        };
        match problem {
            Some(p) => Err(self.failed(&p)),
            None => {
                self.recovered();
                Ok(())
            }
        }
    }

    /// Why the file being appended to is no longer the one at its path (moved, removed,
    /// replaced); it is let go so the next record opens the file anew.
    fn current_moved(&self) -> Option<String> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let c = guard.as_ref()?;
        let path = self.path(&c.day, c.seq);
        let same = match (std::fs::metadata(&path), c.file.metadata()) {
            (Ok(on_disk), Ok(open)) => same_file(&on_disk, &open),
            _ => false,
        };
        if same {
            return None;
        }
        *guard = None;
        // The folder is writable: the next record starts the file again.
        None
    }

    /// The error of a statement that cannot be audited (logged when the log starts failing).
    fn failed(&self, why: &str) -> Error {
        use std::sync::atomic::Ordering;
        if !self.failing.swap(true, Ordering::SeqCst) {
            tracing::error!(
                dir = %self.dir.display(),
                "cannot write the audit log ({why}): every statement is refused until it is writable again"
            );
        }
        Error::AuditLog(format!(
            "cannot write the audit log in {}: {why}; no statement runs unaudited, so this one \
             did not run (ask an administrator to make the audit folder writable)",
            self.dir.display()
        ))
    }

    fn recovered(&self) {
        use std::sync::atomic::Ordering;
        if self.failing.swap(false, Ordering::SeqCst) {
            tracing::warn!(dir = %self.dir.display(), "the audit log is writable again: statements run");
        }
    }

    /// Append one record (a line, written whole) and return once it is on disk (or, synced in
    /// the background, once it is in the file). An error (58030) when it could not be written.
    pub fn write(&self, r: &AuditRecord) -> Result<()> {
        let mine = self.append(r)?;
        match (&self.syncer, self.mode) {
            (Some(wake), AuditSync::Background) => {
                wake.notify();
                Ok(())
            }
            _ => self.sync_through(mine),
        }
    }

    /// [`Self::write`] for async callers: the returned future ends once the line is on disk,
    /// synced by the log's thread together with the lines appended meanwhile.
    pub fn write_async(
        self: &Arc<Self>,
        r: &AuditRecord,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let mine = self.append(r);
        let log = self.clone();
        async move {
            let mine = mine?;
            let Some(wake) = &log.syncer else {
                return log.sync_through(mine);
            };
            let mut synced = log.synced_watch.subscribe();
            wake.notify();
            if log.mode == AuditSync::Background {
                return Ok(());
            }
            // The sender lives as long as `log`, which this future holds.
            let _ = synced.wait_for(|n| *n >= mine).await;
            if log.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(log.failed("its lines could not be synced"));
            }
            Ok(())
        }
    }

    /// Append the record's line; its number (1-based, counted since start).
    fn append(&self, r: &AuditRecord) -> Result<u64> {
        let line = match serde_json::to_string(r) {
            Ok(l) => l + "\n",
            Err(e) => return Err(self.failed(&format!("a record did not serialize: {e}"))),
        };
        let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let more = line.len() as u64;
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let reopen = match &*guard {
            Some(c) if c.day == day && (c.size == 0 || c.size + more <= self.max_bytes) => None,
            Some(c) if c.day == day => Some(c.seq + 1),
            _ => Some(0),
        };
        if let Some(from) = reopen {
            // Lines of the file left behind are on disk before any of the next one's.
            if let Some(old) = guard.as_ref()
                && let Err(e) = old.file.sync_data()
            {
                tracing::error!(error = %e, "cannot sync the audit log");
            }
            match self.open_for(&day, from, more) {
                Ok(c) => *guard = Some(c),
                Err(e) => return Err(self.failed(&e.to_string())),
            }
        }
        let Some(c) = guard.as_mut() else {
            return Err(self.failed("no file is open"));
        };
        if let Err(e) = (&*c.file).write_all(line.as_bytes()) {
            // The file may hold part of the line now: the next record starts a new one.
            *guard = None;
            return Err(self.failed(&e.to_string()));
        }
        c.size += more;
        Ok(self
            .appended
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1)
    }

    /// Return once line `mine` is on disk: at once when a sync already covered it, else after
    /// syncing everything appended so far. A failed sync is the statement's error (58030).
    fn sync_through(&self, mine: u64) -> Result<()> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced >= mine {
            return Ok(());
        }
        // The file now being appended to, and how many lines are in it or in the files
        // before it (each synced when it was left): syncing it covers them all.
        let (file, upto) = {
            let guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
            let Some(c) = guard.as_ref() else {
                return Err(self.failed("the file was let go before its lines were synced"));
            };
            (
                c.file.clone(),
                self.appended.load(std::sync::atomic::Ordering::SeqCst),
            )
        };
        let r = file
            .sync_data()
            .map_err(|e| self.failed(&format!("cannot sync: {e}")));
        // Waiters wake either way (write_async reads `failing` when they do).
        *synced = upto.max(*synced);
        let done = *synced;
        self.synced_watch.send_modify(|n| *n = (*n).max(done));
        r
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

impl Wake {
    fn notify(&self) {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_one();
    }
}

/// The syncing thread: whenever lines are waiting, sync them (one `fdatasync` for all that
/// were appended by then; in the background mode, then rest [`BACKGROUND_SYNC`]). Ends soon
/// after its log is dropped, having synced what was appended.
fn sync_loop(log: std::sync::Weak<AuditLog>, wake: Arc<Wake>, mode: AuditSync) {
    loop {
        {
            let mut pending = wake.pending.lock().unwrap_or_else(|p| p.into_inner());
            while !*pending {
                let (p, timeout) = wake
                    .cv
                    .wait_timeout(pending, std::time::Duration::from_secs(1))
                    .unwrap_or_else(|p| p.into_inner());
                pending = p;
                if timeout.timed_out() && log.strong_count() == 0 {
                    return;
                }
            }
            *pending = false;
        }
        let Some(strong) = log.upgrade() else { return };
        let appended = strong.appended.load(std::sync::atomic::Ordering::SeqCst);
        // A failure is logged and answered to the statements waiting (write_async).
        let _ = strong.sync_through(appended);
        drop(strong);
        if mode == AuditSync::Background {
            std::thread::sleep(BACKGROUND_SYNC);
        }
    }
}

impl Drop for AuditLog {
    /// What was appended reaches the disk when the log closes (at shutdown).
    fn drop(&mut self) {
        if let Some(c) = self
            .file
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && let Err(e) = c.file.sync_data()
        {
            tracing::error!(error = %e, "cannot sync the audit log");
        }
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
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};
    match Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() {
        Ok(tokens) => tokens
            .into_iter()
            .map(|t| match t {
                // Names, placeholders, operators and punctuation stay; comments may carry
                // values and go.
                Token::Whitespace(Whitespace::SingleLineComment { .. })
                | Token::Whitespace(Whitespace::MultiLineComment(_)) => " ".to_string(),
                Token::Word(_) | Token::Whitespace(_) | Token::Placeholder(_) => t.to_string(),
                // Every literal form (numbers, '', E'', U&'', B'', X'', N'', $$...$$ and any
                // other string or literal token the tokenizer knows) is a value.
                Token::Number(..) | Token::Char(_) => "?".to_string(),
                other if is_literal(&other) => "?".to_string(),
                other => other.to_string(),
            })
            .collect(),
        Err(_) => "<statement not shown: it does not tokenize>".into(),
    }
}

/// Whether a token is a literal of some string form (by its variant: every one of them is
/// named `...String...` or `...Literal...`, so a form added to the tokenizer later is redacted
/// too).
fn is_literal(t: &datafusion::sql::sqlparser::tokenizer::Token) -> bool {
    let name = format!("{t:?}");
    let variant = name.split(['(', ' ', '{']).next().unwrap_or("");
    variant.contains("String") || variant.contains("Literal")
}

/// An error message as the server log may show it: every quoted or numeric value replaced by
/// `?` (a message may quote a value of a governed table: `cannot cast string '613-48-2277'`).
/// Names in double quotes stay.
pub fn redact_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    let mut prev_alnum = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            // up to the closing quote ('' inside is a quote)
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                    }
                    Some('\'') | None => break,
                    Some(_) => {}
                }
            }
            out.push_str("'?'");
            prev_alnum = false;
        } else if c.is_ascii_digit() && !prev_alnum {
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '.' || *d == '-' || *d == ':')
            {
                chars.next();
            }
            out.push('?');
            prev_alnum = false;
        } else {
            prev_alnum = c.is_alphanumeric() || c == '_';
            out.push(c);
        }
    }
    out
}

/// Attributes as one JSON text for the record.
pub fn attributes_text(a: &BTreeMap<String, toml::Value>) -> String {
    serde_json::to_string(a).unwrap_or_default()
}

/// The `lakegate` schema: `lakegate.audit_log`, and the materialized views' and result cache's
/// tables (`mv::SystemTables`).
#[derive(Debug)]
pub struct SystemSchema {
    pub audit: Arc<AuditLog>,
    pub mv: crate::mv::SystemTables,
}

#[async_trait::async_trait]
impl datafusion::catalog::SchemaProvider for SystemSchema {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn table_names(&self) -> Vec<String> {
        std::iter::once("audit_log")
            .chain(crate::mv::SYSTEM_TABLES.iter().copied())
            .map(String::from)
            .chain(self.mv.catalog.status_table_names())
            .collect()
    }
    async fn table(
        &self,
        name: &str,
    ) -> datafusion::error::Result<Option<Arc<dyn datafusion::catalog::TableProvider>>> {
        if name == "audit_log" {
            Ok(Some(self.audit.table()?))
        } else if let Some(rows) = self.mv.catalog.status_table(name) {
            let batch =
                rows().map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            Ok(Some(Arc::new(datafusion::datasource::MemTable::try_new(
                batch.schema(),
                vec![vec![batch]],
            )?)))
        } else {
            self.mv.table(name).await
        }
    }
    fn table_exist(&self, name: &str) -> bool {
        name == "audit_log"
            || crate::mv::SYSTEM_TABLES.contains(&name)
            || self.mv.catalog.status_table(name).is_some()
    }
}

/// Whether two metadata describe one file (device and inode).
#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn records_rotate_and_all_stay_readable() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let log = AuditLog::with_max_bytes(tmp.path().join("audit"), 1000, AuditSync::Statement)?;
        for i in 0..40 {
            log.write(&AuditRecord {
                principal: format!("u{i}"),
                statement: "SELECT ?".into(),
                ..Default::default()
            })?;
        }
        let files = std::fs::read_dir(tmp.path().join("audit"))?.count();
        assert!(files > 2, "rotated into {files} files");
        for f in std::fs::read_dir(tmp.path().join("audit"))? {
            assert!(std::fs::metadata(f?.path())?.len() <= 1000);
        }
        // A new log (a restart) appends after the last file, never over one.
        let again = AuditLog::with_max_bytes(tmp.path().join("audit"), 1000, AuditSync::Statement)?;
        again.write(&AuditRecord::default())?;
        let ctx = datafusion::prelude::SessionContext::new();
        let n = ctx.read_table(again.table()?)?.count().await?;
        assert_eq!(n, 41);
        Ok(())
    }

    /// Record `i` (principal `u<i>`), written by every fourth writer with the blocking call and
    /// by the others with the async one.
    async fn write_nth(log: &Arc<AuditLog>, i: usize) {
        let r = AuditRecord {
            principal: format!("u{i}"),
            ..Default::default()
        };
        if i.is_multiple_of(4) {
            assert!(log.write(&r).is_ok());
        } else {
            assert!(log.write_async(&r).await.is_ok());
        }
    }

    /// Between checks the folder is not looked at, yet a chmod or a moved file right after a
    /// passing check is seen by the next statement, and the log recovers when it is undone.
    #[tokio::test]
    async fn a_change_right_after_a_passing_check_is_seen() -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("audit");
        let log = AuditLog::open(dir.clone(), AuditSync::Statement)?;
        write_nth(&log, 0).await;
        assert!(log.ready().is_ok());
        assert!(log.ready().is_ok());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555))?;
        assert!(log.ready().is_err(), "chmod 0555 not seen");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        assert!(log.ready().is_ok());
        let file = std::fs::read_dir(&dir)?
            .next()
            .ok_or_else(|| Error::internal("no audit file"))??
            .path();
        std::fs::rename(&file, tmp.path().join("moved.jsonl"))?;
        // The moved file is let go: the next record starts a new one at the path (had the
        // move not been seen, it would have gone to the moved file).
        assert!(log.ready().is_ok());
        write_nth(&log, 1).await;
        assert!(file.exists(), "moved file not seen");
        assert!(log.ready().is_ok());
        Ok(())
    }

    /// Statements awaiting their lines together: each ends once its line is on disk, and every
    /// line is there, whole, whichever path (async or blocking) wrote it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_syncs_and_lose_nothing() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let log = AuditLog::open(tmp.path().join("audit"), AuditSync::Statement)?;
        let mut tasks = vec![];
        for i in 0..64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                write_nth(&log, i).await;
                assert!(*log.synced.lock().unwrap() >= 1);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*log.synced.lock().unwrap(), 64);
        let ctx = datafusion::prelude::SessionContext::new();
        assert_eq!(ctx.read_table(log.table()?)?.count().await?, 64);
        Ok(())
    }

    /// Synced in the background: every line is in the file when its statement ends, and all
    /// reach the disk without anyone waiting for them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_sync_writes_every_line_before_the_answer() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let log = AuditLog::open(tmp.path().join("audit"), AuditSync::Background)?;
        for i in 0..64 {
            write_nth(&log, i).await;
            let ctx = datafusion::prelude::SessionContext::new();
            assert_eq!(ctx.read_table(log.table()?)?.count().await?, i + 1);
        }
        let mut synced = log.synced_watch.subscribe();
        let _ = synced.wait_for(|n| *n >= 64).await;
        Ok(())
    }

    #[test]
    fn every_literal_form_is_redacted() {
        let sql = "SELECT 'a', E'b\\n', U&'d\\0061t', B'0101', X'1F', N'n', $$dollar$$, $t$tagged$t$, \
                   42, 4.5e3, -7, \"Name\" FROM t WHERE x = $1 -- ssn 613-48-2277\n/* 123-45 */";
        let r = redact_literals(sql);
        for secret in [
            "'a'", "b\\n", "0061", "0101", "1F", "'n'", "dollar", "tagged", "42", "4.5e3", "7",
            "613", "123-45",
        ] {
            assert!(!r.contains(secret), "{secret} in {r}");
        }
        assert!(
            r.contains("\"Name\"") && r.contains("$1") && r.contains("FROM t"),
            "{r}"
        );
    }

    #[test]
    fn log_messages_lose_their_values() {
        let m = redact_message(
            "Cast error: Cannot cast string '613-48-2277' to value of Int32 type (it''s 42) in \"emp\" col2",
        );
        assert!(!m.contains("613") && !m.contains("42"), "{m}");
        assert!(
            m.contains("\"emp\"") && m.contains("col2") && m.contains("Int32"),
            "{m}"
        );
    }
}
