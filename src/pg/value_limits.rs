//! Functions that build a value of a size the caller picks (`repeat`, `lpad`, `rpad`) refuse,
//! as PostgreSQL does, one beyond its largest value (1 GB): 54000 `requested length too large`,
//! before allocating it. DataFusion's own would allocate whatever was asked
//! (`lpad('a', 2147483647)` grew the server by gigabytes). Each is DataFusion's function
//! behind a check of its arguments.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ReturnFieldArgs, ReversedUDAF,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

use crate::error::Error;

/// PostgreSQL's largest value (`MaxAllocSize`).
pub const MAX_VALUE_BYTES: i64 = 0x3fff_ffff;

/// The longest a character can be in UTF-8 (PostgreSQL counts lpad/rpad lengths so).
const MAX_CHAR_BYTES: i64 = 4;

/// `string_agg` with the check, in place of DataFusion's (same name): a group whose text grows
/// past 1 GB fails with 54000, as PostgreSQL's does, instead of growing the server.
pub fn aggregates(ctx: &datafusion::prelude::SessionContext) -> Vec<AggregateUDF> {
    ["string_agg"]
        .iter()
        .filter_map(|name| ctx.udaf(name).ok())
        .map(|inner| AggregateUDF::new_from_impl(BoundedAgg { inner }))
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct BoundedAgg {
    inner: Arc<AggregateUDF>,
}

impl AggregateUDFImpl for BoundedAgg {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(args)
    }
    fn state_fields(
        &self,
        args: StateFieldsArgs,
    ) -> DfResult<Vec<datafusion::arrow::datatypes::FieldRef>> {
        self.inner.state_fields(args)
    }
    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(BoundedAccumulator {
            inner: self.inner.accumulator(args)?,
        }))
    }
    fn reverse_expr(&self) -> ReversedUDAF {
        match self.inner.reverse_udf() {
            // The reversed function is DataFusion's own again: keep the check on it.
            ReversedUDAF::Reversed(r) => {
                ReversedUDAF::Reversed(Arc::new(AggregateUDF::new_from_impl(BoundedAgg {
                    inner: r,
                })))
            }
            other => other,
        }
    }
    fn coerce_types(&self, args: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.inner().coerce_types(args)
    }
    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }
}

#[derive(Debug)]
struct BoundedAccumulator {
    inner: Box<dyn Accumulator>,
}

impl BoundedAccumulator {
    fn checked(&self) -> DfResult<()> {
        if self.inner.size() as i64 > MAX_VALUE_BYTES {
            return Err(Error::ProgramLimit(
                "out of memory: string_agg's result would be larger than 1 GB".into(),
            )
            .into());
        }
        Ok(())
    }
}

impl Accumulator for BoundedAccumulator {
    fn update_batch(&mut self, values: &[datafusion::arrow::array::ArrayRef]) -> DfResult<()> {
        self.inner.update_batch(values)?;
        self.checked()
    }
    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        self.inner.evaluate()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        self.inner.state()
    }
    fn merge_batch(&mut self, states: &[datafusion::arrow::array::ArrayRef]) -> DfResult<()> {
        self.inner.merge_batch(states)?;
        self.checked()
    }
    fn retract_batch(&mut self, values: &[datafusion::arrow::array::ArrayRef]) -> DfResult<()> {
        self.inner.retract_batch(values)
    }
    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
}

/// `repeat`, `lpad` and `rpad` with the check, in place of DataFusion's (same names).
pub fn functions(ctx: &datafusion::prelude::SessionContext) -> Vec<ScalarUDF> {
    ["repeat", "lpad", "rpad"]
        .iter()
        .filter_map(|name| ctx.udf(name).ok())
        .map(|inner| {
            ScalarUDF::new_from_impl(Bounded {
                repeat: inner.name() == "repeat",
                inner,
            })
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    /// `repeat(text, n)`: the result is n times the text; else a pad to n characters.
    repeat: bool,
}

fn too_large() -> datafusion::error::DataFusionError {
    Error::ProgramLimit("requested length too large".into()).into()
}

/// The largest integer of an argument (scalar or column), if any.
fn largest(v: &ColumnarValue) -> Option<i64> {
    match v {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(n) => n,
            _ => None,
        },
        ColumnarValue::Array(a) => {
            let a = datafusion::arrow::compute::cast(a, &DataType::Int64).ok()?;
            datafusion::arrow::compute::max(a.as_primitive::<Int64Type>())
        }
    }
}

/// The longest text of an argument in bytes (scalar or column).
fn longest(v: &ColumnarValue) -> i64 {
    let len = |s: &str| s.len() as i64;
    match v {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(s)))
        | ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some(s)))
        | ColumnarValue::Scalar(ScalarValue::Utf8View(Some(s))) => len(s),
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Utf8 => a.as_string::<i32>().iter().flatten().map(len).max(),
            DataType::LargeUtf8 => a.as_string::<i64>().iter().flatten().map(len).max(),
            DataType::Utf8View => a.as_string_view().iter().flatten().map(len).max(),
            _ => None,
        }
        .unwrap_or(0),
        _ => 0,
    }
}

impl ScalarUDFImpl for Bounded {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(args)
    }
    fn return_field_from_args(
        &self,
        args: ReturnFieldArgs,
    ) -> DfResult<datafusion::arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn coerce_types(&self, args: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(args)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if let Some(n) = args.args.get(1).and_then(largest) {
            let bytes = if self.repeat {
                n.saturating_mul(args.args.first().map(longest).unwrap_or(0))
            } else {
                n.saturating_mul(MAX_CHAR_BYTES)
            };
            if bytes > MAX_VALUE_BYTES {
                return Err(too_large());
            }
        }
        self.inner.invoke_with_args(args)
    }
}
