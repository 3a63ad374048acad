//! Delta Lake tables (crate `deltalake`): create, open, and hand DataFusion a provider.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::catalog::TableProvider;
use deltalake::DeltaTable;
use deltalake::kernel::MetadataValue;
use deltalake::kernel::StructField;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::protocol::SaveMode;
use url::Url;

use super::PG_TYPE_KEY;
use crate::error::{Error, Result};

/// Create an empty Delta table at `url` with the given Arrow schema, partitioned by the named
/// columns, its writes sorted by `sort_order` ([`super::sort_order`]; one atomic commit).
pub async fn create(
    url: &Url,
    schema: &Schema,
    partition_by: &[String],
    sort_order: &[super::sort_order::SortKey],
    storage_options: HashMap<String, String>,
) -> Result<DeltaTable> {
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
    let table = deltalake::DeltaTableBuilder::from_url(url.clone())?
        .with_storage_options(storage_options)
        .build()?;
    let table = table
        .create()
        .with_columns(columns)
        .with_partition_columns(partition_by.to_vec())
        .with_configuration(
            (!sort_order.is_empty())
                .then(|| {
                    (
                        super::sort_order::KEY,
                        Some(super::sort_order::text(sort_order)),
                    )
                })
                .into_iter()
                // A checkpoint every 10 commits (Delta's default: 100). Loading a new version
                // replays the commits since the last checkpoint, and every statement of a
                // table written to row by row loads one: single-row INSERTs slowed from 16 ms
                // to 37 ms over 100 commits (release build); a checkpoint costs a write of the
                // file list, every tenth commit.
                .chain([(
                    CHECKPOINT_INTERVAL_KEY,
                    Some(CHECKPOINT_INTERVAL.to_string()),
                )]),
        )
        // (a key of Lakegate's own, which deltalake does not know)
        .with_raise_if_key_not_exists(false)
        .with_save_mode(SaveMode::ErrorIfExists)
        .await?;
    Ok(table)
}

const CHECKPOINT_INTERVAL_KEY: &str = "delta.checkpointInterval";
const CHECKPOINT_INTERVAL: u64 = 10;

/// Set the sort order of the table's later writes (one table-properties commit; an empty one
/// is none).
pub async fn set_sort_order(
    table: DeltaTable,
    sort_order: &[super::sort_order::SortKey],
) -> Result<DeltaTable> {
    Ok(table
        .set_tbl_properties()
        .with_properties(HashMap::from([(
            super::sort_order::KEY.to_string(),
            super::sort_order::text(sort_order),
        )]))
        // (a key of Lakegate's own, which deltalake does not know)
        .with_raise_if_not_exists(false)
        .await?)
}

/// The sort order of the table's writes at the version it has loaded.
pub fn sort_order(table: &DeltaTable) -> Vec<super::sort_order::SortKey> {
    table
        .snapshot()
        .map(|s| super::sort_order::of_configuration(s.metadata().configuration()))
        .unwrap_or_default()
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

/// Replace the table's contents and schema with what `plan` produces (one overwrite commit;
/// older versions keep their files and schema for time travel). How RENAME/DROP COLUMN and
/// type widening are done on Delta tables: deltalake 0.32 cannot write column-mapped tables,
/// so the data files are rewritten under the new schema instead.
pub async fn rewrite(
    table: DeltaTable,
    plan: datafusion::logical_expr::LogicalPlan,
    partition_by: Vec<String>,
    operation: &str,
) -> Result<DeltaTable> {
    let mut commit =
        super::commit_tag::tagged(deltalake::kernel::transaction::CommitProperties::default());
    commit = commit.with_metadata([(
        "lakegate.operation".to_string(),
        serde_json::Value::String(operation.to_string()),
    )]);
    Ok(table
        .write(vec![])
        // (planned in deltalake's own session, which knows its write nodes)
        .with_input_plan(plan)
        .with_writer_properties(writer_properties())
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
        .with_partition_columns(partition_by)
        .with_commit_properties(commit)
        .await?)
}

/// The Parquet files of the writes made here ([`rewrite`], [`append`]: ALTER TABLE rewrites,
/// materialized-view refreshes): row groups of 122,880 rows (DuckDB's size; the Parquet
/// writer's default is 1,048,576) so that a scan splits over every core and min/max statistics
/// prune a filtered scan in finer steps, with page-level statistics (the page index) and snappy
/// compression. CREATE TABLE AS and INSERT write them too ([`super::delta_sink`]).
pub(super) fn writer_properties() -> deltalake::parquet::file::properties::WriterProperties {
    use deltalake::parquet::basic::Compression;
    use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(122_880))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_compression(Compression::SNAPPY)
        .build()
}

/// How Lakegate's own writers (INSERT's sink, UPDATE/DELETE/MERGE's file rewrites) write files
/// of the table at `snapshot`: its schema and partitions, [`writer_properties`], and the
/// table's target file size and statistics columns.
pub(super) fn writer_config(
    snapshot: &deltalake::kernel::EagerSnapshot,
) -> deltalake::operations::write::writer::WriterConfig {
    use deltalake::delta_datafusion::DataFusionMixins as _;
    use deltalake::table::config::TablePropertiesExt as _;
    let props = snapshot.table_configuration().table_properties();
    deltalake::operations::write::writer::WriterConfig::new(
        snapshot.read_schema(),
        snapshot.metadata().partition_columns().to_vec(),
        Some(writer_properties()),
        Some(props.target_file_size()),
        None,
        props.num_indexed_cols(),
        props
            .data_skipping_stats_columns
            .as_ref()
            .map(|c| c.iter().map(|c| c.to_string()).collect()),
    )
}

/// Append the rows of `plan` to the table in one commit.
pub async fn append(
    table: DeltaTable,
    plan: datafusion::logical_expr::LogicalPlan,
    operation: &str,
) -> Result<DeltaTable> {
    let commit =
        super::commit_tag::tagged(deltalake::kernel::transaction::CommitProperties::default())
            .with_metadata([(
                "lakegate.operation".to_string(),
                serde_json::Value::String(operation.to_string()),
            )]);
    Ok(table
        .write(vec![])
        .with_input_plan(plan)
        .with_writer_properties(writer_properties())
        .with_save_mode(SaveMode::Append)
        .with_commit_properties(commit)
        .await?)
}

/// Remove every row (TRUNCATE): one commit removing the table's data files, which older
/// versions keep for time travel until VACUUM. No file is read.
pub async fn truncate(table: DeltaTable) -> Result<DeltaTable> {
    let commit =
        super::commit_tag::tagged(deltalake::kernel::transaction::CommitProperties::default())
            .with_metadata([(
                "lakegate.operation".to_string(),
                serde_json::Value::String("TRUNCATE".to_string()),
            )]);
    let (table, _) = table.delete().with_commit_properties(commit).await?;
    Ok(table)
}

/// The files a table added since `version` (its data files now, less those it had then), when
/// it only added files since (appends); None when a commit since removed or rewrote any.
pub async fn added_since(table: &DeltaTable, version: i64) -> Result<Option<Vec<String>>> {
    let now: std::collections::HashSet<String> = table.get_file_uris()?.collect();
    let mut then = table.clone();
    then.load_version(u64::try_from(version).unwrap_or(0))
        .await?;
    let before: Vec<String> = then.get_file_uris()?.collect();
    if before.iter().any(|f| !now.contains(f)) {
        return Ok(None);
    }
    let before: std::collections::HashSet<String> = before.into_iter().collect();
    let mut added: Vec<String> = now.into_iter().filter(|f| !before.contains(f)).collect();
    added.sort();
    Ok(Some(added))
}

/// Whether the table is partitioned (its partition values are not in its files).
pub fn partitioned(table: &DeltaTable) -> bool {
    table
        .snapshot()
        .map(|s| !s.metadata().partition_columns().is_empty())
        .unwrap_or(true)
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
pub async fn open(url: &Url, storage_options: HashMap<String, String>) -> Result<DeltaTable> {
    let table = deltalake::open_table_with_storage_options(url.clone(), storage_options).await?;
    Ok(table)
}

/// Whether a commit newer than the one `table` was read at exists: one HEAD of the next commit
/// file (commit files are never removed before their checkpoint is older than the retention,
/// so a newer version always has one), instead of listing the log.
pub async fn has_newer_commit(table: &DeltaTable) -> Result<bool> {
    let Some(v) = table.version() else {
        return Ok(true);
    };
    let next_file = format!("_delta_log/{:020}.json", v + 1);
    // A local table: one stat(2) in place (a few microseconds), rather than the object store's
    // trip through the blocking thread pool (this runs for every statement reading the table).
    if table.table_url().scheme() == "file"
        && let Ok(dir) = table.table_url().to_file_path()
    {
        return match std::fs::metadata(dir.join(&next_file)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Storage(format!("cannot read the table's log: {e}"))),
        };
    }
    let next = object_store::path::Path::from(next_file);
    use object_store::ObjectStoreExt;
    match table.log_store().object_store(None).head(&next).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(Error::Storage(format!("cannot read the table's log: {e}"))),
    }
}

/// [`has_newer_commit`] for many tables, skipping the look at a local table's log while its
/// `_delta_log` folder saw no change (by change notices, [`super::watch`]) since a look found
/// no newer commit than the version asked about.
#[derive(Debug, Default)]
pub struct LogWatches {
    logs: std::sync::Mutex<HashMap<String, LogWatch>>,
}

#[derive(Debug)]
struct LogWatch {
    watch: Option<super::watch::Watch>,
    /// The change count and version when a look found no newer commit than that version.
    current: Option<(u64, deltalake::kernel::Version)>,
}

impl LogWatches {
    pub async fn has_newer_commit(&self, table: &DeltaTable) -> Result<bool> {
        let url = table.table_url();
        if url.scheme() != "file" {
            return has_newer_commit(table).await;
        }
        let Some(version) = table.version() else {
            return Ok(true);
        };
        let count = {
            let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
            if !logs.contains_key(url.as_str()) {
                let watch = url
                    .to_file_path()
                    .ok()
                    .and_then(|dir| super::watch::Watch::new(&dir.join("_delta_log")));
                logs.insert(
                    url.as_str().to_owned(),
                    LogWatch {
                        watch,
                        current: None,
                    },
                );
            }
            let log = logs.get(url.as_str());
            let count = log.and_then(|l| l.watch.as_ref()).and_then(|w| w.count());
            if count.is_some_and(|c| log.and_then(|l| l.current) == Some((c, version))) {
                return Ok(false);
            }
            count
        };
        // Looked after the count was taken: a commit made after the look counts beyond it.
        let newer = has_newer_commit(table).await?;
        if let (false, Some(c)) = (newer, count)
            && let Some(log) = self
                .logs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(url.as_str())
        {
            log.current = Some((c, version));
        }
        Ok(newer)
    }
}

/// Let deltalake open s3://, gs:// and az:// (abfss://) locations (once per process).
pub fn register_object_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        deltalake::aws::register_handlers(None);
        deltalake::gcp::register_handlers(None);
        deltalake::azure::register_handlers(None);
    });
}

/// A DataFusion provider (scan and INSERT) over the table's current snapshot. Columns whose
/// Delta metadata names a PostgreSQL type (uuid, json ...) carry it as Arrow field metadata.
pub async fn provider(table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
    let inner = raw_provider(table).await?;
    let total_files = table.snapshot().map(|s| s.log_data().num_files()).ok();
    let mut typed: HashMap<String, String> = HashMap::new();
    if let Ok(state) = table.snapshot() {
        for f in state.schema().fields() {
            if let Some(MetadataValue::String(t)) = f.metadata().get(PG_TYPE_KEY) {
                typed.insert(f.name().to_string(), t.clone());
            }
        }
    }
    let version = table
        .version()
        .and_then(|v| i64::try_from(v).ok())
        .map(|version| super::Pinned {
            location: table.table_url().to_string(),
            version,
        });
    let column_stats = Some(Arc::new(column_statistics(table, &inner.schema())));
    Ok(super::decorate(
        inner,
        super::Decoration {
            types: typed,
            total_files,
            version,
            column_stats,
            delta_append: super::delta_sink::DeltaAppend::of(table),
            ..super::Decoration::default()
        },
    ))
}

/// Table-wide statistics of the columns of `schema` (the provider's), from the per-file
/// statistics in the Delta log: the row count; null counts; min/max of the columns whose min/max
/// bound their values (numbers, dates, timestamps; not strings, which the log truncates); and the
/// in-memory size of string columns, estimated per file from the lengths of its min and max
/// values (plus an offset per value), as the Delta log records no column sizes.
///
/// deltalake 0.32 gives a scan column statistics only for the columns its predicate names;
/// without them DataFusion cannot estimate a join's size, and a plan of several joins keeps the
/// order the query was written in (TPC-H q8 and q18 on Delta took 1.3x to 1.6x their time on
/// the same rows as Parquet files). The sizes let DataFusion compare a join's two sides by
/// bytes, as it does for Parquet files (whose footers record them), not by rows: a build side of
/// 1.8 M rows of five columns is larger than one of 1.5 M rows of two (TPC-H q7). Computed once
/// per table version, with its provider. All values are inexact: they only guide planning, never
/// answer a query.
fn column_statistics(table: &DeltaTable, schema: &Schema) -> super::TableStats {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
    use datafusion::common::stats::Precision;

    let bounded = |t: &DataType| {
        t.is_numeric()
            || matches!(
                t,
                DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
            )
    };
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let scalar = |v: &serde_json::Value, t: &DataType| -> Precision<ScalarValue> {
        let text = match v {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s.clone(),
            _ => return Precision::Absent,
        };
        ScalarValue::try_from_string(text, t)
            .ok()
            .filter(|s| !s.is_null())
            .map_or(Precision::Absent, Precision::Inexact)
    };
    let mut out = super::TableStats::default();
    let Ok(snapshot) = table.snapshot() else {
        return out;
    };
    let mut first = true;
    for file in snapshot.log_data().iter() {
        let stats: serde_json::Value = file
            .stats()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let rows = stats["numRecords"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map_or(Precision::Absent, Precision::Inexact);
        for f in schema.fields() {
            let name = f.name();
            let t = f.data_type();
            let (min, max) = if bounded(t) {
                (
                    scalar(&stats["minValues"][name], t),
                    scalar(&stats["maxValues"][name], t),
                )
            } else {
                (Precision::Absent, Precision::Absent)
            };
            let nulls = stats["nullCount"][name]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map_or(Precision::Absent, Precision::Inexact);
            let bytes = match (
                text(t),
                stats["minValues"][name].as_str(),
                stats["maxValues"][name].as_str(),
            ) {
                (true, Some(lo), Some(hi)) => {
                    let width = (lo.len() + hi.len()) / 2 + std::mem::size_of::<i32>();
                    rows.multiply(&Precision::Inexact(width))
                }
                _ => Precision::Absent,
            };
            let entry = out.columns.entry(name.clone()).or_default();
            if first {
                entry.min_value = min;
                entry.max_value = max;
                entry.null_count = nulls;
                entry.byte_size = bytes;
            } else {
                entry.min_value = entry.min_value.min(&min);
                entry.max_value = entry.max_value.max(&max);
                entry.null_count = entry.null_count.add(&nulls);
                entry.byte_size = entry.byte_size.add(&bytes);
            }
        }
        out.rows = if first { rows } else { out.rows.add(&rows) };
        first = false;
    }
    out
}

/// deltalake's provider over the table's loaded version, hidden columns included, built with
/// [`scan_defaults`]: what every scan of a Delta table in Lakegate goes through.
pub async fn raw_provider(table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
    Ok(table.table_provider().with_session(scan_defaults()).await?)
}

/// The scan options Delta providers are built with: DataFusion's defaults, but with Parquet
/// filter pushdown on, the only way deltalake 0.32 hands a scan's filter to its Parquet source
/// (for row-group, page-index and bloom-filter pruning: a point lookup reads one page, not the
/// table). The row-by-row part of that pushdown is turned off again in the physical plan
/// ([`crate::engine::prune_only`]): with it the filter ran twice and TPC-H q6 took twice as
/// long; the filter above the scan gives the exact answer.
fn scan_defaults() -> Arc<datafusion::execution::SessionState> {
    static STATE: std::sync::OnceLock<Arc<datafusion::execution::SessionState>> =
        std::sync::OnceLock::new();
    STATE
        .get_or_init(|| {
            let config = datafusion::prelude::SessionConfig::new()
                .set_bool("datafusion.execution.parquet.pushdown_filters", true);
            Arc::new(
                datafusion::execution::SessionStateBuilder::new()
                    .with_config(config)
                    .build(),
            )
        })
        .clone()
}

/// One commit of a table's history, whatever its format.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// Delta version or Iceberg snapshot id.
    pub version: i64,
    pub committed_at_ms: Option<i64>,
    pub operation: Option<String>,
    pub parameters: Option<String>,
    pub metrics: Option<String>,
}

/// The table's commits, newest first: version, time, operation, its parameters and metrics.
pub async fn history(table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
    let latest = table.version().unwrap_or(0) as i64;
    let commits: Vec<_> = table.history(None).await?.collect();
    history_table(
        commits
            .iter()
            .enumerate()
            .map(|(i, c)| HistoryRow {
                version: latest - i as i64,
                committed_at_ms: c.timestamp,
                operation: c.operation.clone(),
                parameters: c
                    .operation_parameters
                    .as_ref()
                    .and_then(|p| serde_json::to_string(p).ok()),
                metrics: c.info.get("operationMetrics").map(|m| m.to_string()),
            })
            .collect(),
    )
}

/// `table_history()`'s rows as a table.
pub fn history_table(rows: Vec<HistoryRow>) -> Result<Arc<dyn TableProvider>> {
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    let versions: Int64Array = rows.iter().map(|r| Some(r.version)).collect();
    let times: TimestampMicrosecondArray = rows
        .iter()
        .map(|r| r.committed_at_ms.map(|ms| ms * 1000))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let ops: StringArray = rows.iter().map(|r| r.operation.clone()).collect();
    let params: StringArray = rows.iter().map(|r| r.parameters.clone()).collect();
    let metrics: StringArray = rows.iter().map(|r| r.metrics.clone()).collect();
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
