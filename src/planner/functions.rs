//! PostgreSQL functions that clients commonly send and DataFusion lacks: `version()`,
//! `current_user`, `current_database()`, `current_schema()`, `pg_sleep`, `pg_backend_pid()` ...
//! Session-dependent ones are built per session with the session's values bound in.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::error::Error;

/// A function of no arguments returning a value fixed for the session.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConstantFn {
    name: String,
    value: ScalarValue,
    signature: Signature,
}

impl ScalarUDFImpl for ConstantFn {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(self.value.data_type())
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

fn constant(name: &str, value: ScalarValue) -> ScalarUDF {
    ScalarUDF::new_from_impl(ConstantFn {
        name: name.to_string(),
        value,
        signature: Signature::nullary(Volatility::Stable),
    })
}

/// A function of any arguments with one answer: catalog functions whose answer Lakegate's
/// catalog makes fixed (no comments on objects, no indexes, every type visible).
fn fixed(name: &str, value: ScalarValue) -> ScalarUDF {
    ScalarUDF::new_from_impl(ConstantFn {
        name: name.to_string(),
        value,
        signature: Signature::variadic_any(Volatility::Stable),
    })
}

fn text(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_string()))
}

/// What the session-bound functions need to know.
pub struct SessionValues<'a> {
    pub user: &'a str,
    pub database: &'a str,
    pub schema: &'a str,
    pub backend_pid: i32,
    /// Session settings by lower-case name, for `current_setting()`.
    pub settings: Vec<(String, String)>,
    /// Which tables listings show this session (None: all).
    pub visible: Option<crate::catalog::provider_visible::Visible>,
    /// Which columns of a table this session does not see (None: all seen).
    pub hidden: Option<crate::catalog::provider_visible::Hidden>,
}

/// All functions for one session.
pub fn session_functions(v: &SessionValues<'_>) -> Vec<ScalarUDF> {
    let version = format!(
        "PostgreSQL {} (Lakegate {}) on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
        crate::config::PG_VERSION,
        env!("CARGO_PKG_VERSION")
    );
    vec![
        constant("version", text(&version)),
        constant("current_user", text(v.user)),
        constant("session_user", text(v.user)),
        constant("user", text(v.user)),
        constant("current_role", text(v.user)),
        constant("current_database", text(v.database)),
        constant("current_catalog", text(v.database)),
        constant("current_schema", text(v.schema)),
        constant("pg_backend_pid", ScalarValue::Int32(Some(v.backend_pid))),
        constant("inet_server_port", ScalarValue::Int32(None)),
        // No transaction ids of its own: the backend's, stable within a statement.
        constant(
            "txid_current",
            ScalarValue::Int64(Some(i64::from(v.backend_pid.max(0)) + 1000)),
        ),
        fixed("obj_description", ScalarValue::Utf8(None)),
        fixed("col_description", ScalarValue::Utf8(None)),
        fixed("shobj_description", ScalarValue::Utf8(None)),
        fixed("pg_get_indexdef", ScalarValue::Utf8(None)),
        fixed("pg_get_viewdef", ScalarValue::Utf8(None)),
        fixed("pg_type_is_visible", ScalarValue::Boolean(Some(true))),
        fixed("pg_function_is_visible", ScalarValue::Boolean(Some(true))),
        AsyncScalarUDF::new(Arc::new(PgSleep::default())).into_scalar_udf(),
        ScalarUDF::new_from_impl(CurrentSetting::new(&v.settings)),
    ]
}

/// `current_setting(name [, missing_ok])` from the session's settings at planning time.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    values: std::collections::BTreeMap<String, String>,
    signature: Signature,
}

impl CurrentSetting {
    fn new(settings: &[(String, String)]) -> Self {
        CurrentSetting {
            values: settings
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        }
    }

    fn lookup(&self, name: &str, missing_ok: bool) -> DfResult<Option<String>> {
        match self.values.get(&name.to_ascii_lowercase()) {
            Some(v) => Ok(Some(v.clone())),
            None if missing_ok => Ok(None),
            None => Err(Error::UndefinedObject(format!(
                "unrecognized configuration parameter \"{name}\""
            ))
            .into()),
        }
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        "current_setting"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let missing_ok = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(Some(b)))) => *b,
            _ => false,
        };
        match args.args.first() {
            Some(v) => map_text(v, |name| self.lookup(name, missing_ok)),
            None => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
        }
    }
}

/// Apply a fallible text-to-text function to every non-NULL value of a text argument
/// (NULL stays NULL; a non-text scalar is returned unchanged).
pub fn map_text(
    v: &ColumnarValue,
    f: impl Fn(&str) -> DfResult<Option<String>>,
) -> DfResult<ColumnarValue> {
    match v {
        ColumnarValue::Scalar(ScalarValue::Utf8(s)) => {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(match s {
                Some(s) => f(s)?,
                None => None,
            })))
        }
        ColumnarValue::Array(a) => {
            let a = a.as_string::<i32>();
            let out = (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        Ok(None)
                    } else {
                        f(a.value(i))
                    }
                })
                .collect::<DfResult<datafusion::arrow::array::StringArray>>()?;
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
        ColumnarValue::Scalar(other) => Ok(ColumnarValue::Scalar(other.clone())),
    }
}

/// `pg_sleep(seconds)`: waits without holding a thread, and stops at once when cancelled.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgSleep {
    signature: Signature,
}

impl Default for PgSleep {
    fn default() -> Self {
        PgSleep {
            signature: Signature::any(1, Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for PgSleep {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        "pg_sleep"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Err(Error::internal("pg_sleep must be invoked asynchronously").into())
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for PgSleep {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let seconds = match args.args.first() {
            Some(ColumnarValue::Scalar(s)) => match s.cast_to(&DataType::Float64)? {
                ScalarValue::Float64(v) => v.unwrap_or(0.0),
                _ => 0.0,
            },
            Some(ColumnarValue::Array(a)) => {
                let a = datafusion::arrow::compute::cast(a, &DataType::Float64)?;
                let a = a.as_primitive::<Float64Type>();
                (0..a.len())
                    .filter(|i| a.is_valid(*i))
                    .map(|i| a.value(i))
                    .sum()
            }
            None => 0.0,
        };
        if seconds.is_finite() && seconds > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(seconds.min(1.0e7))).await;
        }
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}
