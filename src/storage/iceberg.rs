//! Apache Iceberg tables (crates `iceberg`, `iceberg-datafusion`) in an embedded Iceberg SQL
//! catalog: a SQLite database in the warehouse (`_lakegate/iceberg.db`) with the schema that
//! pyiceberg's `SqlCatalog` and iceberg-rust's `SqlCatalog` share, so other engines open the same
//! tables by name. Lakegate schemas are Iceberg namespaces; the catalog name is `lakegate`.
//!
//! Writes are appends (iceberg-rust 0.10 commits FastAppend snapshots); reads apply the position
//! and equality delete files other engines wrote. Commits are compare-and-swap on the catalog
//! row, so two writers never lose each other's snapshot: a conflict is retried by iceberg's
//! transaction and reported as 40001 when it persists.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::catalog::{CatalogProvider, TableProvider};
use iceberg::io::{FileIOBuilder, LocalFsStorageFactory, StorageFactory};
use iceberg::spec::{Transform, UnboundPartitionSpec};
use iceberg::table::{StaticTable, Table};
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{
    Catalog, CatalogBuilder, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent,
};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalog, SqlCatalogBuilder};
use iceberg_datafusion::{IcebergCatalogProvider, IcebergStaticTableProvider};

use super::PG_TYPE_KEY;
pub use crate::config::RestSpec;
use crate::error::{Error, Result, SqlState};

/// The catalog name rows are stored under (pyiceberg: `SqlCatalog("lakegate", ...)`).
pub const CATALOG_NAME: &str = "lakegate";
/// Table property prefix remembering the PostgreSQL type of a text column (uuid, json ...).
const PG_TYPE_PROP: &str = "lakegate.pg_type.";

/// The embedded Iceberg catalog of one warehouse.
#[derive(Debug)]
pub struct IcebergStore {
    catalog: Arc<SqlCatalog>,
    props: HashMap<String, String>,
}

impl IcebergStore {
    /// Open (creating on first use) the SQLite catalog at `db` for tables under `warehouse`.
    /// `props` are FileIO properties (S3 endpoint, credentials) for non-local warehouses.
    pub async fn open(
        db: &std::path::Path,
        warehouse: &str,
        props: HashMap<String, String>,
    ) -> Result<IcebergStore> {
        let factory = storage_factory(warehouse);
        let uri = format!("sqlite://{}?mode=rwc", db.display());
        let mut all = props.clone();
        all.insert(iceberg_catalog_sql::SQL_CATALOG_PROP_URI.into(), uri);
        all.insert(
            iceberg_catalog_sql::SQL_CATALOG_PROP_WAREHOUSE.into(),
            warehouse.trim_end_matches('/').to_string(),
        );
        all.insert(
            iceberg_catalog_sql::SQL_CATALOG_PROP_BIND_STYLE.into(),
            SqlBindStyle::QMark.to_string(),
        );
        let catalog = SqlCatalogBuilder::default()
            .with_storage_factory(factory)
            .load(CATALOG_NAME, all)
            .await?;
        Ok(IcebergStore {
            catalog: Arc::new(catalog),
            props,
        })
    }

    fn ident(schema: &str, name: &str) -> TableIdent {
        TableIdent::new(NamespaceIdent::new(schema.to_string()), name.to_string())
    }

    /// Create an empty table (format v2) at `location`, partitioned by identity on
    /// `partition_by`.
    pub async fn create_with_location(
        &self,
        schema: &str,
        name: &str,
        arrow: &Schema,
        partition_by: &[String],
        location: &url::Url,
    ) -> Result<()> {
        let ns = NamespaceIdent::new(schema.to_string());
        if !self.catalog.namespace_exists(&ns).await? {
            match self.catalog.create_namespace(&ns, HashMap::new()).await {
                Ok(_) => {}
                // A concurrent CREATE TABLE made it meanwhile.
                Err(_) if self.catalog.namespace_exists(&ns).await? => {}
                Err(e) => return Err(e.into()),
            }
        }
        let plain: Vec<Field> = arrow
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(HashMap::new()))
            .collect();
        let ice_schema =
            iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&Schema::new(plain)).map_err(
                |e| Error::unsupported(format!("a column type cannot be stored in Iceberg: {e}")),
            )?;
        let mut spec = UnboundPartitionSpec::builder();
        for col in partition_by {
            let id = ice_schema.field_id_by_name(col).ok_or_else(|| {
                Error::UndefinedColumn(format!(
                    "partition column \"{col}\" does not exist in table \"{name}\""
                ))
            })?;
            spec = spec.add_partition_field(id, col, Transform::Identity)?;
        }
        let properties: HashMap<String, String> = arrow
            .fields()
            .iter()
            .filter_map(|f| {
                f.metadata()
                    .get(PG_TYPE_KEY)
                    .map(|t| (format!("{PG_TYPE_PROP}{}", f.name()), t.clone()))
            })
            .collect();
        let creation = TableCreation::builder()
            .name(name.to_string())
            .location(location.as_str().trim_end_matches('/').to_string())
            .schema(ice_schema)
            .partition_spec(spec.build())
            .properties(properties)
            .build();
        self.catalog.create_table(&ns, creation).await?;
        Ok(())
    }

    /// The location of a table of the Iceberg catalog, if it has one of that name.
    pub async fn location_of(&self, schema: &str, name: &str) -> Result<Option<String>> {
        let ident = Self::ident(schema, name);
        if !self.catalog.table_exists(&ident).await? {
            return Ok(None);
        }
        let t = self.catalog.load_table(&ident).await?;
        Ok(Some(t.metadata().location().to_string()))
    }

    pub async fn load(&self, schema: &str, name: &str) -> Result<Table> {
        Ok(self.catalog.load_table(&Self::ident(schema, name)).await?)
    }

    /// Forget the table and remove its files.
    pub async fn drop(&self, schema: &str, name: &str) -> Result<()> {
        let ident = Self::ident(schema, name);
        if self.catalog.table_exists(&ident).await? {
            self.catalog.drop_table(&ident).await?;
        }
        Ok(())
    }

    /// A provider over the latest snapshot, refreshed from the catalog on every scan, that
    /// appends on INSERT (one FastAppend commit per statement).
    pub async fn provider(&self, schema: &str, name: &str) -> Result<Arc<dyn TableProvider>> {
        provider_in(self.catalog.clone(), schema, name)
            .await?
            .ok_or_else(|| Error::UndefinedTable(format!("relation \"{name}\" does not exist")))
    }

    /// A read-only provider over one snapshot.
    pub async fn provider_at_snapshot(
        &self,
        table: Table,
        snapshot_id: i64,
    ) -> Result<Arc<dyn TableProvider>> {
        let types = pg_types(&table);
        let p = IcebergStaticTableProvider::try_new_from_table_snapshot(table, snapshot_id).await?;
        Ok(super::with_pg_types(
            super::files::read_only(Arc::new(p)),
            types,
        ))
    }

    /// A read-only provider over a table given by its metadata file (CREATE EXTERNAL TABLE).
    pub async fn static_provider(&self, metadata_file: &str) -> Result<Arc<dyn TableProvider>> {
        let io = FileIOBuilder::new(storage_factory(metadata_file))
            .with_props(self.props.clone())
            .build();
        let ident = TableIdent::new(NamespaceIdent::new("external".into()), "table".into());
        let table = StaticTable::from_metadata_file(metadata_file, ident, io)
            .await?
            .into_table();
        let types = pg_types(&table);
        let p = IcebergStaticTableProvider::try_new_from_table(table).await?;
        Ok(super::with_pg_types(
            super::files::read_only(Arc::new(p)),
            types,
        ))
    }

    /// ALTER TABLE ADD COLUMN (nullable) / DROP COLUMN: one schema commit; old snapshots keep
    /// their own schema, and field ids keep old data files apart from new columns.
    pub async fn alter_columns(
        &self,
        schema: &str,
        name: &str,
        add: &[Field],
        drop: &[String],
    ) -> Result<()> {
        let table = self.load(schema, name).await?;
        let tx = Transaction::new(&table);
        let mut action = tx.update_schema();
        for f in add {
            let ty = iceberg::arrow::arrow_type_to_type(f.data_type()).map_err(|e| {
                Error::unsupported(format!(
                    "column \"{}\" cannot be stored in Iceberg: {e}",
                    f.name()
                ))
            })?;
            action = action.add_column(AddColumn::optional(f.name(), ty));
        }
        for d in drop {
            action = action.delete_column(d);
        }
        let tx = action.apply(tx)?;
        let table = tx.commit(self.catalog.as_ref()).await?;
        self.pin_schema(&table).await
    }

    /// iceberg-rust 0.10 scans the current snapshot with the schema that snapshot was written
    /// with, not the table's current schema: without a new snapshot, a dropped and re-added
    /// column would show its old values and a new column could not be read. An append of no
    /// files (allowed with snapshot properties) pins the new schema to a snapshot.
    async fn pin_schema(&self, table: &Table) -> Result<()> {
        super::iceberg_commit::append(
            self.catalog.as_ref(),
            table,
            vec![],
            None,
            HashMap::from([(
                "lakegate.operation".to_string(),
                "schema change".to_string(),
            )]),
        )
        .await?;
        Ok(())
    }

    /// ALTER TABLE RENAME COLUMN and ALTER COLUMN TYPE (safe widening: int to bigint, real to
    /// double precision, a decimal to more digits): a new schema with the same field ids, so old
    /// data files are read by id under the new name and type. iceberg-rust 0.10's transaction
    /// API has no such update, so this writes the next metadata file itself and swaps it in the
    /// way the SQL catalog commits (compare-and-swap on the catalog row).
    pub async fn rename_and_widen(
        &self,
        schema: &str,
        name: &str,
        renames: &[(String, String)],
        retypes: &[(String, datafusion::arrow::datatypes::DataType)],
        db: &std::path::Path,
    ) -> Result<()> {
        let table = self.load(schema, name).await?;
        let meta = table.metadata();
        let current = meta.current_schema();
        let mut fields = Vec::with_capacity(current.as_struct().fields().len());
        for f in current.as_struct().fields() {
            let mut nf = f.as_ref().clone();
            if let Some((_, dt)) = retypes.iter().find(|(c, _)| c == &f.name) {
                let to = iceberg::arrow::arrow_type_to_type(dt).map_err(|e| {
                    Error::unsupported(format!("type {dt} cannot be stored in Iceberg: {e}"))
                })?;
                let from = iceberg::arrow::type_to_arrow_type(&f.field_type)?;
                let ok = super::is_widening(&from, dt);
                if !ok {
                    return Err(Error::Data {
                        sqlstate: SqlState::DatatypeMismatch,
                        message: format!(
                            "column \"{}\" cannot be changed that way: only widening (int to bigint, real to double precision, more decimal digits) keeps old data readable",
                            f.name
                        ),
                    });
                }
                nf.field_type = Box::new(to);
            }
            if let Some((_, new)) = renames.iter().find(|(old, _)| old == &f.name) {
                nf.name = new.clone();
            }
            fields.push(Arc::new(nf));
        }
        let new_schema = iceberg::spec::Schema::builder()
            .with_schema_id(
                meta.schemas_iter()
                    .map(|s| s.schema_id())
                    .max()
                    .unwrap_or(0)
                    + 1,
            )
            .with_fields(fields)
            .with_identifier_field_ids(current.identifier_field_ids())
            .build()?;
        let current_location = table
            .metadata_location()
            .ok_or_else(|| Error::internal("an Iceberg table without a metadata location"))?
            .to_string();
        let mut builder = meta
            .clone()
            .into_builder(Some(current_location.clone()))
            .add_current_schema(new_schema)?;
        // The PostgreSQL type of a renamed text column follows it.
        let mut props = HashMap::new();
        let mut gone = vec![];
        for (old, new) in renames {
            if let Some(t) = meta.properties().get(&format!("{PG_TYPE_PROP}{old}")) {
                props.insert(format!("{PG_TYPE_PROP}{new}"), t.clone());
                gone.push(format!("{PG_TYPE_PROP}{old}"));
            }
        }
        if !gone.is_empty() {
            builder = builder.remove_properties(&gone)?.set_properties(props)?;
        }
        let new_meta = builder.build()?.metadata;
        let location = std::str::FromStr::from_str(&current_location).map(
            |l: iceberg::MetadataLocation| l.with_next_version().with_new_metadata(&new_meta),
        )?;
        new_meta.write_to(table.file_io(), &location).await?;
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .map_err(|e| Error::Storage(format!("iceberg catalog: {e}")))?;
        let swapped = sqlx::query(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = ?",
        )
        .bind(location.to_string())
        .bind(&current_location)
        .bind(CATALOG_NAME)
        .bind(schema)
        .bind(name)
        .bind(&current_location)
        .execute(&pool)
        .await
        .map_err(|e| Error::Storage(format!("iceberg catalog: {e}")))?;
        pool.close().await;
        if swapped.rows_affected() == 0 {
            return Err(Error::WriteConflict(format!(
                "could not serialize access: \"{name}\" was changed concurrently; run the ALTER TABLE again"
            )));
        }
        let table = self.load(schema, name).await?;
        self.pin_schema(&table).await
    }

    /// The pipeline position committed under `app_id` in the table (None: never).
    pub async fn position(&self, schema: &str, name: &str, app_id: &str) -> Result<Option<i64>> {
        let table = self.load(schema, name).await?;
        Ok(super::iceberg_commit::version(&table, app_id))
    }

    /// Commit the pipeline position `(app_id, version)` alone: a snapshot with no files.
    pub async fn mark(&self, schema: &str, name: &str, app_id: &str, version: i64) -> Result<()> {
        let table = self.load(schema, name).await?;
        super::iceberg_commit::append(
            self.catalog.as_ref(),
            &table,
            vec![],
            Some((app_id.to_string(), version)),
            HashMap::new(),
        )
        .await?;
        Ok(())
    }

    /// Expire snapshots older than `older_than_ms` (keeping at least the current one).
    /// Returns how many were expired.
    pub async fn expire_snapshots(
        &self,
        schema: &str,
        name: &str,
        older_than_ms: i64,
    ) -> Result<usize> {
        let table = self.load(schema, name).await?;
        let before = table.metadata().snapshots().len();
        let tx = Transaction::new(&table);
        let tx = tx
            .expire_snapshots()
            .expire_older_than_ms(older_than_ms)
            .retain_last(1)
            .apply(tx)?;
        let after = tx.commit(self.catalog.as_ref()).await?;
        Ok(before.saturating_sub(after.metadata().snapshots().len()))
    }
}

/// The storage backend for a location: iceberg's own local files, OpenDAL's (S3, GCS, Azure
/// ADLS) otherwise.
fn storage_factory(location: &str) -> Arc<dyn StorageFactory> {
    if super::is_object_store(location) {
        Arc::new(iceberg_storage_opendal::OpenDalResolvingStorageFactory::new())
    } else {
        Arc::new(LocalFsStorageFactory)
    }
}

/// Connect a REST catalog (the first request goes out when it is first used). Data files are
/// read and written through OpenDAL, whatever their scheme (s3://, file://, ...).
pub async fn connect_rest(spec: &RestSpec) -> Result<Arc<dyn Catalog>> {
    let c = iceberg_catalog_rest::RestCatalogBuilder::default()
        .with_storage_factory(Arc::new(
            iceberg_storage_opendal::OpenDalResolvingStorageFactory::new(),
        ))
        .load(spec.name.clone(), spec.props.clone())
        .await?;
    Ok(Arc::new(c))
}

/// The top-level namespaces of a catalog and the tables in each.
pub async fn list_tables(
    catalog: &Arc<dyn Catalog>,
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let mut out = std::collections::BTreeMap::new();
    for ns in catalog.list_namespaces(None).await? {
        let tables = catalog.list_tables(&ns).await?;
        out.insert(
            ns.join("."),
            tables.into_iter().map(|t| t.name().to_string()).collect(),
        );
    }
    Ok(out)
}

/// A provider over `namespace.name` of any Iceberg catalog: the latest snapshot, refreshed on
/// every scan, appending on INSERT. None when the catalog has no such table.
pub async fn provider_in(
    catalog: Arc<dyn Catalog>,
    namespace: &str,
    name: &str,
) -> Result<Option<Arc<dyn TableProvider>>> {
    let ns = NamespaceIdent::new(namespace.to_string());
    let ident = TableIdent::new(ns, name.to_string());
    let table = match catalog.load_table(&ident).await {
        Ok(t) => t,
        Err(e) if e.kind() == iceberg::ErrorKind::TableNotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // iceberg-datafusion builds its writable provider only through its catalog provider,
    // which lists every table of every namespace: give it a view of just this one table.
    let one: Arc<dyn Catalog> = Arc::new(OneTable {
        inner: catalog.clone(),
        ident: ident.clone(),
    });
    let provider = IcebergCatalogProvider::try_new(one).await?;
    // (iceberg-datafusion names schemas by single-level namespaces.)
    let provider = match provider.schema(namespace) {
        Some(s) => s.table(name).await?,
        None => None,
    };
    Ok(provider.map(|p| {
        super::decorate(
            p,
            super::Decoration {
                types: pg_types(&table),
                fence_writes: true,
                iceberg_commit: Some(Arc::new(super::iceberg_commit::CommitTo { catalog, ident })),
                ..super::Decoration::default()
            },
        )
    }))
}

/// Column name -> PostgreSQL type, from the table properties Lakegate wrote.
fn pg_types(table: &Table) -> HashMap<String, String> {
    table
        .metadata()
        .properties()
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(PG_TYPE_PROP)
                .map(|c| (c.to_string(), v.clone()))
        })
        .collect()
}

/// The snapshot that was current at `micros` (UTC), if any.
pub fn snapshot_at(table: &Table, micros: i64) -> Option<i64> {
    let ms = micros.div_euclid(1000);
    table
        .metadata()
        .history()
        .iter()
        .filter(|l| l.timestamp_ms <= ms)
        .max_by_key(|l| l.timestamp_ms)
        .map(|l| l.snapshot_id)
}

/// One row per snapshot, newest first: (snapshot id, committed at ms, operation, summary json).
pub fn history(table: &Table) -> Vec<(i64, i64, String, String)> {
    let mut rows: Vec<_> = table
        .metadata()
        .snapshots()
        .map(|s| {
            let summary = s.summary();
            let op = format!("{:?}", summary.operation).to_ascii_lowercase();
            let props = serde_json::to_string(&summary.additional_properties).unwrap_or_default();
            (s.snapshot_id(), s.timestamp_ms(), op, props)
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    rows
}

/// A catalog that shows exactly one table of another and delegates everything else.
#[derive(Debug)]
struct OneTable {
    inner: Arc<dyn Catalog>,
    ident: TableIdent,
}

#[async_trait]
impl Catalog for OneTable {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> iceberg::Result<Vec<NamespaceIdent>> {
        Ok(match parent {
            None => vec![self.ident.namespace().clone()],
            Some(_) => vec![],
        })
    }
    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }
    async fn get_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }
    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        self.inner.namespace_exists(namespace).await
    }
    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }
    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<()> {
        self.inner.drop_namespace(namespace).await
    }
    async fn list_tables(&self, namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        Ok(if namespace == self.ident.namespace() {
            vec![self.ident.clone()]
        } else {
            vec![]
        })
    }
    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> iceberg::Result<Table> {
        self.inner.create_table(namespace, creation).await
    }
    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        self.inner.load_table(table).await
    }
    async fn drop_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.drop_table(table).await
    }
    async fn purge_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.purge_table(table).await
    }
    async fn table_exists(&self, table: &TableIdent) -> iceberg::Result<bool> {
        self.inner.table_exists(table).await
    }
    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> iceberg::Result<()> {
        self.inner.rename_table(src, dest).await
    }
    async fn register_table(
        &self,
        table: &TableIdent,
        metadata_location: String,
    ) -> iceberg::Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }
    async fn update_table(&self, commit: TableCommit) -> iceberg::Result<Table> {
        self.inner.update_table(commit).await
    }
}
