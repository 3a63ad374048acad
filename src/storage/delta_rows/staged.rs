//! Row-level changes of a transaction block, written and not committed: the block's own reads
//! and later changes see the table as its files would be after them ([`Rows::with_staged`]),
//! and COMMIT carries all of one table's changes in one Delta commit ([`commit`]), checked
//! against what was committed since the block first changed the table (40001 when a
//! concurrent commit removed a file the block read). A block that does not commit leaves its
//! files unreferenced (VACUUM removes them).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::catalog::TableProvider;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Remove};
use deltalake::protocol::DeltaOperation;

use super::{DataFile, RowIdTable, Rows, Statement, Writer};
use crate::error::Result;

/// Files a block removed from and added to one table, not committed yet. A file the block
/// added and then removed again is in neither.
#[derive(Debug, Clone, Default)]
pub struct Staged {
    pub removes: Vec<Remove>,
    pub adds: Vec<Add>,
}

impl Staged {
    /// Then `next` (staged over the files this leaves).
    pub fn absorb(&mut self, next: Staged) {
        for r in next.removes {
            match self.adds.iter().position(|a| a.path == r.path) {
                Some(i) => {
                    self.adds.remove(i);
                }
                None => self.removes.push(r),
            }
        }
        self.adds.extend(next.adds);
    }

    pub fn is_empty(&self) -> bool {
        self.removes.is_empty() && self.adds.is_empty()
    }
}

impl Rows {
    /// The table these rows are of, at the version they were read from.
    pub fn table(&self) -> &DeltaTable {
        &self.table
    }

    /// These rows with `staged` made: its removed files left out, its added files in.
    pub fn with_staged(&self, staged: &Staged) -> Arc<Rows> {
        let mut rows = self.clone();
        rows.files
            .retain(|(path, _)| !staged.removes.iter().any(|r| &r.path == path));
        for add in &staged.adds {
            let store_path = object_store::path::Path::parse(&add.path)
                .unwrap_or_else(|_| object_store::path::Path::from(add.path.as_str()));
            rows.files.push((
                add.path.clone(),
                DataFile {
                    store_path,
                    size: u64::try_from(add.size).unwrap_or(0),
                    partition: add.partition_values.clone(),
                    remove: removal(add),
                },
            ));
        }
        Arc::new(rows)
    }

    /// Every file removed (TRUNCATE).
    pub fn emptied(&self) -> Staged {
        Staged {
            removes: self.files.iter().map(|(_, f)| f.remove.clone()).collect(),
            adds: vec![],
        }
    }

    /// A scan of the rows as a reader sees the table (its shown columns, no identity).
    pub fn reader(self: &Arc<Self>) -> Arc<dyn TableProvider> {
        let fields: Vec<Field> = self
            .shown
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        Arc::new(RowIdTable {
            rows: self.clone(),
            schema: Arc::new(Schema::new(fields)),
        })
    }
}

/// The remove action of a file written by the block.
fn removal(add: &Add) -> Remove {
    Remove {
        path: add.path.clone(),
        data_change: true,
        deletion_timestamp: Some(chrono::Utc::now().timestamp_millis()),
        extended_file_metadata: Some(true),
        partition_values: Some(add.partition_values.clone()),
        size: Some(add.size),
        tags: add.tags.clone(),
        deletion_vector: None,
        base_row_id: add.base_row_id,
        default_row_commit_version: add.default_row_commit_version,
    }
}

/// Write rows given in the columns a reader sees (an INSERT's) into new files of the table,
/// not committed (NOT NULL checked as for any written file).
pub async fn write_rows(rows: &Rows, batches: &[RecordBatch]) -> Result<Vec<Add>> {
    let mut writer = Writer::new(rows)?;
    for b in batches {
        let columns = rows
            .stored
            .fields()
            .iter()
            .map(|f| match b.column_by_name(f.name()) {
                Some(c) => Ok(cast(c, f.data_type())?),
                None => Ok(new_null_array(f.data_type(), b.num_rows())),
            })
            .collect::<Result<Vec<_>>>()?;
        writer
            .write(RecordBatch::try_new(rows.writable.clone(), columns)?)
            .await?;
    }
    Ok(writer.finish().await?.0.adds)
}

/// Commit `staged` to `table` (the version its changes were read from) in one commit: the
/// conflict check of a MERGE (it read the whole table) against what was committed since.
pub async fn commit(
    table: &DeltaTable,
    staged: Staged,
    statement: Statement,
    operation_text: &str,
) -> Result<DeltaTable> {
    let snapshot = table.snapshot()?.snapshot().clone();
    let actions: Vec<Action> = staged
        .removes
        .into_iter()
        .map(Action::Remove)
        .chain(staged.adds.into_iter().map(Action::Add))
        .collect();
    let operation = match statement {
        Statement::Update => DeltaOperation::Update { predicate: None },
        Statement::Delete => DeltaOperation::Delete { predicate: None },
        Statement::Merge => DeltaOperation::Merge {
            predicate: None,
            merge_predicate: None,
            matched_predicates: vec![],
            not_matched_predicates: vec![],
            not_matched_by_source_predicates: vec![],
        },
    };
    // A checkpoint every `delta.checkpointInterval` commits (as deltalake's own operations
    // write), so that loading the table reads a bounded tail of its log.
    CommitBuilder::from(crate::storage::commit_tag::tagged(
        CommitProperties::default(),
    ))
    .with_actions(actions)
    .with_app_metadata(HashMap::from([(
        "lakegate.operation".to_string(),
        serde_json::Value::String(operation_text.to_string()),
    )]))
    .build(Some(&snapshot), table.log_store(), operation)
    .await?;
    let mut table = table.clone();
    table.update_incremental(None).await?;
    Ok(table)
}
