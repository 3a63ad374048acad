//! What a RowDescription says of each result column beyond its name and type, as PostgreSQL
//! says it: the table and column the value is read from (`pg_class.oid` and
//! `pg_attribute.attnum`, zero for computed columns) and the type modifier (numeric precision
//! and scale, varchar length). Drivers read them: pgjdbc's `ResultSetMetaData.isNullable`,
//! `getTableName`, `getPrecision`/`getScale`, psqlODBC's column descriptions.
//!
//! They travel to the wire as metadata of the result schema's fields, so the wire layer needs no
//! plan.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::TableReference;
use datafusion::logical_expr::{Expr, LogicalPlan};

pub use super::types::{TABLE_OID, type_modifier};
pub const COLUMN_NUMBER: &str = "lakegate.attnum";

/// The result schema of `plan`, each field carrying the table oid and column number it is read
/// from when it is a plain column of a table. `default_schema` resolves unqualified names.
pub fn result_schema(plan: &LogicalPlan, default_schema: &str) -> SchemaRef {
    let arrow = plan.schema().as_arrow();
    let fields: Vec<Field> = arrow
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let field = f.as_ref().clone();
            match origin(plan, i) {
                Some((table, attnum, column)) => {
                    let (schema, name) = match &table {
                        TableReference::Bare { table } => (default_schema, table.as_ref()),
                        TableReference::Partial { schema, table }
                        | TableReference::Full { schema, table, .. } => {
                            (schema.as_ref(), table.as_ref())
                        }
                    };
                    let mut meta: HashMap<String, String> = field.metadata().clone();
                    meta.insert(
                        TABLE_OID.into(),
                        super::pg_shape::relation_oid(schema, name).to_string(),
                    );
                    meta.insert(COLUMN_NUMBER.into(), attnum.to_string());
                    // A catalog column's own PostgreSQL type (name, oid, "char" ...).
                    if let Some(pg) = super::pg_shape::column_pg_type(schema, name, &column) {
                        meta.insert(super::types::PG_TYPE_KEY.into(), pg);
                    }
                    field.with_metadata(meta)
                }
                None => field,
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, arrow.metadata().clone()))
}

/// The table, 1-based column number and column name output column `i` of `plan` is read from
/// unchanged.
fn origin(plan: &LogicalPlan, i: usize) -> Option<(TableReference, i16, String)> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let source = scan.source.schema();
            let index = match &scan.projection {
                Some(p) => *p.get(i)?,
                None => i,
            };
            // A table function's scan (`generate_series(1, 3)`) is no table.
            if scan.table_name.table().contains('(') || index >= source.fields().len() {
                return None;
            }
            Some((
                scan.table_name.clone(),
                i16::try_from(index + 1).ok()?,
                source.field(index).name().clone(),
            ))
        }
        LogicalPlan::Projection(p) => {
            let column = match p.expr.get(i)? {
                Expr::Column(c) => c,
                Expr::Alias(a) => match a.expr.as_ref() {
                    Expr::Column(c) => c,
                    _ => return None,
                },
                _ => return None,
            };
            let at = p.input.schema().index_of_column(column).ok()?;
            origin(&p.input, at)
        }
        LogicalPlan::Join(j) => {
            let left = j.left.schema().fields().len();
            if i < left {
                origin(&j.left, i)
            } else {
                origin(&j.right, i - left)
            }
        }
        // A catalog relation (a view of ours, inlined) is the origin of its columns, as a table.
        LogicalPlan::SubqueryAlias(a)
            if a.alias.schema().is_some_and(|s| {
                matches!(s, "pg_catalog" | "information_schema")
                    && super::pg_shape::is_relation(s, a.alias.table())
            }) =>
        {
            Some((
                a.alias.clone(),
                i16::try_from(i + 1).ok()?,
                plan.schema().field(i).name().clone(),
            ))
        }
        LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Repartition(_) => {
            let input = plan.inputs().into_iter().next()?;
            origin(input, i)
        }
        // The secure scan keeps its input's columns in order; a masked column is computed (its
        // projection below has an expression there, not a column).
        LogicalPlan::Extension(e) => {
            let inputs = e.node.inputs();
            let [input] = inputs.as_slice() else {
                return None;
            };
            (input.schema().fields().len() == plan.schema().fields().len())
                .then(|| origin(input, i))
                .flatten()
        }
        _ => None,
    }
}

/// The table oid and column number a field of a result schema carries (0, 0: computed).
pub fn field_origin(f: &Field) -> (i32, i16) {
    let get = |k: &str| f.metadata().get(k).and_then(|v| v.parse::<i32>().ok());
    (
        get(TABLE_OID).unwrap_or(0),
        get(COLUMN_NUMBER)
            .and_then(|n| i16::try_from(n).ok())
            .unwrap_or(0),
    )
}
