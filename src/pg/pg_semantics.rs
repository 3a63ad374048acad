//! Rewrites that give DataFusion plans PostgreSQL's meaning where the two differ.
//!
//! - A text literal cast to `bytea` is PostgreSQL's bytea input syntax (`'\xdeadbeef'` is four
//!   bytes), not the UTF-8 bytes of the text.
//! - An integer literal that fits in 32 bits is an `integer` (int4), as in PostgreSQL, not a
//!   bigint: clients can tell (`SELECT 1` is a number in node-postgres, a bigint is a string).
//! - Values inserted into uuid / json / jsonb columns are validated and normalized like
//!   PostgreSQL's input functions do (the columns are stored as text).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Cast, Expr, LogicalPlan, TryCast, WriteOp};

use super::pg_cast;
use super::types::field_pg_type;
use crate::error::{Error, Result, SqlState};

pub fn apply(plan: LogicalPlan) -> Result<LogicalPlan> {
    let out = plan
        .transform_up_with_subqueries(|p| p.map_expressions(|e| e.transform_up(rewrite_expr)))?
        .data
        .transform_up_with_subqueries(int4_select_literals)?
        .data
        .transform_up_with_subqueries(recursive_terms_aligned)?;
    typed_insert(out.data)
}

/// A recursive CTE's terms of one type again: its work table was typed from the non-recursive
/// term before that term's integer literals became int4 (`int4_select_literals`), so the
/// non-recursive term is cast back to the types the recursive one computes (otherwise their
/// rows meet with different column types: a wrong-type error, or a panic in a repartition).
fn recursive_terms_aligned(p: LogicalPlan) -> datafusion::common::Result<Transformed<LogicalPlan>> {
    let LogicalPlan::RecursiveQuery(mut rq) = p else {
        return Ok(Transformed::no(p));
    };
    let wanted = rq.recursive_term.schema().clone();
    let have = rq.static_term.schema().clone();
    if have.fields().len() != wanted.fields().len()
        || have
            .fields()
            .iter()
            .zip(wanted.fields())
            .all(|(a, b)| a.data_type() == b.data_type())
    {
        return Ok(Transformed::no(LogicalPlan::RecursiveQuery(rq)));
    }
    let exprs: Vec<Expr> = have
        .columns()
        .into_iter()
        .zip(wanted.fields())
        .map(|(c, f)| {
            let name = c.name.clone();
            Expr::Cast(Cast::new(Box::new(Expr::Column(c)), f.data_type().clone())).alias(name)
        })
        .collect();
    rq.static_term = Arc::new(
        datafusion::logical_expr::LogicalPlanBuilder::from(rq.static_term.as_ref().clone())
            .project(exprs)?
            .build()?,
    );
    Ok(Transformed::yes(LogicalPlan::RecursiveQuery(rq)))
}

/// Wrap the values of an INSERT bound for uuid/json/jsonb columns in the typed cast.
fn typed_insert(plan: LogicalPlan) -> Result<LogicalPlan> {
    let LogicalPlan::Dml(dml) = &plan else {
        return Ok(plan);
    };
    if !matches!(dml.op, WriteOp::Insert(_)) {
        return Ok(plan);
    }
    let target = dml.target.schema();
    let input_schema = dml.input.schema();
    if input_schema.fields().len() != target.fields().len() {
        return Ok(plan);
    }
    let mut changed = false;
    let exprs: Vec<Expr> = input_schema
        .columns()
        .into_iter()
        .zip(target.fields().iter())
        .map(|(c, f)| match field_pg_type(f) {
            Some(t @ ("uuid" | "json" | "jsonb")) => {
                changed = true;
                let name = c.name.clone();
                let ty = Expr::Literal(ScalarValue::Utf8(Some(t.to_string())), None);
                Expr::ScalarFunction(ScalarFunction::new_udf(
                    Arc::new(pg_cast::udf("UTC")),
                    vec![Expr::Column(c), ty],
                ))
                .alias(name)
            }
            _ => Expr::Column(c),
        })
        .collect();
    if !changed {
        return Ok(plan);
    }
    reproject_insert(dml, exprs)
}

/// Integer literals are `integer` (int4) in PostgreSQL when they fit, so `SELECT 1`, `SELECT
/// qty * 2` (qty an integer) and `SELECT ARRAY[1, 2]` answer int4 and int4[], which clients
/// tell apart from bigint (node-postgres gives a bigint as a string). DataFusion types them
/// bigint. In a select list, literals that are the value itself, an operand of arithmetic, an
/// array element or a CASE result are made int4; function arguments are left to DataFusion's
/// signatures.
fn int4_select_literals(p: LogicalPlan) -> datafusion::common::Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Projection(proj) = &p else {
        return Ok(Transformed::no(p));
    };
    let narrowed: Vec<Expr> = proj.expr.iter().map(|e| narrow(e.clone())).collect();
    if narrowed == proj.expr {
        return Ok(Transformed::no(p));
    }
    let names = NamePreserver::new(&p);
    let exprs = proj
        .expr
        .iter()
        .zip(narrowed)
        .map(|(e, n)| names.save(e).restore(n))
        .collect::<Vec<_>>();
    let input = proj.input.clone();
    Ok(Transformed::yes(LogicalPlan::Projection(
        datafusion::logical_expr::Projection::try_new(exprs, input)?,
    )))
}

/// `e` with its int4-sized integer literals (see int4_select_literals) made int4.
fn narrow(e: Expr) -> Expr {
    use datafusion::logical_expr::{BinaryExpr, Operator, expr::Case};
    match e {
        Expr::Literal(ScalarValue::Int64(Some(v)), meta) => match i32::try_from(v) {
            Ok(v) => Expr::Literal(ScalarValue::Int32(Some(v)), meta),
            Err(_) => Expr::Literal(ScalarValue::Int64(Some(v)), meta),
        },
        Expr::Alias(a) => {
            let name = a.name.clone();
            let relation = a.relation.clone();
            let metadata = a.metadata.clone();
            Expr::Alias(
                datafusion::logical_expr::expr::Alias::new(narrow(*a.expr), relation, name)
                    .with_metadata(metadata),
            )
        }
        Expr::Negative(inner) => Expr::Negative(Box::new(narrow(*inner))),
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                op,
                Operator::Plus
                    | Operator::Minus
                    | Operator::Multiply
                    | Operator::Divide
                    | Operator::Modulo
            ) =>
        {
            Expr::BinaryExpr(BinaryExpr::new(
                Box::new(narrow(*left)),
                op,
                Box::new(narrow(*right)),
            ))
        }
        Expr::Case(Case {
            expr,
            when_then_expr,
            else_expr,
        }) => Expr::Case(Case {
            expr,
            when_then_expr: when_then_expr
                .into_iter()
                .map(|(w, t)| (w, Box::new(narrow(*t))))
                .collect(),
            else_expr: else_expr.map(|e| Box::new(narrow(*e))),
        }),
        Expr::ScalarFunction(f) if f.func.name() == "make_array" => Expr::ScalarFunction(
            ScalarFunction::new_udf(f.func.clone(), f.args.into_iter().map(narrow).collect()),
        ),
        other => other,
    }
}

fn rewrite_expr(e: Expr) -> datafusion::common::Result<Transformed<Expr>> {
    let (inner, data_type) = match &e {
        Expr::Cast(Cast { expr, data_type }) | Expr::TryCast(TryCast { expr, data_type }) => {
            (expr.as_ref(), data_type)
        }
        _ => return Ok(Transformed::no(e)),
    };
    if !matches!(
        data_type,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    ) {
        return Ok(Transformed::no(e));
    }
    let Expr::Literal(
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)),
        _,
    ) = inner
    else {
        return Ok(Transformed::no(e));
    };
    let bytes = bytea_input(s)?;
    let lit = Expr::Literal(ScalarValue::Binary(Some(bytes)), None);
    let lit = if *data_type == DataType::Binary {
        lit
    } else {
        Expr::Cast(Cast::new(Box::new(lit), data_type.clone()))
    };
    Ok(Transformed::yes(lit))
}

/// PostgreSQL's bytea input: hex format `\x...`, or escape format (`\\`, `\ooo`).
pub fn bytea_input(s: &str) -> Result<Vec<u8>, datafusion::error::DataFusionError> {
    let invalid = |m: &str| {
        Error::data(
            SqlState::InvalidTextRepresentation,
            format!("invalid input syntax for type bytea: {m}"),
        )
        .into()
    };
    if let Some(hex) = s.strip_prefix("\\x").or_else(|| s.strip_prefix("\\X")) {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return Err(invalid("odd number of hexadecimal digits"));
        }
        return digits
            .chunks(2)
            .map(|c| {
                std::str::from_utf8(c)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| invalid("invalid hexadecimal digit"))
            })
            .collect();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if v > 255 {
                return Err(invalid("octal escape out of range"));
            }
            out.push(v as u8);
            i += 4;
        } else {
            return Err(invalid("invalid escape"));
        }
    }
    Ok(out)
}

/// The same write with its source passed through a projection of `exprs` (the shared step of
/// every INSERT rewrite: casts, not-null and length checks, row-policy checks).
pub fn reproject_insert(
    dml: &datafusion::logical_expr::DmlStatement,
    exprs: Vec<Expr>,
) -> Result<LogicalPlan> {
    let input = datafusion::logical_expr::LogicalPlanBuilder::from(dml.input.as_ref().clone())
        .project(exprs)?
        .build()?;
    let mut dml = dml.clone();
    dml.input = std::sync::Arc::new(input);
    Ok(LogicalPlan::Dml(dml))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytea_input_formats() -> datafusion::common::Result<()> {
        assert_eq!(bytea_input("\\xdeadBEEF")?, vec![0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(bytea_input("a\\\\b\\001")?, vec![b'a', b'\\', b'b', 1]);
        assert!(bytea_input("\\xabc").is_err());
        Ok(())
    }
}
