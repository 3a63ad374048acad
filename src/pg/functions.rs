//! PostgreSQL functions that clients commonly send and DataFusion lacks: `version()`,
//! `current_user`, `current_database()`, `current_schema()`, `pg_sleep`, `pg_backend_pid()` ...
//! Session-dependent ones are built per session with the session's values bound in.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, Signature, TypeSignature, Volatility,
};

use crate::error::Error;

/// One way to declare a scalar function: `pg_function!(Type, "name", result type)` (or
/// `name: |f| ...` and `returns: |f, args| ...` where they depend on the function's fields or
/// argument types) implements DataFusion's `ScalarUDFImpl` for `Type`, which holds its
/// `signature: Signature` and an inherent `fn invoke(&self, ScalarFunctionArgs)`. What differs
/// between functions is the name, the result and the body; the rest is written here once.
macro_rules! pg_function {
    ($ty:ty, name: |$n:ident| $name:expr, returns: |$r:ident, $args:ident| $ret:expr) => {
        impl ::datafusion::logical_expr::ScalarUDFImpl for $ty {
            fn as_any(&self) -> &dyn ::std::any::Any {
                self
            }
            fn name(&self) -> &str {
                let $n = self;
                $name
            }
            fn signature(&self) -> &::datafusion::logical_expr::Signature {
                &self.signature
            }
            fn return_type(
                &self,
                $args: &[::datafusion::arrow::datatypes::DataType],
            ) -> ::datafusion::common::Result<::datafusion::arrow::datatypes::DataType> {
                let $r = self;
                $ret
            }
            fn invoke_with_args(
                &self,
                args: ::datafusion::logical_expr::ScalarFunctionArgs,
            ) -> ::datafusion::common::Result<::datafusion::logical_expr::ColumnarValue> {
                self.invoke(args)
            }
        }
    };
    ($ty:ty, name: |$n:ident| $name:expr, $ret:expr) => {
        $crate::pg::functions::pg_function!($ty, name: |$n| $name, returns: |_f, _args| Ok($ret));
    };
    ($ty:ty, $name:literal, returns: |$r:ident, $args:ident| $ret:expr) => {
        $crate::pg::functions::pg_function!($ty, name: |_f| $name, returns: |$r, $args| $ret);
    };
    ($ty:ty, $name:literal, $ret:expr) => {
        $crate::pg::functions::pg_function!($ty, name: |_f| $name, returns: |_f, _args| Ok($ret));
    };
}
pub(crate) use pg_function;

/// A function of no arguments returning a value fixed for the session.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConstantFn {
    name: String,
    value: ScalarValue,
    signature: Signature,
}

pg_function!(ConstantFn, name: |f| &f.name, returns: |f, _args| Ok(f.value.data_type()));

impl ConstantFn {
    fn invoke(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
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
    /// Whether the session holds a privilege (`SELECT`, `UPDATE` ...) on (schema, table), as
    /// the policies decide (None: an administrator, every privilege).
    pub privilege: Option<Privilege>,
    /// Where `set_config()` leaves the settings it changes, for the session to apply.
    pub pending_settings: PendingSettings,
    /// Whether SET would take (name, value): `set_config()` fails as SET fails.
    pub check_setting: Option<CheckSetting>,
    /// `pg_cancel_backend(pid)`: cancel that connection's statement (false: no such backend).
    pub cancel_backend: Option<CancelBackend>,
    /// The schemas of the database now (for `pg_is_other_temp_schema`).
    pub schema_names: Option<SchemaNames>,
    /// The session's open block's pending rows (what its own reads see of its writes).
    pub overlays: Option<crate::catalog::overlay::Overlays>,
}

/// The schemas of the database, as they are when called.
pub type SchemaNames = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// `pg_is_other_temp_schema(oid)`: whether the namespace is the temporary schema of another
/// session (`pg_temp_<pid>` of a pid not the caller's).
struct OtherTempSchema {
    own: String,
    schemas: Option<SchemaNames>,
    signature: Signature,
}

impl std::fmt::Debug for OtherTempSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtherTempSchema")
            .field("own", &self.own)
            .finish()
    }
}
impl PartialEq for OtherTempSchema {
    fn eq(&self, other: &Self) -> bool {
        self.own == other.own
    }
}
impl Eq for OtherTempSchema {}
impl std::hash::Hash for OtherTempSchema {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.own.hash(state);
    }
}

fn other_temp_schema(v: &SessionValues<'_>) -> ScalarUDF {
    ScalarUDF::new_from_impl(OtherTempSchema {
        own: crate::catalog::temp_schema(v.backend_pid),
        schemas: v.schema_names.clone(),
        signature: Signature::any(1, Volatility::Stable),
    })
}

pg_function!(
    OtherTempSchema,
    "pg_is_other_temp_schema",
    DataType::Boolean
);

impl OtherTempSchema {
    fn invoke(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let others: Vec<i64> = self
            .schemas
            .as_ref()
            .map(|f| f())
            .unwrap_or_default()
            .iter()
            .filter(|s| crate::catalog::is_temp_schema(s) && **s != self.own)
            .map(|s| i64::from(super::pg_shape::namespace_oid(s)))
            .collect();
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(oids) = arrays.first() else {
            return Err(Error::UndefinedFunction(
                "function pg_is_other_temp_schema() does not exist".into(),
            )
            .into());
        };
        let out = (0..args.number_rows)
            .map(|i| {
                let oid = ScalarValue::try_from_array(oids, i)?;
                Ok(match oid {
                    v if v.is_null() => None,
                    v => Some(v.cast_to(&DataType::Int64).ok().is_some_and(
                        |n| matches!(n, ScalarValue::Int64(Some(n)) if others.contains(&n)),
                    )),
                })
            })
            .collect::<DfResult<datafusion::arrow::array::BooleanArray>>()?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// pid -> whether a statement was cancelled (an error: not the caller's to cancel).
pub type CancelBackend = Arc<dyn Fn(i32) -> crate::error::Result<bool> + Send + Sync>;

/// (name, value) -> what `SET name = value` would answer.
pub type CheckSetting = Arc<dyn Fn(&str, &str) -> crate::error::Result<()> + Send + Sync>;

/// Settings `set_config(name, value, is_local)` asked for, in order.
#[derive(Clone, Default)]
pub struct PendingSettings(Arc<std::sync::Mutex<Vec<(String, String)>>>);

impl PendingSettings {
    fn push(&self, name: &str, value: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_string(), value.to_string()));
    }

    /// What was asked since the last call.
    pub fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// (schema, table, privilege in upper case) -> held.
pub type Privilege = Arc<dyn Fn(&str, &str, &str) -> bool + Send + Sync>;

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
        ScalarUDF::new_from_impl(UserById {
            user: v.user.to_string(),
            signature: Signature::any(1, Volatility::Stable),
        }),
        ScalarUDF::new_from_impl(RegClass {
            schema: v.schema.to_string(),
            signature: Signature::any(1, Volatility::Stable),
        }),
        constant("pg_is_in_recovery", ScalarValue::Boolean(Some(false))),
        ScalarUDF::new_from_impl(CancelBackendFn {
            cancel: v.cancel_backend.clone(),
            signature: Signature::any(1, Volatility::Volatile),
        }),
        ScalarUDF::new_from_impl(EncodingToChar {
            signature: Signature::any(1, Volatility::Immutable),
        }),
        constant("pg_postmaster_start_time", started()),
        constant("pg_conf_load_time", started()),
        // No indexes or constraints: nothing to define.
        fixed("pg_get_indexdef", ScalarValue::Utf8(None)),
        fixed("pg_get_constraintdef", ScalarValue::Utf8(None)),
        fixed("pg_get_partkeydef", ScalarValue::Utf8(None)),
        current_schemas(v),
        // No sequences or serial columns; every collation visible.
        fixed("pg_get_serial_sequence", ScalarValue::Utf8(None)),
        fixed("pg_collation_is_visible", ScalarValue::Boolean(Some(true))),
        fixed("pg_get_viewdef", ScalarValue::Utf8(None)),
        fixed("pg_type_is_visible", ScalarValue::Boolean(Some(true))),
        fixed("pg_function_is_visible", ScalarValue::Boolean(Some(true))),
        other_temp_schema(v),
        // No tablespaces, no sizes Lakegate keeps per relation.
        fixed("pg_tablespace_location", ScalarValue::Utf8(None)),
        fixed("pg_table_size", ScalarValue::Int64(None)),
        fixed("pg_indexes_size", ScalarValue::Int64(None)),
        fixed("pg_database_size", ScalarValue::Int64(None)),
        fixed("pg_size_pretty", ScalarValue::Utf8(None)),
        AsyncScalarUDF::new(Arc::new(PgSleep::default())).into_scalar_udf(),
        has_privilege("has_table_privilege", v),
        has_privilege("has_any_column_privilege", v),
        has_privilege("has_column_privilege", v),
        ScalarUDF::new_from_impl(CurrentSetting::new(&v.settings)),
        ScalarUDF::new_from_impl(LikeEscape {
            signature: Signature::any(2, Volatility::Immutable),
        }),
        ScalarUDF::new_from_impl(JsonBuildObject {
            signature: Signature::variadic_any(Volatility::Immutable),
        }),
        ScalarUDF::new_from_impl(SetConfig {
            pending: v.pending_settings.clone(),
            check: v.check_setting.clone(),
            signature: Signature::any(3, Volatility::Volatile),
        }),
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

pg_function!(CurrentSetting, "current_setting", DataType::Utf8);

impl CurrentSetting {
    fn invoke(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
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

pg_function!(PgSleep, "pg_sleep", DataType::Utf8);

impl PgSleep {
    fn invoke(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
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

/// `has_table_privilege([user,] table, privilege)` and its column forms, answered from the
/// policies for the session's principal (PostgreSQL: true when any listed privilege is held).
/// A table given by oid is one the session's pg_catalog listed, so readable; other privileges
/// on an oid are not known here and answer false (fail closed).
struct HasPrivilege {
    name: &'static str,
    schema: String,
    /// The session's temporary schema, which `pg_temp` names.
    temp: String,
    privilege: Option<Privilege>,
    signature: Signature,
}

impl std::fmt::Debug for HasPrivilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HasPrivilege")
            .field("name", &self.name)
            .finish()
    }
}

impl PartialEq for HasPrivilege {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.schema == other.schema
    }
}
impl Eq for HasPrivilege {}
impl std::hash::Hash for HasPrivilege {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.schema.hash(state);
    }
}

fn has_privilege(name: &'static str, v: &SessionValues<'_>) -> ScalarUDF {
    ScalarUDF::new_from_impl(HasPrivilege {
        name,
        schema: v.schema.to_string(),
        temp: crate::catalog::temp_schema(v.backend_pid),
        privilege: v.privilege.clone(),
        signature: Signature::variadic_any(Volatility::Stable),
    })
}

/// `a.b` / `"A".b` / `b` as (schema, table), unquoted parts lower-cased.
fn qualified(name: &str, default_schema: &str) -> (String, String) {
    let parts: Vec<String> = name
        .split('.')
        .map(|p| {
            let p = p.trim();
            match p.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                Some(q) => q.replace("\"\"", "\""),
                None => p.to_ascii_lowercase(),
            }
        })
        .collect();
    match parts.as_slice() {
        [.., s, t] => (s.clone(), t.clone()),
        [t] => (default_schema.to_string(), t.clone()),
        [] => (default_schema.to_string(), String::new()),
    }
}

impl HasPrivilege {
    fn holds(&self, table: &ScalarValue, privileges: &str) -> bool {
        let wanted: Vec<String> = privileges
            .split(',')
            .map(|p| {
                p.trim()
                    .trim_end_matches("WITH GRANT OPTION")
                    .trim_end_matches("with grant option")
                    .trim()
                    .to_ascii_uppercase()
            })
            .collect();
        match table {
            ScalarValue::Utf8(Some(t)) | ScalarValue::LargeUtf8(Some(t)) => {
                let (mut schema, table) = qualified(t, &self.schema);
                if schema == "pg_temp" {
                    schema.clone_from(&self.temp);
                }
                wanted.iter().any(|p| match &self.privilege {
                    None => true,
                    Some(f) => f(&schema, &table, p),
                })
            }
            other if other.is_null() => false,
            _ => {
                self.privilege.is_none()
                    || wanted.iter().any(|p| p == "SELECT" || p == "REFERENCES")
            }
        }
    }
}

pg_function!(HasPrivilege, name: |f| f.name, DataType::Boolean);

impl HasPrivilege {
    fn invoke(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        // (table, priv) / (user, table, priv) / (table, column, priv) / (user, table, column, priv):
        // the table is the first text-or-oid argument after an optional user name.
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (table_at, privilege_at) = match (self.name, arrays.len()) {
            ("has_column_privilege", 4) => (1, 3),
            ("has_column_privilege", 3) => (0, 2),
            (_, 3) => (1, 2),
            (_, 2) => (0, 1),
            _ => {
                return Err(Error::UndefinedFunction(format!(
                    "function {}() does not exist with {} arguments",
                    self.name,
                    arrays.len()
                ))
                .into());
            }
        };
        let out = (0..n)
            .map(|i| {
                let table = ScalarValue::try_from_array(&arrays[table_at], i)?;
                let privilege = ScalarValue::try_from_array(&arrays[privilege_at], i)?;
                Ok(match privilege {
                    ScalarValue::Utf8(Some(p)) | ScalarValue::LargeUtf8(Some(p)) => {
                        Some(self.holds(&table, &p))
                    }
                    _ => None,
                })
            })
            .collect::<DfResult<datafusion::arrow::array::BooleanArray>>()?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `set_config(name, value, is_local)`: answers the value and leaves the change for the session,
/// which applies it after the statement as `SET` would (the UDF cannot reach the session).
struct SetConfig {
    pending: PendingSettings,
    check: Option<CheckSetting>,
    signature: Signature,
}

impl std::fmt::Debug for SetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetConfig")
    }
}
impl PartialEq for SetConfig {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for SetConfig {}
impl std::hash::Hash for SetConfig {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "set_config".hash(state);
    }
}

pg_function!(SetConfig, "set_config", DataType::Utf8);

impl SetConfig {
    fn invoke(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let text = |i: usize, row: usize| -> DfResult<Option<String>> {
            Ok(match ScalarValue::try_from_array(&arrays[i], row)? {
                ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => v,
                ScalarValue::Null => None,
                other => Some(other.to_string()),
            })
        };
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let (Some(name), value) = (text(0, row)?, text(1, row)?) else {
                return Err(
                    Error::InvalidParameter("SET requires parameter name".to_string()).into(),
                );
            };
            let value = value.unwrap_or_default();
            if let Some(check) = &self.check {
                check(&name, &value)?;
            }
            self.pending.push(&name, &value);
            out.push(Some(value));
        }
        Ok(ColumnarValue::Array(Arc::new(
            datafusion::arrow::array::StringArray::from(out),
        )))
    }
}

/// `json_build_object(k1, v1, ...)` (SQLAlchemy's column reflection): the JSON text of an object
/// of the given keys and values; numbers and booleans stay JSON numbers and booleans.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

pg_function!(JsonBuildObject, "json_build_object", DataType::Utf8);

impl JsonBuildObject {
    fn invoke(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return Err(Error::InvalidParameter(
                "argument list must have even number of elements".into(),
            )
            .into());
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                if key.is_null() {
                    return Err(Error::InvalidParameter(
                        "null value not allowed for object key".into(),
                    )
                    .into());
                }
                let key = match key {
                    ScalarValue::Utf8(Some(k)) | ScalarValue::LargeUtf8(Some(k)) => k,
                    other => other.to_string(),
                };
                let value = match ScalarValue::try_from_array(&pair[1], row)? {
                    v if v.is_null() => serde_json::Value::Null,
                    ScalarValue::Boolean(Some(b)) => serde_json::Value::Bool(b),
                    ScalarValue::Int8(Some(v)) => v.into(),
                    ScalarValue::Int16(Some(v)) => v.into(),
                    ScalarValue::Int32(Some(v)) => v.into(),
                    ScalarValue::Int64(Some(v)) => v.into(),
                    ScalarValue::Float64(Some(v)) => v.into(),
                    ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => s.into(),
                    other => other.to_string().into(),
                };
                object.insert(key, value);
            }
            out.push(Some(serde_json::Value::Object(object).to_string()));
        }
        Ok(ColumnarValue::Array(Arc::new(
            datafusion::arrow::array::StringArray::from(out),
        )))
    }
}

/// `lakegate_like_escape(pattern, c)`: a LIKE pattern escaped with `c` rewritten to escape with
/// backslash (pg::pg_catalog turns `LIKE p ESCAPE 'c'` into it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct LikeEscape {
    signature: Signature,
}

fn with_backslash_escapes(pattern: &str, escape: char) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(ch) = chars.next() {
        if ch == escape {
            if let Some(next) = chars.next() {
                out.push('\\');
                out.push(next);
            }
        } else if ch == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(ch);
        }
    }
    out
}

pg_function!(LikeEscape, "lakegate_like_escape", DataType::Utf8);

impl LikeEscape {
    fn invoke(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let escape = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(c)))) => c.chars().next(),
            _ => None,
        };
        let Some(escape) = escape else {
            return Err(Error::InvalidParameter("invalid escape string".into()).into());
        };
        match args.args.first() {
            Some(v) => map_text(v, |p| Ok(Some(with_backslash_escapes(p, escape)))),
            None => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
        }
    }
}

/// `current_schemas(include_implicit)`: the search path's schemas (`$user` when a schema of
/// that name exists: Lakegate creates none), pg_catalog first when implicit ones are asked for.
fn current_schemas(v: &SessionValues<'_>) -> ScalarUDF {
    let path = v
        .settings
        .iter()
        .find(|(k, _)| k == "search_path")
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| "public".into());
    let explicit: Vec<String> = path
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty() && s != "$user")
        .collect();
    let list = |implicit: bool| {
        let names: Vec<ScalarValue> = implicit
            .then(|| "pg_catalog".to_string())
            .into_iter()
            .chain(explicit.iter().filter(|s| *s != "pg_catalog").cloned())
            .map(|s| ScalarValue::Utf8(Some(s)))
            .collect();
        ScalarValue::List(ScalarValue::new_list_nullable(&names, &DataType::Utf8))
    };
    ScalarUDF::new_from_impl(CurrentSchemas {
        with_implicit: list(true),
        without: list(false),
        signature: Signature::any(1, Volatility::Stable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSchemas {
    with_implicit: ScalarValue,
    without: ScalarValue,
    signature: Signature,
}

pg_function!(CurrentSchemas, "current_schemas", returns: |f, _args| Ok(f.with_implicit.data_type()));

impl CurrentSchemas {
    fn invoke(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let implicit = match args.args.first() {
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(b))) => b.unwrap_or(false),
            _ => true,
        };
        Ok(ColumnarValue::Scalar(if implicit {
            self.with_implicit.clone()
        } else {
            self.without.clone()
        }))
    }
}

/// When this server started (`pg_postmaster_start_time()`); fixed on first use, which the
/// engine makes at startup.
pub fn started() -> ScalarValue {
    static STARTED: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let us = *STARTED.get_or_init(|| chrono::Utc::now().timestamp_micros());
    ScalarValue::TimestampMicrosecond(Some(us), Some(super::types::UTC.into()))
}

/// `pg_get_userbyid(oid)`: the session's own role for 10 (PostgreSQL's bootstrap superuser oid,
/// which owns every object here), the built-in roles by their oids, else PostgreSQL's
/// `unknown (OID=n)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UserById {
    user: String,
    signature: Signature,
}

pg_function!(UserById, "pg_get_userbyid", DataType::Utf8);

impl UserById {
    fn invoke(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(arg) = args.args.first() else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
        };
        let oids =
            datafusion::arrow::compute::cast(&arg.to_array(args.number_rows)?, &DataType::Int64)?;
        let oids = oids.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let roles = super::pg_static::role_names();
        let out: datafusion::arrow::array::StringArray = (0..oids.len())
            .map(|i| {
                if oids.is_null(i) {
                    return None;
                }
                let oid = oids.value(i);
                Some(match oid {
                    10 => self.user.clone(),
                    _ => i32::try_from(oid)
                        .ok()
                        .and_then(|o| roles.get(&o).cloned())
                        .unwrap_or_else(|| format!("unknown (OID={oid})")),
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `'name'::regclass` of a text (a literal, or a parameter SQLAlchemy binds): the relation's
/// oid. Unqualified names are looked up in pg_catalog first, then in the session's schema, as
/// PostgreSQL's search path does; oids are derived from names (pg::pg_shape), so a name
/// answers its oid whether or not the relation exists yet. A number is taken as the oid.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegClass {
    schema: String,
    signature: Signature,
}

/// Split a possibly qualified, possibly quoted relation name into its parts, as PostgreSQL's
/// `parse_ident` does (unquoted parts fold to lower case).
fn name_parts(s: &str) -> Vec<String> {
    let mut parts = vec![];
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c if quoted => cur.push(c),
            c => cur.extend(c.to_lowercase()),
        }
    }
    parts.push(cur);
    parts
}

impl RegClass {
    fn oid(&self, name: &str) -> Option<i32> {
        if let Ok(n) = name.trim().parse::<i32>() {
            return Some(n);
        }
        match name_parts(name).as_slice() {
            [rel] => Some(
                super::pg_static::relation_oid("pg_catalog", rel)
                    .unwrap_or_else(|| super::pg_shape::relation_oid(&self.schema, rel)),
            ),
            [schema, rel] | [_, schema, rel] => Some(super::pg_shape::relation_oid(schema, rel)),
            _ => None,
        }
    }
}

pg_function!(RegClass, "lakegate_regclass", DataType::Int32);

impl RegClass {
    fn invoke(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(arg) = args.args.first() else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Int32(None)));
        };
        let names =
            datafusion::arrow::compute::cast(&arg.to_array(args.number_rows)?, &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let out: datafusion::arrow::array::Int32Array = (0..names.len())
            .map(|i| {
                if names.is_null(i) {
                    None
                } else {
                    self.oid(names.value(i))
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `pg_encoding_to_char(n)`: the encoding's name (Lakegate speaks UTF8, 6; SQL_ASCII is 0).
#[derive(Debug, PartialEq, Eq, Hash)]
struct EncodingToChar {
    signature: Signature,
}

pg_function!(EncodingToChar, "pg_encoding_to_char", DataType::Utf8);

impl EncodingToChar {
    fn invoke(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(arg) = args.args.first() else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
        };
        let n =
            datafusion::arrow::compute::cast(&arg.to_array(args.number_rows)?, &DataType::Int64)?;
        let n = n.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let out: datafusion::arrow::array::StringArray = (0..n.len())
            .map(|i| {
                (!n.is_null(i)).then(|| match n.value(i) {
                    0 => "SQL_ASCII",
                    6 => "UTF8",
                    _ => "",
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `pg_cancel_backend(pid)` (Engine::cancel_backend decides).
struct CancelBackendFn {
    cancel: Option<CancelBackend>,
    signature: Signature,
}

impl std::fmt::Debug for CancelBackendFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("pg_cancel_backend")
    }
}

impl PartialEq for CancelBackendFn {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Eq for CancelBackendFn {}

impl std::hash::Hash for CancelBackendFn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "pg_cancel_backend".hash(state);
    }
}

pg_function!(CancelBackendFn, "pg_cancel_backend", DataType::Boolean);

impl CancelBackendFn {
    fn invoke(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(arg) = args.args.first() else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None)));
        };
        let pids =
            datafusion::arrow::compute::cast(&arg.to_array(args.number_rows)?, &DataType::Int64)?;
        let pids = pids.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let mut out = datafusion::arrow::array::BooleanBuilder::with_capacity(pids.len());
        for i in 0..pids.len() {
            if pids.is_null(i) {
                out.append_null();
                continue;
            }
            let done = match (&self.cancel, i32::try_from(pids.value(i))) {
                (Some(cancel), Ok(pid)) => cancel(pid)?,
                _ => false,
            };
            out.append_value(done);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
