//! ALTER TABLE: column changes (add, drop, rename, widen), classification tags and the sort
//! order of a table's writes, as schema commits or one rewrite of a Delta table's data.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::sql::sqlparser::ast;

use super::ddl::{column_field, resolve, statement_words, table_properties};
use super::{CommandTag, Outcome, Session};
use crate::error::{Error, Result, SqlState};
use crate::pg::names::{ident, quote};
use crate::pg::types::column_type;
use crate::storage::TableFormat;

/// ALTER TABLE: ADD COLUMN (old rows read NULL), DROP COLUMN, RENAME COLUMN, and ALTER
/// COLUMN ... TYPE for safe widening (int to bigint, real to double precision, more decimal
/// digits). Iceberg tracks columns by field id, so these are schema commits and old data files
/// are read by id; on Delta tables ADD COLUMN is a schema commit and the others rewrite the
/// data under the new schema in one overwrite commit (deltalake 0.32 cannot write the column
/// mapping that would avoid it). Older versions keep their own schema either way.
pub async fn alter_table(session: &mut Session, at: &ast::AlterTable) -> Result<Outcome> {
    let done = Outcome::Command(CommandTag::new("ALTER TABLE"));
    if let [ast::AlterTableOperation::RenameTable { table_name }] = at.operations.as_slice() {
        let new = match table_name {
            ast::RenameTableNameKind::To(n) | ast::RenameTableNameKind::As(n) => n,
        };
        return rename(session, at, new).await.map(|()| done);
    }
    let (schema, table) = resolve(session, &at.name)?;
    let entry = match session.writable_target_named(&schema, &table, "ALTER TABLE") {
        Err(Error::UndefinedTable(_)) if at.if_exists => return Ok(done),
        other => other?,
    };
    let catalog = session.engine.planner.catalog().clone();
    let provider = catalog.table_provider(&entry).await?;
    let mut alter = Alter {
        schema: &schema,
        table: &table,
        columns: provider
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect(),
        changes: ColumnChanges::default(),
        tags: BTreeMap::new(),
        sort_order: None,
    };
    for op in &at.operations {
        alter.operation(session, op)?;
    }
    alter.check(entry.format)?;
    alter.keep_tags(session, &catalog).await?;
    let Alter {
        columns,
        changes,
        sort_order,
        ..
    } = alter;
    if changes.is_empty() && sort_order.is_none() {
        return Ok(done);
    }
    if entry.format == TableFormat::Iceberg {
        alter_iceberg(&catalog, &entry, changes).await?;
        return Ok(done);
    }
    let delta = catalog.delta_table(&entry).await?;
    // The sort order of later writes: as set, else the current one under the new column names.
    let was = crate::storage::delta::sort_order(&delta);
    let order = sort_order.unwrap_or_else(|| changes.carry_sort_order(&was));
    let delta = if changes.rewrites() {
        rewrite_delta(
            session,
            (&schema, &table),
            (delta, provider),
            &columns,
            &changes,
        )
        .await?
    } else if changes.added.is_empty() {
        delta
    } else {
        crate::storage::delta::add_columns(delta, &changes.added).await?
    };
    let delta = if order != was {
        crate::storage::delta::set_sort_order(delta, &order).await?
    } else {
        delta
    };
    catalog.remember(&entry, delta).await;
    Ok(done)
}

/// `ALTER TABLE | VIEW | MATERIALIZED VIEW name RENAME TO new`; a qualified new name moves it
/// to that schema (how the dialect spells `SET SCHEMA`). A catalog change only: the data, tags,
/// a materialized view's state and the materialized views reading it go with it. Needs `admin`
/// on both names, and is refused while a row filter, mask or tag of the policy files binds the
/// old name and not the new one (the policies bind names: the table would leave them).
async fn rename(session: &Session, at: &ast::AlterTable, new: &ast::ObjectName) -> Result<()> {
    let (schema, name) = resolve(session, &at.name)?;
    let (new_schema, new_name) = match new.0.as_slice() {
        [_] => (schema.clone(), crate::pg::names::last_ident(new)?),
        _ => resolve(session, new)?,
    };
    if schema != new_schema
        && (crate::catalog::is_temp_schema(&schema) || crate::catalog::is_temp_schema(&new_schema))
    {
        return Err(Error::unsupported(
            "cannot move objects into or out of temporary schemas",
        ));
    }
    let (old, moved) = (
        format!("{schema}.{name}"),
        format!("{new_schema}.{new_name}"),
    );
    session.authorize(&old, crate::policy::Action::Admin)?;
    session.authorize(&moved, crate::policy::Action::Admin)?;
    if let Some(policy) = session.engine.policies().shed_by_rename(&old, &moved) {
        return Err(Error::PermissionDenied(format!(
            "cannot rename \"{name}\" to {}: the policy \"{policy}\" binds it by name and would not \
             bind the new one (change the policy files first)",
            quote(&new_name)
        )));
    }
    let catalog = session.engine.planner.catalog().clone();
    let follow = |sql: &str, default_schema: &str| {
        follow_rename(
            sql,
            default_schema,
            (&schema, &name),
            (&new_schema, &new_name),
        )
    };
    catalog
        .rename_relation(
            (&schema, &name),
            (&new_schema, &new_name),
            at.if_exists,
            &follow,
        )
        .await?;
    Ok(())
}

/// A materialized view's definition with every reference to `from` naming `to` instead (None
/// when it names it nowhere).
fn follow_rename(
    sql: &str,
    default_schema: &str,
    from: (&str, &str),
    to: (&str, &str),
) -> Result<Option<String>> {
    use datafusion::sql::sqlparser::ast::{Ident, ObjectNamePart, visit_relations_mut};
    // (The parser's nesting is bounded as for any statement; the visitor below walks what it
    // built.)
    crate::planner::limits::check(sql)?;
    let dialect = crate::pg::dialect::LakegateDialect::default();
    let normalized = crate::pg::dialect::normalize(sql)?;
    let mut statements =
        datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, &normalized)?;
    let mut changed = false;
    for st in &mut statements {
        let _ = visit_relations_mut(st, |n: &mut ast::ObjectName| {
            let parts = crate::pg::names::parts(n);
            let named = match parts.as_slice() {
                [t] => (default_schema, t.as_str()),
                [s, t] | [_, s, t] => (s.as_str(), t.as_str()),
                _ => return std::ops::ControlFlow::<()>::Continue(()),
            };
            if named == from {
                *n = ast::ObjectName(vec![
                    ObjectNamePart::Identifier(Ident::with_quote('"', to.0)),
                    ObjectNamePart::Identifier(Ident::with_quote('"', to.1)),
                ]);
                changed = true;
            }
            std::ops::ControlFlow::Continue(())
        });
    }
    Ok(changed.then(|| {
        statements
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }))
}

/// One ALTER TABLE as its operations are read: the table's columns as they will be, the
/// changes, the classification tags and the sort order it sets.
struct Alter<'a> {
    schema: &'a str,
    table: &'a str,
    columns: Vec<Field>,
    changes: ColumnChanges,
    tags: BTreeMap<String, Vec<String>>,
    sort_order: Option<Vec<crate::storage::sort_order::SortKey>>,
}

impl Alter<'_> {
    fn find(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|f| f.name() == name)
    }

    fn position(&self, name: &str) -> Result<usize> {
        self.find(name).ok_or_else(|| self.missing(name))
    }

    fn missing(&self, name: &str) -> Error {
        Error::UndefinedColumn(format!(
            "column \"{name}\" of relation \"{}\" does not exist",
            self.table
        ))
    }

    fn duplicate(&self, name: &str) -> Error {
        Error::Data {
            sqlstate: SqlState::DuplicateColumn,
            message: format!(
                "column \"{name}\" of relation \"{}\" already exists",
                self.table
            ),
        }
    }

    fn operation(&mut self, session: &Session, op: &ast::AlterTableOperation) -> Result<()> {
        use ast::AlterTableOperation as Op;
        match op {
            Op::AddColumn {
                column_def,
                if_not_exists,
                ..
            } => self.add_column(column_def, *if_not_exists),
            Op::DropColumn {
                column_names,
                if_exists,
                ..
            } => self.drop_columns(column_names, *if_exists),
            Op::RenameColumn {
                old_column_name,
                new_column_name,
            } => self.rename_column(session, ident(old_column_name), ident(new_column_name)),
            Op::AlterColumn {
                column_name,
                op:
                    ast::AlterColumnOperation::SetDataType {
                        data_type, using, ..
                    },
            } => {
                if using.is_some() {
                    return Err(Error::unsupported(
                        "ALTER COLUMN ... TYPE ... USING is not supported: only widening, which needs no USING",
                    ));
                }
                self.retype_column(ident(column_name), data_type)
            }
            Op::SetTblProperties {
                table_properties: options,
            }
            | Op::SetOptionsParens { options } => self.set_properties(session, options),
            other => Err(Error::unsupported(format!(
                "ALTER TABLE {} is not supported (ADD, DROP, RENAME COLUMN, ALTER COLUMN TYPE, \
                 SET TBLPROPERTIES ('lakegate.tags.<column>' = '...') and \
                 SET (sort_order = '...') are)",
                statement_words(&other.to_string())
            ))),
        }
    }

    fn add_column(&mut self, column_def: &ast::ColumnDef, if_not_exists: bool) -> Result<()> {
        let name = ident(&column_def.name);
        if self.find(&name).is_some() {
            return if if_not_exists {
                Ok(())
            } else {
                Err(self.duplicate(&name))
            };
        }
        let field = column_field(column_def, true)?;
        if !field.is_nullable() {
            return Err(Error::unsupported(format!(
                "cannot add NOT NULL column \"{name}\": existing rows have no value for it"
            )));
        }
        self.columns.push(field.clone());
        self.changes.added.push(field);
        Ok(())
    }

    fn drop_columns(&mut self, names: &[ast::Ident], if_exists: bool) -> Result<()> {
        for c in names {
            let name = ident(c);
            match self.find(&name) {
                Some(i) => {
                    self.columns.remove(i);
                    self.changes.dropped.push(name);
                }
                None if if_exists => {}
                None => return Err(self.missing(&name)),
            }
        }
        Ok(())
    }

    fn rename_column(&mut self, session: &Session, old: String, new: String) -> Result<()> {
        // A policy that names the column by name would stop applying to it.
        let object = format!("{}.{}", self.schema, self.table);
        if let Some((policy, _)) = session
            .engine
            .policies()
            .governed_columns(&object)
            .into_iter()
            .find(|(_, c)| *c == old)
        {
            return Err(Error::Data {
                sqlstate: SqlState::DependentObjectsStillExist,
                message: format!(
                    "cannot rename column \"{old}\" of table \"{}\": the policy \
                     \"{policy}\" names it, and would no longer apply to it; change the \
                     policy files to name \"{new}\" (or no column) first",
                    self.table
                ),
            });
        }
        if self.find(&new).is_some() {
            return Err(self.duplicate(&new));
        }
        let i = self.position(&old)?;
        self.columns[i] = self.columns[i].clone().with_name(new.clone());
        self.changes.renamed.push((old, new));
        Ok(())
    }

    fn retype_column(&mut self, name: String, data_type: &ast::DataType) -> Result<()> {
        let i = self.position(&name)?;
        let to = column_type(data_type)?;
        if !crate::storage::is_widening(self.columns[i].data_type(), &to) {
            return Err(Error::Data {
                sqlstate: SqlState::DatatypeMismatch,
                message: format!(
                    "column \"{name}\" cannot be changed to {data_type}: only widening \
                     (smallint/integer to bigint, real to double precision, more decimal digits) \
                     keeps every old value"
                ),
            });
        }
        self.columns[i] = self.columns[i].clone().with_data_type(to.clone());
        self.changes.retyped.push((name, to));
        Ok(())
    }

    /// SET TBLPROPERTIES / SET (...): classification tags and the sort order.
    fn set_properties(&mut self, session: &Session, options: &[ast::SqlOption]) -> Result<()> {
        let set = table_properties(options)?;
        let stored = session.stored_tags(&format!("{}.{}", self.schema, self.table));
        for (column, list) in set.tags {
            self.position(&column)?;
            // Tags only mask more; taking one away unmasks a column, which is for
            // administrators of the server, not of the table.
            if !session.principal.admin
                && let Some(gone) = stored
                    .get(&column)
                    .and_then(|had| had.iter().find(|t| !list.contains(t)))
            {
                return Err(Error::PermissionDenied(format!(
                    "permission denied to remove classification tag {gone} from column \
                     \"{column}\" of table \"{}\": only an administrator may",
                    self.table
                )));
            }
            self.tags.insert(column, list);
        }
        self.sort_order = set.sort_order.or(self.sort_order.take());
        Ok(())
    }

    /// What must hold of the result: a column left, a sort order on a Delta table's columns.
    fn check(&self, format: TableFormat) -> Result<()> {
        if self.columns.is_empty() {
            return Err(Error::unsupported(format!(
                "cannot drop every column of \"{}\": drop the table instead",
                self.table
            )));
        }
        if let Some(order) = &self.sort_order {
            if format != TableFormat::Delta {
                return Err(Error::unsupported(
                    "a sort order (SET (sort_order = ...)) is kept by Delta tables only",
                ));
            }
            for k in order {
                self.position(&k.column)?;
            }
        }
        Ok(())
    }

    /// The tags set, and a renamed column's tags under its new name. Before the columns
    /// change: a renamed column keeps its tags under both names until then, so a failure in
    /// between leaves it over-tagged, never untagged.
    async fn keep_tags(&self, session: &Session, catalog: &crate::catalog::Catalog) -> Result<()> {
        if self.tags.is_empty() && self.changes.renamed.is_empty() {
            return Ok(());
        }
        let mut keep = self.tags.clone();
        let stored = session.stored_tags(&format!("{}.{}", self.schema, self.table));
        for (old, new) in &self.changes.renamed {
            if let Some(v) = stored.get(old) {
                keep.entry(new.clone()).or_insert_with(|| v.clone());
            }
        }
        catalog.set_tags(self.schema, self.table, &keep, &[]).await
    }
}

/// ALTER TABLE on an Iceberg table: schema commits (columns are tracked by field id).
async fn alter_iceberg(
    catalog: &crate::catalog::Catalog,
    entry: &crate::catalog::TableEntry,
    changes: ColumnChanges,
) -> Result<()> {
    let (ns, name) = catalog.iceberg_ident(entry)?;
    let store = catalog.iceberg().await?;
    let ColumnChanges {
        added,
        dropped,
        renamed,
        retyped,
    } = changes;
    if !renamed.is_empty() || !retyped.is_empty() {
        let db = catalog.warehouse().meta_path("iceberg.db");
        store
            .rename_and_widen(ns, name, &renamed, &retyped, &db)
            .await?;
    }
    if !added.is_empty() || !dropped.is_empty() {
        store.alter_columns(ns, name, &added, &dropped).await?;
    }
    Ok(())
}

/// The column changes of one ALTER TABLE.
#[derive(Default)]
struct ColumnChanges {
    added: Vec<Field>,
    dropped: Vec<String>,
    /// (old name, new name)
    renamed: Vec<(String, String)>,
    retyped: Vec<(String, DataType)>,
}

impl ColumnChanges {
    fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.dropped.is_empty()
            && self.renamed.is_empty()
            && self.retyped.is_empty()
    }

    /// Whether a Delta table's data must be rewritten (only added columns need not).
    fn rewrites(&self) -> bool {
        !(self.dropped.is_empty() && self.renamed.is_empty() && self.retyped.is_empty())
    }

    /// A sort order under the new column names, without the dropped columns.
    fn carry_sort_order(
        &self,
        was: &[crate::storage::sort_order::SortKey],
    ) -> Vec<crate::storage::sort_order::SortKey> {
        was.iter()
            .filter(|k| !self.dropped.contains(&k.column))
            .map(|k| {
                let mut k = k.clone();
                for (old, new) in &self.renamed {
                    if &k.column == old {
                        k.column = new.clone();
                    }
                }
                k
            })
            .collect()
    }
}

/// ALTER TABLE's rewrite of a Delta table: each column of the new schema (`columns`) from the
/// old one (renamed, cast, or NULL if new). The rows keep the order they are read in, not
/// sorted again by the table's sort order: deltalake plans the rewrite in a session of its own,
/// without Lakegate's memory limit, where a sort of the whole table would not spill.
async fn rewrite_delta(
    session: &Session,
    (schema, table): (&str, &str),
    (delta, provider): (
        deltalake::DeltaTable,
        Arc<dyn datafusion::catalog::TableProvider>,
    ),
    columns: &[Field],
    changes: &ColumnChanges,
) -> Result<deltalake::DeltaTable> {
    let ColumnChanges {
        added,
        dropped,
        renamed,
        retyped,
    } = changes;
    let mut partitions = delta.snapshot()?.metadata().partition_columns().to_vec();
    for d in dropped {
        if partitions.contains(d) {
            return Err(Error::unsupported(format!(
                "cannot drop \"{d}\": it is a partition column of \"{table}\""
            )));
        }
    }
    for p in partitions.iter_mut() {
        if let Some((_, new)) = renamed.iter().find(|(old, _)| old == p) {
            *p = new.clone();
        }
    }
    use datafusion::prelude::{cast, col, lit};
    let exprs = columns
        .iter()
        .map(|f| {
            let source = renamed
                .iter()
                .find(|(_, new)| new == f.name())
                .map(|(old, _)| old.clone())
                .unwrap_or_else(|| f.name().clone());
            let e = if added.iter().any(|a| a.name() == f.name()) {
                cast(
                    lit(datafusion::common::ScalarValue::Null),
                    f.data_type().clone(),
                )
            } else if retyped.iter().any(|(c, _)| c == f.name()) {
                cast(col(quote(&source)), f.data_type().clone())
            } else {
                col(quote(&source))
            };
            e.alias(f.name())
        })
        .collect::<Vec<_>>();
    let df = session.context().read_table(provider)?.select(exprs)?;
    let what = format!("ALTER TABLE {schema}.{table}");
    let _beat = session.heartbeat(what.clone(), std::time::Duration::from_secs(10));
    crate::storage::delta::rewrite(delta, df.into_unoptimized_plan(), partitions, &what).await
}
