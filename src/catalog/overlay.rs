//! What a transaction block's own statements read of the tables it wrote: the committed table
//! (or the uncommitted files its UPDATEs, DELETEs and MERGEs left) plus the rows its pending
//! INSERTs (and COPY FROMs) hold, or only those rows after a pending TRUNCATE. Nobody else sees them: the overlays are the session's, and its catalog provider
//! wraps a table's provider with them while the block holds writes to it.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;

/// A table's pending state in a block.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    /// A TRUNCATE is pending: the committed rows are not read.
    pub replaces: bool,
    /// What is read instead of the committed table (the files the block's row changes left,
    /// not committed), when it changed rows.
    pub base: Option<Arc<dyn TableProvider>>,
    /// Rows pending INSERTs hold, in order.
    pub batches: Vec<RecordBatch>,
}

/// A session's overlays by (schema, table); empty outside blocks.
pub type Overlays = Arc<RwLock<HashMap<(String, String), Overlay>>>;

/// The overlay of (schema, table), if the block wrote it.
pub(super) fn find(overlays: &Overlays, schema: &str, table: &str) -> Option<Overlay> {
    let map = overlays.read().unwrap_or_else(|p| p.into_inner());
    if map.is_empty() {
        return None;
    }
    map.get(&(schema.to_string(), table.to_string())).cloned()
}

/// The committed table with the block's pending rows.
#[derive(Debug)]
pub(super) struct OverlayTable {
    inner: Arc<dyn TableProvider>,
    overlay: Overlay,
}

impl OverlayTable {
    /// `inner` with `overlay`, its rows cast to the table's column types (as the commit casts
    /// them).
    pub(super) fn wrap(
        inner: Arc<dyn TableProvider>,
        overlay: Overlay,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let schema = inner.schema();
        let batches = overlay
            .batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| conform(b, &schema))
            .collect::<DfResult<Vec<_>>>()?;
        Ok(Arc::new(OverlayTable {
            inner,
            overlay: Overlay { batches, ..overlay },
        }))
    }
}

fn conform(b: &RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .zip(b.columns())
        .map(|(f, c)| cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[async_trait]
impl TableProvider for OverlayTable {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
    fn table_type(&self) -> datafusion::datasource::TableType {
        self.inner.table_type()
    }
    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let pending = MemorySourceConfig::try_new_exec(
            std::slice::from_ref(&self.overlay.batches),
            self.inner.schema(),
            projection.cloned(),
        )?;
        if self.overlay.replaces {
            return Ok(pending);
        }
        let committed = match &self.overlay.base {
            Some(base) => base.scan(state, projection, filters, limit).await?,
            None => self.inner.scan(state, projection, filters, limit).await?,
        };
        UnionExec::try_new(vec![committed, pending])
    }
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // The pending rows are not filtered by the scan: every filter is applied above it too.
        Ok(self
            .inner
            .supports_filters_pushdown(filters)?
            .into_iter()
            .map(|p| match p {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
                other => other,
            })
            .collect())
    }
}
