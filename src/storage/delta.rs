//! Delta Lake tables (crate `deltalake`): create, open, and hand DataFusion a provider.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::catalog::TableProvider;
use deltalake::DeltaTable;
use deltalake::kernel::StructField;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::protocol::SaveMode;
use url::Url;

use crate::error::{Error, Result};

/// Create an empty Delta table at `url` with the given Arrow schema (one atomic commit).
pub async fn create(url: &Url, schema: &Schema) -> Result<DeltaTable> {
    if let Ok(p) = url.to_file_path() {
        std::fs::create_dir_all(&p)?;
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let field = StructField::try_from_arrow(f.as_ref()).map_err(|e| {
            Error::unsupported(format!(
                "column {:?} has type {} which Delta Lake cannot store: {e}",
                f.name(),
                f.data_type()
            ))
        })?;
        columns.push(field);
    }
    // An unloaded handle: the location is empty, there is nothing to load yet.
    let table = deltalake::DeltaTableBuilder::from_url(url.clone())?.build()?;
    let table = table
        .create()
        .with_columns(columns)
        .with_save_mode(SaveMode::ErrorIfExists)
        .await?;
    Ok(table)
}

/// Open the latest version of the Delta table at `url`.
pub async fn open(url: &Url) -> Result<DeltaTable> {
    let table = deltalake::open_table(url.clone()).await?;
    Ok(table)
}

/// A DataFusion provider (scan and INSERT) over the table's current snapshot.
pub async fn provider(table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
    Ok(table.table_provider().await?)
}
