//! Object storage and table formats. Owns the warehouse root (a local folder by default) and the
//! Delta Lake tables in it. Knows nothing of sessions, policies or the wire.

pub mod delta;
pub mod files;
pub mod iceberg;

/// Field metadata key naming the PostgreSQL type of a column stored as text (`uuid`, `json`,
/// `jsonb`, `varchar`, `bpchar`). Kept in the Delta schema, so it survives restarts.
pub const PG_TYPE_KEY: &str = "lakegate.pg_type";

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::TableType;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use url::Url;

use crate::error::{Error, Result};

/// The warehouse: where table data and Lakegate's own metadata live.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: Url,
    local: PathBuf,
}

impl Warehouse {
    /// Open (and on first use create) the warehouse named by a path or a URL.
    pub fn open(spec: &str) -> Result<Warehouse> {
        let local = match Url::parse(spec) {
            Ok(u) if u.scheme() == "file" => u
                .to_file_path()
                .map_err(|_| Error::Config(format!("invalid file URL {spec}")))?,
            Ok(u) if u.scheme().len() > 1 => {
                return Err(Error::unsupported(format!(
                    "warehouse URL scheme {}:// is not supported yet; use a local folder",
                    u.scheme()
                )));
            }
            _ => PathBuf::from(spec),
        };
        std::fs::create_dir_all(&local).map_err(|e| {
            Error::Config(format!(
                "cannot create warehouse folder {}: {e}",
                local.display()
            ))
        })?;
        let local = local.canonicalize().map_err(|e| {
            Error::Config(format!(
                "cannot open warehouse folder {}: {e}",
                local.display()
            ))
        })?;
        let root = Url::from_directory_path(&local)
            .map_err(|_| Error::Config(format!("invalid warehouse folder {}", local.display())))?;
        std::fs::create_dir_all(local.join("_lakegate"))?;
        Ok(Warehouse { root, local })
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    pub fn local_path(&self) -> &Path {
        &self.local
    }

    /// A fresh location for a new table; the suffix keeps a dropped table's leftovers apart.
    pub fn new_table_url(&self, schema: &str, table: &str) -> Result<Url> {
        let dir = format!(
            "{}/{}-{}/",
            sanitize(schema),
            sanitize(table),
            uuid::Uuid::new_v4().simple()
        );
        self.root
            .join(&dir)
            .map_err(|e| Error::internal(format!("table url: {e}")))
    }

    /// The path of one of Lakegate's own metadata files.
    pub fn meta_path(&self, name: &str) -> PathBuf {
        self.local.join("_lakegate").join(name)
    }

    /// FileIO properties for Iceberg tables of this warehouse (none for a local folder).
    pub fn iceberg_props(&self) -> HashMap<String, String> {
        HashMap::new()
    }

    /// Read one of Lakegate's own metadata files, if it exists.
    pub fn read_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match std::fs::read(self.local.join("_lakegate").join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replace a metadata file atomically and durably: write a temp file, fsync, rename, fsync the folder.
    pub fn write_meta(&self, name: &str, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let dir = self.local.join("_lakegate");
        let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join(name))?;
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    }

    /// Remove a table's files (after it left the catalog). Best effort: leftovers are harmless.
    pub fn remove_location(&self, url: &Url) {
        if let Ok(p) = url.to_file_path()
            && p.starts_with(&self.local)
            && p != self.local
            && let Err(e) = std::fs::remove_dir_all(&p)
        {
            tracing::warn!(path = %p.display(), error = %e, "could not remove dropped table files");
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A provider whose columns named in `types` carry their PostgreSQL type as Arrow field
/// metadata ([`PG_TYPE_KEY`]); the same provider when there are none.
pub fn with_pg_types(
    inner: Arc<dyn TableProvider>,
    types: HashMap<String, String>,
) -> Arc<dyn TableProvider> {
    if types.is_empty() {
        return inner;
    }
    let schema = inner.schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match types.get(f.name()) {
            Some(t) => {
                let mut md = f.metadata().clone();
                md.insert(PG_TYPE_KEY.to_string(), t.clone());
                f.as_ref().clone().with_metadata(md)
            }
            None => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    Arc::new(Typed { inner, schema })
}

/// A provider that only adds field metadata to another's schema; everything else delegates.
#[derive(Debug)]
struct Typed {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for Typed {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.insert_into(state, input, op).await
    }
}
