//! Plain files registered as external tables: Parquet, CSV and JSON, one file or a folder of
//! them (local or on S3), read in place through DataFusion's listing tables (schema inferred from the files).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;

use crate::error::{Error, Result};
use crate::storage::TableFormat;

/// The object store a listing table on s3:// reads through: (bucket URL, store).
pub type StoreFor = Option<(url::Url, Arc<dyn object_store::ObjectStore>)>;

/// A provider over the files at `location` (a local path, file:// or s3:// URL).
pub async fn provider(
    format: TableFormat,
    location: &str,
    options: &BTreeMap<String, String>,
    store: StoreFor,
) -> Result<Arc<dyn TableProvider>> {
    let (file_format, extension): (Arc<dyn FileFormat>, &str) = match format {
        TableFormat::Parquet => (Arc::new(ParquetFormat::default()), ".parquet"),
        TableFormat::Csv => {
            let header = options
                .get("format.has_header")
                .or_else(|| options.get("has_header"))
                .map(|v| v.eq_ignore_ascii_case("true"))
                .unwrap_or(true);
            let delimiter = options
                .get("format.delimiter")
                .or_else(|| options.get("delimiter"))
                .and_then(|d| d.bytes().next())
                .unwrap_or(b',');
            (
                Arc::new(
                    CsvFormat::default()
                        .with_has_header(header)
                        .with_delimiter(delimiter),
                ),
                ".csv",
            )
        }
        TableFormat::Json => (Arc::new(JsonFormat::default()), ".json"),
        other => {
            return Err(Error::unsupported(format!(
                "external tables of format {other} are not supported"
            )));
        }
    };
    let url = ListingTableUrl::parse(location)
        .map_err(|e| Error::InvalidParameter(format!("invalid location {location:?}: {e}")))?;
    // A single file is read whatever its name; a folder by the format's extension.
    let extension = if location.ends_with('/')
        || std::path::Path::new(location.trim_start_matches("file://")).is_dir()
    {
        extension
    } else {
        ""
    };
    // With the files' statistics (row counts, min/max from the Parquet footers, read once per
    // provider), as DataFusion's own `register_parquet` does: without them the join planner
    // cannot tell a small side from a large one (TPC-H q18 built its semi-join's hash table on
    // 6 M joined rows instead of the 57 the subquery keeps). `ListingOptions::new` leaves it off.
    let opts = ListingOptions::new(file_format)
        .with_file_extension(extension)
        .with_collect_stat(true);
    let ctx = SessionContext::new();
    if let Some((bucket, store)) = &store {
        ctx.register_object_store(bucket, store.clone());
    }
    let state = ctx.state();
    let schema = opts.infer_schema(&state, &url).await.map_err(|e| {
        Error::InvalidParameter(format!(
            "cannot read {format} files at {location}: {}",
            Error::from(e).client_message()
        ))
    })?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(opts)
        .with_schema(schema);
    Ok(Arc::new(ReadOnly(
        Arc::new(ListingTable::try_new(config)?),
        store,
    )))
}

/// A provider that reads through `inner` and refuses writes with 0A000.
pub fn read_only(inner: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
    Arc::new(ReadOnly(inner, None))
}

/// External files are read, never written: INSERT answers 0A000 (DataFusion's default for a
/// provider without `insert_into`) instead of adding files to someone else's folder. A scan
/// of files on S3 first registers their bucket's store with the session's runtime.
#[derive(Debug)]
struct ReadOnly(Arc<dyn TableProvider>, StoreFor);

#[async_trait::async_trait]
impl TableProvider for ReadOnly {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.0.schema()
    }
    fn table_type(&self) -> datafusion::datasource::TableType {
        self.0.table_type()
    }
    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        if let Some((bucket, store)) = &self.1 {
            state
                .runtime_env()
                .register_object_store(bucket, store.clone());
        }
        self.0.scan(state, projection, filters, limit).await
    }
    fn supports_filters_pushdown(
        &self,
        filters: &[&datafusion::logical_expr::Expr],
    ) -> datafusion::common::Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>>
    {
        self.0.supports_filters_pushdown(filters)
    }
}
