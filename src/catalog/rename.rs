//! Renames and moves of relations (one catalog commit), and the schemas of sessions'
//! temporary tables.

use super::{Catalog, Relation, RelationKind};
use crate::error::{Error, Result};

/// How the schema of a session's temporary tables is named: `pg_temp_<backend pid>`.
pub const TEMP_SCHEMA_PREFIX: &str = "pg_temp_";

/// The schema of the temporary tables of the session with backend pid `pid`.
pub fn temp_schema(pid: i32) -> String {
    format!("{TEMP_SCHEMA_PREFIX}{}", pid.unsigned_abs())
}

/// Whether `schema` holds some session's temporary tables.
pub fn is_temp_schema(schema: &str) -> bool {
    schema.starts_with(TEMP_SCHEMA_PREFIX)
}

impl Catalog {
    /// Drop the temporary schemas a stop left behind (no session outlives the server), with
    /// their tables' files.
    pub async fn drop_leftover_temp_schemas(&self) {
        let names: Vec<String> = self
            .schema_names()
            .into_iter()
            .filter(|s| is_temp_schema(s))
            .collect();
        for name in names {
            if let Err(e) = self.drop_schema(&name, true, true).await {
                tracing::warn!(schema = name, error = %e, "could not drop a temporary schema");
            }
        }
    }

    /// Rename a table, view or materialized view, or move it to another schema: the catalog
    /// only, in one catalog commit (its files stay where they are; an Iceberg table keeps its
    /// entry in the Iceberg catalog under the name it was made with). What moves with it: the
    /// tags and, for a materialized view, its definition and state. Materialized views reading
    /// it follow it: their recorded sources are renamed, and `follow(sql, schema)` gives their
    /// definition naming the new one (None: unchanged). Plain views are bound by name when
    /// they are read, as they always were here. None when it did not exist and `if_exists`.
    pub async fn rename_relation(
        &self,
        from: (&str, &str),
        to: (&str, &str),
        if_exists: bool,
        follow: &(dyn Fn(&str, &str) -> Result<Option<String>> + Sync),
    ) -> Result<Option<RelationKind>> {
        let ((schema, name), (new_schema, new_name)) = (from, to);
        let renamed = self
            .change(|doc| {
                let Some(s) = doc.schemas.get_mut(schema) else {
                    return match if_exists {
                        true => Ok(None),
                        false => Err(Error::UndefinedSchema(format!(
                            "schema \"{schema}\" does not exist"
                        ))),
                    };
                };
                let moved = match (s.tables.remove(name), s.views.remove(name)) {
                    (Some(t), _) => Relation::Table(t),
                    (None, Some(v)) => Relation::View(v),
                    (None, None) if if_exists => return Ok(None),
                    (None, None) => {
                        return Err(Error::UndefinedTable(format!(
                            "relation \"{name}\" does not exist"
                        )));
                    }
                };
                Self::check_free(doc, new_schema, new_name)?;
                let Some(target) = doc.schemas.get_mut(new_schema) else {
                    return Err(Error::internal("the schema disappeared during a rename"));
                };
                let kind = match moved {
                    Relation::Table(t) => {
                        target.tables.insert(new_name.to_string(), t);
                        RelationKind::Table
                    }
                    Relation::View(v) => {
                        target.views.insert(new_name.to_string(), v);
                        RelationKind::View
                    }
                };
                let (old, new) = (
                    format!("{schema}.{name}"),
                    format!("{new_schema}.{new_name}"),
                );
                for entry in doc.schemas.values_mut() {
                    for t in entry.tables.values_mut() {
                        let Some(mv) = t.matview.as_mut() else {
                            continue;
                        };
                        if !mv.sources.iter().any(|s| s.object == old) {
                            continue;
                        }
                        for source in mv.sources.iter_mut().filter(|s| s.object == old) {
                            source.object = new.clone();
                        }
                        if let Some(sql) = follow(&mv.sql, &mv.schema)? {
                            mv.sql = sql;
                        }
                    }
                }
                Ok(Some(kind))
            })
            .await?;
        Ok(renamed)
    }
}
