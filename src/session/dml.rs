//! UPDATE and DELETE on Delta tables, each one atomic Delta commit (deltalake's operations);
//! planned when they are sent, carried out then or, in a transaction block, at COMMIT.
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

/// A planned UPDATE or DELETE: run now, or at COMMIT inside a transaction block.
#[derive(Debug, Clone)]
pub struct RowChange {
    entry: TableEntry,
    table_sql: String,
    /// Empty for DELETE.
    assignments: Vec<(String, Expr)>,
    predicate: Option<Expr>,
    delete: bool,
}

impl RowChange {
    pub fn command(&self) -> &'static str {
        if self.delete { "DELETE" } else { "UPDATE" }
    }

    /// How many rows it would change now (for its tag when it is deferred to COMMIT).
    pub async fn count(&self, session: &Session) -> Result<usize> {
        let provider = session
            .engine
            .planner
            .catalog()
            .table_provider(&self.entry)
            .await?;
        let mut df = session.context().read_table(provider)?;
        if let Some(p) = &self.predicate {
            df = df.filter(p.clone())?;
        }
        Ok(df.count().await?)
    }

    /// Carry it out: one Delta commit. Returns the rows changed.
    pub async fn apply(self, session: &Session) -> Result<usize> {
        let catalog = session.engine.planner.catalog().clone();
        if self.delete {
            // Without a predicate deltalake drops whole files and cannot always count their rows.
            let before = match &self.predicate {
                None => Some(session.count_rows(&self.table_sql).await?),
                Some(_) => None,
            };
            let delta = catalog.delta_table(&self.entry).await?;
            let mut op = delta.delete();
            if let Some(p) = self.predicate {
                op = op.with_predicate(p);
            }
            let (delta, metrics) = op.await?;
            catalog.remember(&self.entry, delta).await;
            return Ok(metrics.num_deleted_rows.or(before).unwrap_or(0));
        }
        let delta = catalog.delta_table(&self.entry).await?;
        let schema = delta.snapshot()?.schema();
        let mut op = delta.clone().update();
        for (column, value) in self.assignments {
            let field = schema.field(&column).ok_or_else(|| {
                Error::UndefinedColumn(format!(
                    "column \"{column}\" of relation {} does not exist",
                    self.table_sql
                ))
            })?;
            let want: DataType = field.data_type().try_into_arrow().map_err(|e| {
                Error::internal(format!("column \"{column}\" has no Arrow type: {e}"))
            })?;
            op = op.with_update(
                column.as_str(),
                Expr::Cast(datafusion::logical_expr::Cast::new(Box::new(value), want)),
            );
        }
        if let Some(p) = self.predicate {
            op = op.with_predicate(p);
        }
        let (delta, metrics) = op.await?;
        catalog.remember(&self.entry, delta).await;
        Ok(metrics.num_updated_rows)
    }
}

pub async fn plan_delete(
    session: &Session,
    d: &ast::Delete,
    params: Vec<ScalarValue>,
) -> Result<RowChange> {
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
    let (_, predicate) = plan_parts(session, &table_sql, &[], d.selection.as_ref(), params).await?;
    let predicate = governed(session, &entry, single_table(table)?, &[], predicate).await?;
    Ok(RowChange {
        entry,
        table_sql,
        assignments: vec![],
        predicate,
        delete: true,
    })
}

pub async fn plan_update(
    session: &Session,
    u: &ast::Update,
    params: Vec<ScalarValue>,
) -> Result<RowChange> {
    if u.from.is_some() || u.returning.is_some() || u.limit.is_some() {
        return Err(Error::unsupported(
            "UPDATE with FROM, RETURNING or LIMIT is not supported yet",
        ));
    }
    let (table_sql, entry) = target(session, single_table(&u.table)?, "UPDATE")?;
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
    let predicate = governed(
        session,
        &entry,
        single_table(&u.table)?,
        &columns,
        predicate,
    )
    .await?;
    Ok(RowChange {
        entry,
        table_sql,
        assignments: columns.into_iter().zip(values).collect(),
        predicate,
        delete: false,
    })
}

/// UPDATE/DELETE under the writer's policies: only rows its row filter shows are touched (the
/// filter joins the predicate), columns it sees masked and columns the filter reads may not be
/// assigned (so no row can be moved out of its sight), 42501 otherwise.
async fn governed(
    session: &Session,
    entry: &TableEntry,
    name: &ast::ObjectName,
    assigned: &[String],
    predicate: Option<Expr>,
) -> Result<Option<Expr>> {
    let (schema, table) = crate::planner::names::qualified(
        name,
        &session.current_schema(),
        session.engine.planner.database(),
    )?;
    let object = format!("{schema}.{table}");
    session.authorize_columns(&object, assigned)?;
    let Some(rules) = session.write_rules(entry, &object).await? else {
        return Ok(predicate);
    };
    for c in assigned {
        if rules.masks.iter().any(|(m, _)| m == c) {
            return Err(Error::PermissionDenied(format!(
                "permission denied for column {c}"
            )));
        }
    }
    let Some(filter) = rules.filter else {
        return Ok(predicate);
    };
    let filter = unqualify(filter)?;
    for c in filter.column_refs() {
        if assigned.contains(&c.name) {
            return Err(Error::PermissionDenied(format!(
                "new row violates row-level security policy for table \"{table}\": \
                 \"{}\" is used by the policy and may not be changed",
                c.name
            )));
        }
    }
    Ok(Some(match predicate {
        Some(p) => filter.and(p),
        None => filter,
    }))
}

/// UPDATE or DELETE now: one atomic commit, the tag carrying the rows changed.
pub async fn run(session: &Session, change: RowChange) -> Result<Outcome> {
    let command = change.command();
    let rows = change.apply(session).await?;
    Ok(Outcome::Command(CommandTag::rows(command, rows)))
}
