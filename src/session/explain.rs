//! EXPLAIN as a non-administrator: the plans are made (and for ANALYZE run) as DataFusion would,
//! then shown through `policy::explain`, which stops at every secure scan, in whichever format
//! and with whichever options were asked for.

use std::sync::Arc;

use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;

use super::Session;
use crate::error::Result;
use crate::policy::explain;

impl Session {
    /// The rows of an EXPLAIN or EXPLAIN ANALYZE plan (governed already) for this user.
    pub(super) async fn explain_for_user(
        &self,
        plan: LogicalPlan,
    ) -> Result<SendableRecordBatchStream> {
        let schema = plan.schema().inner().clone();
        let state = self.ctx.state();
        let rows = match plan {
            LogicalPlan::Explain(e) => {
                let optimized = state.optimize(&e.plan)?;
                let physical = state
                    .query_planner()
                    .create_physical_plan(&optimized, &state)
                    .await?;
                explain::describe(&optimized, physical, &e.explain_format, e.verbose)?
            }
            LogicalPlan::Analyze(a) => {
                let optimized = state.optimize(&a.input)?;
                let physical = state
                    .query_planner()
                    .create_physical_plan(&optimized, &state)
                    .await?;
                let task = Arc::new(datafusion::execution::TaskContext::from(&state));
                // Run to the end (its rows are not sent), then show what each node did.
                datafusion::physical_plan::collect(physical.clone(), task).await?;
                vec![(
                    "Plan with Metrics".to_string(),
                    explain::analyzed(physical.as_ref(), a.verbose),
                )]
            }
            other => {
                let stream = self
                    .engine
                    .planner
                    .executor()
                    .execute(&self.ctx, crate::engine::Logical::AsWritten(other))
                    .await?;
                return Ok(stream);
            }
        };
        let batch = explain::batch(schema.clone(), rows)?;
        Ok(Box::pin(MemoryStream::try_new(vec![batch], schema, None)?))
    }
}
