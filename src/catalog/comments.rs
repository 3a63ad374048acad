//! COMMENT ON: the descriptions of relations and their columns, kept with their catalog entry
//! (so a rename keeps them, a drop removes them, and a block's are its draft's until COMMIT),
//! and listed in pg_description as PostgreSQL lists them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Catalog;
use crate::error::{Error, Result};

/// A relation's comment and its columns' (by column name).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Comments {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, String>,
}

impl Comments {
    pub fn is_empty(&self) -> bool {
        self.relation.is_none() && self.columns.is_empty()
    }
}

impl Catalog {
    /// Set (Some) or remove (None) the comment of `schema.name`, or of its `column`. The
    /// column's existence is the caller's to check (it knows the relation's columns).
    pub async fn set_comment(
        &self,
        (schema, name): (&str, &str),
        column: Option<&str>,
        text: Option<String>,
    ) -> Result<()> {
        self.change(|doc| {
            let s = doc.schemas.get_mut(schema).ok_or_else(|| {
                Error::UndefinedSchema(format!("schema \"{schema}\" does not exist"))
            })?;
            let comments = match (s.tables.get_mut(name), s.views.get_mut(name)) {
                (Some(t), _) => &mut t.comments,
                (None, Some(v)) => &mut v.comments,
                (None, None) => {
                    return Err(Error::UndefinedTable(format!(
                        "relation \"{schema}.{name}\" does not exist"
                    )));
                }
            };
            match (column, text) {
                (None, text) => comments.relation = text,
                (Some(c), Some(text)) => {
                    comments.columns.insert(c.to_string(), text);
                }
                (Some(c), None) => {
                    comments.columns.remove(c);
                }
            }
            Ok(())
        })
        .await
    }
}
