//! Iceberg catalogs attached from the config (REST: Polaris, Lakekeeper, Nessie, ...), seen in
//! SQL under their own name: `SELECT * FROM lake.sales.orders`, `INSERT INTO lake.sales.orders`.
//! Namespace and table names are listed from a cache the server refreshes in the background
//! (DataFusion asks for them synchronously); a table is opened from the catalog when a query
//! names it, so a table created elsewhere is readable at once.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result as DfResult;

use crate::error::Result;
use crate::storage::iceberg::{self, RestSpec};

/// One attached catalog.
#[derive(Debug)]
pub struct AttachedCatalog {
    pub name: String,
    client: Arc<dyn ::iceberg::Catalog>,
    names: RwLock<BTreeMap<String, Vec<String>>>,
}

impl AttachedCatalog {
    /// Connect (lazily: nothing is sent before the first refresh or query).
    pub async fn connect(spec: &RestSpec) -> Result<Arc<AttachedCatalog>> {
        Ok(Arc::new(AttachedCatalog {
            name: spec.name.clone(),
            client: iceberg::connect_rest(spec).await?,
            names: RwLock::new(BTreeMap::new()),
        }))
    }

    /// Reload the namespace and table names.
    pub async fn refresh(&self) -> Result<()> {
        let names = iceberg::list_tables(&self.client).await?;
        *self.names.write().unwrap_or_else(|p| p.into_inner()) = names;
        Ok(())
    }

    fn names(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Vec<String>>> {
        self.names.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl CatalogProvider for AttachedCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.names().keys().cloned().collect()
    }

    /// Any name: a namespace created since the last refresh is found when a table is named.
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        Some(Arc::new(AttachedSchema {
            client: self.client.clone(),
            namespace: name.to_string(),
            tables: self.names().get(name).cloned().unwrap_or_default(),
        }))
    }
}

#[derive(Debug)]
struct AttachedSchema {
    client: Arc<dyn ::iceberg::Catalog>,
    namespace: String,
    tables: Vec<String>,
}

#[async_trait]
impl SchemaProvider for AttachedSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.tables.clone()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(iceberg::provider_in(self.client.clone(), &self.namespace, name).await?)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name)
    }
}
