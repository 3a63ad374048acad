//! MERGE INTO (PostgreSQL 15 syntax) on Delta tables: one atomic commit, by the row-level
//! write path of `dml.rs` (`storage::delta_rows`).
//!
//! The statement becomes one governed query: its source LEFT JOIN the target (read with row
//! identity) ON its condition, each joined row giving the first clause whose condition holds
//! (WHEN MATCHED for rows with a target, WHEN NOT MATCHED for rows without) and that clause's
//! new values, each computed only for the rows the clause takes. Source and target are read
//! through their secure scans like any query, so MERGE copies nothing the merging user may not
//! see; a target row matched by two source rows fails as in PostgreSQL (21000).
//!
//! In WHEN NOT MATCHED clauses there is no target row: their conditions and values read the
//! source, and unqualified names there are the source's columns (as PostgreSQL resolves them).

use datafusion::sql::sqlparser::ast::{
    self, MergeAction, MergeClauseKind, MergeInsertKind, TableFactor,
};

use super::Session;
use super::dml::{self, quoted};
use crate::error::{Error, Result, SqlState};
use crate::pg::names::last_ident;
use crate::storage::delta_rows::{ACTION, ChangeKind, FILE, NEW_PREFIX, ROW, SET_PREFIX};

/// One clause: its kind, condition, and the (column, value) pairs it sets or inserts.
struct Clause {
    kind: ChangeKind,
    matched: bool,
    condition: Option<ast::Expr>,
    values: Vec<(String, ast::Expr)>,
}

/// MERGE as a row change (see the module doc).
pub async fn plan(session: &Session, m: &ast::Merge) -> Result<dml::RowChange> {
    if m.output.is_some() {
        return Err(Error::unsupported(
            "MERGE ... RETURNING/OUTPUT is not supported yet",
        ));
    }
    dml::refuse_internal_names(m)?;
    let TableFactor::Table { name, alias, .. } = &m.table else {
        return Err(Error::unsupported("MERGE INTO needs a table"));
    };
    let (schema, table, entry) = session.delta_target(name, "MERGE")?;
    let object = format!("{schema}.{table}");
    if session.write_rules(&entry, &object).await?.is_some() {
        return Err(Error::PermissionDenied(format!(
            "permission denied for table {table}: MERGE is not allowed where row-level or column policies bind you; use INSERT, UPDATE and DELETE"
        )));
    }
    let target_alias = match alias {
        Some(a) => a.name.clone(),
        None => ast::Ident::with_quote('"', table.clone()),
    };
    let source_alias = source_alias(&m.source)?;
    let columns = crate::storage::delta::column_names(
        &session.engine.planner.catalog().delta_table(&entry).await?,
    )?;
    let clauses = clauses(m, &columns, &source_alias)?;
    let assigned: Vec<String> = clauses
        .iter()
        .filter(|c| c.kind == ChangeKind::Update)
        .flat_map(|c| c.values.iter().map(|(col, _)| col.clone()))
        .collect();
    dml::assignable(session, &entry, &table, &assigned).await?;
    dml::governed(session, &entry, &object, &assigned).await?;

    // The first clause that takes each joined row (1-based; 0: none).
    let mut which = String::from("CASE");
    for (i, c) in clauses.iter().enumerate() {
        let side = if c.matched { "IS NOT NULL" } else { "IS NULL" };
        which.push_str(&format!(" WHEN {} {side}", quoted(FILE)));
        if let Some(cond) = &c.condition {
            which.push_str(&format!(" AND ({cond})"));
        }
        which.push_str(&format!(" THEN {}", i + 1));
    }
    which.push_str(" ELSE 0 END");
    let mut items = vec![];
    let mut action = format!("CASE ({which})");
    for (i, c) in clauses.iter().enumerate() {
        action.push_str(&format!(" WHEN {} THEN {}", i + 1, c.kind as i64));
    }
    action.push_str(" ELSE 0 END");
    items.push(format!("{action} AS {}", quoted(ACTION)));
    for column in &columns {
        let givers: Vec<(usize, &ast::Expr)> = clauses
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.values
                    .iter()
                    .find(|(col, _)| col == column)
                    .map(|(_, v)| (i + 1, v))
            })
            .collect();
        if givers.is_empty() {
            continue;
        }
        let mut value = format!("CASE ({which})");
        for (i, v) in &givers {
            value.push_str(&format!(" WHEN {i} THEN ({v})"));
        }
        value.push_str(" END");
        items.push(format!(
            "{value} AS {}",
            quoted(&format!("{NEW_PREFIX}{column}"))
        ));
        let setters: Vec<String> = clauses
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.kind == ChangeKind::Update && c.values.iter().any(|(col, _)| col == column)
            })
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        let set = if setters.is_empty() {
            "false".to_string()
        } else {
            format!("({which}) IN ({})", setters.join(", "))
        };
        items.push(format!(
            "{set} AS {}",
            quoted(&format!("{SET_PREFIX}{column}"))
        ));
    }
    let catalog = dml::change_catalog();
    let source = m.source.to_string();
    let sql = format!(
        "SELECT {}, {}, {} FROM {source} LEFT JOIN {}.{}.{} AS {target_alias} ON {}",
        quoted(FILE),
        quoted(ROW),
        items.join(", "),
        quoted(&catalog),
        quoted(&schema),
        quoted(&table),
        m.on
    );
    let change = dml::merge_change(entry, (schema, table), catalog, sql);
    change.check(session).await?;
    Ok(change)
}

/// The name the MERGE source's columns go by: its alias, else its table's name.
fn source_alias(source: &TableFactor) -> Result<ast::Ident> {
    match source {
        TableFactor::Table { alias: Some(a), .. } | TableFactor::Derived { alias: Some(a), .. } => {
            Ok(a.name.clone())
        }
        TableFactor::Table { name, .. } => Ok(ast::Ident::with_quote('"', last_ident(name)?)),
        TableFactor::Derived { alias: None, .. } => Err(Error::Syntax(
            "a MERGE source subquery needs an alias".into(),
        )),
        _ => Err(Error::unsupported(
            "MERGE USING supports a table or a subquery",
        )),
    }
}

/// The clauses of a MERGE, their NOT MATCHED conditions and values reading the source
/// (`source`) for unqualified names.
fn clauses(m: &ast::Merge, columns: &[String], source: &ast::Ident) -> Result<Vec<Clause>> {
    let mut out = vec![];
    for clause in &m.clauses {
        match (&clause.clause_kind, &clause.action) {
            (MergeClauseKind::Matched, MergeAction::Update(u)) => {
                let mut values = Vec::with_capacity(u.assignments.len());
                for a in &u.assignments {
                    let ast::AssignmentTarget::ColumnName(c) = &a.target else {
                        return Err(Error::unsupported(
                            "MERGE UPDATE of a column tuple is not supported",
                        ));
                    };
                    let c = last_ident(c)?;
                    if values.iter().any(|(v, _)| v == &c) {
                        return Err(Error::Data {
                            sqlstate: SqlState::SyntaxError,
                            message: format!("multiple assignments to same column \"{c}\""),
                        });
                    }
                    values.push((c, a.value.clone()));
                }
                out.push(Clause {
                    kind: ChangeKind::Update,
                    matched: true,
                    condition: clause.predicate.clone(),
                    values,
                });
            }
            (MergeClauseKind::Matched, MergeAction::Delete { .. }) => out.push(Clause {
                kind: ChangeKind::Delete,
                matched: true,
                condition: clause.predicate.clone(),
                values: vec![],
            }),
            (
                MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget,
                MergeAction::Insert(i),
            ) => {
                let row = match &i.kind {
                    MergeInsertKind::Values(v) if v.rows.len() == 1 => v.rows[0].clone(),
                    _ => return Err(Error::unsupported("MERGE INSERT needs one VALUES row")),
                };
                let targets: Vec<String> = if i.columns.is_empty() {
                    columns.to_vec()
                } else {
                    i.columns.iter().map(last_ident).collect::<Result<_>>()?
                };
                if targets.len() != row.len() {
                    return Err(Error::Syntax(format!(
                        "MERGE INSERT has {} columns but {} values",
                        targets.len(),
                        row.len()
                    )));
                }
                for t in &targets {
                    if !columns.contains(t) {
                        return Err(Error::UndefinedColumn(format!(
                            "column \"{t}\" of relation \"{}\" does not exist",
                            m.table
                        )));
                    }
                }
                let values = targets
                    .into_iter()
                    .zip(row)
                    .filter(|(_, v)| !is_default(v))
                    .map(|(t, v)| (t, of_source(v, source)))
                    .collect();
                out.push(Clause {
                    kind: ChangeKind::Insert,
                    matched: false,
                    condition: clause.predicate.clone().map(|p| of_source(p, source)),
                    values,
                });
            }
            (kind, action) => {
                return Err(Error::unsupported(format!(
                    "MERGE clause WHEN {kind} THEN {} is not supported",
                    action.to_string().split_whitespace().next().unwrap_or("")
                )));
            }
        }
    }
    Ok(out)
}

/// `DEFAULT` in a VALUES row (no column defaults here: NULL).
fn is_default(e: &ast::Expr) -> bool {
    matches!(e, ast::Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// `e` with its unqualified column names qualified by `source`.
fn of_source(mut e: ast::Expr, source: &ast::Ident) -> ast::Expr {
    use std::ops::ControlFlow;
    let _ = ast::visit_expressions_mut(&mut e, |x| {
        if let ast::Expr::Identifier(i) = x {
            *x = ast::Expr::CompoundIdentifier(vec![source.clone(), i.clone()]);
        }
        ControlFlow::<()>::Continue(())
    });
    e
}
