//! The persistent catalog seen through DataFusion's `CatalogProvider` / `SchemaProvider`.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::LogicalPlan;

use super::{Catalog, Relation};
use crate::error::Error;

/// Turns a stored view definition into a logical plan. Implemented by the planner, which sits
/// above the catalog; injected at startup so that the catalog does not import upward.
#[async_trait]
pub trait ViewExpander: Send + Sync {
    async fn expand(
        &self,
        schema: &str,
        sql: &str,
        columns: &[String],
    ) -> crate::error::Result<LogicalPlan>;
}

/// Which tables a session's listings show: (schema, table) -> visible.
pub type Visible = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Which columns of a table a session does not see at all: (schema, table) -> columns.
pub type Hidden = Arc<dyn Fn(&str, &str) -> Vec<String> + Send + Sync>;

/// A session's PostgreSQL schemas (`pg_catalog`, `information_schema`) by name.
pub type PgSchemas = Arc<std::sync::OnceLock<Vec<(&'static str, Arc<dyn SchemaProvider>)>>>;

/// The whole database as one DataFusion catalog. Listings (information_schema, SHOW TABLES)
/// show only the tables `visible` lets through; naming a table still reaches it (and its
/// policies then decide).
#[derive(Clone)]
pub struct LakegateCatalog {
    inner: Arc<Catalog>,
    visible: Option<Visible>,
    hidden: Option<Hidden>,
    /// The session's `pg_catalog` and `information_schema` (pg::pg_shape), by name, set
    /// once its context exists.
    pg_schemas: PgSchemas,
    /// The schema of the session's own temporary tables: other sessions' are listed (as
    /// PostgreSQL lists them in pg_namespace) but show no tables and give none.
    own_temp: String,
    /// The session's open block's pending rows, by table (see `overlay`).
    overlays: Option<super::overlay::Overlays>,
}

impl std::fmt::Debug for LakegateCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakegateCatalog").finish()
    }
}

impl LakegateCatalog {
    pub fn new(
        inner: Arc<Catalog>,
        visible: Option<Visible>,
        hidden: Option<Hidden>,
        own_temp: String,
        overlays: Option<super::overlay::Overlays>,
    ) -> Self {
        LakegateCatalog {
            inner,
            visible,
            hidden,
            pg_schemas: Arc::new(std::sync::OnceLock::new()),
            own_temp,
            overlays,
        }
    }

    /// Where the session's `pg_catalog` and `information_schema` go.
    pub fn pg_schemas_slot(&self) -> PgSchemas {
        self.pg_schemas.clone()
    }

    fn pg_schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.pg_schemas
            .get()?
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.clone())
    }
}

impl LakegateCatalog {
    /// COMMENT ON of `schema.name` and its columns.
    pub fn comments(&self, schema: &str, name: &str) -> super::Comments {
        match self.inner.relation(schema, name) {
            Some(super::Relation::Table(t)) => t.comments,
            Some(super::Relation::View(v)) => v.comments,
            None => Default::default(),
        }
    }

    /// The materialized view `schema.name`'s definition, when it is one.
    pub fn matview(&self, schema: &str, name: &str) -> Option<super::MatView> {
        match self.inner.relation(schema, name) {
            Some(super::Relation::Table(t)) => t.matview.map(|m| *m),
            _ => None,
        }
    }

    /// Whether `schema.name` is a foreign table (pg_class lists it with relkind `f`).
    pub fn is_foreign(&self, schema: &str, name: &str) -> bool {
        matches!(
            self.inner.relation(schema, name),
            Some(super::Relation::Table(t)) if t.format == crate::storage::TableFormat::Foreign
        )
    }
}

impl CatalogProvider for LakegateCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        let mut names = self.inner.schema_names();
        if let Some(pg) = self.pg_schemas.get() {
            names.extend(pg.iter().map(|(n, _)| n.to_string()));
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(s) = self.pg_schema(name) {
            return Some(s);
        }
        if let Some(s) = self.inner.system_schema(name) {
            return Some(s);
        }
        if name == super::versions::SCHEMA {
            return Some(Arc::new(super::versions::VersionsSchema {
                catalog: self.inner.clone(),
            }));
        }
        if self.inner.schema_exists(name) {
            Some(Arc::new(LakegateSchema {
                catalog: self.inner.clone(),
                name: name.to_string(),
                visible: self.visible.clone(),
                hidden: self.hidden.clone(),
                others_temp: super::is_temp_schema(name) && name != self.own_temp,
                overlays: self.overlays.clone(),
            }))
        } else {
            None
        }
    }
}

struct LakegateSchema {
    catalog: Arc<Catalog>,
    name: String,
    visible: Option<Visible>,
    hidden: Option<Hidden>,
    /// Another session's temporary schema: no tables listed, none given.
    others_temp: bool,
    overlays: Option<super::overlay::Overlays>,
}

impl std::fmt::Debug for LakegateSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakegateSchema")
            .field("name", &self.name)
            .finish()
    }
}

#[async_trait]
impl SchemaProvider for LakegateSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        if self.others_temp {
            return vec![];
        }
        let mut names = self.catalog.relation_names(&self.name);
        if let Some(v) = &self.visible {
            names.retain(|t| v(&self.name, t));
        }
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if self.others_temp {
            return Err(DataFusionError::from(Error::unsupported(
                "cannot access temporary tables of other sessions",
            )));
        }
        let table = self.table_as_stored(name).await?;
        let pending = self
            .overlays
            .as_ref()
            .and_then(|o| super::overlay::find(o, &self.name, name));
        let table = match (table, pending) {
            (Some(t), Some(p)) => Some(super::overlay::OverlayTable::wrap(t, p)?),
            (t, _) => t,
        };
        let hidden = match (&self.hidden, &table) {
            (Some(h), Some(_)) => h(&self.name, name),
            _ => vec![],
        };
        Ok(match table {
            Some(t) if !hidden.is_empty() => Some(HiddenColumns::wrap(t, &hidden)),
            other => other,
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        !self.others_temp && self.catalog.relation(&self.name, name).is_some()
    }
}

impl LakegateSchema {
    async fn table_as_stored(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match self.catalog.relation(&self.name, name) {
            None => match self.catalog.adopt_iceberg(&self.name, name).await? {
                Some(t) => Ok(Some(self.catalog.table_provider(&t).await?)),
                None => Ok(None),
            },
            Some(Relation::Table(t)) => Ok(Some(self.catalog.table_provider(&t).await?)),
            Some(Relation::View(v)) => {
                let expander = self.catalog.view_expander().ok_or_else(|| {
                    DataFusionError::from(Error::internal("views are not available yet"))
                })?;
                let schema = if v.schema.is_empty() {
                    &self.name
                } else {
                    &v.schema
                };
                let plan = expander.expand(schema, &v.sql, &v.columns).await?;
                Ok(Some(Arc::new(ViewTable::new(plan, Some(v.sql.clone())))))
            }
        }
    }
}

/// Another catalog (an attached Iceberg REST catalog) as one session sees it: its listings show
/// only the tables `visible` lets through and its tables lack the `hidden` columns, with
/// objects named `catalog.schema.table` as the policies name them.
#[derive(Clone)]
pub struct SessionCatalog {
    name: String,
    inner: Arc<dyn CatalogProvider>,
    visible: Option<Visible>,
    hidden: Option<Hidden>,
}

impl std::fmt::Debug for SessionCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCatalog")
            .field("name", &self.name)
            .finish()
    }
}

impl SessionCatalog {
    pub fn new(
        name: &str,
        inner: Arc<dyn CatalogProvider>,
        visible: Option<Visible>,
        hidden: Option<Hidden>,
    ) -> Self {
        SessionCatalog {
            name: name.to_string(),
            inner,
            visible,
            hidden,
        }
    }
}

impl CatalogProvider for SessionCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn schema_names(&self) -> Vec<String> {
        self.inner.schema_names()
    }
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let inner = self.inner.schema(name)?;
        Some(Arc::new(SessionSchema {
            // The policies' name of this schema's tables: catalog.schema.table.
            qualified: format!("{}.{name}", self.name),
            inner,
            visible: self.visible.clone(),
            hidden: self.hidden.clone(),
        }))
    }
}

struct SessionSchema {
    qualified: String,
    inner: Arc<dyn SchemaProvider>,
    visible: Option<Visible>,
    hidden: Option<Hidden>,
}

impl std::fmt::Debug for SessionSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSchema")
            .field("schema", &self.qualified)
            .finish()
    }
}

#[async_trait]
impl SchemaProvider for SessionSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        if let Some(v) = &self.visible {
            names.retain(|t| v(&self.qualified, t));
        }
        names
    }
    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
        let hidden = match (&self.hidden, &table) {
            (Some(h), Some(_)) => h(&self.qualified, name),
            _ => vec![],
        };
        Ok(match table {
            Some(t) if !hidden.is_empty() => Some(HiddenColumns::wrap(t, &hidden)),
            other => other,
        })
    }
    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// The table version a session's provider reads, when it reads one fixed version.
pub fn pinned_version(p: &dyn TableProvider) -> Option<i64> {
    pinned(p).map(|v| v.version)
}

/// The table and version a session's provider reads, when it reads one fixed version.
pub fn pinned(p: &dyn TableProvider) -> Option<&crate::storage::Pinned> {
    match p.as_any().downcast_ref::<HiddenColumns>() {
        Some(h) => crate::storage::pinned(h.inner.as_ref()),
        None => crate::storage::pinned(p),
    }
}

/// A table without the columns a session may not see: its schema leaves them out, so `SELECT *`,
/// listings and name resolution never meet them; scans map the projection back. Writes go
/// through only when they can not need a hidden column (never: refused), so rows are never
/// written with a column the writer cannot know.
#[derive(Debug)]
struct HiddenColumns {
    inner: Arc<dyn TableProvider>,
    schema: datafusion::arrow::datatypes::SchemaRef,
    /// The inner column index of each visible column.
    keep: Vec<usize>,
    hidden: Vec<String>,
}

impl HiddenColumns {
    fn wrap(inner: Arc<dyn TableProvider>, hidden: &[String]) -> Arc<dyn TableProvider> {
        let full = inner.schema();
        let keep: Vec<usize> = (0..full.fields().len())
            .filter(|i| !hidden.contains(full.field(*i).name()))
            .collect();
        let schema = match full.project(&keep) {
            Ok(s) => Arc::new(s),
            // Cannot happen (indices come from the schema); fail closed with no columns.
            Err(_) => Arc::new(datafusion::arrow::datatypes::Schema::empty()),
        };
        Arc::new(HiddenColumns {
            inner,
            schema,
            keep,
            hidden: hidden.to_vec(),
        })
    }
}

#[async_trait]
impl TableProvider for HiddenColumns {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> datafusion::datasource::TableType {
        self.inner.table_type()
    }
    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let mapped: Vec<usize> = match projection {
            Some(p) => p
                .iter()
                .filter_map(|i| self.keep.get(*i).copied())
                .collect(),
            None => self.keep.clone(),
        };
        self.inner.scan(state, Some(&mapped), filters, limit).await
    }
    fn supports_filters_pushdown(
        &self,
        filters: &[&datafusion::logical_expr::Expr],
    ) -> DfResult<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
    async fn insert_into(
        &self,
        _state: &dyn datafusion::catalog::Session,
        _input: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        _op: datafusion::logical_expr::dml::InsertOp,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        Err(Error::PermissionDenied(format!(
            "permission denied for column {}",
            self.hidden.first().map(String::as_str).unwrap_or_default()
        ))
        .into())
    }
}
