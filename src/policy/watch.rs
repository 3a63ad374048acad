//! Following the policy folder: [`PolicyWatch`] notices changes (file names, sizes and times),
//! reloads, keeps the last good set when a change does not load (fail closed), and reports the
//! state to administrators (`lakegate.policy_status()`).

use crate::pg::functions::pg_function;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::PolicySet;
use crate::error::{Error, Result};

/// What `lakegate.policy_status()` says, and the files' state last seen.
#[derive(Debug)]
pub struct PolicyWatch {
    dir: PathBuf,
    mask_key: Option<Vec<u8>>,
    seen: std::sync::Mutex<Option<Fingerprint>>,
    /// Change notices for the folder (or, while it does not exist, for the folder it is to be
    /// made in), and their count when the files were last looked at: while it is the same, no
    /// file changed and none is read or listed.
    notices: std::sync::Mutex<Notices>,
    /// What `lakegate.policy_status()` answers.
    pub status: std::sync::Arc<std::sync::RwLock<PolicyStatus>>,
    /// A policy folder was named in the configuration or has been seen: from then on a
    /// missing folder keeps the policies in force (never the built-in defaults).
    named: std::sync::atomic::AtomicBool,
}

/// `lakegate.policy_status()`: `ok: <source>@<version>`, or `error: ...; still in force: ...`.
/// What failed (a file's name, line and text) is for administrators only; others learn that
/// the files do not load and which version is in force.
#[derive(Debug, Clone, Default)]
pub struct PolicyStatus {
    pub full: String,
    pub public: String,
    /// Tables the policies in force cannot govern as written (by table), found by statements
    /// that were refused for it; forgotten when the policies change.
    pub problems: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Notices {
    watch: Option<crate::storage::watch::Watch>,
    /// Whether `watch` is on the policy folder itself (not its parent).
    on_dir: bool,
    /// The count when the files were last looked at.
    looked: Option<u64>,
    /// How many times watching started again (a count belongs to one watch).
    epoch: u64,
}

impl Notices {
    /// Watch `dir`, or its parent while it does not exist.
    fn start(dir: &Path, epoch: u64) -> Notices {
        use crate::storage::watch::Watch;
        if let Some(w) = Watch::new(dir) {
            return Notices {
                watch: Some(w),
                on_dir: true,
                looked: None,
                epoch,
            };
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Notices {
            watch: Watch::new(parent),
            on_dir: false,
            looked: None,
            epoch,
        }
    }

    /// Whether the files must be looked at (they may have changed since last time), with the
    /// epoch and count to remember once they have been ([`Self::looked_at`]).
    fn must_look(&mut self, dir: &Path) -> Option<(u64, Option<u64>)> {
        let count = self.watch.as_ref().and_then(|w| w.count());
        if count.is_some() && count == self.looked {
            return None;
        }
        if !self.on_dir || count.is_none() {
            // Something happened beside the folder (it may exist now), or the notices stopped
            // (it was removed or moved): watch again from scratch, before looking.
            *self = Notices::start(dir, self.epoch + 1);
            let count = self.watch.as_ref().and_then(|w| w.count());
            return Some((self.epoch, count));
        }
        Some((self.epoch, count))
    }

    /// The files were looked at after `must_look` said `(epoch, count)`.
    fn looked_at(&mut self, epoch: u64, count: Option<u64>) {
        if let Some(c) = count
            && epoch == self.epoch
        {
            self.looked = Some(self.looked.map_or(c, |l| l.max(c)));
        }
    }
}

impl PolicyWatch {
    /// `configured`: the folder was named in the configuration (see [`PolicySet::load`]).
    pub fn new(
        dir: PathBuf,
        mask_key: Option<Vec<u8>>,
        loaded: &PolicySet,
        configured: bool,
    ) -> PolicyWatch {
        // Watched before the first look: a change made meanwhile is seen by the next one.
        let mut notices = Notices::start(&dir, 0);
        notices.looked = notices.watch.as_ref().and_then(|w| w.count());
        let named = configured || dir.is_dir();
        let w = PolicyWatch {
            seen: std::sync::Mutex::new(fingerprint(&dir)),
            notices: std::sync::Mutex::new(notices),
            dir,
            mask_key,
            status: Default::default(),
            named: std::sync::atomic::AtomicBool::new(named),
        };
        w.set_ok(loaded);
        w
    }

    fn notices(&self) -> std::sync::MutexGuard<'_, Notices> {
        self.notices.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_ok(&self, p: &PolicySet) {
        let text = format!("ok: {}@{}", p.source, p.version);
        *self.status.write().unwrap_or_else(|p| p.into_inner()) = PolicyStatus {
            full: text.clone(),
            public: text,
            problems: BTreeMap::new(),
        };
    }

    /// A table its policies cannot govern as written (shown to administrators by
    /// `lakegate.policy_status()` until the policies change).
    pub fn problem(&self, object: &str, what: String) {
        self.status
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .problems
            .insert(object.to_string(), what);
    }

    fn set_error(&self, detail: &str, current: &PolicySet) {
        let in_force = format!("still in force: {}@{}", current.source, current.version);
        let mut status = self.status.write().unwrap_or_else(|p| p.into_inner());
        status.full = format!("error: {detail}; {in_force}");
        status.public =
            format!("error: the policy files do not load (an administrator sees why); {in_force}");
    }

    /// When the policy files changed since last seen, load them: the new set, or None (no
    /// change, or they do not load — then the old set stays in force, the error is logged and
    /// shown by `lakegate.policy_status()`). A policy folder that disappears (or cannot be
    /// read) keeps the old set too: never the built-in defaults once a folder was named.
    pub async fn changed(&self, current: &PolicySet) -> Option<PolicySet> {
        use std::sync::atomic::Ordering;
        let (epoch, count) = self.notices().must_look(&self.dir)?;
        let now = fingerprint(&self.dir);
        // Looked at after the count was taken: any later change counts beyond it.
        self.notices().looked_at(epoch, count);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return None;
            }
            *seen = now.clone();
        }
        if now.is_none() {
            if self.named.load(Ordering::SeqCst) {
                tracing::error!(
                    folder = %self.dir.display(),
                    "the policy folder is missing; the previous policies stay in force"
                );
                self.set_error(
                    &format!("the policy folder {} is missing", self.dir.display()),
                    current,
                );
            }
            return None;
        }
        self.named.store(true, Ordering::SeqCst);
        match PolicySet::load(&self.dir, true).await {
            Ok(p) => {
                let p = p.with_mask_key(self.mask_key.clone());
                tracing::info!(source = %p.source, version = %p.version, "policies reloaded");
                self.set_ok(&p);
                Some(p)
            }
            Err(e) => {
                tracing::error!(error = %e, "policy files do not load; the previous policies stay in force");
                self.set_error(&e.to_string(), current);
                None
            }
        }
    }
}

/// Names, modification times and sizes of the policy files.
type Fingerprint = Vec<(PathBuf, Option<std::time::SystemTime>, u64)>;

/// The policy files' [`Fingerprint`]; None when the folder does not exist (or cannot be read).
fn fingerprint(dir: &Path) -> Option<Fingerprint> {
    let rd = std::fs::read_dir(dir).ok()?;
    let mut out: Fingerprint = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .map(|e| {
            let md = e.metadata().ok();
            (
                e.path(),
                md.as_ref().and_then(|m| m.modified().ok()),
                md.map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    Some(out)
}

/// The `*.toml` files of a policy folder (name, text), sorted by name; None when the folder
/// does not exist. A folder or file that cannot be read is an error.
pub(super) fn read_folder(dir: &Path) -> Result<Option<Vec<(String, String)>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read policy folder {}: {e}",
                dir.display()
            )));
        }
    };
    let mut paths = vec![];
    for e in entries {
        let e = e.map_err(|e| {
            Error::Config(format!("cannot read policy folder {}: {e}", dir.display()))
        })?;
        if e.path().extension().is_some_and(|x| x == "toml") {
            paths.push(e.path());
        }
    }
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| Error::Config(format!("cannot read policy file {}: {e}", p.display())))?;
        files.push((p.display().to_string(), text));
    }
    Ok(Some(files))
}

/// `lakegate.policy_status()`: whether the policy files in force loaded, or what failed (the
/// details only for an administrator's session, `admin`).
pub fn status_udf(
    status: std::sync::Arc<std::sync::RwLock<PolicyStatus>>,
    admin: bool,
) -> datafusion::logical_expr::ScalarUDF {
    datafusion::logical_expr::ScalarUDF::new_from_impl(StatusFn {
        status,
        admin,
        signature: datafusion::logical_expr::Signature::nullary(
            datafusion::logical_expr::Volatility::Volatile,
        ),
    })
}

#[derive(Debug)]
struct StatusFn {
    status: std::sync::Arc<std::sync::RwLock<PolicyStatus>>,
    admin: bool,
    signature: datafusion::logical_expr::Signature,
}

impl PartialEq for StatusFn {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.status, &other.status) && self.admin == other.admin
    }
}
impl Eq for StatusFn {}
impl std::hash::Hash for StatusFn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::sync::Arc::as_ptr(&self.status).hash(state);
        self.admin.hash(state);
    }
}

pg_function!(
    StatusFn,
    "lakegate.policy_status",
    datafusion::arrow::datatypes::DataType::Utf8
);

impl StatusFn {
    fn invoke(
        &self,
        _args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        let status = self.status.read().unwrap_or_else(|p| p.into_inner());
        let s = if !self.admin {
            status.public.clone()
        } else if status.problems.is_empty() {
            status.full.clone()
        } else {
            let problems: Vec<&str> = status.problems.values().map(String::as_str).collect();
            format!("{}; problems: {}", status.full, problems.join("; "))
        };
        Ok(datafusion::logical_expr::ColumnarValue::Scalar(
            datafusion::common::ScalarValue::Utf8(Some(s)),
        ))
    }
}
