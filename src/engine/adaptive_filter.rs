//! A physical optimizer rule, run after DataFusion's own: a filter's conjuncts are evaluated
//! one after the other, each on the rows the ones before it kept, cheapest per row removed
//! first, in an order learnt from the rows filtered so far.
//!
//! DataFusion evaluates `a AND b AND c` as written: every conjunct on every row, except that
//! `AND` skips its right side's rows where its left side keeps under a fifth of them. The
//! written order is often the worst: TPC-H q19's filter on `lineitem` tests three quantity
//! ranges (keeping 60 % of the rows) on all 6 M rows before the ship mode (28 %) and ship
//! instruction (25 %). DuckDB reorders a filter's conjuncts by what they cost and keep as it
//! runs; [`AdaptiveAnd`] does the same: it times each conjunct and counts what it keeps, and
//! orders them by cost per row removed (`cost / (1 - kept share)`, the order that minimises
//! the expected cost of independent filters).
//!
//! Only conjuncts that cannot fail (comparisons, IN lists, LIKE, IS NULL, NOT, AND/OR of those,
//! on columns and constants) move; the others (arithmetic, casts, functions: one could divide
//! by zero on a row an earlier conjunct removes) keep their written order after them, so a
//! conjunct that can fail sees no row the written order would not have given it.
//!
//! The result is the filter's mask (no nulls: a row is kept only where every conjunct is
//! true, as a FilterExec keeps it), so the expression only replaces a FilterExec's predicate.
//!
//! Upstream gap (DataFusion 53): `FilterExec` evaluates a predicate's conjuncts in the order
//! written, each on every row; it has no adaptive or selectivity-ordered conjunct evaluation. Drop
//! this rule when it does.

use std::any::Any;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, BooleanBufferBuilder, RecordBatch, UInt32Array,
};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::{filter, filter_record_batch, prep_null_mask_filter};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::expressions::{
    BinaryExpr, Column, DynamicFilterPhysicalExpr, InListExpr, IsNotNullExpr, IsNullExpr, LikeExpr,
    Literal, NotExpr,
};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{PhysicalExpr, split_conjunction};
use datafusion::physical_expr_common::physical_expr::snapshot_generation;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};

#[derive(Debug, Default)]
pub struct AdaptiveFilters;

impl PhysicalOptimizerRule for AdaptiveFilters {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(exec) = node.as_any().downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            let conjuncts: Vec<_> = split_conjunction(exec.predicate())
                .into_iter()
                .cloned()
                .collect();
            let movable = conjuncts.iter().filter(|c| cannot_fail(c)).count();
            if conjuncts.len() < 2 || movable == 0 {
                return Ok(Transformed::no(node));
            }
            let predicate = Arc::new(AdaptiveAnd::new(conjuncts)?);
            let exec = FilterExecBuilder::from(exec)
                .with_predicate(predicate)
                .build()?;
            Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "lakegate_adaptive_filters"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether evaluating `expr` can raise an error on some row.
fn cannot_fail(expr: &Arc<dyn PhysicalExpr>) -> bool {
    let mut safe = true;
    // The closure never fails; an error here could only come from the traversal itself.
    let walked = expr.apply(|e| {
        let any = e.as_any();
        let ok = any.is::<Column>()
            || any.is::<Literal>()
            || any.is::<InListExpr>()
            || any.is::<LikeExpr>()
            || any.is::<IsNullExpr>()
            || any.is::<IsNotNullExpr>()
            || any.is::<NotExpr>()
            || any.downcast_ref::<BinaryExpr>().is_some_and(|b| {
                matches!(
                    b.op(),
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::Lt
                        | Operator::LtEq
                        | Operator::Gt
                        | Operator::GtEq
                        | Operator::And
                        | Operator::Or
                        | Operator::IsDistinctFrom
                        | Operator::IsNotDistinctFrom
                )
            });
        if ok {
            Ok(TreeNodeRecursion::Continue)
        } else {
            safe = false;
            Ok(TreeNodeRecursion::Stop)
        }
    });
    safe && walked.is_ok()
}

/// Rows of observations past which a conjunct's are halved.
const DECAY_ROWS: u64 = 1 << 22;
/// Rows an optional conjunct filters before judging whether it is worth its cost.
pub const SAMPLE_ROWS: u64 = 65_536;
/// Share of rows kept (in percent) above which an optional conjunct is no longer applied.
pub const KEEP_LIMIT: u64 = 80;

/// What one conjunct cost and kept so far, over all partitions.
#[derive(Debug, Clone, Copy, Default)]
struct Observed {
    rows: u64,
    kept: u64,
    nanos: u64,
    /// For an optional conjunct: the generation of its expression these counts are for (a
    /// join's dynamic filter changes as its build side completes).
    generation: Option<u64>,
}

impl Observed {
    /// Nanoseconds spent per row removed; conjuncts not yet seen rank first (0), so each is
    /// measured once.
    fn rank(&self) -> f64 {
        if self.rows == 0 {
            return 0.0;
        }
        let removed = (self.rows - self.kept) as f64 / self.rows as f64;
        let per_row = self.nanos as f64 / self.rows as f64;
        per_row / removed.max(1e-6)
    }

    /// Whether an optional conjunct kept so many of the rows it saw that it is not worth
    /// applying.
    fn off(&self) -> bool {
        self.rows >= SAMPLE_ROWS && self.kept * 100 > self.rows * KEEP_LIMIT
    }
}

/// A conjunct's expression as applied to a batch, and its generation (optional conjuncts).
type Applied = (Arc<dyn PhysicalExpr>, Option<u64>);

/// How a conjunct may be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Cannot fail: evaluated in the learnt order.
    Movable,
    /// Could fail on some row (arithmetic, casts, functions): after the movable ones, in the
    /// written order.
    Fixed,
    /// Conservative (a row it removes could not be in the answer anyway: a join's dynamic
    /// filter), so it may also be left out: while it is `true` (its join's build side is not
    /// complete) or once it keeps more than [`KEEP_LIMIT`] percent of [`SAMPLE_ROWS`] rows,
    /// until its expression changes. Ordered like the movable ones.
    Optional,
}

/// A conjunction evaluated one conjunct after the other, each on the rows the ones before it
/// kept, in an order learnt from the rows so far (see the module's doc). The one mechanism of
/// a filter's predicate ([`AdaptiveFilters`]) and of a scan's dynamic filters
/// ([`super::dynamic_filter::DynamicFilterExec`]).
#[derive(Debug)]
pub struct AdaptiveAnd {
    /// The conjuncts in their written order, and the role of each.
    conjuncts: Vec<Arc<dyn PhysicalExpr>>,
    roles: Vec<Role>,
    /// The input columns the conjuncts read, and the conjuncts on just those columns (the
    /// rows a conjunct removes are removed from them only).
    columns: Vec<usize>,
    local: Vec<Arc<dyn PhysicalExpr>>,
    observed: Mutex<Vec<Observed>>,
}

impl AdaptiveAnd {
    /// A filter's predicate: conjuncts that cannot fail are reordered, the others keep their
    /// written order after them.
    fn new(conjuncts: Vec<Arc<dyn PhysicalExpr>>) -> Result<Self> {
        let roles = conjuncts
            .iter()
            .map(|c| {
                if cannot_fail(c) {
                    Role::Movable
                } else {
                    Role::Fixed
                }
            })
            .collect();
        Self::with_roles(conjuncts, roles)
    }

    /// Conservative filters, each applied only while it is worth it (see [`Role::Optional`]).
    pub fn optional(conjuncts: Vec<Arc<dyn PhysicalExpr>>) -> Result<Self> {
        let roles = vec![Role::Optional; conjuncts.len()];
        Self::with_roles(conjuncts, roles)
    }

    fn with_roles(conjuncts: Vec<Arc<dyn PhysicalExpr>>, roles: Vec<Role>) -> Result<Self> {
        let mut columns: Vec<usize> = conjuncts
            .iter()
            .flat_map(collect_columns)
            .map(|c| c.index())
            .collect();
        columns.sort_unstable();
        columns.dedup();
        let local = conjuncts
            .iter()
            .map(|c| {
                Arc::clone(c)
                    .transform(|e| match e.as_any().downcast_ref::<Column>() {
                        Some(col) => {
                            let index = columns.binary_search(&col.index()).map_err(|_| {
                                DataFusionError::Internal(format!("column {col} not collected"))
                            })?;
                            Ok(Transformed::yes(
                                Arc::new(Column::new(col.name(), index)) as Arc<dyn PhysicalExpr>
                            ))
                        }
                        None => Ok(Transformed::no(e)),
                    })
                    .map(|t| t.data)
            })
            .collect::<Result<_>>()?;
        let observed = Mutex::new(vec![Observed::default(); conjuncts.len()]);
        Ok(Self {
            conjuncts,
            roles,
            columns,
            local,
            observed,
        })
    }

    /// Whether optional conjunct `i` is left out now, for keeping too many rows.
    #[cfg(test)]
    pub(crate) fn left_out(&self, i: usize) -> bool {
        self.observed()[i].off()
    }

    fn observed(&self) -> std::sync::MutexGuard<'_, Vec<Observed>> {
        match self.observed.lock() {
            Ok(o) => o,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The order to evaluate the conjuncts in: the movable and optional ones by rank, then
    /// the fixed ones as written.
    fn order(&self) -> Vec<usize> {
        let observed = self.observed().clone();
        let (mut order, fixed): (Vec<usize>, Vec<usize>) =
            (0..self.conjuncts.len()).partition(|i| self.roles[*i] != Role::Fixed);
        order.sort_by(|a, b| observed[*a].rank().total_cmp(&observed[*b].rank()));
        order.extend(fixed);
        order
    }

    fn record(&self, seen: &[(usize, Observed)]) {
        let mut observed = self.observed();
        for (i, o) in seen {
            let total = &mut observed[*i];
            if total.generation != o.generation {
                *total = *o;
                continue;
            }
            total.rows += o.rows;
            total.kept += o.kept;
            total.nanos += o.nanos;
            // Recent rows weigh more: a table sorted on one column changes what a
            // conjunct on it keeps as the scan goes on.
            if total.rows > DECAY_ROWS {
                (total.rows, total.kept, total.nanos) =
                    (total.rows / 2, total.kept / 2, total.nanos / 2);
            }
        }
    }

    /// The expression to apply for conjunct `i` now, with the generation it is at; None when
    /// an optional conjunct is to be left out.
    fn applied(&self, i: usize) -> Result<Option<Applied>> {
        let local = &self.local[i];
        if self.roles[i] != Role::Optional {
            return Ok(Some((Arc::clone(local), None)));
        }
        let generation = snapshot_generation(local);
        let seen = self.observed()[i];
        if seen.generation == Some(generation) && seen.off() {
            return Ok(None);
        }
        let current = match local.as_any().downcast_ref::<DynamicFilterPhysicalExpr>() {
            Some(dynamic) => dynamic.current()?,
            None => Arc::clone(local),
        };
        let always = current
            .as_any()
            .downcast_ref::<Literal>()
            .is_some_and(|l| l.value() == &ScalarValue::Boolean(Some(true)));
        Ok((!always).then_some((current, Some(generation))))
    }

    /// The rows of `batch` every conjunct keeps (a mask without nulls); None when that is
    /// all of them.
    pub fn mask(&self, batch: &RecordBatch) -> Result<Option<BooleanArray>> {
        if self.conjuncts.is_empty() {
            return Ok(None);
        }
        let rows = batch.num_rows();
        let mut current = batch.project(&self.columns)?;
        // Positions in `batch` of the rows of `current`; None while it is all of them.
        let mut positions: Option<UInt32Array> = None;
        let mut seen = Vec::with_capacity(self.conjuncts.len());
        for i in self.order() {
            if current.num_rows() == 0 {
                break;
            }
            let Some((expr, generation)) = self.applied(i)? else {
                continue;
            };
            let start = Instant::now();
            let values = expr.evaluate(&current)?.into_array(current.num_rows())?;
            let Some(mask) = values.as_boolean_opt() else {
                return Err(DataFusionError::Internal(format!(
                    "filter conjunct {} is not boolean",
                    self.conjuncts[i]
                )));
            };
            let mask = if mask.null_count() > 0 {
                prep_null_mask_filter(mask)
            } else {
                mask.clone()
            };
            let kept = mask.true_count();
            if kept < current.num_rows() {
                current = filter_record_batch(&current, &mask)?;
                let all;
                let from = match &positions {
                    Some(p) => p,
                    None => {
                        all = UInt32Array::from_iter_values(0..rows as u32);
                        &all
                    }
                };
                positions = Some(filter(from, &mask)?.as_primitive().clone());
            }
            let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            seen.push((
                i,
                Observed {
                    rows: values.len() as u64,
                    kept: kept as u64,
                    nanos,
                    generation,
                },
            ));
        }
        self.record(&seen);
        Ok(positions.map(|p| {
            let mut bits = BooleanBufferBuilder::new(rows);
            bits.append_n(rows, false);
            for i in p.values() {
                bits.set_bit(*i as usize, true);
            }
            BooleanArray::from(bits.finish())
        }))
    }
}

impl PartialEq for AdaptiveAnd {
    fn eq(&self, other: &Self) -> bool {
        self.conjuncts == other.conjuncts
    }
}

impl Eq for AdaptiveAnd {}

impl Hash for AdaptiveAnd {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.conjuncts.hash(state);
    }
}

/// The conjuncts in the order they are evaluated in now: EXPLAIN ANALYZE shows the order the
/// rows taught.
impl fmt::Display for AdaptiveAnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, i) in self.order().into_iter().enumerate() {
            if n > 0 {
                write!(f, " AND ")?;
            }
            write!(f, "{}", self.conjuncts[i])?;
        }
        Ok(())
    }
}

impl PhysicalExpr for AdaptiveAnd {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn data_type(&self, _schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn nullable(&self, _schema: &Schema) -> Result<bool> {
        Ok(false)
    }
    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let mask = match self.mask(batch)? {
            Some(mask) => mask,
            None => BooleanArray::from(BooleanBuffer::new_set(batch.num_rows())),
        };
        Ok(ColumnarValue::Array(Arc::new(mask)))
    }
    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        self.conjuncts.iter().collect()
    }
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        // A role per conjunct: a different number of children cannot be given roles.
        if children.len() != self.roles.len() {
            return Err(DataFusionError::Internal(format!(
                "AdaptiveAnd of {} conjuncts given {} children",
                self.roles.len(),
                children.len()
            )));
        }
        Ok(Arc::new(Self::with_roles(children, self.roles.clone())?))
    }
    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.conjuncts.iter().enumerate() {
            if i > 0 {
                write!(f, " AND ")?;
            }
            c.fmt_sql(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::lit;

    fn col(name: &str, i: usize) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new(name, i))
    }

    fn cmp(
        l: Arc<dyn PhysicalExpr>,
        op: Operator,
        r: Arc<dyn PhysicalExpr>,
    ) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(l, op, r))
    }

    #[test]
    fn the_mask_is_the_conjunctions_and_the_selective_conjunct_goes_first() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, false),
        ]));
        let a = Int64Array::from_iter((0..10_000i64).map(|i| (i % 13 != 0).then_some(i)));
        let b = Int64Array::from_iter_values((0..10_000i64).map(|i| i % 100));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(a), Arc::new(b)]).unwrap();
        // Written order: keeps 90 % (b < 90), then 5 % (a % 20 = 0, arithmetic: stays last),
        // then 10 % (b >= 90).
        let keeps_most = cmp(col("b", 1), Operator::Lt, lit(90i64));
        let arithmetic = cmp(
            cmp(col("a", 0), Operator::Modulo, lit(20i64)),
            Operator::Eq,
            lit(0i64),
        );
        let keeps_few = cmp(col("b", 1), Operator::GtEq, lit(80i64));
        let conjuncts = vec![keeps_most, arithmetic, keeps_few];
        let and = AdaptiveAnd::new(conjuncts.clone()).unwrap();
        assert_eq!(and.roles, [Role::Movable, Role::Fixed, Role::Movable]);
        let plain = conjuncts
            .into_iter()
            .reduce(|l, r| cmp(l, Operator::And, r))
            .unwrap();
        let expected = plain.evaluate(&batch).unwrap().into_array(10_000).unwrap();
        let expected = prep_null_mask_filter(expected.as_boolean());
        for _ in 0..3 {
            let got = and.evaluate(&batch).unwrap().into_array(10_000).unwrap();
            assert_eq!(got.as_boolean(), &expected);
        }
        // At the same cost per row, b >= 80 (keeps 20 %) goes before b < 90 (keeps 90 %);
        // the arithmetic is last whatever it keeps. (Set, not timed: a test must not depend
        // on how fast this machine evaluates each.)
        let seen = |kept| Observed {
            rows: 1000,
            kept,
            nanos: 5000,
            generation: None,
        };
        // Written order: b < 90, the arithmetic, b >= 80.
        *and.observed.lock().unwrap() = vec![seen(900), seen(0), seen(200)];
        assert_eq!(and.order(), vec![2, 0, 1]);
        *and.observed.lock().unwrap() = vec![seen(100), seen(0), seen(200)];
        assert_eq!(and.order(), vec![0, 2, 1]);
    }
}
