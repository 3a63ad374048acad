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

/// The whole database as one DataFusion catalog. Listings (information_schema, SHOW TABLES)
/// show only the tables `visible` lets through; naming a table still reaches it (and its
/// policies then decide).
#[derive(Clone)]
pub struct LakegateCatalog {
    inner: Arc<Catalog>,
    visible: Option<Visible>,
}

impl std::fmt::Debug for LakegateCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakegateCatalog").finish()
    }
}

impl LakegateCatalog {
    pub fn new(inner: Arc<Catalog>, visible: Option<Visible>) -> Self {
        LakegateCatalog { inner, visible }
    }
}

impl CatalogProvider for LakegateCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.inner.schema_names()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
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
        let mut names = self.catalog.relation_names(&self.name);
        if let Some(v) = &self.visible {
            names.retain(|t| v(&self.name, t));
        }
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
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

    fn table_exist(&self, name: &str) -> bool {
        self.catalog.relation(&self.name, name).is_some()
    }
}
