//! UPDATE and DELETE on Delta tables, each one atomic Delta commit (deltalake's operations).
//!
//! The WHERE clause and the new values are planned by DataFusion as a SELECT over the table (so
//! parameters, functions and casts mean what they mean in queries), type-coerced, and handed to
//! deltalake as expressions over the table's unqualified columns.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;
use datafusion::optimizer::analyzer::type_coercion::TypeCoercion;
use datafusion::sql::sqlparser::ast::{self, AssignmentTarget, FromTable, TableFactor};
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;

use super::{CommandTag, Outcome, Session, bind, parse};
use crate::catalog::TableEntry;
use crate::error::{Error, Result};
use crate::planner::names::last_ident;

/// The Delta table a DML statement names, and its quoted SQL name.
fn target(session: &Session, name: &ast::ObjectName, what: &str) -> Result<(String, TableEntry)> {
    let (schema, table, entry) = session.delta_target(name, what)?;
    Ok((format!("\"{schema}\".\"{table}\""), entry))
}

fn single_table(t: &ast::TableWithJoins) -> Result<&ast::ObjectName> {
    match &t.relation {
        TableFactor::Table {
            name, alias: None, ..
        } if t.joins.is_empty() => Ok(name),
        TableFactor::Table { alias: Some(_), .. } => Err(Error::unsupported(
            "UPDATE/DELETE with a table alias is not supported yet",
        )),
        _ => Err(Error::unsupported(
            "UPDATE/DELETE on more than one table is not supported yet",
        )),
    }
}

/// Plan `SELECT <items> FROM <table> [WHERE <selection>]` with bound parameters and coerced
/// types; returns the select-list expressions and the predicate.
async fn plan_parts(
    session: &Session,
    table_sql: &str,
    items: &[String],
    selection: Option<&ast::Expr>,
    params: Vec<ScalarValue>,
) -> Result<(Vec<Expr>, Option<Expr>)> {
    let list = if items.is_empty() {
        "*".to_string()
    } else {
        items.join(", ")
    };
    let sql = match selection {
        Some(w) => format!("SELECT {list} FROM {table_sql} WHERE {w}"),
        None => format!("SELECT {list} FROM {table_sql}"),
    };
    let stmt = parse(&sql)?
        .pop()
        .ok_or_else(|| Error::internal("empty generated statement"))?;
    let plan = bind(session.plan(&stmt).await?, params)?;
    let plan = TypeCoercion::new().analyze(plan, &ConfigOptions::default())?;
    let mut values = vec![];
    let mut predicate = None;
    plan.apply(|p| {
        match p {
            LogicalPlan::Projection(proj) if values.is_empty() && !items.is_empty() => {
                values = proj.expr.clone();
            }
            LogicalPlan::Filter(f) if predicate.is_none() => predicate = Some(f.predicate.clone()),
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let values = values
        .into_iter()
        .map(|e| unqualify(e.unalias()))
        .collect::<Result<_>>()?;
    Ok((values, predicate.map(unqualify).transpose()?))
}

/// Column references as deltalake resolves them: by bare name.
fn unqualify(e: Expr) -> Result<Expr> {
    Ok(e.transform(|e| match e {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
            datafusion::common::Column::new_unqualified(c.name),
        ))),
        other => Ok(Transformed::no(other)),
    })?
    .data)
}

pub async fn delete(
    session: &Session,
    d: &ast::Delete,
    params: Vec<ScalarValue>,
) -> Result<Outcome> {
    if d.using.is_some() || d.returning.is_some() || d.limit.is_some() || !d.order_by.is_empty() {
        return Err(Error::unsupported(
            "DELETE with USING, RETURNING, ORDER BY or LIMIT is not supported yet",
        ));
    }
    let tables = match &d.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    let [table] = tables.as_slice() else {
        return Err(Error::unsupported(
            "DELETE from several tables is not supported",
        ));
    };
    let (table_sql, entry) = target(session, single_table(table)?, "DELETE")?;
    let catalog = session.engine.planner.catalog().clone();
    let (_, predicate) = plan_parts(session, &table_sql, &[], d.selection.as_ref(), params).await?;
    // Without a predicate deltalake drops whole files and cannot always count their rows.
    let before = match &predicate {
        None => Some(session.count_rows(&table_sql).await?),
        Some(_) => None,
    };
    let delta = catalog.delta_table(&entry).await?;
    let mut op = delta.delete();
    if let Some(p) = predicate {
        op = op.with_predicate(p);
    }
    let (delta, metrics) = op.await?;
    catalog.remember(&entry, delta).await;
    let rows = metrics.num_deleted_rows.or(before).unwrap_or(0);
    Ok(Outcome::Command(CommandTag::rows("DELETE", rows)))
}

pub async fn update(
    session: &Session,
    u: &ast::Update,
    params: Vec<ScalarValue>,
) -> Result<Outcome> {
    if u.from.is_some() || u.returning.is_some() || u.limit.is_some() {
        return Err(Error::unsupported(
            "UPDATE with FROM, RETURNING or LIMIT is not supported yet",
        ));
    }
    let (table_sql, entry) = target(session, single_table(&u.table)?, "UPDATE")?;
    let catalog = session.engine.planner.catalog().clone();
    let mut columns = Vec::with_capacity(u.assignments.len());
    let mut items = Vec::with_capacity(u.assignments.len());
    for a in &u.assignments {
        let AssignmentTarget::ColumnName(name) = &a.target else {
            return Err(Error::unsupported(
                "UPDATE of a column tuple is not supported yet",
            ));
        };
        let column = last_ident(name)?;
        if columns.contains(&column) {
            return Err(Error::Data {
                sqlstate: "42601",
                message: format!("multiple assignments to same column \"{column}\""),
            });
        }
        columns.push(column);
        items.push(a.value.to_string());
    }
    let (values, predicate) =
        plan_parts(session, &table_sql, &items, u.selection.as_ref(), params).await?;
    let delta = catalog.delta_table(&entry).await?;
    let schema = delta.snapshot()?.schema();
    let mut op = delta.clone().update();
    for (column, value) in columns.iter().zip(values) {
        let field = schema.field(column).ok_or_else(|| {
            Error::UndefinedColumn(format!(
                "column \"{column}\" of relation {table_sql} does not exist"
            ))
        })?;
        let want: DataType = field
            .data_type()
            .try_into_arrow()
            .map_err(|e| Error::internal(format!("column \"{column}\" has no Arrow type: {e}")))?;
        op = op.with_update(
            column.as_str(),
            Expr::Cast(datafusion::logical_expr::Cast::new(Box::new(value), want)),
        );
    }
    if let Some(p) = predicate {
        op = op.with_predicate(p);
    }
    let (delta, metrics) = op.await?;
    catalog.remember(&entry, delta).await;
    Ok(Outcome::Command(CommandTag::rows(
        "UPDATE",
        metrics.num_updated_rows,
    )))
}
