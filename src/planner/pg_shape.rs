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
use datafusion::arrow::datatypes::SchemaRef;
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

/// The SQL type a NULL of a PostgreSQL catalog type is given.
fn sql_type(pg: &str) -> String {
    if let Some(elem) = pg.strip_suffix("[]") {
        return format!("{}[]", sql_type(elem));
    }
    match pg {
        "oid" | "regtype" | "regclass" | "int4" | "cardinal_number" => "INT",
        "int8" => "BIGINT",
        "int2" => "SMALLINT",
        "bool" => "BOOLEAN",
        "float4" => "REAL",
        "float8" | "numeric" => "DOUBLE",
        "timestamptz" => "TIMESTAMP WITH TIME ZONE",
        _ => "VARCHAR",
    }
    .to_string()
}

/// The select list giving `columns` from a source whose schema is `have`: the source's column
/// where it has one of a fitting type, else a typed NULL.
fn select_list(columns: &Columns, have: Option<&SchemaRef>) -> String {
    use datafusion::arrow::datatypes::DataType;
    columns
        .iter()
        .map(|(name, pg)| {
            let theirs = have.and_then(|s| s.field_with_name(name).ok());
            let fits = match theirs {
                Some(f) if pg.ends_with("[]") => matches!(
                    f.data_type(),
                    DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
                ),
                Some(_) => true,
                None => false,
            };
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            if fits {
                quoted
            } else {
                format!("CAST(NULL AS {}) AS {quoted}", sql_type(pg))
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

/// Where datafusion-pg-catalog's own table of a name is reached from our views.
const RAW_PREFIX: &str = "lakegate$raw$";

/// The oid of a namespace: PostgreSQL's fixed ones (pg_type and pg_proc, static, refer to
/// them), else one derived from the name.
fn namespace_oid(name: &str) -> i32 {
    match name {
        "pg_catalog" => 11,
        "public" => 2200,
        "information_schema" => 13283,
        other => name_oid(&["n", other]),
    }
}

fn relation_oid(schema: &str, name: &str) -> i32 {
    name_oid(&["r", schema, name])
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

/// The relations Lakegate defines itself, as SQL over the session's pg_catalog. Each gives a
/// subset of the relation's columns; the others are NULL.
fn defined(schema: &str, name: &str) -> Option<&'static str> {
    Some(match (schema, name) {
        ("pg_catalog", "pg_stat_activity") => {
            "SELECT d.oid AS datid, d.datname, pg_backend_pid() AS pid, \
             CAST(r.oid AS INT) AS usesysid, current_user AS usename, \
             current_setting('application_name') AS application_name, \
             CAST('127.0.0.1' AS VARCHAR) AS client_addr, 'active' AS state, \
             'client backend' AS backend_type, '' AS query \
             FROM pg_catalog.pg_database d LEFT JOIN pg_catalog.pg_roles r ON r.rolname = current_user \
             WHERE d.datname = current_database()"
        }
        ("pg_catalog", "pg_namespace") => {
            "SELECT oid, nspname, CAST(10 AS INT) AS nspowner FROM pg_catalog.\"lakegate$namespaces\""
        }
        ("pg_catalog", "pg_class") => {
            "SELECT oid, relname, relnamespace, CAST(0 AS INT) AS reltype, CAST(0 AS INT) AS reloftype, \
             CAST(10 AS INT) AS relowner, CAST(CASE WHEN relkind = 'r' THEN 2 ELSE 0 END AS INT) AS relam, \
             oid AS relfilenode, CAST(0 AS INT) AS reltablespace, CAST(0 AS INT) AS relpages, \
             CAST(-1 AS REAL) AS reltuples, CAST(0 AS INT) AS relallvisible, CAST(0 AS INT) AS reltoastrelid, \
             false AS relhasindex, false AS relisshared, 'p' AS relpersistence, relkind, relnatts, \
             CAST(0 AS SMALLINT) AS relchecks, false AS relhasrules, false AS relhastriggers, \
             false AS relhassubclass, false AS relrowsecurity, false AS relforcerowsecurity, \
             true AS relispopulated, 'd' AS relreplident, false AS relispartition, \
             CAST(0 AS INT) AS relrewrite FROM pg_catalog.\"lakegate$relations\""
        }
        ("pg_catalog", "pg_attribute") => {
            "SELECT attrelid, attname, atttypid, attlen, attnum, CAST(0 AS INT) AS attcacheoff, \
             atttypmod, CAST(0 AS SMALLINT) AS attndims, attlen > 0 AS attbyval, \
             CASE WHEN attlen = 8 THEN 'd' WHEN attlen = 4 THEN 'i' WHEN attlen = 2 THEN 's' \
                  WHEN attlen = 1 THEN 'c' ELSE 'i' END AS attalign, \
             CASE WHEN attlen > 0 THEN 'p' ELSE 'x' END AS attstorage, '' AS attcompression, \
             attnotnull, false AS atthasdef, false AS atthasmissing, '' AS attidentity, \
             '' AS attgenerated, false AS attisdropped, true AS attislocal, CAST(0 AS INT) AS attinhcount, \
             CAST(-1 AS INT) AS attstattarget, \
             CAST(CASE WHEN atttypid IN (25, 1042, 1043) THEN 100 ELSE 0 END AS INT) AS attcollation \
             FROM pg_catalog.\"lakegate$columns\""
        }
        // The session's own role (PostgreSQL's bootstrap superuser oid owns every object here).
        ("pg_catalog", "pg_roles") => {
            "SELECT current_user AS rolname, false AS rolsuper, true AS rolinherit, \
             false AS rolcreaterole, false AS rolcreatedb, true AS rolcanlogin, \
             false AS rolreplication, CAST(-1 AS INT) AS rolconnlimit, '********' AS rolpassword, \
             false AS rolbypassrls, CAST(10 AS INT) AS oid"
        }
        ("pg_catalog", "pg_user") => {
            "SELECT rolname AS usename, oid AS usesysid, rolcreatedb AS usecreatedb, \
             rolsuper AS usesuper, rolreplication AS userepl, rolbypassrls AS usebypassrls, \
             '********' AS passwd, rolvaliduntil AS valuntil FROM pg_catalog.pg_roles WHERE rolcanlogin"
        }
        ("information_schema", "information_schema_catalog_name") => {
            "SELECT current_database() AS catalog_name"
        }
        ("information_schema", "schemata") => {
            "SELECT current_database() AS catalog_name, n.nspname AS schema_name, \
             pg_get_userbyid(n.nspowner) AS schema_owner FROM pg_catalog.pg_namespace n"
        }
        ("information_schema", "tables") => {
            "SELECT COALESCE(NULLIF(r.relcatalog, ''), current_database()) AS table_catalog, \
             n.nspname AS table_schema, c.relname AS table_name, \
             CASE WHEN n.nspname LIKE 'pg_temp%' THEN 'LOCAL TEMPORARY' \
                  WHEN c.relkind IN ('r', 'p') THEN 'BASE TABLE' WHEN c.relkind = 'v' THEN 'VIEW' \
                  WHEN c.relkind = 'f' THEN 'FOREIGN' ELSE NULL END AS table_type, \
             CASE WHEN c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                  THEN 'YES' ELSE 'NO' END AS is_insertable_into, 'NO' AS is_typed \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_catalog.\"lakegate$relations\" r ON r.oid = c.oid \
             WHERE c.relkind IN ('r', 'v', 'f', 'p')"
        }
        ("information_schema", "views") => {
            "SELECT current_database() AS table_catalog, n.nspname AS table_schema, \
             c.relname AS table_name, v.definition AS view_definition, 'NONE' AS check_option, \
             'NO' AS is_updatable, 'NO' AS is_insertable_into, 'NO' AS is_trigger_updatable, \
             'NO' AS is_trigger_deletable, 'NO' AS is_trigger_insertable_into \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_catalog.pg_views v ON v.schemaname = n.nspname AND v.viewname = c.relname \
             WHERE c.relkind = 'v'"
        }
        ("information_schema", "columns") => {
            "SELECT COALESCE(NULLIF(r.relcatalog, ''), current_database()) AS table_catalog, \
             n.nspname AS table_schema, c.relname AS table_name, a.attname AS column_name, CAST(a.attnum AS INT) AS ordinal_position, \
             CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable, \
             CASE WHEN t.typcategory = 'A' THEN 'ARRAY' ELSE format_type(a.atttypid, NULL) END AS data_type, \
             CASE WHEN a.atttypid IN (1042, 1043) AND a.atttypmod > 4 THEN a.atttypmod - 4 END \
                  AS character_maximum_length, \
             CASE WHEN a.atttypid IN (25, 1042, 1043) THEN 1073741824 END AS character_octet_length, \
             CASE a.atttypid WHEN 21 THEN 16 WHEN 23 THEN 32 WHEN 20 THEN 64 WHEN 700 THEN 24 \
                  WHEN 701 THEN 53 WHEN 1700 THEN CASE WHEN a.atttypmod > 4 \
                  THEN ((a.atttypmod - 4) / 65536) % 65536 END END AS numeric_precision, \
             CASE WHEN a.atttypid IN (21, 23, 20, 1700) THEN 10 WHEN a.atttypid IN (700, 701) THEN 2 END \
                  AS numeric_precision_radix, \
             CASE WHEN a.atttypid IN (21, 23, 20) THEN 0 WHEN a.atttypid = 1700 AND a.atttypmod > 4 \
                  THEN (a.atttypmod - 4) % 65536 END AS numeric_scale, \
             CASE WHEN a.atttypid IN (1082) THEN 0 WHEN a.atttypid IN (1083, 1114, 1184, 1266) \
                  THEN CASE WHEN a.atttypmod >= 0 THEN a.atttypmod ELSE 6 END END AS datetime_precision, \
             current_database() AS udt_catalog, tn.nspname AS udt_schema, t.typname AS udt_name, \
             CAST(a.attnum AS VARCHAR) AS dtd_identifier, 'NO' AS is_self_referencing, \
             'NO' AS is_identity, 'NEVER' AS is_generated, \
             CASE WHEN c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                  THEN 'YES' ELSE 'NO' END AS is_updatable \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace \
             LEFT JOIN pg_catalog.\"lakegate$relations\" r ON r.oid = c.oid \
             WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'f', 'p', 'm')"
        }
        ("information_schema", "table_privileges") => {
            "SELECT 'lakegate' AS grantor, current_user AS grantee, current_database() AS table_catalog, \
             n.nspname AS table_schema, c.relname AS table_name, p.privilege_type, \
             'NO' AS is_grantable, CASE WHEN p.privilege_type = 'SELECT' THEN 'YES' ELSE 'NO' END AS with_hierarchy \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN (VALUES ('SELECT'), ('INSERT'), ('UPDATE'), ('DELETE')) AS p(privilege_type) \
             WHERE c.relkind IN ('r', 'v', 'f', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND has_table_privilege(c.oid, p.privilege_type)"
        }
        ("information_schema", "enabled_roles") | ("information_schema", "applicable_roles") => {
            "SELECT current_user AS role_name, current_user AS grantee, 'NO' AS is_grantable"
        }
        _ => return None,
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
        use datafusion::arrow::array::{
            BooleanArray, Int16Array, Int32Array, RecordBatch, StringArray,
        };
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::datasource::TableType;
        let Some(state) = (self.session)() else {
            return Ok(None);
        };
        let mut namespaces: Vec<String> = vec!["pg_catalog".into(), "information_schema".into()];
        // (nspname, relname, relkind, columns)
        let mut relations: Vec<(String, String, &'static str, usize)> = vec![];
        // The catalog of each relation (attached catalogs' tables are `catalog.schema.table`).
        let mut relation_catalogs: Vec<String> = vec![];
        // (nspname, relname, attname, attnum, atttypid, atttypmod, attnotnull, attlen)
        let mut columns: Vec<ColumnRow> = vec![];
        for schema in ["pg_catalog", "information_schema"] {
            for r in relations_of(schema) {
                relations.push((schema.to_string(), r, "v", 0));
                relation_catalogs.push(String::new());
            }
        }
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
                if !namespaces.contains(&schema_name) {
                    namespaces.push(schema_name.clone());
                }
                if which == NAMESPACES {
                    continue;
                }
                for table in schema.table_names() {
                    // A table that fails to open is left out, as it is from listings.
                    let Ok(Some(t)) = schema.table(&table).await else {
                        continue;
                    };
                    let kind = if t.table_type() == TableType::View {
                        "v"
                    } else {
                        "r"
                    };
                    let fields = t.schema().fields().clone();
                    relations.push((schema_name.clone(), table.clone(), kind, fields.len()));
                    relation_catalogs.push(catalog_name.clone());
                    if which != COLUMNS {
                        continue;
                    }
                    for (i, f) in fields.iter().enumerate() {
                        let pg = super::types::pg_type_of(f);
                        let modifier = match f.data_type() {
                            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
                                ((i32::from(*p) << 16) | i32::from(*s as u8)) + 4
                            }
                            _ => super::types::field_max_length(f)
                                .and_then(|(n, _)| i32::try_from(n).ok())
                                .map_or(-1, |n| n + 4),
                        };
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
                        columns.push((
                            schema_name.clone(),
                            table.clone(),
                            f.name().clone(),
                            i16::try_from(i + 1).unwrap_or(i16::MAX),
                            i32::try_from(pg.oid()).unwrap_or(25),
                            modifier,
                            !f.is_nullable(),
                            len,
                        ));
                    }
                }
            }
        }
        let text = |v: Vec<String>| Arc::new(StringArray::from(v)) as _;
        let batch = match which {
            NAMESPACES => RecordBatch::try_new(
                Arc::new(Schema::new(vec![
                    Field::new("oid", DataType::Int32, false),
                    Field::new("nspname", DataType::Utf8, false),
                ])),
                vec![
                    Arc::new(Int32Array::from_iter_values(
                        namespaces.iter().map(|n| namespace_oid(n)),
                    )),
                    text(namespaces),
                ],
            )?,
            RELATIONS => RecordBatch::try_new(
                Arc::new(Schema::new(vec![
                    Field::new("oid", DataType::Int32, false),
                    Field::new("relname", DataType::Utf8, false),
                    Field::new("relnamespace", DataType::Int32, false),
                    Field::new("relkind", DataType::Utf8, false),
                    Field::new("relnatts", DataType::Int16, false),
                    Field::new("relcatalog", DataType::Utf8, false),
                ])),
                vec![
                    Arc::new(Int32Array::from_iter_values(
                        relations.iter().map(|(n, r, _, _)| relation_oid(n, r)),
                    )),
                    text(relations.iter().map(|r| r.1.clone()).collect()),
                    Arc::new(Int32Array::from_iter_values(
                        relations.iter().map(|r| namespace_oid(&r.0)),
                    )),
                    text(relations.iter().map(|r| r.2.to_string()).collect()),
                    Arc::new(Int16Array::from_iter_values(
                        relations
                            .iter()
                            .map(|r| i16::try_from(r.3).unwrap_or(i16::MAX)),
                    )),
                    text(relation_catalogs),
                ],
            )?,
            _ => RecordBatch::try_new(
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
                        columns.iter().map(|c| relation_oid(&c.0, &c.1)),
                    )),
                    text(columns.iter().map(|c| c.2.clone()).collect()),
                    Arc::new(Int16Array::from_iter_values(columns.iter().map(|c| c.3))),
                    Arc::new(Int32Array::from_iter_values(columns.iter().map(|c| c.4))),
                    Arc::new(Int32Array::from_iter_values(columns.iter().map(|c| c.5))),
                    Arc::new(BooleanArray::from(
                        columns.iter().map(|c| c.6).collect::<Vec<_>>(),
                    )),
                    Arc::new(Int16Array::from_iter_values(columns.iter().map(|c| c.7))),
                ],
            )?,
        };
        Ok(Some(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?)))
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
        if self.schema == "pg_catalog" && [NAMESPACES, RELATIONS, COLUMNS].contains(&name) {
            return self.objects(name).await;
        }
        let Some(columns) = shapes().get(&(self.schema.to_string(), name.to_string())) else {
            // Theirs beyond PostgreSQL 15's list (newer majors' tables): as they are.
            return self.raw(name).await;
        };
        let quoted = |n: &str| format!("\"{}\"", n.replace('"', "\"\""));
        let source = if let Some(sql) = defined(self.schema, name) {
            let view = self.view(sql.to_string()).await?;
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
        let sql = match source {
            Some((from, have)) => format!(
                "SELECT {} FROM {from} AS src",
                select_list(columns, Some(&have))
            ),
            None => {
                // Nothing to say: an empty relation of PostgreSQL's shape.
                let one = format!("SELECT {}", select_list(columns, None));
                let view = self.view(one).await?;
                return Ok(match view {
                    Some(v) => Some(Arc::new(MemTable::try_new(v.schema(), vec![vec![]])?)),
                    None => None,
                });
            }
        };
        self.view(sql).await
    }

    fn table_exist(&self, name: &str) -> bool {
        shapes().contains_key(&(self.schema.to_string(), name.to_string()))
            || self.inner.as_ref().is_some_and(|i| i.table_exist(name))
            || name.starts_with(RAW_PREFIX)
    }
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
