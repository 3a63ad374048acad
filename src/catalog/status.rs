//! Status tables the layers above provide (`lakegate.subscriptions` ...): registered once at
//! startup, their rows computed when read (`policy::audit::SystemSchema` lists them).

use std::sync::Arc;

use super::Catalog;
use crate::error::Result;

/// The rows of a status table, computed when it is read.
pub type StatusRows = Arc<dyn Fn() -> Result<datafusion::arrow::array::RecordBatch> + Send + Sync>;

impl Catalog {
    /// Add a status table a layer above provides (`lakegate.<name>`; names with `$` are not
    /// listed): its rows are computed when it is read.
    pub fn add_status_table(&self, name: &str, rows: StatusRows) {
        self.status_tables
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), rows));
    }

    /// The status table called `name`.
    pub fn status_table(&self, name: &str) -> Option<StatusRows> {
        self.status_tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
    }

    /// The listed status tables' names.
    pub fn status_table_names(&self) -> Vec<String> {
        self.status_tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(n, _)| !n.contains('$'))
            .map(|(n, _)| n.clone())
            .collect()
    }
}
