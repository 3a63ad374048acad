//! The commit of an INSERT into an Iceberg table, with the pipeline position in force
//! ([`super::commit_tag`]) in the new snapshot's summary.
//!
//! iceberg-datafusion 0.10 plans an INSERT as write nodes under its own `IcebergCommitExec`,
//! which commits a FastAppend with no snapshot properties and is private to that crate. The
//! provider ([`super::Decoration::iceberg_commit`]) keeps iceberg's write nodes and puts
//! [`PositionedCommit`] on top instead: the
//! same FastAppend of the same data files, plus a summary property `lakegate.txn.<app_id>` =
//! version. Positions are carried forward: every snapshot this commit makes copies the
//! `lakegate.txn.*` properties of its parent, so the current snapshot alone tells every
//! pipeline's position even after older snapshots are expired; [`version`] also walks back
//! through the parents for snapshots other engines made.

use std::any::Any;
use std::collections::HashMap;
use std::fmt::Formatter;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use iceberg::spec::{DataFile, deserialize_data_file_from_json};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, TableIdent};

use crate::error::Result;

/// The summary property prefix of a pipeline position.
const PREFIX: &str = "lakegate.txn.";
/// The column iceberg's write nodes put the written data files in (as JSON).
const DATA_FILES: &str = "data_files";
/// How many parents [`version`] looks through before it gives up (a depth guard).
const MAX_WALK: usize = 100_000;

/// The position committed under `app_id` in `table` (None: never).
pub fn version(table: &Table, app_id: &str) -> Option<i64> {
    let key = format!("{PREFIX}{app_id}");
    let meta = table.metadata();
    let mut next = meta.current_snapshot().map(|s| s.snapshot_id());
    for _ in 0..MAX_WALK {
        let snap = meta.snapshot_by_id(next?)?;
        if let Some(v) = snap.summary().additional_properties.get(&key) {
            return v.parse().ok();
        }
        next = snap.parent_snapshot_id();
    }
    None
}

/// The positions of the current snapshot, carried into the next one.
fn carried(table: &Table) -> HashMap<String, String> {
    table
        .metadata()
        .current_snapshot()
        .map(|s| {
            s.summary()
                .additional_properties
                .iter()
                .filter(|(k, _)| k.starts_with(PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Commit `files` (possibly none) as one FastAppend carrying the positions forward, with
/// `(app_id, version)` set when given, and `extra` summary properties.
pub async fn append(
    catalog: &dyn Catalog,
    table: &Table,
    files: Vec<DataFile>,
    tag: Option<(String, i64)>,
    extra: HashMap<String, String>,
) -> Result<Table> {
    let mut props = carried(table);
    props.extend(extra);
    if let Some((app, v)) = tag {
        props.insert(format!("{PREFIX}{app}"), v.to_string());
    }
    let tx = Transaction::new(table);
    let mut action = tx.fast_append().add_data_files(files);
    if !props.is_empty() {
        action = action.set_snapshot_properties(props);
    }
    Ok(action.apply(tx)?.commit(catalog).await?)
}

/// The Iceberg table an INSERT commits to, through [`PositionedCommit`].
#[derive(Debug)]
pub struct CommitTo {
    pub catalog: Arc<dyn Catalog>,
    pub ident: TableIdent,
}

impl CommitTo {
    /// iceberg-datafusion's INSERT plan with [`PositionedCommit`] in place of its own commit.
    pub fn replace(&self, plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
        if plan.name() != "IcebergCommitExec" || plan.children().len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "unexpected Iceberg write plan: {}",
                plan.name()
            )));
        }
        let written = Arc::clone(plan.children()[0]);
        Ok(Arc::new(PositionedCommit::new(
            self.catalog.clone(),
            self.ident.clone(),
            written,
            // Read while planning, inside the pipeline's scope (execution may be polled
            // elsewhere).
            super::commit_tag::pair(),
        )))
    }
}

/// Commits the data files its input wrote as one FastAppend; one row: the rows written.
#[derive(Debug)]
pub struct PositionedCommit {
    catalog: Arc<dyn Catalog>,
    ident: TableIdent,
    input: Arc<dyn ExecutionPlan>,
    tag: Option<(String, i64)>,
    properties: Arc<PlanProperties>,
}

impl PositionedCommit {
    fn new(
        catalog: Arc<dyn Catalog>,
        ident: TableIdent,
        input: Arc<dyn ExecutionPlan>,
        tag: Option<(String, i64)>,
    ) -> Self {
        let schema = Arc::new(ArrowSchema::new(vec![Field::new(
            "count",
            DataType::UInt64,
            false,
        )]));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        PositionedCommit {
            catalog,
            ident,
            input,
            tag,
            properties,
        }
    }
}

impl DisplayAs for PositionedCommit {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut Formatter) -> std::fmt::Result {
        write!(f, "IcebergCommitExec: table={}", self.ident)
    }
}

impl ExecutionPlan for PositionedCommit {
    fn name(&self) -> &str {
        "IcebergCommitExec"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn required_input_distribution(&self) -> Vec<datafusion::physical_plan::Distribution> {
        vec![datafusion::physical_plan::Distribution::SinglePartition]
    }
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children).map_err(|c| {
            DataFusionError::Internal(format!("a commit has one child, got {}", c.len()))
        })?;
        Ok(Arc::new(PositionedCommit::new(
            self.catalog.clone(),
            self.ident.clone(),
            input,
            self.tag.clone(),
        )))
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "a commit has one partition, asked for {partition}"
            )));
        }
        let (catalog, ident, tag) = (self.catalog.clone(), self.ident.clone(), self.tag.clone());
        let input = self.input.clone();
        let schema = self.properties.eq_properties.schema().clone();
        let stream = futures::stream::once(async move {
            let table = catalog
                .load_table(&ident)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let meta = table.metadata();
            let spec_id = meta.default_partition_spec_id();
            let partition_type = meta.default_partition_type().clone();
            let current = meta.current_schema().clone();
            let mut files: Vec<DataFile> = vec![];
            let mut rows = 0u64;
            let mut batches = input.execute(0, context)?;
            while let Some(batch) = batches.next().await {
                let batch = batch?;
                let json = batch
                    .column_by_name(DATA_FILES)
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                    .ok_or_else(|| {
                        DataFusionError::Internal("Iceberg's writer sent no data files".into())
                    })?;
                for f in json.iter().flatten() {
                    let file =
                        deserialize_data_file_from_json(f, spec_id, &partition_type, &current)
                            .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    rows += file.record_count();
                    files.push(file);
                }
            }
            // Nothing written and no position to keep: no snapshot (as iceberg's own commit).
            if !files.is_empty() || tag.is_some() {
                append(catalog.as_ref(), &table, files, tag, HashMap::new())
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
            }
            let count: ArrayRef = Arc::new(UInt64Array::from(vec![rows]));
            Ok(RecordBatch::try_new(schema, vec![count])?)
        })
        .boxed();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.properties.eq_properties.schema().clone(),
            stream,
        )))
    }
}
