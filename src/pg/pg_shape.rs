//! The shape of PostgreSQL's own catalog: every table and view of `pg_catalog` and
//! `information_schema` of the major Lakegate advertises, with PostgreSQL's columns in
//! PostgreSQL's order (`pg_shape/pg15.tsv`, generated from a real PostgreSQL by
//! `scripts/pg-catalog-shape`, not written by hand).
//!
//! Drivers fail on a missing relation or column long before they look at a value, so each
//! relation of that list exists in every session:
//! - the ones datafusion-pg-catalog fills are given PostgreSQL's columns (NULL where it has
//!   none, e.g. `pg_class.reloptions`; PostgreSQL's array type where it has text);
//! - some are views Lakegate defines over them (`information_schema.columns` from
//!   pg_attribute, `pg_stat_activity` from the session), so both schemas agree;
//! - the rest are empty: Lakegate has nothing to say there (no triggers, no constraints).
//!
//! Every view reads the session's pg_catalog, which the policies already filter, so a user sees
//! in information_schema exactly what it sees in pg_catalog.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::{MemTable, ViewTable};
use datafusion::execution::SessionState;
use datafusion::prelude::SessionContext;

/// One relation's columns: (name, PostgreSQL type name, `elem[]` for arrays).
type Columns = Vec<(String, String)>;

/// (schema, relation) -> columns, in PostgreSQL's order.
fn shapes() -> &'static HashMap<(String, String), Columns> {
    static SHAPES: OnceLock<HashMap<(String, String), Columns>> = OnceLock::new();
    SHAPES.get_or_init(|| {
        let mut out: HashMap<(String, String), Columns> = HashMap::new();
        for line in include_str!("pg_shape/pg15.tsv").lines() {
            let mut f = line.split('\t');
            if let (Some(s), Some(r), Some(c), Some(t)) = (f.next(), f.next(), f.next(), f.next()) {
                out.entry((s.to_string(), r.to_string()))
                    .or_default()
                    .push((c.to_string(), t.to_string()));
            }
        }
        out
    })
}

fn relations_of(schema: &str) -> Vec<String> {
    let mut names: Vec<String> = shapes()
        .keys()
        .filter(|(s, _)| s == schema)
        .map(|(_, r)| r.clone())
        .collect();
    names.sort();
    names
}

/// The fields of a relation of PostgreSQL's shape: the dumped table's (pg::pg_static) when
/// it has built-in rows, else from its columns' PostgreSQL types. Each carries the PostgreSQL
/// type RowDescription announces.
fn target_fields(schema: &str, name: &str, columns: &Columns) -> Vec<Field> {
    if schema == "pg_catalog"
        && let Some(t) = super::pg_static::table(name)
    {
        return t
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
    }
    columns
        .iter()
        .map(|(n, pg)| {
            let pg = match pg.strip_suffix("[]") {
                Some(elem) => format!("_{elem}"),
                None => pg.clone(),
            };
            super::pg_static::field(n, &pg)
        })
        .collect()
}

/// The PostgreSQL type RowDescription announces for a column of a catalog relation when its
/// Arrow type does not say it (`name`, `"char"`, `oid`, `regproc` ...). The relations' rows
/// carry no such metadata themselves: DataFusion does not keep field metadata through every
/// plan node, so the wire learns it from where a result column comes from (pg::describe).
pub fn column_pg_type(schema: &str, relation: &str, column: &str) -> Option<String> {
    let columns = shapes().get(&(schema.to_string(), relation.to_string()))?;
    target_fields(schema, relation, columns)
        .into_iter()
        .find(|f| f.name() == column)
        .and_then(|f| f.metadata().get(super::types::PG_TYPE_KEY).cloned())
}

/// The SQL type of an Arrow type, for the casts that give a relation its columns' types.
fn sql_type(dt: &DataType) -> String {
    match dt {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Binary => "BYTEA".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::List(f) => format!("{}[]", sql_type(f.data_type())),
        _ => "VARCHAR".into(),
    }
}

fn quoted(n: &str) -> String {
    format!("\"{}\"", n.replace('"', "\"\""))
}

/// The select list giving `fields` from a source whose schema is `have`: the source's column
/// cast to the field's type where it has one (a list only from a list), else a typed NULL.
fn select_list(fields: &[Field], have: Option<&SchemaRef>) -> String {
    fields
        .iter()
        .map(|f| {
            let theirs = have.and_then(|s| s.field_with_name(f.name()).ok());
            let fits = match theirs {
                Some(t) if matches!(f.data_type(), DataType::List(_)) => {
                    matches!(t.data_type(), DataType::List(_))
                }
                Some(_) => true,
                None => false,
            };
            let ty = sql_type(f.data_type());
            if fits {
                format!("CAST({} AS {ty}) AS {}", quoted(f.name()), quoted(f.name()))
            } else {
                format!("CAST(NULL AS {ty}) AS {}", quoted(f.name()))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// (nspname, relname, attname, attnum, atttypid, atttypmod, attnotnull, attlen)
type ColumnRow = (String, String, String, i16, i32, i32, bool, i16);

/// The session's namespaces, relations and columns, for pg_namespace, pg_class and pg_attribute.
const NAMESPACES: &str = "lakegate$namespaces";
const RELATIONS: &str = "lakegate$relations";
const COLUMNS: &str = "lakegate$columns";
/// COMMENT ON of the session's relations and columns, for pg_description.
const DESCRIPTIONS: &str = "lakegate$descriptions";

/// Where datafusion-pg-catalog's own table of a name is reached from our views.
const RAW_PREFIX: &str = "lakegate$raw$";
/// Where the built-in rows of a catalog table (pg::pg_static) are reached.
const STATIC_PREFIX: &str = "lakegate$static$";

/// The oid of a namespace: PostgreSQL's fixed ones (pg_type and pg_proc, static, refer to
/// them), else one derived from the name.
pub(crate) fn namespace_oid(name: &str) -> i32 {
    match name {
        "public" => 2200,
        other => super::pg_static::namespace_oid(other).unwrap_or_else(|| name_oid(&["n", other])),
    }
}

pub(crate) fn relation_oid(schema: &str, name: &str) -> i32 {
    super::pg_static::relation_oid(schema, name).unwrap_or_else(|| name_oid(&["r", schema, name]))
}

/// A stable oid above PostgreSQL's bootstrap range (16384) from names (FNV-1a): the same in
/// every session, unlike datafusion-pg-catalog's counter, which numbers objects as it meets
/// them and renumbers them between scans.
fn name_oid(parts: &[&str]) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    16384 + i32::try_from(h % (i32::MAX as u32 - 16384)).unwrap_or(0)
}

/// One relation of the session's catalogs, as pg_class lists it.
struct RelationRow {
    namespace: String,
    name: String,
    /// `r` table, `v` view, `m` materialized view
    kind: &'static str,
    columns: usize,
    /// The catalog it is in (attached catalogs' tables are `catalog.schema.table`).
    catalog: String,
    /// A materialized view's definition and whether it is populated.
    view: Option<(String, bool)>,
}

/// What the session's catalogs list: namespaces, relations and (when asked) columns.
/// pg_catalog's and information_schema's own rows are the built-in ones (pg_static).
#[derive(Default)]
struct Listing {
    namespaces: Vec<String>,
    relations: Vec<RelationRow>,
    /// (nspname, relname, attname, attnum, atttypid, atttypmod, attnotnull, attlen)
    columns: Vec<ColumnRow>,
    /// (objoid, objsubid, description): COMMENT ON of relations (0) and columns (attnum).
    descriptions: Vec<(i32, i32, String)>,
}

impl Listing {
    async fn of(state: &SessionState, which: &str) -> Listing {
        let mut listing = Listing::default();
        let list = state.catalog_list().clone();
        for catalog_name in list.catalog_names() {
            let Some(catalog) = list.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                if matches!(schema_name.as_str(), "pg_catalog" | "information_schema") {
                    continue;
                }
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                if !listing.namespaces.contains(&schema_name) {
                    listing.namespaces.push(schema_name.clone());
                }
                if which == NAMESPACES {
                    continue;
                }
                for table in schema.table_names() {
                    // A table that fails to open is left out, as it is from listings.
                    let Ok(Some(t)) = schema.table(&table).await else {
                        continue;
                    };
                    let matview = catalog
                        .as_any()
                        .downcast_ref::<crate::catalog::LakegateCatalog>()
                        .and_then(|c| c.matview(&schema_name, &table));
                    let foreign = catalog
                        .as_any()
                        .downcast_ref::<crate::catalog::LakegateCatalog>()
                        .is_some_and(|c| c.is_foreign(&schema_name, &table));
                    let kind = if t.table_type() == datafusion::datasource::TableType::View {
                        "v"
                    } else if foreign {
                        "f"
                    } else if matview.is_some() {
                        "m"
                    } else {
                        "r"
                    };
                    let fields = t.schema().fields().clone();
                    if which == COLUMNS {
                        listing.add_columns(&schema_name, &table, kind, &fields);
                    }
                    if which == DESCRIPTIONS {
                        let comments = catalog
                            .as_any()
                            .downcast_ref::<crate::catalog::LakegateCatalog>()
                            .map(|c| c.comments(&schema_name, &table))
                            .unwrap_or_default();
                        listing.add_descriptions(&schema_name, &table, &fields, comments);
                    }
                    listing.relations.push(RelationRow {
                        namespace: schema_name.clone(),
                        name: table,
                        kind,
                        columns: fields.len(),
                        catalog: catalog_name.clone(),
                        // A materialized view's definition and state, a view's definition.
                        view: match matview {
                            Some(m) => Some((m.sql, m.populated)),
                            None if kind == "v" => {
                                t.get_table_definition().map(|d| (d.to_string(), true))
                            }
                            None => None,
                        },
                    });
                }
            }
        }
        listing
    }

    fn add_descriptions(
        &mut self,
        namespace: &str,
        table: &str,
        fields: &datafusion::arrow::datatypes::Fields,
        comments: crate::catalog::Comments,
    ) {
        let oid = relation_oid(namespace, table);
        if let Some(text) = comments.relation {
            self.descriptions.push((oid, 0, text));
        }
        for (column, text) in comments.columns {
            // A comment on a column the reader does not see (or that was dropped) is not listed.
            if let Some(i) = fields.iter().position(|f| *f.name() == column) {
                self.descriptions
                    .push((oid, i32::try_from(i + 1).unwrap_or(i32::MAX), text));
            }
        }
    }

    fn descriptions_batch(&self) -> DfResult<RecordBatch> {
        let d = &self.descriptions;
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("objoid", DataType::Int32, false),
                Field::new("objsubid", DataType::Int32, false),
                Field::new("description", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(Int32Array::from_iter_values(d.iter().map(|x| x.0))),
                Arc::new(Int32Array::from_iter_values(d.iter().map(|x| x.1))),
                Arc::new(StringArray::from_iter_values(
                    d.iter().map(|x| x.2.as_str()),
                )),
            ],
        )?)
    }

    fn add_columns(
        &mut self,
        namespace: &str,
        table: &str,
        kind: &str,
        fields: &datafusion::arrow::datatypes::Fields,
    ) {
        for (i, f) in fields.iter().enumerate() {
            let pg = super::types::pg_type_of(f);
            let modifier = super::types::column_type_modifier(f);
            let len = match f.data_type() {
                DataType::Boolean => 1,
                DataType::Int16 => 2,
                DataType::Int32 | DataType::Float32 | DataType::Date32 => 4,
                DataType::Int64
                | DataType::Float64
                | DataType::Timestamp(..)
                | DataType::Time64(_) => 8,
                _ => -1,
            };
            self.columns.push((
                namespace.to_string(),
                table.to_string(),
                f.name().clone(),
                i16::try_from(i + 1).unwrap_or(i16::MAX),
                i32::try_from(pg.oid()).unwrap_or(25),
                modifier,
                // A view's columns are never marked NOT NULL in PostgreSQL.
                kind == "r" && !f.is_nullable(),
                len,
            ));
        }
    }

    fn namespaces_batch(&self) -> DfResult<RecordBatch> {
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("oid", DataType::Int32, false),
                Field::new("nspname", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(Int32Array::from_iter_values(
                    self.namespaces.iter().map(|n| namespace_oid(n)),
                )),
                Arc::new(StringArray::from_iter_values(&self.namespaces)),
            ],
        )?)
    }

    fn relations_batch(&self) -> DfResult<RecordBatch> {
        let r = &self.relations;
        let oids = |f: &dyn Fn(&RelationRow) -> i32| {
            Arc::new(Int32Array::from_iter_values(r.iter().map(f))) as ArrayRef
        };
        let texts = |f: &dyn Fn(&RelationRow) -> &str| {
            Arc::new(StringArray::from_iter_values(r.iter().map(f))) as ArrayRef
        };
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("oid", DataType::Int32, false),
                Field::new("relname", DataType::Utf8, false),
                Field::new("relnamespace", DataType::Int32, false),
                Field::new("relkind", DataType::Utf8, false),
                Field::new("relnatts", DataType::Int16, false),
                Field::new("relcatalog", DataType::Utf8, false),
                Field::new("reltype", DataType::Int32, false),
                Field::new("relarray", DataType::Int32, false),
                Field::new("reltuples", DataType::Int64, true),
                Field::new("definition", DataType::Utf8, true),
                Field::new("populated", DataType::Boolean, true),
                Field::new("relpersistence", DataType::Utf8, false),
            ])),
            vec![
                oids(&|x| relation_oid(&x.namespace, &x.name)),
                texts(&|x| &x.name),
                oids(&|x| namespace_oid(&x.namespace)),
                texts(&|x| x.kind),
                Arc::new(Int16Array::from_iter_values(
                    r.iter()
                        .map(|x| i16::try_from(x.columns).unwrap_or(i16::MAX)),
                )),
                texts(&|x| &x.catalog),
                oids(&|x| name_oid(&["t", &x.namespace, &x.name])),
                oids(&|x| name_oid(&["a", &x.namespace, &x.name])),
                // Row counts are not given: a governed table's count would tell a user bound
                // by a row filter how many rows it does not see.
                Arc::new(Int64Array::from(vec![None::<i64>; r.len()])),
                Arc::new(StringArray::from_iter(
                    r.iter().map(|x| x.view.as_ref().map(|(d, _)| d.as_str())),
                )),
                Arc::new(BooleanArray::from_iter(
                    r.iter().map(|x| x.view.as_ref().map(|(_, p)| *p)),
                )),
                texts(&|x| match crate::catalog::is_temp_schema(&x.namespace) {
                    true => "t",
                    false => "p",
                }),
            ],
        )?)
    }

    fn columns_batch(&self) -> DfResult<RecordBatch> {
        let c = &self.columns;
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("attrelid", DataType::Int32, false),
                Field::new("attname", DataType::Utf8, false),
                Field::new("attnum", DataType::Int16, false),
                Field::new("atttypid", DataType::Int32, false),
                Field::new("atttypmod", DataType::Int32, false),
                Field::new("attnotnull", DataType::Boolean, false),
                Field::new("attlen", DataType::Int16, false),
            ])),
            vec![
                Arc::new(Int32Array::from_iter_values(
                    c.iter().map(|c| relation_oid(&c.0, &c.1)),
                )),
                Arc::new(StringArray::from_iter_values(c.iter().map(|c| &c.2))),
                Arc::new(Int16Array::from_iter_values(c.iter().map(|c| c.3))),
                Arc::new(Int32Array::from_iter_values(c.iter().map(|c| c.4))),
                Arc::new(Int32Array::from_iter_values(c.iter().map(|c| c.5))),
                Arc::new(BooleanArray::from(
                    c.iter().map(|c| c.6).collect::<Vec<_>>(),
                )),
                Arc::new(Int16Array::from_iter_values(c.iter().map(|c| c.7))),
            ],
        )?)
    }
}

/// The relations Lakegate defines itself, as SQL over the session's pg_catalog: the blocks of
/// `pg_shape/defined.sql`, and pg_type's rows for the session's relations (`row_types`).
fn defined(schema: &str, name: &str) -> Option<&'static str> {
    if (schema, name) == ("pg_catalog", "pg_type") {
        return Some(row_types());
    }
    defined_blocks()
        .get(format!("{schema}.{name}").as_str())
        .map(String::as_str)
}

/// `pg_shape/defined.sql` by relation: each block from its `-- relation: schema.name ...`
/// line to the next such line.
fn defined_blocks() -> &'static HashMap<&'static str, String> {
    static SQL: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    SQL.get_or_init(|| {
        const MARK: &str = "-- relation:";
        let mut map = HashMap::new();
        let mut names: Vec<&'static str> = vec![];
        let mut sql = String::new();
        let lines = include_str!("pg_shape/defined.sql").lines();
        for line in lines.chain(std::iter::once(MARK)) {
            let Some(head) = line.strip_prefix(MARK) else {
                if !names.is_empty() {
                    sql.push_str(line);
                    sql.push('\n');
                }
                continue;
            };
            for name in names.drain(..) {
                map.insert(name, sql.trim().to_string());
            }
            sql.clear();
            names = head.split_whitespace().collect();
        }
        map
    })
}

/// pg_type's rows for the session's relations (see `defined`): pg_class's own row type (83)
/// and array type (273) with each relation's names and oids.
fn row_types() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let Some(t) = super::pg_static::table("pg_type") else {
            return "SELECT * FROM pg_catalog.\"lakegate$static$pg_type\" WHERE false".into();
        };
        let rows = |template: i32, over: &[(&str, &str)]| {
            let items = t
                .schema
                .fields()
                .iter()
                .map(|f| match over.iter().find(|(n, _)| *n == f.name()) {
                    Some((n, v)) => format!("{v} AS {n}"),
                    None => format!("t.{}", quoted(f.name())),
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "SELECT {items} FROM pg_catalog.\"lakegate$relations\" r CROSS JOIN \
                 (SELECT * FROM pg_catalog.\"lakegate$static$pg_type\" WHERE oid = {template}) t"
            )
        };
        let composite = rows(
            83,
            &[
                ("oid", "r.reltype"),
                ("typname", "r.relname"),
                ("typnamespace", "r.relnamespace"),
                ("typrelid", "r.oid"),
                ("typarray", "r.relarray"),
            ],
        );
        let array = rows(
            273,
            &[
                ("oid", "r.relarray"),
                ("typname", "'_' || r.relname"),
                ("typnamespace", "r.relnamespace"),
                ("typelem", "r.reltype"),
            ],
        );
        format!("{composite} UNION ALL {array}")
    })
}

/// The state of the session a schema belongs to, while it lives.
pub type SessionRef = Arc<dyn Fn() -> Option<SessionState> + Send + Sync>;

/// A session's `pg_catalog` or `information_schema`: PostgreSQL's relations, filled from
/// `inner` (datafusion-pg-catalog's pg_catalog) and the definitions above.
pub struct ShapedSchema {
    schema: &'static str,
    /// datafusion-pg-catalog's pg_catalog (for `information_schema`: none of its own).
    inner: Option<Arc<dyn SchemaProvider>>,
    /// The session whose catalog the views read (held weakly: the session owns this schema).
    session: SessionRef,
}

impl std::fmt::Debug for ShapedSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShapedSchema")
            .field("schema", &self.schema)
            .finish()
    }
}

impl ShapedSchema {
    pub fn new(
        schema: &'static str,
        inner: Option<Arc<dyn SchemaProvider>>,
        session: SessionRef,
    ) -> Self {
        ShapedSchema {
            schema,
            inner,
            session,
        }
    }

    async fn raw(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match &self.inner {
            Some(inner) if inner.table_exist(name) => inner.table(name).await,
            _ => Ok(None),
        }
    }

    /// The session's namespaces, relations and columns (what its catalogs list, which the
    /// policies filter), with oids derived from names: the same in every session and every
    /// scan, so pg_class, pg_attribute and pg_namespace always join.
    async fn objects(&self, which: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(state) = (self.session)() else {
            return Ok(None);
        };
        let listing = Listing::of(&state, which).await;
        let batch = match which {
            NAMESPACES => listing.namespaces_batch()?,
            RELATIONS => listing.relations_batch()?,
            DESCRIPTIONS => listing.descriptions_batch()?,
            _ => listing.columns_batch()?,
        };
        Ok(Some(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?)))
    }

    /// Lakegate's own rows of a relation, as SQL over the session's catalog.
    fn defined_sql(&self, name: &str) -> Option<String> {
        if (self.schema, name) == ("pg_catalog", "pg_database") {
            let database = (self.session)()
                .map(|s| s.config().options().catalog.default_catalog.clone())
                .unwrap_or_default();
            return Some(format!(
                "SELECT CAST({} AS INT) AS oid, current_database() AS datname, CAST(10 AS INT) AS datdba, \
                 6 AS encoding, 'c' AS datlocprovider, false AS datistemplate, true AS datallowconn, \
                 -1 AS datconnlimit, CAST(716 AS BIGINT) AS datfrozenxid, CAST(1 AS BIGINT) AS datminmxid, \
                 CAST(1663 AS INT) AS dattablespace, 'C.UTF-8' AS datcollate, 'C.UTF-8' AS datctype",
                name_oid(&["d", &database])
            ));
        }
        defined(self.schema, name).map(str::to_string)
    }

    /// `sql` planned as a view in the session.
    async fn view(&self, sql: String) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(state) = (self.session)() else {
            return Ok(None);
        };
        let ctx = SessionContext::new_with_state(state);
        let plan = ctx.sql(&sql).await?.into_unoptimized_plan();
        Ok(Some(Arc::new(ViewTable::new(plan, Some(sql)))))
    }
}

#[async_trait]
impl SchemaProvider for ShapedSchema {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        let mut names = relations_of(self.schema);
        if let Some(inner) = &self.inner {
            for n in inner.table_names() {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(raw) = name.strip_prefix(RAW_PREFIX) {
            return self.raw(raw).await;
        }
        if let Some(dumped) = name.strip_prefix(STATIC_PREFIX) {
            return Ok(match super::pg_static::table(dumped) {
                Some(t) => Some(Arc::new(MemTable::try_new(
                    t.batch.schema(),
                    vec![vec![t.batch.clone()]],
                )?)),
                None => None,
            });
        }
        if self.schema == "pg_catalog"
            && [NAMESPACES, RELATIONS, COLUMNS, DESCRIPTIONS].contains(&name)
        {
            return self.objects(name).await;
        }
        if let Some(status) = name.strip_prefix("lakegate$pg_") {
            // The subscriptions' rows, from the status table the ingest layer provides.
            let Some(state) = (self.session)() else {
                return Ok(None);
            };
            let default = state.config().options().catalog.default_catalog.clone();
            let Some(schema) = state
                .catalog_list()
                .catalog(&default)
                .and_then(|c| c.schema("lakegate"))
            else {
                return Ok(None);
            };
            return schema.table(&format!("pg${status}")).await;
        }
        let Some(columns) = shapes().get(&(self.schema.to_string(), name.to_string())) else {
            // Theirs beyond PostgreSQL 15's list (newer majors' tables): as they are.
            return self.raw(name).await;
        };
        let fields = target_fields(self.schema, name, columns);
        let dumped = self.schema == "pg_catalog" && super::pg_static::table(name).is_some();
        let mixed = dumped && super::pg_static::MIXED.contains(&name);
        let static_rows = || {
            format!(
                "SELECT * FROM {}.{}",
                quoted(self.schema),
                quoted(&format!("{STATIC_PREFIX}{name}"))
            )
        };
        // Lakegate's own rows: its definition, else datafusion-pg-catalog's table, unless the
        // built-in rows are all there is.
        let own = if dumped && !mixed {
            None
        } else if let Some(sql) = self.defined_sql(name) {
            let view = self.view(sql.clone()).await?;
            let Some(view) = view else { return Ok(None) };
            Some((format!("({sql})"), view.schema()))
        } else {
            self.raw(name).await?.map(|t| {
                (
                    format!(
                        "{}.{}",
                        quoted(self.schema),
                        quoted(&format!("{RAW_PREFIX}{name}"))
                    ),
                    t.schema(),
                )
            })
        };
        let own = own.map(|(from, have)| {
            format!(
                "SELECT {} FROM {from} AS src",
                select_list(&fields, Some(&have))
            )
        });
        let sql = match (own, dumped) {
            // pg_settings is the built-in rows with the session's values (its definition).
            (Some(own), true) if name == "pg_settings" => own,
            (Some(own), true) => format!("{} UNION ALL {own}", static_rows()),
            (Some(own), false) => own,
            (None, true) => static_rows(),
            (None, false) => {
                // Nothing to say: an empty relation of PostgreSQL's shape.
                let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
                    fields
                        .into_iter()
                        .map(|f| f.with_metadata(HashMap::new()))
                        .collect::<Vec<_>>(),
                ));
                return Ok(Some(Arc::new(MemTable::try_new(schema, vec![vec![]])?)));
            }
        };
        self.view(sql).await
    }

    fn table_exist(&self, name: &str) -> bool {
        shapes().contains_key(&(self.schema.to_string(), name.to_string()))
            || self.inner.as_ref().is_some_and(|i| i.table_exist(name))
            || name.starts_with(RAW_PREFIX)
            || name.starts_with(STATIC_PREFIX)
            || name.starts_with("lakegate$pg_")
    }
}

/// Whether `schema.name` is a relation of PostgreSQL's pg_catalog or information_schema.
pub fn is_relation(schema: &str, name: &str) -> bool {
    shapes().contains_key(&(schema.to_string(), name.to_string()))
}

/// Whether `name` is a relation of PostgreSQL's pg_catalog.
pub fn is_pg_catalog_relation(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    shapes().contains_key(&("pg_catalog".to_string(), lower))
}

/// Unqualified pg_catalog relations (`FROM pg_class`, `FROM pg_stat_activity`) are pg_catalog's:
/// PostgreSQL searches pg_catalog before the search path. A CTE of the same name stays the CTE.
#[derive(Debug)]
pub struct PrependPgCatalog;

impl datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule for PrependPgCatalog {
    fn rewrite(
        &self,
        mut s: datafusion::sql::sqlparser::ast::Statement,
    ) -> datafusion::sql::sqlparser::ast::Statement {
        use datafusion::sql::sqlparser::ast::{
            Ident, ObjectName, ObjectNamePart, Query, TableFactor, Visit, VisitMut, Visitor,
            VisitorMut,
        };
        use std::ops::ControlFlow;
        struct Ctes(Vec<String>);
        impl Visitor for Ctes {
            type Break = ();
            fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
                if let Some(with) = &q.with {
                    self.0.extend(
                        with.cte_tables
                            .iter()
                            .map(|c| c.alias.name.value.to_ascii_lowercase()),
                    );
                }
                ControlFlow::Continue(())
            }
        }
        let mut ctes = Ctes(vec![]);
        let _ = Visit::visit(&s, &mut ctes);
        struct V(Vec<String>);
        impl VisitorMut for V {
            type Break = ();
            fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
                if let TableFactor::Table { name, args, .. } = t
                    && args.is_none()
                    && name.0.len() == 1
                    && let ObjectNamePart::Identifier(ident) = &name.0[0]
                    && is_pg_catalog_relation(&ident.value)
                    && !self.0.contains(&ident.value.to_ascii_lowercase())
                {
                    *name = ObjectName(vec![
                        ObjectNamePart::Identifier(Ident::new("pg_catalog")),
                        name.0[0].clone(),
                    ]);
                }
                ControlFlow::Continue(())
            }
        }
        let _ = VisitMut::visit(&mut s, &mut V(ctes.0));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block of `defined.sql` is one SELECT that parses, and the relations drivers
    /// browse are there.
    #[test]
    fn every_defined_relation_is_one_query_that_parses() {
        let blocks = defined_blocks();
        for name in [
            "pg_catalog.pg_namespace",
            "pg_catalog.pg_class",
            "pg_catalog.pg_attribute",
            "pg_catalog.pg_stat_user_tables",
            "pg_catalog.pg_stat_all_tables",
            "information_schema.tables",
            "information_schema.columns",
        ] {
            assert!(blocks.contains_key(name), "{name} is not defined");
        }
        for (name, sql) in blocks {
            let parsed = datafusion::sql::sqlparser::parser::Parser::parse_sql(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                sql,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed.len(), 1, "{name}");
        }
        assert!(defined("pg_catalog", "pg_type").is_some());
        assert!(defined("pg_catalog", "pg_nothing").is_none());
    }
}
