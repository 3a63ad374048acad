//! Foreign tables on PostgreSQL (their statements are in `fdw.rs`).
//!
//! A foreign table is a catalog entry (format `postgres`; listed with relkind `f`) whose
//! provider reads the remote table with `COPY (SELECT ...) TO STDOUT`: the projection, the
//! filters it can say in SQL and the limit go to the remote query (EXPLAIN shows it), and the
//! rows stream in batches (memory bounded for any table size). It is read through the governed
//! read path like any table (grants, row filters, masks); administrators manage servers,
//! mappings and foreign tables.
//!
//! Written here rather than with `datafusion-table-providers`: no release of it is on our
//! DataFusion major (53).

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::statement::{Definition, Mode};
use crate::catalog::TableEntry;
use crate::error::{Error, Result, SqlState};
use crate::pg::names::quote;

const SERVERS: &str = "foreign_servers.json";
/// Entry options of a foreign table.
pub const SERVER: &str = "foreign.server";
pub const REMOTE_SCHEMA: &str = "foreign.schema_name";
pub const REMOTE_TABLE: &str = "foreign.table_name";
pub const COLUMNS: &str = "foreign.columns";

/// A foreign server and its user mappings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Server {
    pub name: String,
    pub options: BTreeMap<String, String>,
    /// By local user (`public` for PUBLIC): the remote user's options.
    pub mappings: BTreeMap<String, BTreeMap<String, String>>,
}

impl Server {
    /// A connection definition for `user`: its mapping, else PUBLIC's, as postgres_fdw
    /// (42704 without either). With no user (the server's own work): PUBLIC's, else the
    /// only one.
    pub(super) fn connection(&self, user: Option<&str>) -> Result<Definition> {
        let public = self.mappings.get("public");
        let mapping = match user {
            Some(u) => self.mappings.get(u).or(public),
            None => public.or_else(|| {
                (self.mappings.len() == 1)
                    .then(|| self.mappings.values().next())
                    .flatten()
            }),
        }
        .ok_or_else(|| Error::Data {
            sqlstate: SqlState::UndefinedObject,
            message: match user {
                Some(u) => format!(
                    "user mapping not found for user \"{u}\", server \"{}\"",
                    self.name
                ),
                None => format!("user mapping not found for server \"{}\"", self.name),
            },
        })?;
        let mut connection = BTreeMap::new();
        for (k, v) in self.options.iter().chain(mapping.iter()) {
            let k = match k.as_str() {
                "host" | "port" | "dbname" | "user" | "password" | "password_file" | "sslmode"
                | "sslrootcert" | "connect_timeout" => k.clone(),
                _ => continue,
            };
            connection.insert(k, v.clone());
        }
        Ok(Definition {
            name: format!("server {}", self.name),
            oid: 0,
            owner: String::new(),
            connection,
            publications: vec![],
            slot_name: String::new(),
            enabled: false,
            copy_data: false,
            target_schema: None,
            mode: Mode::Mirror,
            format: crate::config::TableFormat::Delta,
            max_latency_ms: 0,
            max_rows: 0,
            server: Some(self.name.clone()),
        })
    }
}

/// The server's foreign servers (kept in the warehouse's metadata folder).
#[derive(Default)]
pub struct Servers {
    servers: Mutex<Vec<Server>>,
}

impl Servers {
    pub fn load(catalog: &crate::catalog::Catalog) -> Result<Arc<Servers>> {
        let servers: Vec<Server> = match catalog.warehouse().read_meta(SERVERS)? {
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Config(format!("{SERVERS} does not parse: {e}")))?,
            None => vec![],
        };
        Ok(Arc::new(Servers {
            servers: Mutex::new(servers),
        }))
    }

    pub(super) fn get(&self, name: &str) -> Option<Server> {
        self.servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }

    pub(super) fn save(
        &self,
        catalog: &crate::catalog::Catalog,
        servers: Vec<Server>,
    ) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&servers)
            .map_err(|e| Error::internal(format!("serialize servers: {e}")))?;
        catalog.warehouse().write_meta(SERVERS, &bytes)?;
        *self.servers.lock().unwrap_or_else(|p| p.into_inner()) = servers;
        Ok(())
    }

    pub(super) fn all(&self) -> Vec<Server> {
        self.servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl crate::catalog::ForeignTables for Servers {
    fn provider(&self, entry: &TableEntry) -> Result<Arc<dyn TableProvider>> {
        let server_name = entry.options.get(SERVER).cloned().unwrap_or_default();
        let server = self.get(&server_name).ok_or_else(|| Error::Data {
            sqlstate: SqlState::UndefinedObject,
            message: format!("server \"{server_name}\" does not exist"),
        })?;
        let columns: Vec<(String, String)> = entry
            .options
            .get(COLUMNS)
            .map(|c| serde_json::from_str(c))
            .transpose()
            .map_err(|e| Error::internal(format!("foreign table columns: {e}")))?
            .unwrap_or_default();
        let mut fields = vec![];
        let mut types = std::collections::HashMap::new();
        for (c, ty) in &columns {
            let (f, declared) = column_field(c, ty)?;
            fields.push(f);
            if let Some(d) = declared {
                types.insert(c.clone(), d);
            }
        }
        let table: Arc<dyn TableProvider> = Arc::new(ForeignTable {
            server,
            remote: format!(
                "{}.{}",
                quote(
                    entry
                        .options
                        .get(REMOTE_SCHEMA)
                        .map_or("public", String::as_str)
                ),
                quote(entry.options.get(REMOTE_TABLE).map_or("", String::as_str))
            ),
            columns,
            schema: Arc::new(Schema::new(fields)),
        });
        // Read only (INSERT/UPDATE/DELETE answer as on any read-only table), typed as declared.
        Ok(crate::storage::with_pg_types(
            crate::storage::files::read_only(table),
            types,
        ))
    }
}

/// The Arrow field a column of PostgreSQL type `ty` has (as CREATE TABLE would make it), and
/// the type as declared (kept in the field's metadata by `storage::with_pg_types`).
pub(super) fn column_field(name: &str, ty: &str) -> Result<(Field, Option<String>)> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let dt = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(ty)
        .and_then(|mut p| p.parse_data_type())
        .map_err(|e| Error::Syntax(format!("type \"{ty}\": {e}")))?;
    let arrow = crate::pg::types::column_type(&dt)?;
    Ok((
        Field::new(name, arrow, true),
        crate::pg::types::declared_pg_type(&dt),
    ))
}

/// A foreign table's provider.
#[derive(Debug)]
struct ForeignTable {
    server: Server,
    /// `"schema"."table"` on the remote side.
    remote: String,
    columns: Vec<(String, String)>,
    schema: SchemaRef,
}

/// A filter as the remote side's SQL, when it can say it exactly.
fn remote_sql(e: &Expr, depth: usize) -> Option<String> {
    if depth > 64 {
        return None;
    }
    Some(match e {
        Expr::Column(c) => quote(&c.name),
        Expr::Literal(v, _) => literal(v)?,
        Expr::BinaryExpr(b) => {
            let op = match b.op {
                Operator::Eq => "=",
                Operator::NotEq => "<>",
                Operator::Lt => "<",
                Operator::LtEq => "<=",
                Operator::Gt => ">",
                Operator::GtEq => ">=",
                Operator::And => "AND",
                Operator::Or => "OR",
                _ => return None,
            };
            format!(
                "({} {op} {})",
                remote_sql(&b.left, depth + 1)?,
                remote_sql(&b.right, depth + 1)?
            )
        }
        Expr::IsNull(x) => format!("({} IS NULL)", remote_sql(x, depth + 1)?),
        Expr::IsNotNull(x) => format!("({} IS NOT NULL)", remote_sql(x, depth + 1)?),
        Expr::Not(x) => format!("(NOT {})", remote_sql(x, depth + 1)?),
        Expr::InList(l) => {
            let items = l
                .list
                .iter()
                .map(|x| remote_sql(x, depth + 1))
                .collect::<Option<Vec<_>>>()?;
            format!(
                "({} {}IN ({}))",
                remote_sql(&l.expr, depth + 1)?,
                if l.negated { "NOT " } else { "" },
                items.join(", ")
            )
        }
        Expr::Between(b) => format!(
            "({} {}BETWEEN {} AND {})",
            remote_sql(&b.expr, depth + 1)?,
            if b.negated { "NOT " } else { "" },
            remote_sql(&b.low, depth + 1)?,
            remote_sql(&b.high, depth + 1)?
        ),
        _ => return None,
    })
}

fn literal(v: &ScalarValue) -> Option<String> {
    let text = |s: &str| format!("'{}'", s.replace('\'', "''"));
    Some(match v {
        ScalarValue::Boolean(Some(b)) => b.to_string(),
        ScalarValue::Int8(Some(_))
        | ScalarValue::Int16(Some(_))
        | ScalarValue::Int32(Some(_))
        | ScalarValue::Int64(Some(_))
        | ScalarValue::UInt8(Some(_))
        | ScalarValue::UInt16(Some(_))
        | ScalarValue::UInt32(Some(_))
        | ScalarValue::UInt64(Some(_))
        | ScalarValue::Decimal128(Some(_), _, _) => v.to_string(),
        ScalarValue::Float64(Some(f)) if f.is_finite() => format!("{f:e}::float8"),
        ScalarValue::Float32(Some(f)) if f.is_finite() => format!("{f:e}::float4"),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => text(s),
        ScalarValue::Date32(Some(_)) => format!("DATE {}", text(&v.to_string())),
        ScalarValue::TimestampMicrosecond(Some(_), None)
        | ScalarValue::TimestampNanosecond(Some(_), None)
        | ScalarValue::TimestampMillisecond(Some(_), None)
        | ScalarValue::TimestampSecond(Some(_), None) => {
            format!("TIMESTAMP {}", text(&v.to_string()))
        }
        _ => return None,
    })
}

#[async_trait]
impl TableProvider for ForeignTable {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match remote_sql(f, 0) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let indices: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        let schema = Arc::new(self.schema.project(&indices)?);
        let select = if indices.is_empty() {
            "1".to_string()
        } else {
            indices
                .iter()
                .filter_map(|i| self.columns.get(*i))
                .map(|(c, ty)| text_of(c, ty))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let wheres: Vec<String> = filters.iter().filter_map(|f| remote_sql(f, 0)).collect();
        let mut query = format!("SELECT {select} FROM {}", self.remote);
        if !wheres.is_empty() {
            query.push_str(&format!(" WHERE {}", wheres.join(" AND ")));
        }
        if let Some(n) = limit {
            query.push_str(&format!(" LIMIT {n}"));
        }
        let types = indices
            .iter()
            .filter_map(|i| self.columns.get(*i).map(|(_, t)| t.clone()))
            .collect();
        Ok(Arc::new(ForeignScan {
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(schema.clone()),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
            schema,
            server: self.server.clone(),
            query,
            types,
            empty_projection: indices.is_empty(),
            user: state
                .config()
                .get_extension::<crate::planner::SessionUser>()
                .map(|u| u.0.clone()),
        }))
    }
}

/// The remote expression giving column `c`'s text as the conversion here reads it.
fn text_of(c: &str, ty: &str) -> String {
    let q = quote(c);
    if ty.starts_with("timestamp with time zone") || ty == "timestamptz" {
        format!("to_char({q} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
    } else {
        q
    }
}

/// The scan: the remote query, streamed.
struct ForeignScan {
    properties: Arc<PlanProperties>,
    schema: SchemaRef,
    server: Server,
    query: String,
    types: Vec<String>,
    empty_projection: bool,
    /// Whose user mapping connects (None: the server's own work).
    user: Option<String>,
}

impl fmt::Debug for ForeignScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ForeignScan({})", self.query)
    }
}

impl DisplayAs for ForeignScan {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ForeignScan: server={} remote_query={}",
            self.server.name, self.query
        )
    }
}

/// Rows per batch of a foreign scan.
const BATCH_ROWS: usize = 8192;

impl ExecutionPlan for ForeignScan {
    fn name(&self) -> &str {
        "ForeignScan"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let (tx, rx) = tokio::sync::mpsc::channel::<DfResult<RecordBatch>>(2);
        let def = self
            .server
            .connection(self.user.as_deref())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let query = self.query.clone();
        let schema = self.schema.clone();
        let types = self.types.clone();
        let empty = self.empty_projection;
        tokio::spawn(async move {
            let r = stream_rows(&def, &query, &schema, &types, empty, &tx).await;
            if let Err(e) = r {
                let _ = tx.send(Err(DataFusionError::External(Box::new(e)))).await;
            }
        });
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream.boxed(),
        )))
    }
}

async fn stream_rows(
    def: &Definition,
    query: &str,
    schema: &SchemaRef,
    types: &[String],
    empty: bool,
    tx: &tokio::sync::mpsc::Sender<DfResult<RecordBatch>>,
) -> Result<()> {
    let client = super::source::connect(def).await?;
    client
        .batch_execute(
            "SET DateStyle = 'ISO'; SET TimeZone = 'UTC'; SET extra_float_digits = 3; \
             SET bytea_output = 'hex'; SET IntervalStyle = 'postgres'",
        )
        .await
        .map_err(|e| super::source::source_error("foreign server", e))?;
    let stream = client
        .copy_out(&format!("COPY ({query}) TO STDOUT"))
        .await
        .map_err(|e| super::source::source_error("foreign table", e))?;
    futures::pin_mut!(stream);
    let width = if empty { 1 } else { schema.fields().len() };
    let mut text = super::copy_text::TextColumns::new(width);
    let mut done = false;
    while !done {
        match stream.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| super::source::source_error("foreign table", e))?;
                text.feed(&chunk)?;
            }
            None => {
                text.finish()?;
                done = true;
            }
        }
        if text.rows() >= BATCH_ROWS || (done && text.rows() > 0) {
            let rows = text.rows();
            let batch = to_batch(schema, types, text.take(), rows, empty)?;
            if tx.send(Ok(batch)).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Text rows as a batch of `schema`: parsed (arrays, bytea) and cast by Arrow.
fn to_batch(
    schema: &SchemaRef,
    types: &[String],
    text: Vec<datafusion::arrow::array::StringArray>,
    rows: usize,
    empty: bool,
) -> Result<RecordBatch> {
    if empty {
        return Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )?);
    }
    let mut columns: Vec<ArrayRef> = vec![];
    for ((i, f), t) in schema.fields().iter().enumerate().zip(text) {
        let ty = types.get(i).map_or("text", String::as_str);
        let (_, a) = super::apply::column_of(t, ty, f.name())?;
        let target = f.data_type();
        let a = match (a.data_type(), target) {
            (DataType::Utf8, DataType::Timestamp(unit, Some(tz))) => {
                let naive = cast(&a, &DataType::Timestamp(*unit, None))?;
                cast(&naive, &DataType::Timestamp(*unit, Some(tz.clone())))?
            }
            _ => cast(&a, target)?,
        };
        columns.push(a);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn says_filters_in_sql_or_leaves_them_here() {
        let f = col("region").eq(lit("e'u")).and(col("id").gt(lit(10i64)));
        assert_eq!(
            remote_sql(&f, 0).as_deref(),
            Some("((\"region\" = 'e''u') AND (\"id\" > 10))")
        );
        let f = col("id").in_list(vec![lit(1i32), lit(2i32)], true);
        assert_eq!(remote_sql(&f, 0).as_deref(), Some("(\"id\" NOT IN (1, 2))"));
        // A function call is not said remotely: DataFusion filters it.
        let f = datafusion::functions::expr_fn::upper(col("region")).eq(lit("EU"));
        assert_eq!(remote_sql(&f, 0), None);
    }
}
