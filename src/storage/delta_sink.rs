//! INSERT (and CREATE TABLE AS, which inserts) into a Delta table with Lakegate's Parquet
//! writer properties ([`super::delta::writer_properties`]).
//!
//! deltalake's own DataFusion sink (`DeltaDataSink`, behind its provider's `insert_into`)
//! writes with the Parquet writer's defaults and takes no writer properties: a CTAS of SF1
//! `lineitem` came out as a handful of 1,048,576-row row groups, which a scan cannot split over
//! the cores nor prune in fine steps (TPC-H q6: 328 ms on that table vs 96 ms on the same rows
//! in 122,880-row groups). This sink is that one with the properties passed through: the same
//! cast of the input to the table's schema, the same [`DeltaWriter`] (partitions, target file
//! size, statistics columns from the table's properties) and one commit per append, grouped
//! with concurrent appends to the table ([`super::group_commit`]); for
//! a table with a sort order, rows are sorted in runs ([`super::sort_order::Runs`]), each
//! written to files of its own.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use deltalake::DeltaTable;
use deltalake::delta_datafusion::DataFusionMixins as _;
use deltalake::kernel::EagerSnapshot;
use deltalake::logstore::LogStoreRef;
use deltalake::operations::write::writer::DeltaWriter;
use futures::StreamExt as _;

/// What an append to one Delta table version needs; `None` when the table has no loaded
/// snapshot (then deltalake's own sink is used).
#[derive(Debug, Clone)]
pub struct DeltaAppend {
    log_store: LogStoreRef,
    snapshot: EagerSnapshot,
}

impl DeltaAppend {
    /// The append target of `table` at the version it has loaded.
    pub fn of(table: &DeltaTable) -> Option<Arc<Self>> {
        let snapshot = table.snapshot().ok()?.snapshot().clone();
        Some(Arc::new(Self {
            log_store: table.log_store(),
            snapshot,
        }))
    }

    /// The physical plan that appends the rows of `input` to the table in one commit and
    /// answers the row count (a [`DataSinkExec`], as DataFusion's INSERT expects).
    pub fn plan(&self, input: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        let sink = AppendSink {
            schema: self.snapshot.read_schema(),
            target: self.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        };
        Arc::new(DataSinkExec::new(input, Arc::new(sink), None))
    }
}

#[derive(Debug)]
struct AppendSink {
    target: DeltaAppend,
    schema: SchemaRef,
    metrics: ExecutionPlanMetricsSet,
}

impl DisplayAs for AppendSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DeltaAppendSink")
    }
}

fn external(e: deltalake::DeltaTableError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait::async_trait]
impl DataSink for AppendSink {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let snapshot = &self.target.snapshot;
        let target_schema = snapshot.input_schema();
        let operation_id = uuid::Uuid::new_v4();
        let config = super::delta::writer_config(snapshot);
        let store = self.target.log_store.object_store(Some(operation_id));
        let keys = super::sort_order::of_configuration(snapshot.metadata().configuration());
        let mut runs = super::sort_order::Runs::new(&keys, &target_schema, context);
        let mut writer = DeltaWriter::new(store.clone(), config.clone());
        let mut adds = Vec::new();
        let rows_metric = MetricBuilder::new(&self.metrics).counter("total_rows", 0);
        let mut rows = 0u64;
        while let Some(batch) = data.next().await {
            let batch = deltalake::kernel::schema::cast_record_batch(
                &batch?,
                target_schema.clone(),
                false,
                true,
            )
            .map_err(external)?;
            rows += batch.num_rows() as u64;
            rows_metric.add(batch.num_rows());
            let Some(runs) = runs.as_mut() else {
                writer.write(&batch).await.map_err(external)?;
                continue;
            };
            // A sorted run is written to files of its own.
            if let Some(run) = runs.push(batch)? {
                let mut w = DeltaWriter::new(store.clone(), config.clone());
                w.write(&run).await.map_err(external)?;
                adds.extend(w.close().await.map_err(external)?);
            }
        }
        if let Some(run) = runs.as_mut().and_then(|r| r.finish().transpose()) {
            writer.write(&run?).await.map_err(external)?;
        }
        adds.extend(writer.close().await.map_err(external)?);
        // One commit with the appends of other statements finishing meanwhile.
        super::group_commit::append(self.target.log_store.clone(), snapshot, adds)
            .await
            .map_err(external)?;
        Ok(rows)
    }
}
