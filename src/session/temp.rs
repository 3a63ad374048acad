//! Temporary tables (`CREATE TEMP TABLE`): Delta tables in a schema of the session's own,
//! `pg_temp_<pid>`, made on the first one and dropped with its tables' files when the session
//! ends (or when the server starts again, after a stop that ended sessions without a goodbye).
//! Other sessions see that schema in pg_namespace (`pg_is_other_temp_schema` true) but none of
//! its tables (0A000 when named). As in PostgreSQL, an unqualified name is looked up among the
//! session's temporary tables first, and `pg_temp.name` names one.
//!
//! Writing and reading them needs no grant: a session reads into them only what it may read,
//! through the governed path, and nobody else reads them. Policies whose patterns match the
//! temporary schema still bind (restrictions only add).

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Ident, ObjectName, ObjectNamePart};

use super::{Outcome, Session};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::pg::names::ident;

/// The session's temporary schema.
pub struct TempTables {
    schema: String,
    catalog: Arc<Catalog>,
    /// Whether the schema was made (then it is dropped with the session).
    made: bool,
    /// Tables made `ON COMMIT DROP` in the open block.
    drop_at_commit: Vec<String>,
}

impl TempTables {
    pub fn new(catalog: Arc<Catalog>, pid: i32) -> TempTables {
        TempTables {
            schema: crate::catalog::temp_schema(pid),
            catalog,
            made: false,
            drop_at_commit: vec![],
        }
    }

    /// Whether `object` (`schema.table` or `schema.*`) is in this session's temporary schema.
    pub fn owns(&self, object: &str) -> bool {
        self.made
            && object
                .split_once('.')
                .is_some_and(|(schema, _)| schema == self.schema)
    }

    /// The names of the session's temporary tables now.
    fn names(&self) -> Vec<String> {
        if !self.made {
            return vec![];
        }
        self.catalog.relation_names(&self.schema)
    }
}

impl Drop for TempTables {
    fn drop(&mut self) {
        if !self.made {
            return;
        }
        let (catalog, schema) = (self.catalog.clone(), std::mem::take(&mut self.schema));
        // The session is gone: its tables go in the background (a server stop before this
        // finishes leaves them to the next start).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = catalog.drop_schema(&schema, true, true).await {
                    tracing::warn!(schema, error = %e, "could not drop a temporary schema");
                }
            });
        }
    }
}

impl Session {
    /// `CREATE TEMP[ORARY] TABLE name ...`: the table, made in the session's temporary schema.
    /// `ON COMMIT DROP` drops it when the block ends (at once outside a block, as PostgreSQL's
    /// single-statement transaction does); `ON COMMIT DELETE ROWS` is not supported.
    pub(super) async fn create_temp_table(&mut self, ct: &ast::CreateTable) -> Result<Outcome> {
        let name = match ct.name.0.as_slice() {
            [ObjectNamePart::Identifier(n)] => ident(n),
            [ObjectNamePart::Identifier(s), ObjectNamePart::Identifier(n)]
                if ident(s) == "pg_temp" || ident(s) == self.temp.schema =>
            {
                ident(n)
            }
            _ => {
                return Err(Error::Data {
                    sqlstate: crate::error::SqlState::InvalidTableDefinition,
                    message: "cannot create temporary relation in non-temporary schema".into(),
                });
            }
        };
        if matches!(ct.on_commit, Some(ast::OnCommit::DeleteRows)) {
            return Err(Error::unsupported(
                "ON COMMIT DELETE ROWS is not supported (PRESERVE ROWS and DROP are)",
            ));
        }
        if !self.temp.made {
            // Made for the session, whatever becomes of the block it is made in.
            let make = self.temp.catalog.create_schema(&self.temp.schema, true);
            crate::catalog::outside_draft(make).await?;
            self.temp.made = true;
        }
        let mut made = ct.clone();
        made.temporary = false;
        made.on_commit = None;
        made.name = ObjectName(vec![
            ObjectNamePart::Identifier(Ident::with_quote('"', self.temp.schema.clone())),
            ObjectNamePart::Identifier(Ident::with_quote('"', name.clone())),
        ]);
        let out = super::ddl::create_table(self, &made).await?;
        if matches!(ct.on_commit, Some(ast::OnCommit::Drop)) {
            if self.in_transaction {
                self.temp.drop_at_commit.push(name);
            } else {
                self.drop_temp(&name).await;
            }
        }
        Ok(out)
    }

    /// Drop the block's `ON COMMIT DROP` tables (at COMMIT or ROLLBACK).
    pub(super) async fn drop_temp_at_commit(&mut self) {
        for name in std::mem::take(&mut self.temp.drop_at_commit) {
            self.drop_temp(&name).await;
        }
    }

    async fn drop_temp(&self, name: &str) {
        let catalog = &self.temp.catalog;
        let kind = crate::catalog::RelationKind::Table;
        if let Err(e) = catalog
            .drop_relation(&self.temp.schema, name, kind, true)
            .await
        {
            tracing::warn!(table = name, error = %e, "could not drop a temporary table");
        }
    }

    /// Whether `object` is one of this session's temporary tables (or their schema).
    pub(super) fn owns_temp(&self, object: &str) -> bool {
        self.temp.owns(object)
    }

    /// `stmt` with its names resolved as PostgreSQL resolves them around temporary tables:
    /// an unqualified name of one of the session's temporary tables (not a CTE's) and
    /// `pg_temp.name` name it in the session's temporary schema; another session's temporary
    /// schema is refused (0A000). None when nothing changes. The name a CREATE TABLE or CREATE
    /// VIEW makes is left alone (it is made where its own rules say).
    pub(super) fn with_temp_names(&self, stmt: &DfStatement) -> Result<Option<DfStatement>> {
        let DfStatement::Statement(st) = stmt else {
            return Ok(None);
        };
        let temps = self.temp.names();
        let mentions_temp = |n: &ObjectName| {
            n.0.first().is_some_and(
                |p| matches!(p, ObjectNamePart::Identifier(i) if ident(i).starts_with("pg_temp")),
            )
        };
        let mut any = false;
        let _ = ast::visit_relations(st.as_ref(), |n| {
            if mentions_temp(n) || (n.0.len() == 1 && !temps.is_empty()) {
                any = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        if !any {
            return Ok(None);
        }
        let ctes = cte_names(st.as_ref());
        let mut st = st.as_ref().clone();
        let made = match &st {
            ast::Statement::CreateTable(ct) => Some(ct.name.clone()),
            ast::Statement::CreateView(v) => Some(v.name.clone()),
            _ => None,
        };
        let own = self.temp.schema.clone();
        let mut refused = None;
        let mut changed = false;
        let _ = ast::visit_relations_mut(&mut st, |n: &mut ObjectName| {
            let parts = crate::pg::names::parts(n);
            let table = match parts.as_slice() {
                [t] if temps.contains(t) && !ctes.contains(t) => Some(t.clone()),
                [s, t] if s == "pg_temp" => Some(t.clone()),
                [s, _] | [_, s, _] if crate::catalog::is_temp_schema(s) && *s != own => {
                    refused = Some(Error::unsupported(
                        "cannot access temporary tables of other sessions",
                    ));
                    return ControlFlow::Break(());
                }
                _ => None,
            };
            if let Some(t) = table {
                *n = ObjectName(vec![
                    ObjectNamePart::Identifier(Ident::with_quote('"', own.clone())),
                    ObjectNamePart::Identifier(Ident::with_quote('"', t)),
                ]);
                changed = true;
            }
            ControlFlow::Continue(())
        });
        if let Some(e) = refused {
            return Err(e);
        }
        if !changed {
            return Ok(None);
        }
        match (&mut st, made) {
            (ast::Statement::CreateTable(ct), Some(name)) if !ct.temporary => ct.name = name,
            (ast::Statement::CreateView(v), Some(name)) => v.name = name,
            _ => {}
        }
        Ok(Some(DfStatement::Statement(Box::new(st))))
    }
}

/// The names the statement's WITH clauses give (at any depth).
fn cte_names(st: &ast::Statement) -> Vec<String> {
    struct Ctes(Vec<String>);
    impl ast::Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<()> {
            if let Some(with) = &q.with {
                self.0
                    .extend(with.cte_tables.iter().map(|c| ident(&c.alias.name)));
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = Ctes(vec![]);
    let _ = ast::Visit::visit(st, &mut v);
    v.0
}
