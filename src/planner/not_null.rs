//! NOT NULL with PostgreSQL's words: the source of an INSERT passes each NOT NULL column
//! through a check that fails the statement with 23502 `null value in column "c" of relation
//! "t" violates not-null constraint` before anything is written. (DataFusion's own check names
//! the VALUES column, `column1`, and a column left out of the column list reached the table
//! format's writer as an internal error.) `varchar(n)` and `char(n)` columns refuse longer
//! values with 22001 `value too long for type character varying(n)`. The source's columns also take the target's
//! nullability, which iceberg-datafusion compares strictly (`SELECT 'x'` is never NULL, but
//! goes into a nullable column).

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, Result as DfResult};
use datafusion::logical_expr::dml::WriteOp;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::error::{Error, Result, SqlState};

/// Wrap the source of an INSERT so that NOT NULL columns are checked; other plans unchanged.
pub fn enforce(plan: LogicalPlan) -> Result<LogicalPlan> {
    let LogicalPlan::Dml(dml) = &plan else {
        return Ok(plan);
    };
    if !matches!(dml.op, WriteOp::Insert(_)) {
        return Ok(plan);
    }
    let target = dml.target.schema();
    let input_schema = dml.input.schema().clone();
    if input_schema.fields().len() != target.fields().len()
        || (0..target.fields().len()).all(|i| {
            target.field(i).is_nullable()
                && input_schema.field(i).is_nullable()
                && crate::pg::types::field_max_length(target.field(i)).is_none()
        })
    {
        return Ok(plan);
    }
    let relation = dml.table_name.table().to_string();
    let exprs: Vec<Expr> = (0..input_schema.fields().len())
        .map(|i| {
            let (q, f) = input_schema.qualified_field(i);
            let column = Expr::Column(Column::from((q, f)));
            let t = target.field(i);
            let max_length = crate::pg::types::field_max_length(t);
            if t.is_nullable() == f.is_nullable() && t.is_nullable() && max_length.is_none() {
                column
            } else {
                let udf = ScalarUDF::new_from_impl(NotNull {
                    column: t.name().clone(),
                    relation: relation.clone(),
                    check: !t.is_nullable(),
                    max_length,
                    signature: Signature::any(1, Volatility::Volatile),
                });
                udf.call(vec![column]).alias(f.name())
            }
        })
        .collect();
    crate::pg::pg_semantics::reproject_insert(dml, exprs)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct NotNull {
    column: String,
    relation: String,
    /// Fail on NULL (a NOT NULL target); otherwise only declare the column nullable.
    check: bool,
    /// `varchar(n)` / `char(n)`: fail on a longer value (22001), naming the type.
    max_length: Option<(usize, &'static str)>,
    signature: Signature,
}

impl ScalarUDFImpl for NotNull {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        "lakegate_not_null"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Ok(args.first().cloned().unwrap_or(DataType::Null))
    }
    /// Never NULL: it fails instead (so the column matches a NOT NULL target exactly).
    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<datafusion::arrow::datatypes::FieldRef> {
        let input = args.arg_fields.first().ok_or_else(|| {
            datafusion::error::DataFusionError::from(Error::internal(
                "not-null check without input",
            ))
        })?;
        Ok(Arc::new(
            input
                .as_ref()
                .clone()
                .with_name(self.name())
                .with_nullable(!self.check),
        ))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let value = args.args.into_iter().next().ok_or_else(|| {
            datafusion::error::DataFusionError::from(Error::internal(
                "not-null check without input",
            ))
        })?;
        let has_null = match &value {
            ColumnarValue::Array(a) => a.null_count() > 0,
            ColumnarValue::Scalar(s) => s.is_null(),
        };
        if let Some((n, type_name)) = self.max_length
            && too_long(&value, n)
        {
            return Err(Error::data(
                SqlState::StringDataRightTruncation,
                format!("value too long for type {type_name}({n})"),
            )
            .into());
        }
        if has_null && self.check {
            return Err(Error::NotNull(format!(
                "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                self.column, self.relation
            ))
            .into());
        }
        Ok(value)
    }
}

/// DataFusion refuses `INSERT ... VALUES (NULL, ...)` into a NOT NULL column while planning,
/// naming the VALUES column (`column1`); say it as PostgreSQL does, with the table's column.
pub async fn explain_values_error(
    ctx: &datafusion::prelude::SessionContext,
    stmt: &datafusion::sql::parser::Statement,
    e: Error,
) -> Error {
    use datafusion::sql::parser::Statement as S;
    use datafusion::sql::sqlparser::ast;
    let message = e.to_string().to_ascii_lowercase();
    let Some(k) = message
        .split("column 'column")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|_| message.contains("declared as non-nullable"))
    else {
        return e;
    };
    let S::Statement(s) = stmt else { return e };
    let ast::Statement::Insert(ins) = s.as_ref() else {
        return e;
    };
    let ast::TableObject::TableName(name) = &ins.table else {
        return e;
    };
    let relation = crate::pg::names::last_ident(name).unwrap_or_default();
    let column = match ins.columns.get(k.wrapping_sub(1)) {
        Some(c) => Some(crate::pg::names::ident(c)),
        None => match ctx.table_provider(name.to_string()).await {
            Ok(t) => t
                .schema()
                .fields()
                .get(k.wrapping_sub(1))
                .map(|f| f.name().clone()),
            Err(_) => None,
        },
    };
    match column {
        Some(c) => Error::NotNull(format!(
            "null value in column \"{c}\" of relation \"{relation}\" violates not-null constraint"
        )),
        None => e,
    }
}

/// Does any string of `value` have more than `n` characters?
fn too_long(value: &ColumnarValue, n: usize) -> bool {
    use datafusion::arrow::array::AsArray;
    use datafusion::common::ScalarValue;
    match value {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(s)))
        | ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some(s)))
        | ColumnarValue::Scalar(ScalarValue::Utf8View(Some(s))) => s.chars().count() > n,
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Utf8 => a
                .as_string::<i32>()
                .iter()
                .flatten()
                .any(|s| s.chars().count() > n),
            DataType::LargeUtf8 => a
                .as_string::<i64>()
                .iter()
                .flatten()
                .any(|s| s.chars().count() > n),
            DataType::Utf8View => a
                .as_string_view()
                .iter()
                .flatten()
                .any(|s| s.chars().count() > n),
            _ => false,
        },
        _ => false,
    }
}
