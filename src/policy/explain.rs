//! EXPLAIN for a principal bound by policies: every format (indent, tree, pgjson, graphviz) and
//! option (VERBOSE, ANALYZE) shows the plan above each secure scan and, for the scan itself,
//! only that it is there and the names of its policies. Nothing computed below the barrier is
//! shown: not the row filter or mask expressions, not the table scan's files or pruning, not
//! statistics (a column's minimum or maximum over all rows, hidden ones included) and not
//! metrics (rows read before the filter).
//!
//! This is done on the plans, not on their text: each `SecureScan` (logical) and
//! `SecureScanExec` (physical) is replaced, in a copy made for display only, by a leaf of the
//! same schema that knows nothing of its input, and the copy is displayed by DataFusion's own
//! formats. The plans that run are the real ones.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::format::ExplainFormat;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchemaRef, Statistics};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, displayable,
};

use super::secure::SecureScan;
use crate::error::{Error, Result};

/// The name of the physical barrier a secure scan becomes (`planner`'s extension planner).
pub const SECURE_SCAN_EXEC: &str = "SecureScanExec";

/// A copy of `plan` for display: each secure scan a leaf naming its policies.
pub fn logical_for_display(plan: &LogicalPlan) -> Result<LogicalPlan> {
    Ok(plan
        .clone()
        .transform_down_with_subqueries(|p| {
            if let LogicalPlan::Extension(e) = &p
                && let Some(s) = e.node.as_any().downcast_ref::<SecureScan>()
            {
                let leaf = Barrier {
                    schema: s.input.schema().clone(),
                    applied: s.applied.clone(),
                };
                return Ok(Transformed::new(
                    LogicalPlan::Extension(Extension {
                        node: Arc::new(leaf),
                    }),
                    true,
                    datafusion::common::tree_node::TreeNodeRecursion::Jump,
                ));
            }
            Ok(Transformed::no(p))
        })?
        .data)
}

/// A copy of `plan` for display: each `SecureScanExec` a leaf of its schema.
pub fn physical_for_display(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_down(|p| {
            if p.name() == SECURE_SCAN_EXEC {
                let leaf: Arc<dyn ExecutionPlan> = Arc::new(BarrierExec {
                    properties: p.properties().clone(),
                });
                return Ok(Transformed::new(
                    leaf,
                    true,
                    datafusion::common::tree_node::TreeNodeRecursion::Jump,
                ));
            }
            Ok(Transformed::no(p))
        })?
        .data)
}

/// EXPLAIN's rows (plan_type, plan) of an optimized logical plan and the physical plan made of
/// it, in `format`.
pub fn describe(
    logical: &LogicalPlan,
    physical: Arc<dyn ExecutionPlan>,
    format: &ExplainFormat,
    verbose: bool,
) -> Result<Vec<(String, String)>> {
    let logical = logical_for_display(logical)?;
    let physical = physical_for_display(physical)?;
    Ok(match format {
        ExplainFormat::Tree => vec![(
            "physical_plan".into(),
            displayable(physical.as_ref()).tree_render().to_string(),
        )],
        ExplainFormat::PostgresJSON => {
            vec![("logical_plan".into(), logical.display_pg_json().to_string())]
        }
        ExplainFormat::Graphviz => vec![(
            "logical_plan".into(),
            logical.display_graphviz().to_string(),
        )],
        ExplainFormat::Indent => {
            let mut rows = vec![
                ("logical_plan".into(), logical.display_indent().to_string()),
                (
                    "physical_plan".into(),
                    displayable(physical.as_ref()).indent(verbose).to_string(),
                ),
            ];
            if verbose {
                rows.push((
                    "physical_plan_with_stats".into(),
                    displayable(physical.as_ref())
                        .set_show_statistics(true)
                        .indent(verbose)
                        .to_string(),
                ));
                rows.push((
                    "physical_plan_with_schema".into(),
                    displayable(physical.as_ref())
                        .set_show_schema(true)
                        .indent(verbose)
                        .to_string(),
                ));
            }
            rows
        }
    })
}

/// EXPLAIN ANALYZE's text of a physical plan that ran: each node with its metrics, down to and
/// including each `SecureScanExec` (whose own rows are the rows its policies let through) and
/// nothing below it.
pub fn analyzed(plan: &dyn ExecutionPlan, verbose: bool) -> String {
    fn walk(plan: &dyn ExecutionPlan, depth: usize, verbose: bool, out: &mut String) {
        let line = if verbose {
            DisplayableExecutionPlan::with_full_metrics(plan)
                .one_line()
                .to_string()
        } else {
            DisplayableExecutionPlan::with_metrics(plan)
                .one_line()
                .to_string()
        };
        out.push_str(&" ".repeat(depth * 2));
        out.push_str(line.trim_start());
        if !line.ends_with('\n') {
            out.push('\n');
        }
        if plan.name() == SECURE_SCAN_EXEC {
            return;
        }
        for c in plan.children() {
            walk(c.as_ref(), depth + 1, verbose, out);
        }
    }
    let mut out = String::new();
    walk(plan, 0, verbose, &mut out);
    out
}

/// The rows (plan_type, plan) as EXPLAIN's result batch, in `schema` (two text columns).
pub fn batch(schema: SchemaRef, rows: Vec<(String, String)>) -> Result<RecordBatch> {
    let types: StringArray = rows.iter().map(|(t, _)| Some(t.as_str())).collect();
    let plans: StringArray = rows.iter().map(|(_, p)| Some(p.as_str())).collect();
    if schema.fields().len() != 2 {
        return Err(Error::internal("EXPLAIN answers two columns"));
    }
    Ok(RecordBatch::try_new(
        schema,
        vec![Arc::new(types), Arc::new(plans)],
    )?)
}

/// What a secure scan shows in a displayed logical plan: its policies, no input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Barrier {
    schema: DFSchemaRef,
    applied: Vec<String>,
}

impl PartialOrd for Barrier {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.applied.partial_cmp(&other.applied)
    }
}

impl UserDefinedLogicalNodeCore for Barrier {
    fn name(&self) -> &str {
        "SecureScan"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SecureScan: policies=[{}]", self.applied.join(", "))
    }
    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> datafusion::common::Result<Self> {
        Ok(self.clone())
    }
}

/// What a `SecureScanExec` shows in a displayed physical plan: no input, no statistics.
#[derive(Debug)]
struct BarrierExec {
    properties: Arc<PlanProperties>,
}

impl DisplayAs for BarrierExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SECURE_SCAN_EXEC}")
    }
}

impl ExecutionPlan for BarrierExec {
    fn name(&self) -> &str {
        SECURE_SCAN_EXEC
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
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }
    fn partition_statistics(
        &self,
        _partition: Option<usize>,
    ) -> datafusion::common::Result<Statistics> {
        Ok(Statistics::new_unknown(
            &self.properties.eq_properties.schema().clone(),
        ))
    }
    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> datafusion::common::Result<SendableRecordBatchStream> {
        Err(datafusion::error::DataFusionError::Internal(
            "a plan made for display does not run".into(),
        ))
    }
}
