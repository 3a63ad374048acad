//! Casts to PostgreSQL types that Arrow lacks (`uuid`, `json`, `jsonb`, `varchar`, `char`).
//! The values stay text, but the result field carries the type name (field metadata), so the
//! wire reports the real type OID and encodes uuid and jsonb in their binary forms. Input is
//! validated like PostgreSQL does (22P02 on a malformed uuid or json).

use std::any::Any;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::{self, Expr};

use super::functions::map_text;
use super::pg_text::{TextOptions, text_array};
use super::types::{PG_TYPE_KEY, text_pg_type};
use crate::error::{Error, SqlState};

pub const FUNCTION: &str = "lakegate_cast_text_type";

/// Rewrite `x::uuid` (and json, jsonb, varchar, char, text; also `uuid '...'`) into the typed cast.
pub fn rewrite_statement(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e: &mut Expr| {
        let (inner, ty) = match e {
            Expr::Cast {
                expr, data_type, ..
            } => match cast_target(data_type) {
                Some(t) => (expr.as_ref().clone(), t),
                None => return ControlFlow::<()>::Continue(()),
            },
            Expr::TypedString(ts) => match cast_target(&ts.data_type) {
                Some(t) => (Expr::Value(ts.value.clone()), t),
                None => return ControlFlow::Continue(()),
            },
            _ => return ControlFlow::Continue(()),
        };
        *e = call(inner, ty);
        ControlFlow::Continue(())
    });
}

/// The casts this module takes over: the text-stored types, and `text` itself (PostgreSQL's text
/// output differs from Arrow's, e.g. for timestamps).
fn cast_target(t: &ast::DataType) -> Option<&'static str> {
    match t {
        ast::DataType::Text => Some("text"),
        other => text_pg_type(other),
    }
}

fn call(arg: Expr, ty: &str) -> Expr {
    use ast::{
        Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
        ObjectName,
    };
    let args = vec![
        FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
            ast::Value::SingleQuotedString(ty.to_string()),
        ))),
    ];
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(FUNCTION)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CastTextType {
    signature: Signature,
    /// The session time zone (timestamptz values render in it).
    timezone: String,
}

pub fn udf(timezone: &str) -> ScalarUDF {
    ScalarUDF::new_from_impl(CastTextType {
        timezone: timezone.to_string(),
        // Any: the value must arrive uncoerced, so that it is rendered PostgreSQL's way.
        signature: Signature::any(2, Volatility::Immutable),
    })
}

fn target(args: &[Option<&ScalarValue>]) -> DfResult<String> {
    match args.get(1) {
        Some(Some(ScalarValue::Utf8(Some(t)))) => Ok(t.clone()),
        _ => Err(Error::internal("typed cast without a type").into()),
    }
}

impl CastTextType {
    /// Text input stays as it is; other values take PostgreSQL's text output form.
    fn to_text(&self, v: &ColumnarValue) -> DfResult<ColumnarValue> {
        let dt = v.data_type();
        if matches!(
            dt,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
        ) {
            return v.cast_to(&DataType::Utf8, None);
        }
        let opts = TextOptions {
            timezone: self.timezone.parse().unwrap_or(chrono_tz::UTC),
        };
        match v {
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(Arc::new(text_array(a, &opts)?))),
            ColumnarValue::Scalar(s) => {
                let a = text_array(&s.to_array()?, &opts)?;
                let v = if a.is_null(0) {
                    None
                } else {
                    Some(a.value(0).to_string())
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(v)))
            }
        }
    }
}

impl ScalarUDFImpl for CastTextType {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        FUNCTION
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let ty = target(args.scalar_arguments)?;
        let nullable = args.arg_fields.first().is_none_or(|f| f.is_nullable());
        let meta = HashMap::from([(PG_TYPE_KEY.to_string(), ty)]);
        Ok(Arc::new(
            Field::new(self.name(), DataType::Utf8, nullable).with_metadata(meta),
        ))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let ty = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(t)))) => t.clone(),
            _ => return Err(Error::internal("typed cast without a type").into()),
        };
        let input = match args.args.first() {
            Some(v) => self.to_text(v)?,
            None => return Err(Error::internal("typed cast without a value").into()),
        };
        map_text(&input, |s| normalize(&ty, s).map(Some))
    }
}

/// Validate and normalize text input for the type, as PostgreSQL's input functions do.
pub fn normalize(ty: &str, s: &str) -> DfResult<String> {
    let invalid = |t: &str| -> datafusion::error::DataFusionError {
        Error::data(
            SqlState::InvalidTextRepresentation,
            format!("invalid input syntax for type {t}: \"{s}\""),
        )
        .into()
    };
    match ty {
        "uuid" => uuid::Uuid::parse_str(s.trim())
            .map(|u| u.hyphenated().to_string())
            .map_err(|_| invalid("uuid")),
        "json" => serde_json::from_str::<serde_json::Value>(s)
            .map(|_| s.to_string())
            .map_err(|_| invalid("json")),
        "jsonb" => serde_json::from_str::<serde_json::Value>(s)
            .map(|v| jsonb_text(&v))
            .map_err(|_| invalid("json")),
        _ => Ok(s.to_string()),
    }
}

/// jsonb's output: keys ordered by length then bytes, `", "` and `": "` separators.
pub fn jsonb_text(v: &serde_json::Value) -> String {
    use serde_json::Value as V;
    match v {
        V::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| {
                a.len()
                    .cmp(&b.len())
                    .then_with(|| a.as_bytes().cmp(b.as_bytes()))
            });
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}: {}",
                        V::String(k.clone()),
                        m.get(k).map(jsonb_text).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        V::Array(a) => format!(
            "[{}]",
            a.iter().map(jsonb_text).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_validated_and_normalized() -> DfResult<()> {
        assert_eq!(
            normalize("uuid", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11")?,
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert!(normalize("uuid", "nope").is_err());
        assert_eq!(
            normalize("jsonb", r#"{"bb":1,"a":[1,2]}"#)?,
            r#"{"a": [1, 2], "bb": 1}"#
        );
        assert_eq!(normalize("json", r#"{"b":1}"#)?, r#"{"b":1}"#);
        assert!(normalize("json", "{").is_err());
        Ok(())
    }
}
