//! MERGE INTO (PostgreSQL 15 syntax) on Delta tables: one atomic commit by deltalake's merge.
//! The source (a table or a subquery) is planned by our planner; the ON condition, the clause
//! conditions and the values are handed over as SQL over the target and source aliases.

use datafusion::sql::sqlparser::ast::{
    self, MergeAction, MergeClauseKind, MergeInsertKind, TableFactor,
};

use super::{CommandTag, Outcome, Session, parse};
use crate::error::{Error, Result};
use crate::planner::Planner;
use crate::planner::names::{ident, last_ident};

fn alias_or(alias: &Option<ast::TableAlias>, name: &ast::ObjectName) -> Result<String> {
    match alias {
        Some(a) => Ok(ident(&a.name)),
        None => last_ident(name),
    }
}

pub async fn merge(session: &Session, m: &ast::Merge) -> Result<Outcome> {
    if m.output.is_some() {
        return Err(Error::unsupported(
            "MERGE ... RETURNING/OUTPUT is not supported yet",
        ));
    }
    let TableFactor::Table { name, alias, .. } = &m.table else {
        return Err(Error::unsupported("MERGE INTO needs a table"));
    };
    let (schema, table, entry) = session.delta_target(name, "MERGE")?;
    if session
        .write_rules(&entry, &format!("{schema}.{table}"))
        .await?
        .is_some()
    {
        return Err(Error::PermissionDenied(format!(
            "permission denied for table {table}: MERGE is not allowed where row-level or column policies bind you; use INSERT, UPDATE and DELETE"
        )));
    }
    let catalog = session.engine.planner.catalog().clone();
    let target_alias = alias_or(alias, name)?;
    let (source_sql, source_alias) = match &m.source {
        TableFactor::Table { name, alias, .. } => {
            (format!("SELECT * FROM {name}"), alias_or(alias, name)?)
        }
        TableFactor::Derived {
            subquery,
            alias: Some(a),
            ..
        } => (subquery.to_string(), ident(&a.name)),
        TableFactor::Derived { alias: None, .. } => {
            return Err(Error::Syntax(
                "a MERGE source subquery needs an alias".into(),
            ));
        }
        _ => {
            return Err(Error::unsupported(
                "MERGE USING supports a table or a subquery",
            ));
        }
    };
    let stmt = parse(&source_sql)?
        .pop()
        .ok_or_else(|| Error::internal("empty merge source"))?;
    let plan = Planner::plan_statement(session.context(), &stmt).await?;
    let source = session.context().execute_logical_plan(plan).await?;

    let delta = catalog.delta_table(&entry).await?;
    let columns = crate::storage::delta::column_names(&delta)?;
    let mut op = delta
        .merge(source, m.on.to_string())
        .with_source_alias(&source_alias)
        .with_target_alias(&target_alias);
    for clause in &m.clauses {
        let predicate = clause.predicate.as_ref().map(|p| p.to_string());
        match (&clause.clause_kind, &clause.action) {
            (MergeClauseKind::Matched, MergeAction::Update(u)) => {
                let mut sets = Vec::with_capacity(u.assignments.len());
                for a in &u.assignments {
                    let ast::AssignmentTarget::ColumnName(c) = &a.target else {
                        return Err(Error::unsupported(
                            "MERGE UPDATE of a column tuple is not supported",
                        ));
                    };
                    sets.push((last_ident(c)?, a.value.to_string()));
                }
                op = op.when_matched_update(|mut b| {
                    if let Some(p) = predicate {
                        b = b.predicate(p);
                    }
                    for (c, v) in sets {
                        b = b.update(c, v);
                    }
                    b
                })?;
            }
            (MergeClauseKind::Matched, MergeAction::Delete { .. }) => {
                op = op.when_matched_delete(|mut b| {
                    if let Some(p) = predicate {
                        b = b.predicate(p);
                    }
                    b
                })?;
            }
            (
                MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget,
                MergeAction::Insert(i),
            ) => {
                let values = match &i.kind {
                    MergeInsertKind::Values(v) if v.rows.len() == 1 => v.rows[0].clone(),
                    _ => return Err(Error::unsupported("MERGE INSERT needs one VALUES row")),
                };
                let targets: Vec<String> = if i.columns.is_empty() {
                    columns.clone()
                } else {
                    i.columns.iter().map(last_ident).collect::<Result<_>>()?
                };
                if targets.len() != values.len() {
                    return Err(Error::Syntax(format!(
                        "MERGE INSERT has {} columns but {} values",
                        targets.len(),
                        values.len()
                    )));
                }
                let sets: Vec<(String, String)> = targets
                    .into_iter()
                    .zip(values.iter().map(|v| v.to_string()))
                    .collect();
                op = op.when_not_matched_insert(|mut b| {
                    if let Some(p) = predicate {
                        b = b.predicate(p);
                    }
                    for (c, v) in sets {
                        b = b.set(c, v);
                    }
                    b
                })?;
            }
            (kind, action) => {
                return Err(Error::unsupported(format!(
                    "MERGE clause WHEN {kind} THEN {} is not supported",
                    action.to_string().split_whitespace().next().unwrap_or("")
                )));
            }
        }
    }
    let (delta, metrics) = op.await?;
    catalog.remember(&entry, delta).await;
    let rows = metrics.num_target_rows_inserted
        + metrics.num_target_rows_updated
        + metrics.num_target_rows_deleted;
    Ok(Outcome::Command(CommandTag::rows("MERGE", rows)))
}
