//! Names to tables. Owns the persistent catalog of schemas, tables and views (one JSON document
//! in the warehouse, replaced atomically and durably on every change) and presents it to
//! DataFusion as a `CatalogProvider`. Uses `storage`; knows nothing of sessions or the wire.
//!
//! Why a JSON document and not a database: the catalog is small, changes only on DDL, and a
//! single atomically renamed file survives crashes with nothing else to run or migrate.

mod provider;
pub mod versions;

pub use provider::{LakegateCatalog, ViewExpander};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, RwLock};

use datafusion::arrow::datatypes::Schema;
use datafusion::catalog::TableProvider;
use deltalake::DeltaTable;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::storage::{Warehouse, delta};

const CATALOG_FILE: &str = "catalog.json";

/// The schemas every database has.
pub const DEFAULT_SCHEMA: &str = "public";

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct CatalogDoc {
    version: u32,
    schemas: BTreeMap<String, SchemaEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SchemaEntry {
    #[serde(default)]
    pub tables: BTreeMap<String, TableEntry>,
    #[serde(default)]
    pub views: BTreeMap<String, ViewEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableEntry {
    /// `delta`, or for external tables also `parquet`, `csv`, `json`.
    pub format: String,
    pub location: String,
    /// Registered with CREATE EXTERNAL TABLE: the files are not ours, DROP leaves them alone.
    #[serde(default)]
    pub external: bool,
    /// Format options (e.g. `format.has_header` for CSV).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewEntry {
    pub sql: String,
    #[serde(default)]
    pub columns: Vec<String>,
    /// The schema unqualified names in `sql` resolve to (the creator's current schema).
    #[serde(default)]
    pub schema: String,
}

/// What a name in a schema refers to.
#[derive(Debug, Clone)]
pub enum Relation {
    Table(TableEntry),
    View(ViewEntry),
}

/// The persistent catalog plus a cache of open tables.
pub struct Catalog {
    warehouse: Warehouse,
    doc: RwLock<CatalogDoc>,
    /// Serializes catalog changes (read-modify-write of the document).
    change: tokio::sync::Mutex<()>,
    open_tables: tokio::sync::Mutex<HashMap<String, DeltaTable>>,
    views: OnceLock<Arc<dyn ViewExpander>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("warehouse", &self.warehouse.root().as_str())
            .finish()
    }
}

impl Catalog {
    /// Load the catalog from the warehouse, creating an empty one on first start.
    pub fn open(warehouse: Warehouse) -> Result<Arc<Catalog>> {
        let doc = match warehouse.read_meta(CATALOG_FILE)? {
            Some(bytes) => serde_json::from_slice::<CatalogDoc>(&bytes)
                .map_err(|e| Error::Storage(format!("catalog file is corrupt: {e}")))?,
            None => {
                let mut doc = CatalogDoc {
                    version: 1,
                    ..Default::default()
                };
                doc.schemas
                    .insert(DEFAULT_SCHEMA.into(), SchemaEntry::default());
                warehouse.write_meta(CATALOG_FILE, &to_json(&doc)?)?;
                doc
            }
        };
        Ok(Arc::new(Catalog {
            warehouse,
            doc: RwLock::new(doc),
            change: tokio::sync::Mutex::new(()),
            open_tables: tokio::sync::Mutex::new(HashMap::new()),
            views: OnceLock::new(),
        }))
    }

    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// Install the planner hook that turns a view's SQL into a plan (set once at startup).
    pub fn set_view_expander(&self, v: Arc<dyn ViewExpander>) {
        let _ = self.views.set(v);
    }

    pub(crate) fn view_expander(&self) -> Option<Arc<dyn ViewExpander>> {
        self.views.get().cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CatalogDoc> {
        // A poisoned lock only means a panic elsewhere; the document itself is always whole.
        self.doc.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn schema_names(&self) -> Vec<String> {
        self.read().schemas.keys().cloned().collect()
    }

    pub fn schema_exists(&self, schema: &str) -> bool {
        self.read().schemas.contains_key(schema)
    }

    pub fn relation_names(&self, schema: &str) -> Vec<String> {
        self.read()
            .schemas
            .get(schema)
            .map(|s| s.tables.keys().chain(s.views.keys()).cloned().collect())
            .unwrap_or_default()
    }

    pub fn relation(&self, schema: &str, name: &str) -> Option<Relation> {
        let doc = self.read();
        let s = doc.schemas.get(schema)?;
        if let Some(t) = s.tables.get(name) {
            return Some(Relation::Table(t.clone()));
        }
        s.views.get(name).map(|v| Relation::View(v.clone()))
    }

    /// Apply a change to a copy of the document, persist it, then publish it.
    async fn change<T>(&self, f: impl FnOnce(&mut CatalogDoc) -> Result<T>) -> Result<T> {
        let _guard = self.change.lock().await;
        let mut doc = self.read().clone();
        let out = f(&mut doc)?;
        self.warehouse.write_meta(CATALOG_FILE, &to_json(&doc)?)?;
        *self.doc.write().unwrap_or_else(|p| p.into_inner()) = doc;
        Ok(out)
    }

    pub async fn create_schema(&self, name: &str, if_not_exists: bool) -> Result<bool> {
        self.change(|doc| {
            if doc.schemas.contains_key(name) {
                return if if_not_exists {
                    Ok(false)
                } else {
                    Err(Error::DuplicateSchema(format!(
                        "schema \"{name}\" already exists"
                    )))
                };
            }
            doc.schemas.insert(name.to_string(), SchemaEntry::default());
            Ok(true)
        })
        .await
    }

    /// Drop a schema; with `cascade` its tables and views go too (their files are removed).
    pub async fn drop_schema(&self, name: &str, if_exists: bool, cascade: bool) -> Result<()> {
        let removed = self
            .change(|doc| {
                let Some(s) = doc.schemas.get(name) else {
                    return if if_exists {
                        Ok(None)
                    } else {
                        Err(Error::UndefinedSchema(format!("schema \"{name}\" does not exist")))
                    };
                };
                if !cascade && (!s.tables.is_empty() || !s.views.is_empty()) {
                    return Err(Error::DependentObjects(format!(
                        "cannot drop schema {name} because other objects depend on it; use DROP SCHEMA {name} CASCADE to drop them too"
                    )));
                }
                Ok(doc.schemas.remove(name))
            })
            .await?;
        if let Some(s) = removed {
            for t in s.tables.values() {
                self.forget_and_remove(t).await;
            }
        }
        Ok(())
    }

    fn check_free(doc: &CatalogDoc, schema: &str, name: &str) -> Result<()> {
        let s = doc
            .schemas
            .get(schema)
            .ok_or_else(|| Error::UndefinedSchema(format!("schema \"{schema}\" does not exist")))?;
        if s.tables.contains_key(name) || s.views.contains_key(name) {
            return Err(Error::DuplicateTable(format!(
                "relation \"{name}\" already exists"
            )));
        }
        Ok(())
    }

    /// Create a Delta table and register it. Returns false when it existed and `if_not_exists`.
    pub async fn create_table(
        &self,
        schema: &str,
        name: &str,
        arrow: &Schema,
        if_not_exists: bool,
    ) -> Result<bool> {
        {
            let doc = self.read();
            match Self::check_free(&doc, schema, name) {
                Err(Error::DuplicateTable(_)) if if_not_exists => return Ok(false),
                other => other?,
            }
        }
        let url = self.warehouse.new_table_url(schema, name)?;
        let table = delta::create(&url, arrow).await?;
        let entry = TableEntry {
            format: "delta".into(),
            location: url.to_string(),
            external: false,
            options: BTreeMap::new(),
        };
        let registered = self
            .change(|doc| {
                Self::check_free(doc, schema, name)?;
                if let Some(s) = doc.schemas.get_mut(schema) {
                    s.tables.insert(name.to_string(), entry.clone());
                }
                Ok(())
            })
            .await;
        if let Err(e) = registered {
            // Someone else took the name meanwhile: our fresh table is garbage.
            self.warehouse.remove_location(&url);
            return match e {
                Error::DuplicateTable(_) if if_not_exists => Ok(false),
                e => Err(e),
            };
        }
        self.open_tables.lock().await.insert(entry.location, table);
        Ok(true)
    }

    /// Drop a table or view (whichever `name` is). `kind` checks it is the expected one.
    pub async fn drop_relation(
        &self,
        schema: &str,
        name: &str,
        kind: RelationKind,
        if_exists: bool,
    ) -> Result<bool> {
        let removed = self
            .change(|doc| {
                let s = match doc.schemas.get_mut(schema) {
                    Some(s) => s,
                    None if if_exists => return Ok(None),
                    None => {
                        return Err(Error::UndefinedSchema(format!(
                            "schema \"{schema}\" does not exist"
                        )));
                    }
                };
                match kind {
                    RelationKind::Table => {
                        if s.views.contains_key(name) {
                            return Err(Error::Data {
                                sqlstate: "42809",
                                message: format!("\"{name}\" is not a table; use DROP VIEW"),
                            });
                        }
                        match s.tables.remove(name) {
                            Some(t) => Ok(Some(t)),
                            None if if_exists => Ok(None),
                            None => Err(Error::UndefinedTable(format!(
                                "table \"{name}\" does not exist"
                            ))),
                        }
                    }
                    RelationKind::View => {
                        if s.tables.contains_key(name) {
                            return Err(Error::Data {
                                sqlstate: "42809",
                                message: format!("\"{name}\" is not a view; use DROP TABLE"),
                            });
                        }
                        match s.views.remove(name) {
                            Some(_) => Ok(None),
                            None if if_exists => Ok(None),
                            None => Err(Error::UndefinedTable(format!(
                                "view \"{name}\" does not exist"
                            ))),
                        }
                        .map(|_: Option<()>| None)
                    }
                }
            })
            .await?;
        match removed {
            Some(t) => {
                self.forget_and_remove(&t).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn forget_and_remove(&self, t: &TableEntry) {
        self.open_tables.lock().await.remove(&t.location);
        if t.external {
            return;
        }
        if let Ok(url) = Url::parse(&t.location) {
            self.warehouse.remove_location(&url);
        }
    }

    /// Register files or a Delta table that already exist (no data is copied or owned).
    pub async fn create_external(
        &self,
        schema: &str,
        name: &str,
        entry: TableEntry,
        if_not_exists: bool,
    ) -> Result<bool> {
        // Open it once now, so that a wrong location or format fails here and not at first read.
        self.table_provider(&entry).await?;
        self.change(|doc| {
            match Self::check_free(doc, schema, name) {
                Err(Error::DuplicateTable(_)) if if_not_exists => return Ok(false),
                other => other?,
            }
            if let Some(s) = doc.schemas.get_mut(schema) {
                s.tables.insert(name.to_string(), entry.clone());
            }
            Ok(true)
        })
        .await
    }

    pub async fn create_view(
        &self,
        schema: &str,
        name: &str,
        view: ViewEntry,
        or_replace: bool,
    ) -> Result<()> {
        self.change(|doc| {
            let s = doc.schemas.get_mut(schema).ok_or_else(|| {
                Error::UndefinedSchema(format!("schema \"{schema}\" does not exist"))
            })?;
            if s.tables.contains_key(name) || (s.views.contains_key(name) && !or_replace) {
                return Err(Error::DuplicateTable(format!(
                    "relation \"{name}\" already exists"
                )));
            }
            s.views.insert(name.to_string(), view);
            Ok(())
        })
        .await
    }

    /// The Delta table at its latest committed version (for writes through deltalake's operations).
    pub async fn delta_table(&self, entry: &TableEntry) -> Result<DeltaTable> {
        if entry.format != "delta" {
            return Err(Error::unsupported(format!(
                "table format {} is not supported yet",
                entry.format
            )));
        }
        let url = Url::parse(&entry.location)
            .map_err(|e| Error::Storage(format!("bad table location: {e}")))?;
        let mut cache = self.open_tables.lock().await;
        let table = match cache.remove(&entry.location) {
            Some(mut t) => {
                t.update_incremental(None).await?;
                t
            }
            None => delta::open(&url).await?,
        };
        cache.insert(entry.location.clone(), table.clone());
        Ok(table)
    }

    /// Remember a table's state after a write made through it.
    pub async fn remember(&self, entry: &TableEntry, table: DeltaTable) {
        self.open_tables
            .lock()
            .await
            .insert(entry.location.clone(), table);
    }

    /// A provider over the table's latest committed version.
    pub async fn table_provider(&self, entry: &TableEntry) -> Result<Arc<dyn TableProvider>> {
        if entry.format != "delta" {
            return crate::storage::files::provider(&entry.format, &entry.location, &entry.options)
                .await;
        }
        let table = self.delta_table(entry).await?;
        delta::provider(&table).await
    }

    /// A provider over an older version of the table, or over its history.
    pub async fn table_provider_at(
        &self,
        entry: &TableEntry,
        at: &versions::At,
    ) -> Result<Arc<dyn TableProvider>> {
        let mut table = self.delta_table(entry).await?;
        match at {
            versions::At::Version(v) => {
                let latest = table.version().unwrap_or(0);
                let v = u64::try_from(*v).unwrap_or(u64::MAX);
                if v > latest {
                    return Err(Error::InvalidParameter(format!(
                        "the table has no version {v}: its latest version is {latest}"
                    )));
                }
                table.load_version(v).await?;
                delta::provider(&table).await
            }
            versions::At::Timestamp(us) => {
                let when = chrono::DateTime::from_timestamp_micros(*us)
                    .ok_or_else(|| Error::InvalidParameter("timestamp out of range".into()))?;
                table.load_with_datetime(when).await.map_err(|e| {
                    Error::InvalidParameter(format!("the table has no version at {when}: {e}"))
                })?;
                delta::provider(&table).await
            }
            versions::At::History => delta::history(&table).await,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    Table,
    View,
}

fn to_json(doc: &CatalogDoc) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(doc).map_err(|e| Error::internal(format!("serialize catalog: {e}")))
}
