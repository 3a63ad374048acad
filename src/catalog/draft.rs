//! Transactional DDL: a transaction block's catalog changes are made to a draft of the catalog
//! document that only its session reads, and reach the catalog in one commit at COMMIT.
//!
//! The draft is found through a task-local (`Draft::scope`), set around each statement of the
//! session: every lookup of the catalog (`Catalog::read`) and every change (`Catalog::change`)
//! made while the statement runs then sees it, whichever layer makes them (the DataFusion
//! catalog provider, pg_catalog's listings, the policy checks), with no draft threaded through
//! their signatures. Background work (refreshes, the scheduler) runs outside any scope and sees
//! the committed catalog.
//!
//! At COMMIT the draft is merged three ways, per schema and per relation, into what is
//! committed then: a relation the block changed must be as the block first saw it, else the
//! COMMIT fails (40001). Files of tables the block made and does not keep are removed; files
//! of tables it dropped are removed only once the drop is committed.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{CATALOG_FILE, Catalog, CatalogDoc, SchemaEntry, TableEntry, to_json};
use crate::error::{Error, Result, SqlState};

tokio::task_local! {
    static DRAFT: Draft;
}

/// Numbers every change of every draft, for `Catalog::generation`.
static SERIAL: AtomicU64 = AtomicU64::new(1);

/// A session's handle on its transaction block's catalog draft.
#[derive(Clone, Default)]
pub struct Draft(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    /// A transaction block is open: catalog changes go to the draft.
    open: bool,
    docs: Option<Docs>,
    /// Tables whose files the block made (CREATE TABLE, CREATE TABLE AS, materialized views).
    created: Vec<TableEntry>,
    /// The session's overlays (its block's pending writes), for what plans outside its
    /// context: the views its statements read.
    overlays: Option<super::overlay::Overlays>,
}

struct Docs {
    /// The committed document the draft was last brought up to date with.
    base: Arc<CatalogDoc>,
    /// The block's document.
    doc: Arc<CatalogDoc>,
    /// The committed catalog's generation `base` is of.
    generation: u64,
    /// Changes with each change of the draft (see `Catalog::generation`).
    serial: u64,
}

/// What a savepoint remembers of the draft: the block's document then.
#[derive(Clone, Default)]
pub struct DraftMark(Option<Arc<CatalogDoc>>);

impl std::fmt::Debug for DraftMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "DraftMark(changed)"
        } else {
            "DraftMark(unchanged)"
        })
    }
}

impl Draft {
    /// A session's draft; `overlays`: what its block's own reads see of its pending writes.
    pub fn new(overlays: super::overlay::Overlays) -> Draft {
        let draft = Draft::default();
        draft.lock().overlays = Some(overlays);
        draft
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state is replaced whole.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` with this draft as the one the catalog reads and changes.
    pub fn scope<F: Future>(&self, f: F) -> impl Future<Output = F::Output> {
        DRAFT.scope(self.clone(), f)
    }

    /// A transaction block begins: catalog changes go to the draft from now on.
    pub fn open(&self) {
        let mut s = self.lock();
        s.open = true;
        s.docs = None;
        s.created.clear();
    }

    /// Whether the block changed the catalog (then its reads are its own: nothing it plans is
    /// cached for others).
    pub fn is_changed(&self) -> bool {
        self.lock().docs.is_some()
    }

    pub fn mark(&self) -> DraftMark {
        DraftMark(self.lock().docs.as_ref().map(|d| d.doc.clone()))
    }

    /// ROLLBACK TO SAVEPOINT: the block's document as it was at the mark (tables made since are
    /// removed when the block ends).
    pub fn rollback_to(&self, m: &DraftMark) {
        let mut s = self.lock();
        if let Some(d) = s.docs.as_mut() {
            d.doc = m.0.clone().unwrap_or_else(|| d.base.clone());
            d.serial = SERIAL.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The block ends: what it changed, and the tables it made.
    fn close(&self) -> (Option<Docs>, Vec<TableEntry>) {
        let mut s = self.lock();
        s.open = false;
        (s.docs.take(), std::mem::take(&mut s.created))
    }

    /// Whether anything is left to clean up (a block open with changes or made tables).
    fn has_work(&self) -> bool {
        let s = self.lock();
        s.docs.is_some() || !s.created.is_empty()
    }
}

/// The draft of the statement running on this task, when a block is open.
fn active() -> Option<Draft> {
    DRAFT
        .try_with(|d| d.lock().open.then(|| d.clone()))
        .ok()
        .flatten()
}

/// The running statement's session's overlays (its block's pending writes), which views it
/// reads are expanded over too.
pub fn scoped_overlays() -> Option<super::overlay::Overlays> {
    DRAFT.try_with(|d| d.lock().overlays.clone()).ok().flatten()
}

/// Run `f` outside any block's draft: what it changes commits at once (the schema of a
/// session's temporary tables, made once and kept for the session whatever its blocks do).
pub async fn outside<F: Future>(f: F) -> F::Output {
    DRAFT.scope(Draft::default(), f).await
}

impl Catalog {
    fn committed(&self) -> Arc<CatalogDoc> {
        // A poisoned lock only means a panic elsewhere; the document itself is always whole.
        self.doc.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn committed_generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The catalog as the running statement sees it: its block's draft when the block changed
    /// the catalog (brought up to date with what others committed since, when that merges),
    /// else the committed one.
    pub(super) fn read(&self) -> Arc<CatalogDoc> {
        let Some(draft) = active() else {
            return self.committed();
        };
        let mut s = draft.lock();
        let Some(docs) = s.docs.as_mut() else {
            return self.committed();
        };
        let generation = self.committed_generation();
        if docs.generation != generation {
            let committed = self.committed();
            // When others' changes collide with the block's, the block keeps reading its own
            // (its COMMIT will fail); it is not brought up to date again until they change.
            if let Ok(merged) = merge(&docs.base, &docs.doc, &committed) {
                docs.doc = Arc::new(merged);
                docs.base = committed;
            }
            docs.generation = generation;
        }
        docs.doc.clone()
    }

    /// How many times the catalog changed (what was planned before a change may plan
    /// differently after it). Inside a block that changed the catalog, a number of its own
    /// (the top bit set) that no other session's plans are kept under.
    pub fn generation(&self) -> u64 {
        if let Some(d) = active()
            && let Some(docs) = d.lock().docs.as_ref()
        {
            return (1 << 63) | docs.serial;
        }
        self.committed_generation()
    }

    /// Whether the running statement's catalog changes go to its block's draft.
    pub(super) fn drafting(&self) -> bool {
        active().is_some()
    }

    /// A table made for the running statement: when its block is rolled back, or drops it
    /// again, its files go.
    pub(super) fn made(&self, entry: &TableEntry) {
        if let Some(d) = active() {
            d.lock().created.push(entry.clone());
        }
    }

    /// Apply a change to a copy of the document (the block's draft, inside a block), persist
    /// and publish it (outside one).
    pub(super) async fn change<T>(
        &self,
        f: impl FnOnce(&mut CatalogDoc) -> Result<T>,
    ) -> Result<T> {
        if let Some(draft) = active() {
            let doc = self.read();
            let mut next = (*doc).clone();
            let out = f(&mut next)?;
            let mut s = draft.lock();
            let docs = s.docs.get_or_insert_with(|| Docs {
                base: self.committed(),
                doc: doc.clone(),
                generation: self.committed_generation(),
                serial: 0,
            });
            docs.doc = Arc::new(next);
            docs.serial = SERIAL.fetch_add(1, Ordering::SeqCst);
            return Ok(out);
        }
        let _guard = self.change.lock().await;
        let mut doc = (*self.committed()).clone();
        let out = f(&mut doc)?;
        self.publish(doc)?;
        Ok(out)
    }

    fn publish(&self, doc: CatalogDoc) -> Result<()> {
        self.warehouse.write_meta(CATALOG_FILE, &to_json(&doc)?)?;
        *self.doc.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(doc);
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// COMMIT of a block: its catalog changes, merged into what is committed now, in one
    /// catalog commit (40001 when another session changed a relation the block changed, or
    /// took a name it made). Then the files of the tables it dropped, and of those it made and
    /// did not keep, are removed. The block is over either way.
    pub async fn commit_draft(&self, draft: &Draft) -> Result<()> {
        let (docs, created) = draft.close();
        let committed = match docs {
            None => Ok(None),
            Some(docs) => {
                let _guard = self.change.lock().await;
                match merge(&docs.base, &docs.doc, &self.committed()) {
                    Ok(merged) => self.publish(merged).map(|()| Some(docs)),
                    Err(e) => Err(e),
                }
            }
        };
        let live = self.committed();
        let live = locations(&live);
        let mut gone: Vec<TableEntry> = created
            .into_iter()
            .filter(|t| !live.contains(t.location.as_str()))
            .collect();
        if let Ok(Some(docs)) = &committed {
            let kept = locations(&docs.doc);
            gone.extend(tables(&docs.base).filter(|t| {
                !kept.contains(t.location.as_str()) && !live.contains(t.location.as_str())
            }));
        }
        for t in gone {
            self.forget_and_remove(&t).await;
        }
        committed.map(|_| ())
    }

    /// ROLLBACK (or a failed block, or a closed connection): the draft goes, and the files of
    /// the tables the block made.
    pub async fn discard_draft(&self, draft: &Draft) {
        let (_, created) = draft.close();
        let live = self.committed();
        let live = locations(&live);
        for t in created {
            if !live.contains(t.location.as_str()) {
                self.forget_and_remove(&t).await;
            }
        }
    }

    /// `discard_draft` in the background, for a session that is gone.
    pub fn discard_draft_later(self: &Arc<Self>, draft: Draft) {
        if !draft.has_work() {
            return;
        }
        let catalog = self.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { catalog.discard_draft(&draft).await });
        }
    }
}

fn tables(doc: &CatalogDoc) -> impl Iterator<Item = TableEntry> + '_ {
    doc.schemas
        .values()
        .flat_map(|s| s.tables.values().cloned())
}

fn locations(doc: &CatalogDoc) -> HashSet<&str> {
    doc.schemas
        .values()
        .flat_map(|s| s.tables.values().map(|t| t.location.as_str()))
        .collect()
}

/// The relation `name` of a schema (None: no schema), for comparing versions of it.
fn relation(s: Option<&SchemaEntry>, name: &str) -> Option<super::Relation> {
    s?.relation(name)
}

fn conflict(what: &str) -> Error {
    Error::Data {
        sqlstate: SqlState::SerializationFailure,
        message: format!(
            "could not serialize access due to concurrent update: {what} was changed by another \
             transaction"
        ),
    }
}

/// `draft`'s changes from `base`, made to `current`: per schema (made, dropped) and per
/// relation (made, changed, dropped), each only where `current` still has what `base` had.
fn merge(base: &CatalogDoc, draft: &CatalogDoc, current: &CatalogDoc) -> Result<CatalogDoc> {
    let mut out = current.clone();
    let empty = SchemaEntry::default();
    let names: std::collections::BTreeSet<&String> =
        base.schemas.keys().chain(draft.schemas.keys()).collect();
    for schema in names {
        let (b, d) = (base.schemas.get(schema), draft.schemas.get(schema));
        let relations: std::collections::BTreeSet<&String> = [b, d]
            .into_iter()
            .flatten()
            .flat_map(|s| s.tables.keys().chain(s.views.keys()))
            .collect();
        let changed: Vec<&String> = relations
            .into_iter()
            .filter(|n| relation(b, n) != relation(d, n))
            .collect();
        if changed.is_empty() && b.is_some() == d.is_some() {
            continue;
        }
        if b.is_none() && !out.schemas.contains_key(schema) {
            out.schemas.insert(schema.clone(), SchemaEntry::default());
        }
        let Some(target) = out.schemas.get_mut(schema) else {
            return Err(conflict(&format!("schema \"{schema}\"")));
        };
        for name in changed {
            if relation(Some(target), name) != relation(b.or(Some(&empty)), name) {
                return Err(conflict(&format!("relation \"{schema}.{name}\"")));
            }
            target.tables.remove(name);
            target.views.remove(name);
            let Some(d) = d else { continue };
            if let Some(t) = d.tables.get(name) {
                target.tables.insert(name.clone(), t.clone());
            } else if let Some(v) = d.views.get(name) {
                target.views.insert(name.clone(), v.clone());
            }
        }
        if d.is_none() {
            if !target.tables.is_empty() || !target.views.is_empty() {
                return Err(conflict(&format!("schema \"{schema}\"")));
            }
            out.schemas.remove(schema);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn view(sql: &str) -> super::super::ViewEntry {
        super::super::ViewEntry {
            sql: sql.into(),
            columns: vec![],
            schema: "public".into(),
            comments: Default::default(),
        }
    }

    fn doc(views: &[(&str, &str)]) -> CatalogDoc {
        let mut s = SchemaEntry::default();
        for (n, sql) in views {
            s.views.insert(n.to_string(), view(sql));
        }
        CatalogDoc {
            version: 1,
            schemas: BTreeMap::from([("public".to_string(), s)]),
        }
    }

    #[test]
    fn merges_disjoint_changes_and_refuses_overlapping_ones() {
        let base = doc(&[("a", "1")]);
        // The block renamed a to b; another session made c meanwhile.
        let draft = doc(&[("b", "1")]);
        let current = doc(&[("a", "1"), ("c", "2")]);
        let merged = merge(&base, &draft, &current).unwrap_or_default();
        let names: Vec<&String> = merged.schemas["public"].views.keys().collect();
        assert_eq!(names, ["b", "c"]);
        // Another session changed a meanwhile: the rename can not be merged.
        let current = doc(&[("a", "2")]);
        assert!(merge(&base, &draft, &current).is_err());
        // Both made b.
        let current = doc(&[("a", "1"), ("b", "3")]);
        assert!(merge(&base, &draft, &current).is_err());
    }
}
