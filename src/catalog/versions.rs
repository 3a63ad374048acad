//! Reading a table at an older version, and its history, through a hidden schema whose table
//! names say what is wanted (`schema.table@v3`, `@t<micros>`, `@history`). The planner writes
//! these names (see `planner::time_travel`); this module resolves them.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::Result as DfResult;

use super::{Catalog, Relation};
use crate::error::Error;

/// The hidden schema old versions are read through.
pub const SCHEMA: &str = "__lakegate_versions";

/// What a hidden-schema name asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    Version(i64),
    /// Microseconds since the Unix epoch (UTC).
    Timestamp(i64),
    History,
}

/// Parse `schema.table@v3` / `@t<micros>` / `@history`.
pub fn parse_name(name: &str) -> Option<(String, String, At)> {
    let (qualified, at) = name.rsplit_once('@')?;
    let (schema, table) = qualified.split_once('.')?;
    let at = if at == "history" {
        At::History
    } else if let Some(v) = at.strip_prefix('v') {
        At::Version(v.parse().ok()?)
    } else {
        At::Timestamp(at.strip_prefix('t')?.parse().ok()?)
    };
    Some((schema.to_string(), table.to_string(), at))
}

/// The hidden schema's provider.
#[derive(Debug)]
pub struct VersionsSchema {
    pub(super) catalog: Arc<Catalog>,
}

#[async_trait]
impl SchemaProvider for VersionsSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        vec![]
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some((schema, table, at)) = parse_name(name) else {
            return Ok(None);
        };
        match self.catalog.relation(&schema, &table) {
            Some(Relation::Table(entry)) => {
                Ok(Some(self.catalog.table_provider_at(&entry, &at).await?))
            }
            Some(Relation::View(_)) => Err(Error::unsupported(format!(
                "\"{table}\" is a view: time travel reads tables only"
            ))
            .into()),
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        parse_name(name).is_some_and(|(s, t, _)| self.catalog.relation(&s, &t).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(
            parse_name("demo.orders@v3"),
            Some(("demo".into(), "orders".into(), At::Version(3)))
        );
        assert_eq!(
            parse_name("s.t@history"),
            Some(("s".into(), "t".into(), At::History))
        );
        assert_eq!(
            parse_name("s.t@t1000"),
            Some(("s".into(), "t".into(), At::Timestamp(1000)))
        );
        assert_eq!(parse_name("nope"), None);
    }
}
