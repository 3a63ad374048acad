//! Names to tables. Owns the persistent catalog of schemas, tables and views (one JSON document
//! in the warehouse, replaced atomically and durably on every change) and presents it to
//! DataFusion as a `CatalogProvider`. Uses `storage`; knows nothing of sessions or the wire.
//! Why a JSON document and not a database: the catalog is small, changes only on DDL, and a
//! single atomically renamed file survives crashes with nothing else to run or migrate.

pub mod attached;
mod comments;
mod draft;
pub mod overlay;
mod provider;
mod rename;
mod status;
pub use status::{ForeignTables, StatusRows};
pub mod versions;

pub use comments::Comments;
pub use draft::{Draft, DraftMark, outside as outside_draft, scoped_overlays};
pub use provider::{LakegateCatalog, ViewExpander, pinned, pinned_version};
pub use rename::{TEMP_SCHEMA_PREFIX, is_temp_schema, temp_schema};
/// The listing filter type, for the planner's session values.
pub mod provider_visible {
    pub use super::provider::{Hidden, SessionCatalog, Visible};
}

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, RwLock};

use datafusion::arrow::datatypes::Schema;
use datafusion::catalog::TableProvider;
use deltalake::DeltaTable;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result, SqlState};
use crate::storage::iceberg::IcebergStore;
use crate::storage::{TableFormat, Warehouse, delta};

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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableEntry {
    /// Delta or Iceberg, or for external tables also Parquet, CSV, JSON.
    pub format: TableFormat,
    pub location: String,
    /// Registered with CREATE EXTERNAL TABLE: the files are not ours, DROP leaves them alone.
    #[serde(default)]
    pub external: bool,
    /// Format options (e.g. `format.has_header` for CSV; for Iceberg tables the namespace and
    /// name in the Iceberg catalog).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Classification tags of columns kept here (an administrator's ALTER TABLE ... SET
    /// TBLPROPERTIES ('lakegate.tags.<column>' = '...'), or inherited by CREATE TABLE AS).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, Vec<String>>,
    /// Set when the table is a materialized view's storage: its definition and state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matview: Option<Box<MatView>>,
    /// COMMENT ON the table and its columns.
    #[serde(default, skip_serializing_if = "Comments::is_empty")]
    pub comments: Comments,
}

/// A materialized view: a table of this catalog holding a query's result, with what it was
/// computed from. It is fresh exactly when every source is still at the version recorded here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MatView {
    /// The defining query, as written.
    pub sql: String,
    /// The schema unqualified names in `sql` resolve to.
    pub schema: String,
    /// Who created it: refreshes run as this user, under this user's policies.
    pub owner: String,
    /// Each source table with the version (Delta) or snapshot id (Iceberg) the contents were
    /// computed from.
    #[serde(default)]
    pub sources: Vec<SourceVersion>,
    /// False after `WITH NO DATA`, until the first refresh.
    #[serde(default)]
    pub populated: bool,
    /// When the last refresh committed (milliseconds since the Unix epoch) and how long it took.
    #[serde(default)]
    pub refreshed_at_ms: Option<i64>,
    #[serde(default)]
    pub refresh_ms: Option<u64>,
    /// Whether the last refresh read only the sources' new files.
    #[serde(default)]
    pub incremental: bool,
    /// `manual`, `auto` (after source commits) or `every N` seconds.
    #[serde(default = "manual")]
    pub refresh: String,
    /// How old an answer may be when a rewritten query reads the view while it is stale.
    #[serde(default)]
    pub max_staleness_secs: Option<u64>,
    /// Whether its table also keeps, in hidden columns, the sum and count behind each AVG (see
    /// `mv::rewrite::with_avg_state`), so appends refresh its averages incrementally.
    #[serde(default)]
    pub avg_state: bool,
    /// None when its contents were computed past no policy (its owner was an administrator or
    /// bound by none of its sources' policies): readers get their own policies on the sources.
    /// Else the version of the policies that bound its owner when they were computed: then
    /// they are the owner's alone (a view made before this was recorded: unknown).
    #[serde(default = "unknown_policies")]
    pub computed_under: Option<String>,
}

fn unknown_policies() -> Option<String> {
    Some("unknown".into())
}

fn manual() -> String {
    "manual".into()
}

/// A source of a materialized view at one version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceVersion {
    /// `schema.table`
    pub object: String,
    pub version: Option<i64>,
}

const ICEBERG_NAMESPACE: &str = "iceberg.namespace";
const ICEBERG_TABLE: &str = "iceberg.table";

impl TableEntry {
    /// The (namespace, table) of an Iceberg table in the embedded Iceberg catalog.
    fn iceberg_ident(&self) -> Option<(&str, &str)> {
        Some((
            self.options.get(ICEBERG_NAMESPACE)?.as_str(),
            self.options.get(ICEBERG_TABLE)?.as_str(),
        ))
    }
}

/// What CREATE TABLE asks for besides the columns.
#[derive(Debug, Clone, Default)]
pub struct TableSpec {
    /// Delta or Iceberg.
    pub format: TableFormat,
    pub partition_by: Vec<String>,
    /// What each write sorts its rows by (Delta tables: [`crate::storage::sort_order`]).
    pub sort_order: Vec<crate::storage::sort_order::SortKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ViewEntry {
    pub sql: String,
    #[serde(default)]
    pub columns: Vec<String>,
    /// The schema unqualified names in `sql` resolve to (the creator's current schema).
    #[serde(default)]
    pub schema: String,
    /// COMMENT ON the view and its columns.
    #[serde(default, skip_serializing_if = "Comments::is_empty")]
    pub comments: Comments,
}

/// What a name in a schema refers to.
#[derive(Debug, Clone, PartialEq)]
pub enum Relation {
    Table(TableEntry),
    View(ViewEntry),
}

impl SchemaEntry {
    /// The table or view called `name`.
    fn relation(&self, name: &str) -> Option<Relation> {
        if let Some(t) = self.tables.get(name) {
            return Some(Relation::Table(t.clone()));
        }
        self.views.get(name).map(|v| Relation::View(v.clone()))
    }
}

/// An open Delta table and the provider made over that version (shared by every statement
/// that reads this version: providers hold no per-statement state).
#[derive(Clone)]
struct OpenTable {
    table: DeltaTable,
    provider: Option<Arc<dyn TableProvider>>,
}

/// The persistent catalog plus a cache of open tables.
pub struct Catalog {
    warehouse: Warehouse,
    doc: RwLock<Arc<CatalogDoc>>,
    /// Serializes catalog changes (read-modify-write of the document).
    change: tokio::sync::Mutex<()>,
    /// Delta tables opened so far, by location, each with its provider once one was made:
    /// a statement reuses them while no newer commit exists (one HEAD of the next commit file,
    /// no listing and no log replay). Locked only to copy out or put back, never across I/O.
    open_tables: std::sync::Mutex<HashMap<String, OpenTable>>,
    /// Whether a local table's log changed since its newest commit was looked for.
    log_watches: delta::LogWatches,
    views: OnceLock<Arc<dyn ViewExpander>>,
    /// The embedded Iceberg catalog, opened on first use.
    iceberg: tokio::sync::OnceCell<IcebergStore>,
    /// The format of CREATE TABLE without USING.
    default_format: TableFormat,
    /// Iceberg catalogs attached from the config, by name.
    attached: RwLock<Vec<Arc<attached::AttachedCatalog>>>,
    /// Schemas the layers above provide (`lakegate`: the audit log), by name.
    system: RwLock<Vec<(String, Arc<dyn datafusion::catalog::SchemaProvider>)>>,
    extensions: status::Extensions,
    /// Counts the changes of the document (any DDL): what was planned before one may plan
    /// differently after it.
    generation: std::sync::atomic::AtomicU64,
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
    pub fn open(warehouse: Warehouse, default_format: TableFormat) -> Result<Arc<Catalog>> {
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
            doc: RwLock::new(Arc::new(doc)),
            change: tokio::sync::Mutex::new(()),
            open_tables: std::sync::Mutex::new(HashMap::new()),
            log_watches: Default::default(),
            views: OnceLock::new(),
            iceberg: tokio::sync::OnceCell::new(),
            default_format,
            attached: RwLock::new(vec![]),
            system: RwLock::new(vec![]),
            extensions: Default::default(),
            generation: Default::default(),
        }))
    }

    /// Add a schema provided by a layer above (at startup).
    pub fn add_system_schema(&self, name: &str, s: Arc<dyn datafusion::catalog::SchemaProvider>) {
        self.system
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), s));
    }

    pub(crate) fn system_schema(
        &self,
        name: &str,
    ) -> Option<Arc<dyn datafusion::catalog::SchemaProvider>> {
        self.system
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
    }

    /// Attach an Iceberg catalog under its name (at startup).
    pub fn attach(&self, c: Arc<attached::AttachedCatalog>) {
        self.attached
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(c);
    }

    /// The attached Iceberg catalogs.
    pub fn attached(&self) -> Vec<Arc<attached::AttachedCatalog>> {
        self.attached
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A table another engine created in the embedded Iceberg catalog (pyiceberg's SqlCatalog
    /// on `_lakegate/iceberg.db`) becomes a table of this catalog the first time it is named.
    /// Returns its entry, or None when the Iceberg catalog has no such table.
    pub async fn adopt_iceberg(&self, schema: &str, name: &str) -> Result<Option<TableEntry>> {
        if name.contains('(') || name.contains(')') {
            return Ok(None);
        }
        if !self.warehouse.meta_path("iceberg.db").exists() {
            return Ok(None);
        }
        let store = self.iceberg().await?;
        let Some(location) = store.location_of(schema, name).await? else {
            return Ok(None);
        };
        let mut options = BTreeMap::new();
        options.insert(ICEBERG_NAMESPACE.to_string(), schema.to_string());
        options.insert(ICEBERG_TABLE.to_string(), name.to_string());
        let entry = TableEntry {
            format: TableFormat::Iceberg,
            location,
            external: false,
            options,
            tags: BTreeMap::new(),
            matview: None,
            comments: Default::default(),
        };
        self.change(|doc| {
            let s = doc.schemas.entry(schema.to_string()).or_default();
            if !s.tables.contains_key(name) && !s.views.contains_key(name) {
                s.tables.insert(name.to_string(), entry.clone());
            }
            Ok(())
        })
        .await?;
        tracing::info!(
            schema,
            table = name,
            "adopted an Iceberg table created by another engine"
        );
        Ok(Some(entry))
    }

    /// The format of CREATE TABLE without USING (`delta` or `iceberg`).
    pub fn default_format(&self) -> TableFormat {
        self.default_format
    }

    /// The embedded Iceberg catalog (`_lakegate/iceberg.db`), opened on first use.
    pub async fn iceberg(&self) -> Result<&IcebergStore> {
        self.iceberg
            .get_or_try_init(|| async {
                IcebergStore::open(
                    &self.warehouse.meta_path("iceberg.db"),
                    self.warehouse.root().as_str(),
                    self.warehouse.iceberg_props(),
                )
                .await
            })
            .await
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
        self.read().schemas.get(schema)?.relation(name)
    }

    /// Record a materialized view's definition and state on its table.
    pub async fn set_matview(&self, schema: &str, name: &str, mv: MatView) -> Result<()> {
        self.change(|doc| {
            match doc
                .schemas
                .get_mut(schema)
                .and_then(|s| s.tables.get_mut(name))
            {
                Some(t) => {
                    t.matview = Some(Box::new(mv));
                    Ok(())
                }
                None => Err(Error::UndefinedTable(format!(
                    "materialized view \"{name}\" does not exist"
                ))),
            }
        })
        .await
    }

    /// Every materialized view: (schema, name, its table).
    pub fn matviews(&self) -> Vec<(String, String, TableEntry)> {
        let doc = self.read();
        doc.schemas
            .iter()
            .flat_map(|(s, e)| {
                e.tables
                    .iter()
                    .filter(|(_, t)| t.matview.is_some())
                    .map(move |(n, t)| (s.clone(), n.clone(), t.clone()))
            })
            .collect()
    }

    /// The version a table is at now: a Delta table's version, an Iceberg table's current
    /// snapshot id; None for tables without versions (plain files).
    pub async fn current_version(&self, entry: &TableEntry) -> Result<Option<i64>> {
        match entry.format {
            TableFormat::Delta => Ok(self
                .delta_table(entry)
                .await?
                .version()
                .and_then(|v| i64::try_from(v).ok())),
            TableFormat::Iceberg if !entry.external => {
                let (ns, name) = self.iceberg_ident(entry)?;
                let table = self.iceberg().await?.load(ns, name).await?;
                Ok(table.metadata().current_snapshot_id())
            }
            _ => Ok(None),
        }
    }

    /// Set the classification tags of columns of a table (an empty list removes a column's),
    /// and move tags of renamed columns (`renamed`: old name, new name).
    pub async fn set_tags(
        &self,
        schema: &str,
        table: &str,
        tags: &BTreeMap<String, Vec<String>>,
        renamed: &[(String, String)],
    ) -> Result<()> {
        self.change(|doc| {
            let Some(t) = doc
                .schemas
                .get_mut(schema)
                .and_then(|s| s.tables.get_mut(table))
            else {
                return Err(Error::UndefinedTable(format!(
                    "relation \"{table}\" does not exist"
                )));
            };
            for (old, new) in renamed {
                if let Some(v) = t.tags.remove(old) {
                    t.tags.insert(new.clone(), v);
                }
            }
            for (column, v) in tags {
                if v.is_empty() {
                    t.tags.remove(column);
                } else {
                    t.tags.insert(column.clone(), v.clone());
                }
            }
            Ok(())
        })
        .await
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
        // Parentheses are how a table function's scan is named (policy::access).
        if name.contains('(') || name.contains(')') {
            return Err(Error::Data {
                sqlstate: SqlState::InvalidName,
                message: format!("invalid name \"{name}\": parentheses are not allowed in names"),
            });
        }
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

    /// Create a Delta or Iceberg table and register it. Returns false when it existed and
    /// `if_not_exists`.
    pub async fn create_table(
        &self,
        schema: &str,
        name: &str,
        arrow: &Schema,
        if_not_exists: bool,
        spec: &TableSpec,
    ) -> Result<bool> {
        {
            let doc = self.read();
            match Self::check_free(&doc, schema, name) {
                Err(Error::DuplicateTable(_)) if if_not_exists => return Ok(false),
                other => other?,
            }
        }
        for col in &spec.partition_by {
            if arrow.field_with_name(col).is_err() {
                return Err(Error::UndefinedColumn(format!(
                    "partition column \"{col}\" does not exist in table \"{name}\""
                )));
            }
        }
        for key in &spec.sort_order {
            if arrow.field_with_name(&key.column).is_err() {
                return Err(Error::UndefinedColumn(format!(
                    "sort order column \"{}\" does not exist in table \"{name}\"",
                    key.column
                )));
            }
        }
        if !spec.sort_order.is_empty() && spec.format != TableFormat::Delta {
            return Err(Error::unsupported(
                "a sort order (WITH (sort_order = ...)) is kept by Delta tables only",
            ));
        }
        let url = self.warehouse.new_table_url(schema, name)?;
        let mut options = BTreeMap::new();
        let mut delta_table = None;
        match spec.format {
            TableFormat::Delta => {
                delta_table = Some(
                    delta::create(
                        &url,
                        arrow,
                        &spec.partition_by,
                        &spec.sort_order,
                        self.warehouse.storage_options(&url),
                    )
                    .await?,
                )
            }
            TableFormat::Iceberg => {
                // Known to the Iceberg catalog as schema.name, so that other engines open it by
                // the same name; the files live in a fresh folder of their own.
                self.iceberg()
                    .await?
                    .create_with_location(schema, name, arrow, &spec.partition_by, &url)
                    .await?;
                options.insert(ICEBERG_NAMESPACE.to_string(), schema.to_string());
                options.insert(ICEBERG_TABLE.to_string(), name.to_string());
            }
            other => {
                return Err(Error::unsupported(format!(
                    "table format {other} is not supported: use delta or iceberg"
                )));
            }
        }
        let entry = TableEntry {
            format: spec.format,
            location: url.to_string(),
            external: false,
            options,
            tags: BTreeMap::new(),
            matview: None,
            comments: Default::default(),
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
            self.remove_files(&entry).await;
            return match e {
                Error::DuplicateTable(_) if if_not_exists => Ok(false),
                e => Err(e),
            };
        }
        self.made(&entry);
        if let Some(t) = delta_table {
            self.keep_open(&entry.location, t, None);
        }
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
                                sqlstate: SqlState::WrongObjectType,
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
                                sqlstate: SqlState::WrongObjectType,
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

    /// A dropped table's files go (inside a block, once its COMMIT committed the drop).
    async fn forget_and_remove(&self, t: &TableEntry) {
        if self.drafting() {
            return;
        }
        self.open_lock().remove(&t.location);
        if t.external {
            return;
        }
        self.remove_files(t).await;
    }

    /// Remove a table we own from the Iceberg catalog (if it is there) and its files.
    async fn remove_files(&self, t: &TableEntry) {
        if let Some((ns, name)) = t.iceberg_ident()
            && let Ok(store) = self.iceberg().await
            && let Err(e) = store.drop(ns, name).await
        {
            tracing::warn!(table = name, error = %e, "could not drop an Iceberg catalog entry");
        }
        if let Ok(url) = Url::parse(&t.location) {
            self.warehouse.remove_location(&url).await;
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
            if name.contains('(') || name.contains(')') {
                return Err(Error::Data {
                    sqlstate: SqlState::InvalidName,
                    message: format!(
                        "invalid name \"{name}\": parentheses are not allowed in names"
                    ),
                });
            }
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
        Ok(self.open_delta(entry).await?.table)
    }

    /// [`Self::delta_table`] with the provider made for that version, if one was.
    async fn open_delta(&self, entry: &TableEntry) -> Result<OpenTable> {
        if entry.format != TableFormat::Delta {
            return Err(Error::unsupported(format!(
                "this operation needs a Delta table, and the table is {}",
                entry.format
            )));
        }
        let cached = self.open_lock().get(&entry.location).cloned();
        match cached {
            Some(open) if !self.log_watches.has_newer_commit(&open.table).await? => Ok(open),
            Some(mut open) => {
                open.table.update_incremental(None).await?;
                self.keep_open(&entry.location, open.table.clone(), None);
                Ok(OpenTable {
                    table: open.table,
                    provider: None,
                })
            }
            None => {
                let url = Url::parse(&entry.location)
                    .map_err(|e| Error::Storage(format!("bad table location: {e}")))?;
                let table = delta::open(&url, self.warehouse.storage_options(&url)).await?;
                self.keep_open(&entry.location, table.clone(), None);
                Ok(OpenTable {
                    table,
                    provider: None,
                })
            }
        }
    }

    fn open_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OpenTable>> {
        self.open_tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `table` (and its provider) as the open state of `location`, unless a newer version
    /// is kept already (two statements may race to put back what they read).
    fn keep_open(
        &self,
        location: &str,
        table: DeltaTable,
        provider: Option<Arc<dyn TableProvider>>,
    ) {
        let mut open = self.open_lock();
        let newer = open
            .get(location)
            .is_some_and(|o| o.table.version() > table.version());
        if !newer {
            open.insert(location.to_string(), OpenTable { table, provider });
        }
    }

    /// Remember a table's state after a write made through it.
    pub async fn remember(&self, entry: &TableEntry, table: DeltaTable) {
        self.keep_open(&entry.location, table, None);
    }

    /// The (namespace, name) of an Iceberg table we own, or 0A000 for any other table.
    pub fn iceberg_ident<'a>(&self, entry: &'a TableEntry) -> Result<(&'a str, &'a str)> {
        entry.iceberg_ident().ok_or_else(|| {
            Error::unsupported("this operation needs an Iceberg table of this warehouse")
        })
    }

    /// A provider over the table's latest committed version.
    pub async fn table_provider(&self, entry: &TableEntry) -> Result<Arc<dyn TableProvider>> {
        match entry.format {
            TableFormat::Delta => {
                let open = self.open_delta(entry).await?;
                if let Some(p) = open.provider {
                    return Ok(p);
                }
                let provider = delta::provider(&open.table).await?;
                self.keep_open(&entry.location, open.table, Some(provider.clone()));
                Ok(provider)
            }
            TableFormat::Foreign => self.foreign_provider(entry),
            TableFormat::Iceberg if entry.external => {
                self.iceberg().await?.static_provider(&entry.location).await
            }
            TableFormat::Iceberg => {
                let (ns, name) = self.iceberg_ident(entry)?;
                self.iceberg().await?.provider(ns, name).await
            }
            _ => {
                let store = match Url::parse(&entry.location) {
                    Ok(u) if crate::storage::is_object_store(u.as_str()) => {
                        let mut bucket = u.clone();
                        bucket.set_path("");
                        Some((bucket.clone(), self.warehouse.store_for(&bucket)?))
                    }
                    _ => None,
                };
                crate::storage::files::provider(
                    entry.format,
                    &entry.location,
                    &entry.options,
                    store,
                )
                .await
            }
        }
    }

    /// A provider over an older version of the table, or over its history.
    pub async fn table_provider_at(
        &self,
        entry: &TableEntry,
        at: &versions::At,
    ) -> Result<Arc<dyn TableProvider>> {
        if entry.format == TableFormat::Iceberg {
            return self.iceberg_provider_at(entry, at).await;
        }
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

impl Catalog {
    async fn iceberg_provider_at(
        &self,
        entry: &TableEntry,
        at: &versions::At,
    ) -> Result<Arc<dyn TableProvider>> {
        use crate::storage::iceberg;
        let (ns, name) = self.iceberg_ident(entry)?;
        let store = self.iceberg().await?;
        let table = store.load(ns, name).await?;
        let snapshot = match at {
            versions::At::Version(v) => {
                if table.metadata().snapshot_by_id(*v).is_none() {
                    let known: Vec<String> = iceberg::history(&table)
                        .iter()
                        .map(|r| r.0.to_string())
                        .collect();
                    return Err(Error::InvalidParameter(format!(
                        "the table has no snapshot {v}; its snapshots are: {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
                *v
            }
            versions::At::Timestamp(us) => iceberg::snapshot_at(&table, *us).ok_or_else(|| {
                Error::InvalidParameter(
                    "the table has no snapshot at or before that time".to_string(),
                )
            })?,
            versions::At::History => {
                let rows = iceberg::history(&table);
                return delta::history_table(
                    rows.into_iter()
                        .map(|(id, ms, op, summary)| delta::HistoryRow {
                            version: id,
                            committed_at_ms: Some(ms),
                            operation: Some(op),
                            parameters: None,
                            metrics: Some(summary),
                        })
                        .collect(),
                );
            }
        };
        store.provider_at_snapshot(table, snapshot).await
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
