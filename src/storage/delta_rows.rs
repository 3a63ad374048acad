//! Row-level changes to a Delta table by row identity: the one write path of UPDATE, DELETE and
//! MERGE.
//!
//! A row-level change is planned above the table as a query (so the governed read path, with
//! its secure scans, decides which rows it touches and computes their new values from what the
//! writer may see), reading the table through [`RowIdTable`]: the table's columns plus each
//! row's identity, the file it is in ([`FILE`]) and its position there ([`ROW`]). The query's
//! result, sorted by identity, is a list of changes ([`apply`]): the rows to delete, the
//! columns to set (and their new values) of the rows to update, and the rows to insert. Each
//! file holding a changed row is read again here, raw, and written anew with the changes made
//! by position: values the writer was not shown (masked or filtered) are copied, never
//! computed. The files written replace the files read in one Delta commit; a commit that
//! removed one of them meanwhile makes it fail (40001).
//!
//! Why not deltalake's own UPDATE/DELETE/MERGE: they take their predicate and values as
//! expressions over the raw table, evaluated on every row, so a policy could only be added
//! to them as more predicates, and an expression would still meet the values the writer may
//! not see.
//!
//! Tables with deletion vectors or column mapping (written by other engines) are refused
//! (0A000): deltalake 0.32 writes neither, and reading them by position would need both.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, new_null_array,
};
use datafusion::arrow::compute::{cast, filter_record_batch, interleave};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use deltalake::DeltaTable;
use deltalake::delta_datafusion::DataFusionMixins as _;
use deltalake::kernel::Remove;
use deltalake::logstore::ObjectStoreRef;
use deltalake::operations::write::writer::DeltaWriter;
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result, SqlState};

mod staged;
pub use staged::{Staged, commit as commit_staged, write_rows};

/// The column of a row's file (its path in the table's log).
pub const FILE: &str = "__lakegate_file";
/// The column of a row's position in its file (0-based).
pub const ROW: &str = "__lakegate_row";
/// The column of a change's kind in a change list ([`Action`] codes).
pub const ACTION: &str = "__lakegate_action";
/// Prefix of a change list's column saying whether a change sets column `c`.
pub const SET_PREFIX: &str = "__lakegate_set_";
/// Prefix of a change list's column holding column `c`'s new value.
pub const NEW_PREFIX: &str = "__lakegate_new_";

/// What a change list's row does ([`ACTION`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Nothing = 0,
    Update = 1,
    Delete = 2,
    Insert = 3,
}

/// Which statement a change list comes from: its commit's operation, and how a row changed
/// twice is treated (UPDATE ... FROM and DELETE ... USING take the first, as PostgreSQL does;
/// MERGE refuses, 21000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    Update,
    Delete,
    Merge,
}

#[derive(Debug, Clone)]
struct DataFile {
    store_path: object_store::path::Path,
    size: u64,
    partition: HashMap<String, Option<String>>,
    remove: Remove,
}

/// One version of a Delta table, for reading its rows with their identity and rewriting the
/// files of the rows that change.
#[derive(Debug, Clone)]
pub struct Rows {
    /// The table's name (for messages).
    name: String,
    table: DeltaTable,
    store: ObjectStoreRef,
    /// Every column the files hold (Lakegate's hidden ones included), as stored.
    stored: SchemaRef,
    /// `stored` with every column nullable: the files' rows while their changes are made
    /// (NOT NULL is checked before they are written).
    writable: SchemaRef,
    /// The columns a reader sees (as the table's provider shows them, with their PostgreSQL
    /// types), by name a subset of `stored`.
    shown: SchemaRef,
    partition_columns: Vec<String>,
    files: Vec<(String, DataFile)>,
}

impl Rows {
    /// The rows of `table` (named `name`) at the version it has loaded; `shown`: the columns
    /// its provider shows.
    pub async fn open(name: &str, table: DeltaTable, shown: SchemaRef) -> Result<Arc<Rows>> {
        let snapshot = table.snapshot()?;
        let config = snapshot.metadata().configuration();
        if config
            .get("delta.columnMapping.mode")
            .is_some_and(|m| m != "none")
        {
            return Err(Error::unsupported(
                "UPDATE, DELETE and MERGE are not supported on Delta tables with column mapping \
                 (deltalake 0.32 cannot write them)",
            ));
        }
        let stored = super::delta::raw_provider(&table).await?.schema();
        let partition_columns = snapshot.metadata().partition_columns().to_vec();
        let mut files = Vec::new();
        for f in snapshot.log_data().iter() {
            if f.deletion_vector_descriptor().is_some() {
                return Err(Error::unsupported(
                    "UPDATE, DELETE and MERGE are not supported on Delta tables with deletion \
                     vectors (deltalake 0.32 cannot write them)",
                ));
            }
            let path = f.path().to_string();
            let store_path = object_store::path::Path::parse(&path)
                .unwrap_or_else(|_| object_store::path::Path::from(path.as_str()));
            let remove = f.remove_action(true);
            let partition = remove.partition_values.clone().unwrap_or_default();
            files.push((
                path,
                DataFile {
                    store_path,
                    size: u64::try_from(f.size()).unwrap_or(0),
                    partition,
                    remove,
                },
            ));
        }
        let store = table.log_store().object_store(None);
        let writable = Arc::new(Schema::new(
            stored
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        Ok(Arc::new(Rows {
            name: name.to_string(),
            table,
            store,
            stored,
            writable,
            shown,
            partition_columns,
            files,
        }))
    }

    /// The columns a reader sees.
    pub fn shown(&self) -> SchemaRef {
        self.shown.clone()
    }

    /// A provider of the rows with their identity, without the `hidden` columns (those the
    /// reader may not see at all).
    pub fn provider(self: &Arc<Self>, hidden: &[String]) -> Arc<dyn TableProvider> {
        let mut fields: Vec<Field> = self
            .shown
            .fields()
            .iter()
            .filter(|f| !hidden.contains(f.name()))
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(FILE, DataType::Utf8, false));
        fields.push(Field::new(ROW, DataType::Int64, false));
        Arc::new(RowIdTable {
            rows: self.clone(),
            schema: Arc::new(Schema::new(fields)),
        })
    }

    /// The file's rows: every stored column, then [`FILE`] and [`ROW`].
    async fn read(
        &self,
        path: &str,
        file: &DataFile,
        batch_size: usize,
    ) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
        use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
        use datafusion::parquet::arrow::async_reader::ParquetObjectReader;
        use datafusion::parquet::arrow::{ParquetRecordBatchStreamBuilder, RowNumber};
        let reader = ParquetObjectReader::new(self.store.clone(), file.store_path.clone())
            .with_file_size(file.size);
        let position =
            Arc::new(Field::new(ROW, DataType::Int64, false).with_extension_type(RowNumber));
        let options = ArrowReaderOptions::new().with_virtual_columns(vec![position])?;
        let stream = ParquetRecordBatchStreamBuilder::new_with_options(reader, options)
            .await?
            .with_batch_size(batch_size)
            .build()?;
        let stored = self.stored.clone();
        let partitions = partition_values(&stored, &self.partition_columns, &file.partition)?;
        let path: Arc<str> = Arc::from(path);
        let schema = with_identity(&stored);
        Ok(stream
            .map(move |b| {
                let b = b?;
                identified(&b, &schema, &partitions, &path)
            })
            .boxed())
    }

    fn file(&self, path: &str) -> Result<&DataFile> {
        self.files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, f)| f)
            .ok_or_else(|| {
                Error::internal(format!(
                    "a change names a file the table does not have: {path}"
                ))
            })
    }
}

/// The constant value of each partition column of a file (None: not a partition column).
fn partition_values(
    stored: &SchemaRef,
    partition_columns: &[String],
    values: &HashMap<String, Option<String>>,
) -> Result<Vec<Option<ScalarValue>>> {
    stored
        .fields()
        .iter()
        .map(|f| {
            if !partition_columns.contains(f.name()) {
                return Ok(None);
            }
            Ok(Some(match values.get(f.name()).cloned().flatten() {
                Some(text) => ScalarValue::try_from_string(text, f.data_type())?,
                None => ScalarValue::try_from(f.data_type())?,
            }))
        })
        .collect()
}

/// A batch read from a file, in the table's stored columns, with its file and positions
/// (`schema`: [`with_identity`] of the stored columns).
fn identified(
    batch: &RecordBatch,
    schema: &SchemaRef,
    partitions: &[Option<ScalarValue>],
    path: &Arc<str>,
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let positions = batch
        .column_by_name(ROW)
        .cloned()
        .ok_or_else(|| Error::internal("the row positions were not read"))?;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (f, part) in schema.fields().iter().zip(partitions) {
        columns.push(match (part, batch.column_by_name(f.name())) {
            (Some(v), _) => v.to_array_of_size(n)?,
            (None, Some(c)) if c.data_type() == f.data_type() => c.clone(),
            (None, Some(c)) => cast(c, f.data_type())?,
            (None, None) => new_null_array(f.data_type(), n),
        });
    }
    columns.push(Arc::new(StringArray::from(vec![path.as_ref(); n])));
    columns.push(positions);
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn with_identity(stored: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = stored
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(FILE, DataType::Utf8, false));
    fields.push(Field::new(ROW, DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

/// The table's rows with their identity, as a scan of one version (see the module doc).
#[derive(Debug)]
struct RowIdTable {
    rows: Arc<Rows>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for RowIdTable {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let partitions = state
            .config()
            .target_partitions()
            .min(self.rows.files.len())
            .max(1);
        Ok(Arc::new(RowIdScanExec {
            rows: self.rows.clone(),
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(schema.clone()),
                Partitioning::UnknownPartitioning(partitions),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
            schema,
            partitions,
            batch_size: state.config().batch_size(),
        }))
    }
}

#[derive(Debug)]
struct RowIdScanExec {
    rows: Arc<Rows>,
    /// The columns it yields (by name, from the file's).
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    partitions: usize,
    batch_size: usize,
}

impl DisplayAs for RowIdScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RowIdScanExec: files={}", self.rows.files.len())
    }
}

impl ExecutionPlan for RowIdScanExec {
    fn name(&self) -> &str {
        "RowIdScanExec"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }
    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let rows = self.rows.clone();
        let schema = self.schema.clone();
        let batch_size = self.batch_size;
        let mine: Vec<usize> = (0..rows.files.len())
            .filter(|i| i % self.partitions == partition)
            .collect();
        let out_schema = schema.clone();
        let stream = futures::stream::iter(mine)
            .then(move |i| {
                let rows = rows.clone();
                async move {
                    let (path, file) = &rows.files[i];
                    rows.read(path, file, batch_size).await
                }
            })
            .try_flatten()
            .map(move |b| {
                let b = b?;
                let columns = out_schema
                    .fields()
                    .iter()
                    .map(|f| match b.column_by_name(f.name()) {
                        Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
                        Some(c) => Ok(cast(c, f.data_type())?),
                        None => Err(Error::internal(format!("column {} was not read", f.name()))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok::<_, Error>(RecordBatch::try_new(out_schema.clone(), columns)?)
            })
            .map_err(DataFusionError::from);
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

fn twice() -> Error {
    Error::Data {
        sqlstate: SqlState::CardinalityViolation,
        message: "MERGE command cannot affect row a second time: ensure that not more than one \
                  source row matches any one target row"
            .into(),
    }
}

/// A change list batch's actions, files and positions.
fn identity(
    batch: &RecordBatch,
) -> Result<(
    datafusion::arrow::array::Int64Array,
    StringArray,
    datafusion::arrow::array::Int64Array,
)> {
    let column = |name: &str, t: &DataType| -> Result<ArrayRef> {
        let c = batch
            .column_by_name(name)
            .ok_or_else(|| Error::internal(format!("a change list without {name}")))?;
        Ok(cast(c, t)?)
    };
    Ok((
        column(ACTION, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone(),
        column(FILE, &DataType::Utf8)?.as_string::<i32>().clone(),
        column(ROW, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone(),
    ))
}

/// Carry out a change list (see the module doc) on the version `rows` read, in one commit.
/// `changes` is sorted by [`FILE`] then [`ROW`], inserts (no file) last; its columns are
/// [`FILE`], [`ROW`], [`ACTION`], and for each column `c` it may set, `__lakegate_set_c`
/// (Boolean; absent: every update sets it) and `__lakegate_new_c`. Returns the table after
/// the commit (unchanged when nothing changed) and the rows changed.
pub async fn apply(
    rows: &Rows,
    changes: SendableRecordBatchStream,
    statement: Statement,
    operation_text: &str,
) -> Result<(DeltaTable, usize)> {
    let (staged, changed) = stage(rows, changes, statement).await?;
    if staged.removes.is_empty() && staged.adds.is_empty() {
        return Ok((rows.table.clone(), changed));
    }
    let table = commit_staged(&rows.table, staged, statement, operation_text).await?;
    Ok((table, changed))
}

/// A change list's files (see [`apply`]), written and not committed: the files it removes
/// and those it adds, and the rows it changed.
pub async fn stage(
    rows: &Rows,
    mut changes: SendableRecordBatchStream,
    statement: Statement,
) -> Result<(Staged, usize)> {
    let mut writer = Writer::new(rows)?;
    let mut group: Option<Group> = None;
    let mut inserts: Vec<RecordBatch> = vec![];
    let mut seq = 0usize;
    while let Some(batch) = changes.next().await {
        let batch = batch?;
        seq += 1;
        let (action, _, _) = identity(&batch)?;
        let is = |k: ChangeKind| -> BooleanArray {
            action.iter().map(|a| Some(a == Some(k as i64))).collect()
        };
        let inserted = filter_record_batch(&batch, &is(ChangeKind::Insert))?;
        if inserted.num_rows() > 0 {
            inserts.push(inserted);
        }
        let changing: BooleanArray = action
            .iter()
            .map(|a| Some(matches!(a, Some(1) | Some(2))))
            .collect();
        let batch = filter_record_batch(&batch, &changing)?;
        let (_, files, positions) = identity(&batch)?;
        for i in 0..batch.num_rows() {
            let (Some(file), Some(position)) = (
                files.is_valid(i).then(|| files.value(i)),
                positions.is_valid(i).then(|| positions.value(i)),
            ) else {
                return Err(Error::internal("a change without its row's identity"));
            };
            if group.as_ref().is_none_or(|g| g.file != file) {
                if let Some(done) = group.take() {
                    writer.rewrite(done).await?;
                }
                group = Some(Group {
                    file: file.to_string(),
                    batches: vec![],
                    changes: vec![],
                    last_seq: 0,
                });
            }
            let Some(g) = group.as_mut() else {
                return Err(Error::internal("no change group"));
            };
            if g.last_seq != seq {
                g.batches.push(batch.clone());
                g.last_seq = seq;
            }
            if g.changes.last().is_some_and(|c| c.2 == position) {
                if statement == Statement::Merge {
                    return Err(twice());
                }
                continue;
            }
            let b = g.batches.len() - 1;
            g.changes.push((b, i, position));
        }
    }
    if let Some(done) = group.take() {
        writer.rewrite(done).await?;
    }
    for batch in &inserts {
        writer.insert(batch).await?;
    }
    writer.finish().await
}

/// The changes of one file: the change list's batches that hold them, and each change as
/// (batch, row in it, position in the file), by position.
struct Group {
    file: String,
    batches: Vec<RecordBatch>,
    changes: Vec<(usize, usize, i64)>,
    /// The change list batch last added to `batches` (its number in the list).
    last_seq: usize,
}

impl<'a> Writer<'a> {
    fn new(rows: &'a Rows) -> Result<Writer<'a>> {
        let snapshot = rows.table.snapshot()?.snapshot().clone();
        let config = super::delta::writer_config(&snapshot);
        let store = rows.table.log_store().object_store(None);
        Ok(Writer {
            rows,
            target: snapshot.input_schema(),
            inner: DeltaWriter::new(store, config),
            removed: vec![],
            changed: 0,
        })
    }

    /// The files removed and written, and the rows changed.
    async fn finish(self) -> Result<(Staged, usize)> {
        let adds = self.inner.close().await?;
        let staged = Staged {
            removes: self.removed,
            adds,
        };
        Ok((staged, self.changed))
    }
}

struct Writer<'a> {
    rows: &'a Rows,
    /// The schema the Delta writer takes.
    target: SchemaRef,
    inner: DeltaWriter,
    removed: Vec<Remove>,
    changed: usize,
}

impl Writer<'_> {
    /// Write `group`'s file anew with its changes, and remove it.
    async fn rewrite(&mut self, group: Group) -> Result<()> {
        let file = self.rows.file(&group.file)?;
        let stored = self.rows.stored.clone();
        let n = stored.fields().len();
        // The new values and set flags of the changes, one array per column, in change order.
        let mut new_values: Vec<Option<ArrayRef>> = vec![None; n];
        let mut sets: Vec<Option<BooleanArray>> = vec![None; n];
        let take: Vec<(usize, usize)> = group.changes.iter().map(|(b, i, _)| (*b, *i)).collect();
        for (c, f) in stored.fields().iter().enumerate() {
            let name = format!("{NEW_PREFIX}{}", f.name());
            let Some(first) = group.batches.first() else {
                continue;
            };
            if first.column_by_name(&name).is_none() {
                continue;
            }
            let columns = group
                .batches
                .iter()
                .map(|b| {
                    b.column_by_name(&name)
                        .map(|a| cast(a, f.data_type()))
                        .transpose()?
                        .ok_or_else(|| Error::internal("a change batch lacks a column"))
                })
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&dyn Array> = columns.iter().map(|a| a.as_ref()).collect();
            new_values[c] = Some(interleave(&refs, &take)?);
            let set_name = format!("{SET_PREFIX}{}", f.name());
            if first.column_by_name(&set_name).is_some() {
                let flags = group
                    .batches
                    .iter()
                    .map(|b| {
                        b.column_by_name(&set_name)
                            .map(|a| cast(a, &DataType::Boolean))
                            .transpose()?
                            .ok_or_else(|| Error::internal("a change batch lacks a flag"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let refs: Vec<&dyn Array> = flags.iter().map(|a| a.as_ref()).collect();
                sets[c] = Some(interleave(&refs, &take)?.as_boolean().clone());
            }
        }
        let kinds: Vec<i64> = {
            let actions = group
                .batches
                .iter()
                .map(|b| {
                    b.column_by_name(ACTION)
                        .map(|a| cast(a, &DataType::Int64))
                        .transpose()?
                        .ok_or_else(|| Error::internal("a change batch lacks its action"))
                })
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&dyn Array> = actions.iter().map(|a| a.as_ref()).collect();
            let all = interleave(&refs, &take)?;
            all.as_primitive::<Int64Type>().values().to_vec()
        };
        let mut next = 0usize;
        let mut stream = self.rows.read(&group.file, file, 8192).await?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let positions = batch
                .column_by_name(ROW)
                .ok_or_else(|| Error::internal("positions were not read"))?
                .as_primitive::<Int64Type>()
                .clone();
            let len = batch.num_rows();
            let mut keep = vec![true; len];
            // For each row of the batch, the change that applies to it.
            let mut change_of: Vec<Option<usize>> = vec![None; len];
            for (p, position) in positions.values().iter().enumerate() {
                while next < group.changes.len() && group.changes[next].2 < *position {
                    next += 1;
                }
                if next < group.changes.len() && group.changes[next].2 == *position {
                    change_of[p] = Some(next);
                    if kinds[next] == ChangeKind::Delete as i64 {
                        keep[p] = false;
                    }
                    self.changed += 1;
                    next += 1;
                }
            }
            let mut columns = Vec::with_capacity(n);
            for c in 0..n {
                let old = batch.column(c).clone();
                let Some(new) = &new_values[c] else {
                    columns.push(old);
                    continue;
                };
                let indices: Vec<(usize, usize)> = (0..len)
                    .map(|p| match change_of[p] {
                        Some(k)
                            if kinds[k] == ChangeKind::Update as i64
                                && sets[c].as_ref().is_none_or(|s| s.value(k)) =>
                        {
                            (1, k)
                        }
                        _ => (0, p),
                    })
                    .collect();
                columns.push(interleave(&[old.as_ref(), new.as_ref()], &indices)?);
            }
            let out = RecordBatch::try_new(self.rows.writable.clone(), columns)?;
            let out = filter_record_batch(&out, &BooleanArray::from(keep))?;
            self.write(out).await?;
        }
        if next < group.changes.len() {
            return Err(Error::internal(
                "a change names a row its file does not have",
            ));
        }
        self.removed.push(file.remove.clone());
        Ok(())
    }

    /// Write the rows a change list inserts.
    async fn insert(&mut self, batch: &RecordBatch) -> Result<()> {
        let stored = self.rows.stored.clone();
        let columns = stored
            .fields()
            .iter()
            .map(
                |f| match batch.column_by_name(&format!("{NEW_PREFIX}{}", f.name())) {
                    Some(c) => Ok(cast(c, f.data_type())?),
                    None => Ok(new_null_array(f.data_type(), batch.num_rows())),
                },
            )
            .collect::<Result<Vec<_>>>()?;
        let out = RecordBatch::try_new(self.rows.writable.clone(), columns)?;
        self.changed += out.num_rows();
        self.write(out).await
    }

    /// Check a new file's rows against the table's NOT NULL columns and write them.
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        for f in self.rows.shown.fields() {
            if f.is_nullable() {
                continue;
            }
            if let Some(c) = batch.column_by_name(f.name())
                && c.null_count() > 0
            {
                return Err(Error::Data {
                    sqlstate: SqlState::NotNullViolation,
                    message: format!(
                        "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                        f.name(),
                        self.rows.name
                    ),
                });
            }
        }
        let batch =
            deltalake::kernel::schema::cast_record_batch(&batch, self.target.clone(), false, true)?;
        self.inner.write(&batch).await?;
        Ok(())
    }
}
