//! Object storage and table formats. Owns the warehouse root (a local folder by default, or an
//! S3, Azure or GCS prefix), the Delta Lake and Iceberg tables in it, and plain files read in
//! place. Knows nothing of sessions, policies or the wire.

pub mod commit_tag;
pub mod delta;
pub mod delta_rows;
mod delta_sink;
pub mod files;
pub mod group_commit;
pub mod iceberg;
pub mod iceberg_commit;
pub mod nodes;
pub mod sort_order;
pub mod watch;
pub use nodes::fence;

/// Field metadata key naming the PostgreSQL type of a column stored as text (`uuid`, `json`,
/// `jsonb`, `varchar`, `bpchar`). Kept in the Delta schema, so it survives restarts.
pub const PG_TYPE_KEY: &str = "lakegate.pg_type";
/// Columns whose names start with this are Lakegate's own bookkeeping (a materialized view's
/// running sums and counts for its averages): stored in the table, never shown by its provider
/// (SELECT *, the catalogs, COPY) nor readable by name.
pub const HIDDEN_PREFIX: &str = "lakegate$";

pub use crate::config::{AzureSettings, S3Settings, TableFormat};
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

impl AzureSettings {
    fn options(&self) -> HashMap<String, String> {
        let mut o = HashMap::new();
        if let Some(a) = &self.account {
            o.insert("azure_storage_account_name".into(), a.clone());
        }
        if let Some(k) = &self.access_key {
            o.insert("azure_storage_account_key".into(), k.clone());
        }
        if let Some(e) = &self.endpoint {
            o.insert("azure_storage_endpoint".into(), e.clone());
        }
        if self.allow_http {
            o.insert("azure_allow_http".into(), "true".into());
        }
        o
    }
}

impl S3Settings {
    /// The object_store / deltalake storage options for a location of this scheme.
    pub fn options_for(&self, url: &Url) -> HashMap<String, String> {
        match url.scheme() {
            "s3" | "s3a" => self.object_store_options(),
            "gs" | "gcs" => self
                .gcs_service_account_file
                .iter()
                .map(|f| ("google_service_account".to_string(), f.clone()))
                .collect(),
            "az" | "azure" | "abfs" | "abfss" | "adl" => self.azure.options(),
            _ => HashMap::new(),
        }
    }

    /// The settings as object_store / deltalake storage options (`aws_*` keys).
    pub fn object_store_options(&self) -> HashMap<String, String> {
        let mut o = HashMap::new();
        if let Some(e) = &self.endpoint {
            o.insert("aws_endpoint".into(), e.clone());
        }
        if let Some(r) = &self.region {
            o.insert("aws_region".into(), r.clone());
        }
        if let Some(k) = &self.access_key_id {
            o.insert("aws_access_key_id".into(), k.clone());
        }
        if let Some(k) = &self.secret_access_key {
            o.insert("aws_secret_access_key".into(), k.clone());
        }
        if self.allow_http {
            o.insert("aws_allow_http".into(), "true".into());
        }
        // object_store's default is path style; say it either way for deltalake's factory.
        o.insert(
            "aws_virtual_hosted_style_request".into(),
            (!self.path_style).to_string(),
        );
        o
    }

    /// The settings as Iceberg FileIO properties (`s3.*` keys), falling back to `AWS_*`
    /// variables like the other readers do.
    pub fn iceberg_props(&self) -> HashMap<String, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut o = HashMap::new();
        let pairs = [
            (
                "s3.endpoint",
                self.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL")),
            ),
            (
                "s3.region",
                self.region
                    .clone()
                    .or_else(|| env("AWS_REGION"))
                    .or_else(|| env("AWS_DEFAULT_REGION")),
            ),
            (
                "s3.access-key-id",
                self.access_key_id
                    .clone()
                    .or_else(|| env("AWS_ACCESS_KEY_ID")),
            ),
            (
                "s3.secret-access-key",
                self.secret_access_key
                    .clone()
                    .or_else(|| env("AWS_SECRET_ACCESS_KEY")),
            ),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                o.insert(k.to_string(), v);
            }
        }
        o.insert("s3.path-style-access".into(), self.path_style.to_string());
        o
    }

    /// An object store for the bucket (or container) of `url`: S3 with these settings, Google
    /// Cloud Storage and Azure from their standard environment variables
    /// (`GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, ...).
    pub fn store(&self, url: &Url) -> Result<Arc<dyn object_store::ObjectStore>> {
        let fail = |e: object_store::Error| Error::Config(format!("cannot use {url}: {e}"));
        match url.scheme() {
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url.as_str());
                for (k, v) in self.options_for(url) {
                    if let Ok(key) = k.parse::<object_store::aws::AmazonS3ConfigKey>() {
                        b = b.with_config(key, v);
                    }
                }
                Ok(Arc::new(b.build().map_err(fail)?))
            }
            "gs" | "gcs" => {
                let mut b =
                    object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
                for (k, v) in self.options_for(url) {
                    if let Ok(key) = k.parse::<object_store::gcp::GoogleConfigKey>() {
                        b = b.with_config(key, v);
                    }
                }
                Ok(Arc::new(b.build().map_err(fail)?))
            }
            "az" | "azure" | "abfs" | "abfss" | "adl" => {
                let mut b =
                    object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url.as_str());
                for (k, v) in self.options_for(url) {
                    if let Ok(key) = k.parse::<object_store::azure::AzureConfigKey>() {
                        b = b.with_config(key, v);
                    }
                }
                Ok(Arc::new(b.build().map_err(fail)?))
            }
            other => Err(Error::unsupported(format!(
                "locations on {other}:// are not supported: use a local path, s3://, gs:// or az://"
            ))),
        }
    }
}

/// Can a column of type `from` become `to` with every old value still read exactly? (Type
/// widening: smallint/int to a larger integer, real to double precision, a decimal to more
/// digits of the same scale; and the same type.)
pub fn is_widening(
    from: &datafusion::arrow::datatypes::DataType,
    to: &datafusion::arrow::datatypes::DataType,
) -> bool {
    use datafusion::arrow::datatypes::DataType as D;
    match (from, to) {
        (a, b) if a == b => true,
        (D::Int16, D::Int32 | D::Int64) | (D::Int32, D::Int64) => true,
        (D::Float32, D::Float64) => true,
        (D::Decimal128(p1, s1), D::Decimal128(p2, s2)) => s1 == s2 && p2 >= p1,
        _ => false,
    }
}

/// Is `url` on S3 (or an S3-compatible store)?
pub fn is_s3(url: &str) -> bool {
    url.starts_with("s3://") || url.starts_with("s3a://")
}

/// Is `url` on an object store Lakegate can reach (S3, Google Cloud Storage, Azure)?
pub fn is_object_store(url: &str) -> bool {
    is_s3(url)
        || [
            "gs://", "gcs://", "az://", "azure://", "abfs://", "abfss://", "adl://",
        ]
        .iter()
        .any(|p| url.starts_with(p))
}

/// The warehouse: where table data and Lakegate's own metadata live. Data lives under `root`
/// (a local folder or an S3 prefix); Lakegate's metadata in `local/_lakegate` (the warehouse
/// folder itself, or `storage.metadata_dir` for a warehouse on object storage).
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: Url,
    local: PathBuf,
    s3: S3Settings,
    store: Option<Arc<dyn object_store::ObjectStore>>,
}

impl Warehouse {
    /// Open (and on first use create) the warehouse named by a path or a URL.
    pub fn open(spec: &str, s3: S3Settings, metadata_dir: Option<&str>) -> Result<Warehouse> {
        let (root, store, local) = match Url::parse(spec) {
            Ok(u) if u.scheme() == "file" => {
                let p = u
                    .to_file_path()
                    .map_err(|_| Error::Config(format!("invalid file URL {spec}")))?;
                (None, None, p)
            }
            Ok(u) if is_object_store(u.as_str()) => {
                let mut root = u.clone();
                if !root.path().ends_with('/') {
                    root.set_path(&format!("{}/", root.path()));
                }
                let store = s3.store(&root)?;
                let meta = PathBuf::from(metadata_dir.unwrap_or("./lakegate-meta"));
                (Some(root), Some(store), meta)
            }
            Ok(u) if u.scheme().len() > 1 => {
                return Err(Error::unsupported(format!(
                    "warehouse URL scheme {}:// is not supported; use a local folder, s3://, gs:// or az://",
                    u.scheme()
                )));
            }
            _ => (None, None, PathBuf::from(spec)),
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
        let root = match root {
            Some(r) => r,
            None => Url::from_directory_path(&local).map_err(|_| {
                Error::Config(format!("invalid warehouse folder {}", local.display()))
            })?,
        };
        std::fs::create_dir_all(local.join("_lakegate"))?;
        Ok(Warehouse {
            root,
            local,
            s3,
            store,
        })
    }

    /// Check that an object-store warehouse answers (a clear error at startup, not at first use).
    pub async fn check(&self) -> Result<()> {
        if let Some(store) = &self.store {
            let prefix = object_store::path::Path::from(self.root.path().trim_matches('/'));
            store
                .list_with_delimiter(Some(&prefix))
                .await
                .map_err(|e| {
                    Error::Config(format!("cannot reach the warehouse {}: {e}", self.root))
                })?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    pub fn local_path(&self) -> &Path {
        &self.local
    }

    /// Storage options for deltalake at `url` (endpoint and credentials of its object store;
    /// none for local folders).
    pub fn storage_options(&self, url: &Url) -> HashMap<String, String> {
        self.s3.options_for(url)
    }

    /// The object store of an s3:// location (the warehouse's or another bucket's), for
    /// DataFusion's listing tables.
    pub fn store_for(&self, url: &Url) -> Result<Arc<dyn object_store::ObjectStore>> {
        self.s3.store(url)
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
        if self.store.is_some() {
            self.s3.iceberg_props()
        } else {
            HashMap::new()
        }
    }

    /// Read one of Lakegate's own metadata files, if it exists.
    pub fn read_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match std::fs::read(self.meta_path(name)) {
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
    pub async fn remove_location(&self, url: &Url) {
        if let Some(store) = &self.store {
            if !url.as_str().starts_with(self.root.as_str()) || url == &self.root {
                return;
            }
            use futures::{StreamExt, TryStreamExt};
            let prefix = object_store::path::Path::from(url.path().trim_matches('/'));
            let paths = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
            let failed = store
                .delete_stream(paths)
                .filter_map(|r| async move { r.err() })
                .count()
                .await;
            if failed > 0 {
                tracing::warn!(location = %url, failed, "could not remove some dropped table files");
            }
            return;
        }
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
    decorate(
        inner,
        Decoration {
            types,
            ..Decoration::default()
        },
    )
}

/// The one version of one table a provider reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pinned {
    /// Where the table lives: each table created has its own, even under a name used before.
    pub location: String,
    pub version: i64,
}

/// What a provider reads, when it reads one fixed version (a Delta table's provider is opened
/// on one version); None when it cannot say.
pub fn pinned(p: &dyn TableProvider) -> Option<&Pinned> {
    p.as_any()
        .downcast_ref::<Typed>()
        .and_then(|t| t.version.as_ref())
}

/// What [`decorate`] adds to a provider.
#[derive(Default)]
pub struct Decoration {
    /// PostgreSQL types of columns, as Arrow field metadata ([`with_pg_types`]).
    pub types: HashMap<String, String>,
    /// The table's file count, when known: scans show in EXPLAIN how many files they pruned.
    pub total_files: Option<usize>,
    /// INSERT input behind [`nodes::fence`].
    pub fence_writes: bool,
    /// The one version the provider reads.
    pub version: Option<Pinned>,
    /// A Delta table's appends, written with Lakegate's Parquet writer properties.
    pub delta_append: Option<Arc<delta_sink::DeltaAppend>>,
    /// Table-wide column statistics that scans report where their own are missing.
    pub column_stats: Option<Arc<TableStats>>,
    /// An Iceberg table's INSERTs, committed with the pipeline position in force.
    pub iceberg_commit: Option<Arc<iceberg_commit::CommitTo>>,
}

/// Table-wide statistics: the row count, and each column's by name (a column's `byte_size` is
/// its size in memory over all `rows`).
#[derive(Debug, Default)]
pub struct TableStats {
    pub rows: datafusion::common::stats::Precision<usize>,
    pub columns: HashMap<String, datafusion::common::ColumnStatistics>,
}

/// `inner` with what `d` adds; `inner` itself when that is nothing.
pub fn decorate(inner: Arc<dyn TableProvider>, d: Decoration) -> Arc<dyn TableProvider> {
    let Decoration {
        types,
        total_files,
        fence_writes,
        version,
        delta_append,
        column_stats,
        iceberg_commit,
    } = d;
    let schema = inner.schema();
    let visible: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !schema.field(*i).name().starts_with(HIDDEN_PREFIX))
        .collect();
    let visible = (visible.len() < schema.fields().len()).then_some(visible);
    if types.is_empty()
        && total_files.is_none()
        && !fence_writes
        && version.is_none()
        && visible.is_none()
        && delta_append.is_none()
        && column_stats.is_none()
        && iceberg_commit.is_none()
    {
        return inner;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, _)| visible.as_ref().is_none_or(|v| v.contains(i)))
        .map(|(_, f)| match types.get(f.name()) {
            Some(t) => {
                let mut md = f.metadata().clone();
                md.insert(PG_TYPE_KEY.to_string(), t.clone());
                f.as_ref().clone().with_metadata(md)
            }
            None => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    Arc::new(Typed {
        inner,
        schema,
        total_files,
        fence_writes,
        version,
        visible,
        delta_append,
        column_stats,
        iceberg_commit,
    })
}

/// A provider that adds field metadata to another's schema and annotates its scans with file
/// counts; everything else delegates.
#[derive(Debug)]
struct Typed {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    total_files: Option<usize>,
    fence_writes: bool,
    /// The table version the inner provider reads (see `pinned`).
    version: Option<Pinned>,
    /// The inner columns shown, when some are hidden ([`HIDDEN_PREFIX`]).
    visible: Option<Vec<usize>>,
    delta_append: Option<Arc<delta_sink::DeltaAppend>>,
    column_stats: Option<Arc<TableStats>>,
    iceberg_commit: Option<Arc<iceberg_commit::CommitTo>>,
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
        let inner_projection = self.visible.as_ref().map(|v| match projection {
            Some(p) => p.iter().filter_map(|i| v.get(*i).copied()).collect(),
            None => v.clone(),
        });
        let projection = inner_projection.as_ref().or(projection);
        let scan = self.inner.scan(state, projection, filters, limit).await?;
        Ok(match self.total_files {
            Some(total) => nodes::annotate(scan, total, self.column_stats.clone()),
            None => scan,
        })
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
        if self.visible.is_some() {
            return datafusion::common::plan_err!("cannot insert into a table with hidden columns");
        }
        let input = if self.fence_writes {
            nodes::fence(input, "WriteInputExec")
        } else {
            input
        };
        match (&self.delta_append, op) {
            (Some(append), InsertOp::Append) => Ok(append.plan(input)),
            _ => {
                let plan = self.inner.insert_into(state, input, op).await?;
                match &self.iceberg_commit {
                    Some(commit) => commit.replace(plan),
                    None => Ok(plan),
                }
            }
        }
    }
}
