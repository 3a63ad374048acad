//! The secure scan: every scan of a table that has row filters or column masks for the asking
//! principal becomes `SecureScan(Projection(masks) <- Filter(row filter) <- TableScan)`.
//! `SecureScan` is a plan node of its own that DataFusion does not push anything through:
//! user predicates, join keys and limits stay above it, so an error or a timing difference in a
//! user predicate can never be evaluated on a row the filter hides; below it, pruning uses only
//! the policy's own predicate. Masks keep each column's type and name, so everything above the
//! barrier (predicates, joins, grouping, ordering) sees masked values.

use crate::pg::functions::pg_function;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DFSchemaRef, ScalarValue};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, LogicalPlanBuilder, UserDefinedLogicalNodeCore,
};

use super::access::Names;
use crate::error::{Error, Result};

/// What governs one table for one principal: a row filter (already ANDed) and column masks.
#[derive(Debug, Clone, Default)]
pub struct TableRules {
    pub filter: Option<Expr>,
    /// column -> its masked value (an expression over the table's columns, of the column's type)
    pub masks: Vec<(String, Expr)>,
    /// Names of the policies applied, for EXPLAIN (never their bodies) and the audit record.
    pub applied: Vec<String>,
    /// Columns hidden altogether (also in `masks`, as NULL).
    pub denied: Vec<String>,
}

/// How a scan reads its table, for the rules of its secure scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The table as it is now.
    Current,
    /// An older version (time travel), whose columns may be named otherwise.
    Version,
}

/// The rules of one table (`schema.table`) for one scan: `(object, the scan's table schema,
/// how it reads)`; an error denies the whole statement.
pub type RulesFor<'a> = dyn Fn(&str, &DFSchemaRef, Reading) -> Result<Option<TableRules>> + 'a;

/// Rewrite every governed scan of `plan`; an error of `rules_for` denies the whole statement.
pub fn apply(plan: LogicalPlan, names: Names<'_>, rules_for: &RulesFor<'_>) -> Result<LogicalPlan> {
    let out = plan.transform_up_with_subqueries(|p| {
        let LogicalPlan::TableScan(scan) = &p else {
            return Ok(Transformed::no(p));
        };
        let Some(object) = names.scan(scan) else {
            return Ok(Transformed::no(p));
        };
        // This runs right after planning, before the optimizer narrows scans: the scan still has
        // every column, so filters and masks can read columns the query does not select.
        let reading = if super::access::is_time_travel(&scan.table_name) {
            Reading::Version
        } else {
            Reading::Current
        };
        let rules = rules_for(&object, &scan.projected_schema, reading)
            .map_err(datafusion::error::DataFusionError::from)?;
        let Some(rules) = rules else {
            return Ok(Transformed::no(p));
        };
        if scan.table_name.table().ends_with("@history") {
            return Err(Error::PermissionDenied(format!(
                "permission denied for table {}: its history is not readable under row-level or column policies",
                object.rsplit('.').next().unwrap_or(&object)
            ))
            .into());
        }
        let secured =
            secure_scan(p.clone(), rules).map_err(datafusion::error::DataFusionError::from)?;
        Ok(Transformed::yes(secured))
    })?;
    Ok(out.data)
}

fn secure_scan(scan: LogicalPlan, rules: TableRules) -> Result<LogicalPlan> {
    let schema = scan.schema().clone();
    let mut b = LogicalPlanBuilder::from(scan);
    if let Some(f) = rules.filter {
        b = b.filter(f)?;
    }
    if !rules.masks.is_empty() {
        let exprs: Vec<Expr> = schema
            .iter()
            .map(|(q, f)| {
                let column = Expr::Column(Column::new(q.cloned(), f.name()));
                match rules.masks.iter().find(|(c, _)| c == f.name()) {
                    Some((_, m)) => m.clone().alias_qualified(q.cloned(), f.name()),
                    None => column,
                }
            })
            .collect();
        b = b.project(exprs)?;
    }
    let input = b.build()?;
    if input.schema().fields().len() != schema.fields().len() {
        return Err(Error::PermissionDenied(
            "a column mask changed the table's columns: denied".into(),
        ));
    }
    Ok(LogicalPlan::Extension(Extension {
        node: Arc::new(SecureScan {
            input,
            applied: rules.applied,
        }),
    }))
}

/// The barrier above a governed scan (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecureScan {
    pub input: LogicalPlan,
    pub applied: Vec<String>,
}

impl PartialOrd for SecureScan {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.applied.partial_cmp(&other.applied)
    }
}

impl UserDefinedLogicalNodeCore for SecureScan {
    fn name(&self) -> &str {
        "SecureScan"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
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
        mut inputs: Vec<LogicalPlan>,
    ) -> datafusion::common::Result<Self> {
        let input = inputs.pop().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("SecureScan takes one input".into())
        })?;
        Ok(SecureScan {
            input,
            applied: self.applied.clone(),
        })
    }
    /// Nothing from above may be pushed below the barrier.
    fn prevent_predicate_push_down_columns(&self) -> std::collections::HashSet<String> {
        self.input
            .schema()
            .columns()
            .into_iter()
            .map(|c| c.flat_name())
            .chain(
                self.input
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone()),
            )
            .collect()
    }
    fn supports_limit_pushdown(&self) -> bool {
        false
    }
    /// The barrier's columns are its input's, one for one: a column no one above reads need not
    /// be computed below (its mask is not evaluated, the scan does not read it). The row filter
    /// is below and needs its own columns whatever is selected, so it is not weakened.
    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        Some(vec![output_columns.to_vec()])
    }
}

/// A literal of a principal's attribute for a filter (`$region` in the policy's predicate).
pub fn attribute_literal(v: &toml::Value) -> Result<ScalarValue> {
    Ok(match v {
        toml::Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        toml::Value::Integer(i) => ScalarValue::Int64(Some(*i)),
        toml::Value::Float(f) => ScalarValue::Float64(Some(*f)),
        toml::Value::Boolean(b) => ScalarValue::Boolean(Some(*b)),
        other => {
            return Err(Error::PermissionDenied(format!(
                "a policy attribute has a type filters cannot use ({}): denied",
                other.type_str()
            )));
        }
    })
}

/// INSERT under policies (like PostgreSQL's WITH CHECK): every new row must satisfy the
/// writer's row filter, and columns the writer sees masked must be left NULL; otherwise the
/// statement fails with 42501 before anything is written. `rules_for(input schema)` answers the
/// rules of the target, over the INSERT source's columns (named as the table's).
pub fn check_insert(
    plan: LogicalPlan,
    rules_for: &RulesFor<'_>,
    names: Names<'_>,
) -> Result<LogicalPlan> {
    use datafusion::logical_expr::dml::WriteOp;
    let LogicalPlan::Dml(dml) = &plan else {
        return Ok(plan);
    };
    if !matches!(dml.op, WriteOp::Insert(_)) {
        return Ok(plan);
    }
    let Some(object) = names.object(&dml.table_name) else {
        return Ok(plan);
    };
    let input_schema = dml.input.schema().clone();
    let Some(rules) = rules_for(&object, &input_schema, Reading::Current)? else {
        return Ok(plan);
    };
    let table = dml.table_name.table().to_string();
    let mut checks = vec![];
    let mut messages = vec![];
    if let Some(f) = rules.filter {
        checks.push(f);
        messages.push(format!(
            "new row violates row-level security policy for table \"{table}\""
        ));
    }
    for (column, _) in &rules.masks {
        if let Some((q, f)) = input_schema.iter().find(|(_, f)| f.name() == column) {
            checks.push(Expr::Column(Column::new(q.cloned(), f.name())).is_null());
            messages.push(format!("permission denied for column {column}"));
        }
    }
    if checks.is_empty() {
        return Ok(plan);
    }
    let udf = datafusion::logical_expr::ScalarUDF::new_from_impl(WriteCheck {
        messages,
        signature: datafusion::logical_expr::Signature::variadic_any(
            datafusion::logical_expr::Volatility::Volatile,
        ),
    });
    let exprs: Vec<Expr> = input_schema
        .iter()
        .enumerate()
        .map(|(i, (q, f))| {
            let column = Expr::Column(Column::new(q.cloned(), f.name()));
            if i == 0 {
                let mut args = vec![column];
                args.extend(checks.iter().cloned());
                udf.call(args).alias_qualified(q.cloned(), f.name())
            } else {
                column
            }
        })
        .collect();
    crate::pg::pg_semantics::reproject_insert(dml, exprs)
}

/// Passes its first argument through after checking that every other one is true.
#[derive(Debug, PartialEq, Eq, Hash)]
struct WriteCheck {
    messages: Vec<String>,
    signature: datafusion::logical_expr::Signature,
}

impl datafusion::logical_expr::ScalarUDFImpl for WriteCheck {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &str {
        "lakegate_write_check"
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn return_type(
        &self,
        args: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
        Ok(args
            .first()
            .cloned()
            .unwrap_or(datafusion::arrow::datatypes::DataType::Null))
    }
    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::FieldRef> {
        args.arg_fields
            .first()
            .map(|f| Arc::new(f.as_ref().clone().with_name(self.name())))
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("write check".into()))
    }
    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::logical_expr::ColumnarValue;
        let mut it = args.args.into_iter();
        let value = it.next().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("write check without input".into())
        })?;
        for (check, message) in it.zip(&self.messages) {
            let ok = match &check {
                ColumnarValue::Scalar(ScalarValue::Boolean(Some(b))) => *b,
                ColumnarValue::Scalar(_) => false,
                ColumnarValue::Array(a) => match a.as_boolean_opt() {
                    Some(b) => b.null_count() == 0 && b.true_count() == b.len(),
                    None => false,
                },
            };
            if !ok {
                return Err(Error::PermissionDenied(message.clone()).into());
            }
        }
        Ok(value)
    }
}

/// The keyed-hash mask: HMAC-SHA-256 of the value under the server's mask key, as hex. Equal
/// values give equal tokens (joins and grouping still work) but a token cannot be looked up by
/// hashing guesses without the key.
#[derive(PartialEq, Eq, Hash)]
pub struct KeyedHash {
    key: Vec<u8>,
    signature: datafusion::logical_expr::Signature,
}

impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHash(<key redacted>)")
    }
}

impl KeyedHash {
    pub fn udf(key: &[u8]) -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(KeyedHash {
            key: key.to_vec(),
            signature: datafusion::logical_expr::Signature::exact(
                vec![datafusion::arrow::datatypes::DataType::Utf8],
                datafusion::logical_expr::Volatility::Immutable,
            ),
        })
    }

    fn token(&self, v: &str) -> Result<String> {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.key)
            .map_err(|e| Error::internal(format!("mask key: {e}")))?;
        mac.update(v.as_bytes());
        Ok(mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}

pg_function!(
    KeyedHash,
    "lakegate_keyed_hash",
    datafusion::arrow::datatypes::DataType::Utf8
);

impl KeyedHash {
    fn invoke(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{AsArray, StringArray};
        use datafusion::logical_expr::ColumnarValue;
        let arg = args.args.into_iter().next().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("keyed hash without input".into())
        })?;
        match arg {
            ColumnarValue::Scalar(ScalarValue::Utf8(v)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Utf8(v.map(|s| self.token(&s)).transpose()?),
            )),
            ColumnarValue::Scalar(_) => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
            ColumnarValue::Array(a) => {
                let strings = a.as_string_opt::<i32>().ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal("keyed hash of non-text".into())
                })?;
                let out: StringArray = strings
                    .iter()
                    .map(|v| v.map(|s| self.token(s)).transpose())
                    .collect::<Result<_>>()?;
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }
    }
}

/// Plans a [`SecureScan`] as the engine's fence: a barrier no filter, dynamic filter,
/// projection or limit crosses.
#[derive(Debug)]
pub struct SecureScanPlanner;

#[async_trait::async_trait]
impl datafusion::physical_planner::ExtensionPlanner for SecureScanPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn datafusion::physical_planner::PhysicalPlanner,
        node: &dyn datafusion::logical_expr::UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn datafusion::physical_plan::ExecutionPlan>],
        _session_state: &datafusion::execution::SessionState,
    ) -> datafusion::error::Result<Option<Arc<dyn datafusion::physical_plan::ExecutionPlan>>> {
        if node.as_any().downcast_ref::<SecureScan>().is_none() {
            return Ok(None);
        }
        match physical_inputs {
            [input] => Ok(Some(crate::engine::nodes::fence(
                input.clone(),
                crate::policy::explain::SECURE_SCAN_EXEC,
            ))),
            _ => Err(datafusion::error::DataFusionError::Internal(
                "a secure scan has one input".into(),
            )),
        }
    }
}
