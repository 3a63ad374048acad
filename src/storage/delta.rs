//! Delta Lake tables (crate `deltalake`): create, open, and hand DataFusion a provider.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::TableType;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;
use deltalake::kernel::MetadataValue;
use deltalake::kernel::StructField;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::protocol::SaveMode;
use url::Url;

use super::PG_TYPE_KEY;
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

/// Add nullable columns (one schema-change commit).
pub async fn add_columns(table: DeltaTable, fields: &[Field]) -> Result<DeltaTable> {
    let columns = fields
        .iter()
        .map(|f| {
            StructField::try_from_arrow(f).map_err(|e| {
                Error::unsupported(format!(
                    "column {:?} cannot be stored in Delta Lake: {e}",
                    f.name()
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(table.add_columns().with_fields(columns).await?)
}

/// The table's column names, in order.
pub fn column_names(table: &DeltaTable) -> Result<Vec<String>> {
    Ok(table
        .snapshot()?
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .collect())
}

/// Open the latest version of the Delta table at `url`.
pub async fn open(url: &Url) -> Result<DeltaTable> {
    let table = deltalake::open_table(url.clone()).await?;
    Ok(table)
}

/// A DataFusion provider (scan and INSERT) over the table's current snapshot. Columns whose
/// Delta metadata names a PostgreSQL type (uuid, json ...) carry it as Arrow field metadata.
pub async fn provider(table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
    let inner = table.table_provider().await?;
    let mut typed: HashMap<String, String> = HashMap::new();
    if let Ok(state) = table.snapshot() {
        for f in state.schema().fields() {
            if let Some(MetadataValue::String(t)) = f.metadata().get(PG_TYPE_KEY) {
                typed.insert(f.name().to_string(), t.clone());
            }
        }
    }
    if typed.is_empty() {
        return Ok(inner);
    }
    let schema = inner.schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match typed.get(f.name()) {
            Some(t) => f
                .as_ref()
                .clone()
                .with_metadata([(PG_TYPE_KEY.to_string(), t.clone())].into()),
            None => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    Ok(Arc::new(Typed { inner, schema }))
}

/// A provider that only adds field metadata to another's schema; everything else delegates.
#[derive(Debug)]
struct Typed {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for Typed {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.insert_into(state, input, op).await
    }
}

/// The table's commits, newest first: version, time, operation, its parameters and metrics.
pub async fn history(table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    let latest = table.version().unwrap_or(0) as i64;
    let commits: Vec<_> = table.history(None).await?.collect();
    let n = commits.len();
    let versions: Int64Array = (0..n).map(|i| Some(latest - i as i64)).collect();
    let times: TimestampMicrosecondArray = commits
        .iter()
        .map(|c| c.timestamp.map(|ms| ms * 1000))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let ops: StringArray = commits.iter().map(|c| c.operation.clone()).collect();
    let params: StringArray = commits
        .iter()
        .map(|c| {
            c.operation_parameters
                .as_ref()
                .and_then(|p| serde_json::to_string(p).ok())
        })
        .collect();
    let metrics: StringArray = commits
        .iter()
        .map(|c| c.info.get("operationMetrics").map(|m| m.to_string()))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new(
            "committed_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("operation", DataType::Utf8, true),
        Field::new("parameters", DataType::Utf8, true),
        Field::new("metrics", DataType::Utf8, true),
    ]));
    let batch = datafusion::arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(versions),
            Arc::new(times),
            Arc::new(ops),
            Arc::new(params),
            Arc::new(metrics),
        ],
    )?;
    let table = datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?;
    Ok(Arc::new(table))
}
