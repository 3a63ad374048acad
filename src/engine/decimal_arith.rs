//! A physical optimizer rule, run after DataFusion's own: decimal `+`, `-` and `*` computed
//! without a per-value overflow check where the batch's values cannot overflow.
//!
//! arrow computes every Decimal128 sum, difference and product with checked arithmetic through
//! a fallible closure per value (`try_binary`, `mul_checked`; a sum or difference also rescales
//! both sides with checked multiplications, by 1 when the scales agree), which keeps the loop
//! from being vectorised and calls the 128-bit overflow-checking multiply for each value: about
//! a third of TPC-H q1's CPU (`sum(l_extendedprice * (1 - l_discount) * (1 + l_tax))`). No
//! crate offers the unchecked kernels with the check hoisted, so [`DecimalArithExpr`] does it
//! here: per batch it takes the largest magnitude of each side (one pass over the values) and,
//! when the result cannot exceed `i128` for any pair of them, computes with wrapping arithmetic
//! in arrow's infallible `binary`/`unary` kernels; otherwise (or for anything but two
//! Decimal128 operands) it evaluates the original expression, which reports an overflow as
//! before. The result type and values are arrow's: same precision and scale, same integers.
//!
//! Upstream gap (arrow 57 / DataFusion 53): Decimal128 `+`, `-`, `*` always check every value for
//! overflow; there is no bound-based unchecked kernel. Drop this rule when arrow's decimal kernels
//! skip the check where precision allows.

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Decimal128Array, RecordBatch};
use datafusion::arrow::compute::kernels::arity::{binary, unary};
use datafusion::arrow::datatypes::{DECIMAL128_MAX_PRECISION, DataType, Decimal128Type, Schema};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::sort_properties::ExprProperties;
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::BinaryExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};

#[derive(Debug, Default)]
pub struct DecimalArithmetic;

impl PhysicalOptimizerRule for DecimalArithmetic {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(projection) = node.as_any().downcast_ref::<ProjectionExec>() {
                let schema = projection.input().schema();
                let mut changed = false;
                let mut exprs = Vec::with_capacity(projection.expr().len());
                for e in projection.expr() {
                    let rewritten = rewrite(&e.expr, &schema)?;
                    changed |= rewritten.transformed;
                    exprs.push(ProjectionExpr {
                        expr: rewritten.data,
                        alias: e.alias.clone(),
                    });
                }
                if !changed {
                    return Ok(Transformed::no(node));
                }
                let exec = ProjectionExec::try_new(exprs, Arc::clone(projection.input()))?;
                return Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>));
            }
            if let Some(aggregate) = node.as_any().downcast_ref::<AggregateExec>() {
                // Only these modes evaluate the arguments on their input rows.
                if !matches!(
                    aggregate.mode(),
                    AggregateMode::Partial
                        | AggregateMode::Single
                        | AggregateMode::SinglePartitioned
                ) {
                    return Ok(Transformed::no(node));
                }
                let schema = aggregate.input_schema();
                let mut changed = false;
                let mut functions = Vec::with_capacity(aggregate.aggr_expr().len());
                for f in aggregate.aggr_expr() {
                    let mut args = Vec::new();
                    for arg in f.expressions() {
                        let rewritten = rewrite(&arg, &schema)?;
                        changed |= rewritten.transformed;
                        args.push(rewritten.data);
                    }
                    let order = f.order_bys().iter().map(|o| Arc::clone(&o.expr)).collect();
                    match f.with_new_expressions(args, order) {
                        Some(new) => functions.push(Arc::new(new)),
                        None => return Ok(Transformed::no(node)),
                    }
                }
                if !changed {
                    return Ok(Transformed::no(node));
                }
                let exec = aggregate.with_new_aggr_exprs(functions);
                return Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>));
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "lakegate_decimal_arithmetic"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `expr` with its decimal `+`, `-`, `*` of two Decimal128 operands as [`DecimalArithExpr`]s.
fn rewrite(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Transformed<Arc<dyn PhysicalExpr>>> {
    Arc::clone(expr).transform_up(|e| {
        let Some(binary) = e.as_any().downcast_ref::<BinaryExpr>() else {
            return Ok(Transformed::no(e));
        };
        match DecimalArithExpr::try_new(binary, schema)? {
            Some(new) => Ok(Transformed::yes(Arc::new(new) as Arc<dyn PhysicalExpr>)),
            None => Ok(Transformed::no(e)),
        }
    })
}

/// A Decimal128 `+`, `-` or `*` computed without per-value checks when the batch's magnitudes
/// rule out overflow; see the module's doc.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecimalArithExpr {
    original: BinaryExpr,
    precision: u8,
    scale: i8,
    /// Factors bringing each side of a sum or difference to the result's scale.
    left_factor: i128,
    right_factor: i128,
}

impl DecimalArithExpr {
    /// The expression for `binary` if it is a `+`, `-` or `*` of two Decimal128 operands
    /// whose result type is the one arrow's kernels produce.
    fn try_new(binary: &BinaryExpr, schema: &Schema) -> Result<Option<Self>> {
        let op = *binary.op();
        if !matches!(op, Operator::Plus | Operator::Minus | Operator::Multiply) {
            return Ok(None);
        }
        let (
            DataType::Decimal128(p1, s1),
            DataType::Decimal128(p2, s2),
            DataType::Decimal128(precision, scale),
        ) = (
            binary.left().data_type(schema)?,
            binary.right().data_type(schema)?,
            binary.data_type(schema)?,
        )
        else {
            return Ok(None);
        };
        let max_precision = DECIMAL128_MAX_PRECISION;
        // arrow's result type (arrow-arith's `decimal_op`); any other and this is not its kernel.
        let (expected, left_factor, right_factor) = if op == Operator::Multiply {
            let p = p1.saturating_add(p2).saturating_add(1).min(max_precision);
            ((p, s1.saturating_add(s2)), 1, 1)
        } else {
            let s = s1.max(s2);
            let digits = (p1 as i8 - s1).max(p2 as i8 - s2);
            let p = (s.saturating_add(digits) as u8)
                .saturating_add(1)
                .min(max_precision);
            let factor = |from: i8| 10i128.checked_pow(u32::try_from(s - from).ok()?);
            let (Some(l), Some(r)) = (factor(s1), factor(s2)) else {
                return Ok(None);
            };
            ((p, s), l, r)
        };
        if expected != (precision, scale) {
            return Ok(None);
        }
        Ok(Some(Self {
            original: binary.clone(),
            precision,
            scale,
            left_factor,
            right_factor,
        }))
    }

    /// The result, or None when the operands are not two Decimal128 values or could overflow.
    fn compute(
        &self,
        left: &ColumnarValue,
        right: &ColumnarValue,
    ) -> Result<Option<ColumnarValue>> {
        let (Some(l), Some(r)) = (Operand::of(left), Operand::of(right)) else {
            return Ok(None);
        };
        if matches!((&l, &r), (Operand::Scalar(_), Operand::Scalar(_))) {
            return Ok(None);
        }
        let limit = i128::MAX as u128;
        let fits = |m: Option<u128>| m.is_some_and(|m| m <= limit);
        let op = *self.original.op();
        let array = if op == Operator::Multiply {
            if !fits(l.max_abs().checked_mul(r.max_abs())) {
                return Ok(None);
            }
            l.apply(&r, |a, b| a.wrapping_mul(b))?
        } else {
            let scaled = |o: &Operand, f: i128| o.max_abs().checked_mul(f.unsigned_abs());
            let (Some(a), Some(b)) = (scaled(&l, self.left_factor), scaled(&r, self.right_factor))
            else {
                return Ok(None);
            };
            if !fits(a.checked_add(b)) {
                return Ok(None);
            }
            let (l, r) = (l.scaled(self.left_factor), r.scaled(self.right_factor));
            if op == Operator::Plus {
                l.apply(&r, |a, b| a.wrapping_add(b))?
            } else {
                l.apply(&r, |a, b| a.wrapping_sub(b))?
            }
        };
        let array = array.with_precision_and_scale(self.precision, self.scale)?;
        Ok(Some(ColumnarValue::Array(Arc::new(array))))
    }
}

/// One side of the operation.
enum Operand {
    Array(Decimal128Array),
    Scalar(i128),
}

impl Operand {
    fn of(value: &ColumnarValue) -> Option<Self> {
        match value {
            ColumnarValue::Array(a) => a
                .as_primitive_opt::<Decimal128Type>()
                .map(|a| Self::Array(a.clone())),
            ColumnarValue::Scalar(ScalarValue::Decimal128(Some(v), _, _)) => Some(Self::Scalar(*v)),
            ColumnarValue::Scalar(_) => None,
        }
    }

    /// The largest magnitude among the values (null slots included: whatever they hold only
    /// makes the bound larger).
    fn max_abs(&self) -> u128 {
        match self {
            Self::Array(a) => a.values().iter().fold(0, |m, v| m.max(v.unsigned_abs())),
            Self::Scalar(v) => v.unsigned_abs(),
        }
    }

    /// The values times `factor` (checked against overflow by the caller).
    fn scaled(self, factor: i128) -> Self {
        match self {
            _ if factor == 1 => self,
            Self::Array(a) => Self::Array(unary(&a, |v| v.wrapping_mul(factor))),
            Self::Scalar(v) => Self::Scalar(v.wrapping_mul(factor)),
        }
    }

    /// `f` of each pair of values; nulls where either side is null.
    fn apply(&self, other: &Self, f: impl Fn(i128, i128) -> i128) -> Result<Decimal128Array> {
        Ok(match (self, other) {
            (Self::Array(a), Self::Array(b)) => binary(a, b, f)?,
            (Self::Array(a), Self::Scalar(b)) => unary(a, |v| f(v, *b)),
            (Self::Scalar(a), Self::Array(b)) => unary(b, |v| f(*a, v)),
            (Self::Scalar(_), Self::Scalar(_)) => {
                return Err(DataFusionError::Internal(
                    "two decimal scalars are computed by the original expression".into(),
                ));
            }
        })
    }
}

/// Named in plans, so EXPLAIN shows where the rule applies.
impl fmt::Display for DecimalArithExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bounded_decimal({})", self.original)
    }
}

impl PhysicalExpr for DecimalArithExpr {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn data_type(&self, _schema: &Schema) -> Result<DataType> {
        Ok(DataType::Decimal128(self.precision, self.scale))
    }
    fn nullable(&self, schema: &Schema) -> Result<bool> {
        self.original.nullable(schema)
    }
    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let left = self.original.left().evaluate(batch)?;
        let right = self.original.right().evaluate(batch)?;
        match self.compute(&left, &right)? {
            Some(result) => Ok(result),
            None => self.original.evaluate(batch),
        }
    }
    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![self.original.left(), self.original.right()]
    }
    /// New children may have other types, for which this expression's result type would be
    /// wrong: the original expression takes them.
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        Arc::new(self.original.clone()).with_new_children(children)
    }
    fn get_properties(&self, children: &[ExprProperties]) -> Result<ExprProperties> {
        self.original.get_properties(children)
    }
    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(")?;
        self.original.fmt_sql(f)?;
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Array;
    use datafusion::arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::{Column, Literal};

    fn batch(a: Vec<Option<i128>>, b: Vec<Option<i128>>) -> RecordBatch {
        let a = Decimal128Array::from(a)
            .with_precision_and_scale(15, 2)
            .unwrap();
        let b = Decimal128Array::from(b)
            .with_precision_and_scale(20, 4)
            .unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", a.data_type().clone(), true),
            Field::new("b", b.data_type().clone(), true),
        ]));
        RecordBatch::try_new(schema, vec![Arc::new(a), Arc::new(b)]).unwrap()
    }

    fn both(
        op: Operator,
        left: Arc<dyn PhysicalExpr>,
        right: Arc<dyn PhysicalExpr>,
        batch: &RecordBatch,
    ) -> (Result<ColumnarValue>, Result<ColumnarValue>) {
        let original = BinaryExpr::new(left, op, right);
        let fast = DecimalArithExpr::try_new(&original, &batch.schema())
            .unwrap()
            .expect("a decimal operation");
        (original.evaluate(batch), fast.evaluate(batch))
    }

    fn same(a: Result<ColumnarValue>, b: Result<ColumnarValue>, rows: usize) {
        let a = a.unwrap().into_array(rows).unwrap();
        let b = b.unwrap().into_array(rows).unwrap();
        assert_eq!(a.data_type(), b.data_type());
        assert_eq!(a.as_ref(), b.as_ref());
    }

    #[test]
    fn results_are_arrows_for_columns_and_constants_of_any_scale() {
        let a: Vec<Option<i128>> = (0..1000)
            .map(|i| (i % 7 != 0).then_some((i * 7_919 - 3_000_000) as i128))
            .collect();
        let b: Vec<Option<i128>> = (0..1000)
            .map(|i| (i % 11 != 0).then_some((i * 104_729 - 50_000_000) as i128))
            .collect();
        let batch = batch(a, b);
        let col = |name: &str, i| Arc::new(Column::new(name, i)) as Arc<dyn PhysicalExpr>;
        let constant = Arc::new(Literal::new(ScalarValue::Decimal128(Some(125), 5, 1)))
            as Arc<dyn PhysicalExpr>;
        for op in [Operator::Plus, Operator::Minus, Operator::Multiply] {
            for (l, r) in [
                (col("a", 0), col("b", 1)),
                (col("b", 1), col("a", 0)),
                (Arc::clone(&constant), col("a", 0)),
                (col("b", 1), Arc::clone(&constant)),
            ] {
                let (original, fast) = both(op, l, r, &batch);
                same(original, fast, batch.num_rows());
            }
        }
    }

    #[test]
    fn values_that_could_overflow_take_the_checked_path() {
        // 10^13 fits Decimal(15, 2)'s i128 and so does its square, but not its product with
        // i128's largest Decimal(20, 4)-typed value: the checked kernel decides (and errors).
        let batch = batch(vec![Some(10i128.pow(13))], vec![Some(i128::MAX / 2)]);
        let col = |name: &str, i| Arc::new(Column::new(name, i)) as Arc<dyn PhysicalExpr>;
        let (original, fast) = both(Operator::Multiply, col("a", 0), col("b", 1), &batch);
        assert!(original.is_err());
        assert_eq!(
            fast.unwrap_err().strip_backtrace(),
            original.unwrap_err().strip_backtrace()
        );
        let (original, fast) = both(Operator::Multiply, col("a", 0), col("a", 0), &batch);
        same(original, fast, 1);
        let (original, fast) = both(Operator::Plus, col("b", 1), col("b", 1), &batch);
        assert!(original.is_ok() && fast.is_ok());
        same(original, fast, 1);
    }
}
