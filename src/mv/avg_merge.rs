//! AVG kept as sum and count, for incremental refreshes: a view with `avg(x)` also stores the
//! sum and count of `x` in hidden columns (see `rewrite::with_avg_state`); a refresh adds the
//! new rows' sums and counts to them and computes the average again with this aggregate.
//!
//! It feeds the sums and counts to DataFusion's own AVG accumulator as partial states (what
//! DataFusion's final aggregation phase does), so the merged average is exactly what `avg(x)`
//! over all rows gives: the same decimal scaling and truncation, the same float division.
//! Written here because no crate offers "finish an AVG from its state".

use std::any::Any;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

/// `lakegate_avg_merge(sum, count)`: the average of all rows whose sums and counts are given,
/// as a value of `ret` (the view column's type: float8 or a decimal).
pub fn avg_merge(ret: DataType) -> Result<AggregateUDF> {
    if !supported(&ret) {
        return plan_err!("an average of type {ret} is not kept as sum and count");
    }
    Ok(AggregateUDF::from(AvgMerge {
        signature: Signature::any(2, Volatility::Immutable),
        ret,
    }))
}

/// Whether an average of this type can be kept as sum and count.
pub fn supported(ret: &DataType) -> bool {
    matches!(ret, DataType::Float64 | DataType::Decimal128(..))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct AvgMerge {
    signature: Signature,
    ret: DataType,
}

impl AvgMerge {
    /// The type of AVG's running sum for a stored sum of type `sum`.
    fn sum_type(&self, sum: &DataType) -> DataType {
        match (&self.ret, sum) {
            (DataType::Decimal128(..), DataType::Decimal128(_, scale)) => {
                DataType::Decimal128(38, *scale)
            }
            _ => DataType::Float64,
        }
    }
}

impl AggregateUDFImpl for AvgMerge {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        "lakegate_avg_merge"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.ret.clone())
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let Some(sum) = args.expr_fields.first() else {
            return plan_err!("lakegate_avg_merge takes a sum and a count");
        };
        let sum_type = self.sum_type(sum.data_type());
        let input: FieldRef = Field::new("sum", sum_type.clone(), true).into();
        let inner =
            datafusion::functions_aggregate::average::avg_udaf().accumulator(AccumulatorArgs {
                return_field: Field::new("avg", self.ret.clone(), true).into(),
                expr_fields: std::slice::from_ref(&input),
                exprs: &args.exprs[..1.min(args.exprs.len())],
                ..args
            })?;
        Ok(Box::new(Merging { inner, sum_type }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let sum = args
            .input_fields
            .first()
            .map(|f| self.sum_type(f.data_type()))
            .unwrap_or(DataType::Float64);
        Ok(vec![
            Field::new(format!("{}[count]", args.name), DataType::UInt64, true).into(),
            Field::new(format!("{}[sum]", args.name), sum, true).into(),
        ])
    }
}

/// AVG's accumulator, fed (sum, count) rows as its partial states.
#[derive(Debug)]
struct Merging {
    inner: Box<dyn Accumulator>,
    sum_type: DataType,
}

impl Accumulator for Merging {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [sum, count] = values else {
            return plan_err!("lakegate_avg_merge takes a sum and a count");
        };
        let count = cast(count, &DataType::UInt64)?;
        let sum = cast(sum, &self.sum_type)?;
        self.inner.merge_batch(&[count, sum])
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.inner.evaluate()
    }
    fn size(&self) -> usize {
        self.inner.size() + std::mem::size_of_val(self)
    }
}
