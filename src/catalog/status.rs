//! What the layers above plug into the catalog at startup: status tables
//! (`lakegate.subscriptions` ...), their rows computed when read (`policy::audit::SystemSchema`
//! lists them), and the providers of foreign tables (`src/ingest/foreign.rs`).

use std::sync::Arc;

use super::Catalog;
use crate::error::Result;

/// Makes the provider of a foreign table's entry.
pub trait ForeignTables: Send + Sync {
    fn provider(
        &self,
        entry: &super::TableEntry,
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>>;
}

/// The plug-ins of the layers above.
#[derive(Default)]
pub(crate) struct Extensions {
    status: std::sync::RwLock<Vec<(String, StatusRows)>>,
    foreign: std::sync::OnceLock<Arc<dyn ForeignTables>>,
}

/// The rows of a status table, computed when it is read.
pub type StatusRows = Arc<dyn Fn() -> Result<datafusion::arrow::array::RecordBatch> + Send + Sync>;

impl Catalog {
    /// Install the foreign tables' provider maker (once, at startup).
    pub fn set_foreign(&self, f: Arc<dyn ForeignTables>) {
        let _ = self.extensions.foreign.set(f);
    }

    /// A foreign table's provider.
    pub(crate) fn foreign_provider(
        &self,
        entry: &super::TableEntry,
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
        match self.extensions.foreign.get() {
            Some(f) => f.provider(entry),
            None => Err(crate::error::Error::unsupported(
                "foreign tables are not available in this server",
            )),
        }
    }

    /// Add a status table a layer above provides (`lakegate.<name>`; names with `$` are not
    /// listed): its rows are computed when it is read.
    pub fn add_status_table(&self, name: &str, rows: StatusRows) {
        self.extensions
            .status
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), rows));
    }

    /// The status table called `name`.
    pub fn status_table(&self, name: &str) -> Option<StatusRows> {
        self.extensions
            .status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
    }

    /// The listed status tables' names.
    pub fn status_table_names(&self) -> Vec<String> {
        self.extensions
            .status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(n, _)| !n.contains('$'))
            .map(|(n, _)| n.clone())
            .collect()
    }
}
