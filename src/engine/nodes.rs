//! Plan nodes and helpers the engine's rules and the layers above share:
//! - [`fence`]: nothing passes, and [`only_child`]: the one child a single-input node is given
//!   (both defined with the table formats, whose scan and write plans need them too:
//!   `storage::nodes`; re-exported here for the rules, the secure scan and the writes);
//! - [`stream_table`]: a computed result as a table a table format's write can scan.
//!
//! Upstream gap: DataFusion has no node that stops filter, projection and limit pushdown (its
//! optimizer merges and reorders freely), and no one-shot streaming table of a given stream.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};

pub use crate::storage::nodes::{fence, only_child};

/// A table whose one scan yields `stream`'s batches (a computed result handed to a table
/// format's write, which plans its own scan of its input), counting the rows that pass into
/// `rows`. A second scan yields nothing.
pub fn stream_table(
    stream: SendableRecordBatchStream,
    rows: Arc<std::sync::atomic::AtomicUsize>,
) -> DfResult<Arc<dyn datafusion::catalog::TableProvider>> {
    let schema = stream.schema();
    Ok(Arc::new(
        datafusion::catalog::streaming::StreamingTable::try_new(
            schema.clone(),
            vec![Arc::new(OneShot {
                schema,
                stream: std::sync::Mutex::new(Some(stream)),
                rows,
            })],
        )?,
    ))
}

struct OneShot {
    schema: datafusion::arrow::datatypes::SchemaRef,
    stream: std::sync::Mutex<Option<SendableRecordBatchStream>>,
    rows: Arc<std::sync::atomic::AtomicUsize>,
}

impl fmt::Debug for OneShot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneShot")
    }
}

impl datafusion::physical_plan::streaming::PartitionStream for OneShot {
    fn schema(&self) -> &datafusion::arrow::datatypes::SchemaRef {
        &self.schema
    }
    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        use futures::StreamExt;
        let taken = self.stream.lock().unwrap_or_else(|p| p.into_inner()).take();
        let rows = self.rows.clone();
        match taken {
            Some(s) => Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    self.schema.clone(),
                    s.inspect(move |b| {
                        if let Ok(b) = b {
                            rows.fetch_add(b.num_rows(), std::sync::atomic::Ordering::SeqCst);
                        }
                    }),
                ),
            ),
            None => Box::pin(datafusion::physical_plan::EmptyRecordBatchStream::new(
                self.schema.clone(),
            )),
        }
    }
}
