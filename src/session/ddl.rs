//! CREATE / DROP of schemas, tables and views, carried out on the persistent catalog.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use datafusion::sql::sqlparser::ast::{self, ColumnOption, ObjectName, ObjectType};

use super::{CommandTag, Outcome, Session};
use crate::catalog::{RelationKind, TableSpec, ViewEntry};
use crate::error::{Error, Result, SqlState};
use crate::pg::names::{ident, qualified};
use crate::pg::types::{PG_TYPE_KEY, UTC, column_type, declared_pg_type, field_pg_type};
use crate::policy::Action;
use crate::storage::TableFormat;

pub(super) fn resolve(session: &Session, name: &ObjectName) -> Result<(String, String)> {
    qualified(
        name,
        &session.current_schema(),
        session.engine.planner.database(),
    )
}

pub async fn create_schema(
    session: &Session,
    name: &ast::SchemaName,
    if_not_exists: bool,
) -> Result<Outcome> {
    let obj = match name {
        ast::SchemaName::Simple(n) | ast::SchemaName::NamedAuthorization(n, _) => n,
        ast::SchemaName::UnnamedAuthorization(_) => {
            return Err(Error::unsupported(
                "CREATE SCHEMA AUTHORIZATION without a schema name is not supported",
            ));
        }
    };
    let schema = match obj.0.as_slice() {
        [ast::ObjectNamePart::Identifier(i)] => ident(i),
        _ => return Err(Error::Syntax(format!("invalid schema name {obj}"))),
    };
    // As PostgreSQL: `pg_` names are the system's (temporary schemas are pg_temp_<pid>).
    if schema.starts_with("pg_") {
        return Err(Error::Data {
            sqlstate: SqlState::ReservedName,
            message: format!(
                "unacceptable schema name \"{schema}\": the prefix \"pg_\" is reserved for system schemas"
            ),
        });
    }
    session.authorize(&format!("{schema}.*"), Action::Admin)?;
    let catalog = session.engine.planner.catalog();
    catalog.create_schema(&schema, if_not_exists).await?;
    Ok(Outcome::Command(CommandTag::new("CREATE SCHEMA")))
}

/// A relation may be made in (or moved into or out of) a temporary schema only by its own
/// session's CREATE TEMP TABLE: its tables are that session's alone, and go with it.
pub(super) fn refuse_temp_schema(session: &Session, schema: &str) -> Result<()> {
    if crate::catalog::is_temp_schema(schema) && !session.owns_temp(&format!("{schema}.*")) {
        return Err(Error::Data {
            sqlstate: SqlState::InvalidTableDefinition,
            message: format!(
                "cannot create or move relations in the temporary schema \"{schema}\" of another session"
            ),
        });
    }
    Ok(())
}

pub async fn create_table(session: &mut Session, ct: &ast::CreateTable) -> Result<Outcome> {
    if ct.temporary {
        return Err(Error::unsupported("temporary tables are not supported"));
    }
    if ct.or_replace {
        return Err(Error::unsupported(
            "CREATE OR REPLACE TABLE is not supported; DROP the table first",
        ));
    }
    if ct.like.is_some() || ct.clone.is_some() {
        return Err(Error::unsupported("CREATE TABLE ... LIKE is not supported"));
    }
    let (schema_name, table) = resolve(session, &ct.name)?;
    refuse_temp_schema(session, &schema_name)?;
    session.authorize(&format!("{schema_name}.{table}"), Action::Admin)?;
    let catalog = session.engine.planner.catalog().clone();
    if !catalog.schema_exists(&schema_name) {
        return Err(Error::UndefinedSchema(format!(
            "schema \"{schema_name}\" does not exist"
        )));
    }
    let spec = table_spec(session, ct)?;
    if let Some(query) = &ct.query {
        return create_table_as(session, ct, &schema_name, &table, query, &spec).await;
    }
    let mut pk_columns: Vec<String> = vec![];
    for c in &ct.constraints {
        if let ast::TableConstraint::PrimaryKey(pk) = c {
            pk_columns.extend(pk.columns.iter().map(|c| {
                c.column
                    .expr
                    .to_string()
                    .to_lowercase()
                    .trim_matches('"')
                    .to_string()
            }));
        }
    }
    let mut fields = Vec::with_capacity(ct.columns.len());
    for col in &ct.columns {
        let name = ident(&col.name);
        if fields.iter().any(|f: &Field| f.name() == &name) {
            return Err(Error::Data {
                sqlstate: SqlState::DuplicateColumn,
                message: format!("column \"{name}\" specified more than once"),
            });
        }
        let field = column_field(col, !pk_columns.contains(&name))?;
        fields.push(field);
    }
    if fields.is_empty() {
        return Err(Error::unsupported("tables need at least one column"));
    }
    let schema = Schema::new(fields);
    catalog
        .create_table(&schema_name, &table, &schema, ct.if_not_exists, &spec)
        .await?;
    Ok(Outcome::Command(CommandTag::new("CREATE TABLE")))
}

/// The format (`USING` / `WITH (format = ...)`, else the configured default), the partition
/// columns (`PARTITIONED BY (a, b)` / `PARTITION BY (a, b)`) and the sort order of its writes
/// (`WITH (sort_order = 'a, b DESC')`) of a CREATE TABLE.
fn table_spec(session: &Session, ct: &ast::CreateTable) -> Result<TableSpec> {
    let mut format = Some(session.engine.planner.catalog().default_format());
    let mut named = String::new();
    let mut sort_order = vec![];
    if let ast::CreateTableOptions::With(options) = &ct.table_options {
        for o in options {
            match o {
                ast::SqlOption::KeyValue { key, value } if ident(key) == "format" => {
                    named = option_text(value);
                    format = TableFormat::parse(&named);
                }
                ast::SqlOption::KeyValue { key, value }
                    if ident(key) == crate::storage::sort_order::OPTION =>
                {
                    sort_order = crate::storage::sort_order::parse(&option_text(value))?;
                }
                other => {
                    return Err(Error::unsupported(format!(
                        "table option {other} is not supported (format and sort_order are)"
                    )));
                }
            }
        }
    } else if ct.table_options != ast::CreateTableOptions::None {
        return Err(Error::unsupported(format!(
            "table options {} are not supported",
            ct.table_options
        )));
    }
    let Some(format) = format.filter(|f| f.is_lakehouse()) else {
        return Err(Error::unsupported(format!(
            "table format \"{named}\" is not supported: use USING delta or USING iceberg"
        )));
    };
    let mut partition_by = vec![];
    if let Some(p) = &ct.partition_by {
        let items: Vec<&ast::Expr> = match p.as_ref() {
            ast::Expr::Tuple(items) => items.iter().collect(),
            ast::Expr::Nested(e) => vec![e.as_ref()],
            other => vec![other],
        };
        for e in items {
            match e {
                ast::Expr::Identifier(i) => partition_by.push(ident(i)),
                other => {
                    return Err(Error::unsupported(format!(
                        "PARTITIONED BY takes column names, not {other}"
                    )));
                }
            }
        }
    }
    if let ast::HiveDistributionStyle::PARTITIONED { .. } = ct.hive_distribution {
        return Err(Error::unsupported(
            "PARTITIONED BY takes column names only: PARTITIONED BY (a, b)",
        ));
    }
    Ok(TableSpec {
        format,
        partition_by,
        sort_order,
    })
}

/// The Arrow field of a column definition (type, NOT NULL, PostgreSQL type name).
pub(super) fn column_field(col: &ast::ColumnDef, nullable_by_default: bool) -> Result<Field> {
    let dt = column_type(&col.data_type)?;
    let mut nullable = nullable_by_default;
    for opt in &col.options {
        match &opt.option {
            ColumnOption::NotNull | ColumnOption::PrimaryKey(_) => nullable = false,
            ColumnOption::Null => {}
            ColumnOption::Default(ast::Expr::Value(v)) if matches!(v.value, ast::Value::Null) => {}
            ColumnOption::Unique(_) => {}
            other => {
                return Err(Error::unsupported(format!(
                    "column option {other} is not supported"
                )));
            }
        }
    }
    let mut field = Field::new(ident(&col.name), dt, nullable);
    if let Some(t) = declared_pg_type(&col.data_type) {
        field = field.with_metadata([(PG_TYPE_KEY.to_string(), t)].into());
    }
    Ok(field)
}

/// The text of an option's value: a quoted string's contents, else as written.
fn option_text(value: &ast::Expr) -> String {
    match value {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        ast::Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// What an ALTER TABLE ... SET TBLPROPERTIES (...) / SET (...) sets.
#[derive(Default)]
pub(super) struct TableProperties {
    /// Classification tags: `'lakegate.tags.<column>' = 'PII.ssn, FIN'` (an empty value
    /// removes the column's tags).
    pub tags: Vec<(String, Vec<String>)>,
    /// The sort order of later writes: `sort_order = 'a, b DESC'` or `'lakegate.sort_order'
    /// = ...` (an empty value removes it).
    pub sort_order: Option<Vec<crate::storage::sort_order::SortKey>>,
}

pub(super) fn table_properties(options: &[ast::SqlOption]) -> Result<TableProperties> {
    let mut out = TableProperties::default();
    for o in options {
        let ast::SqlOption::KeyValue { key, value } = o else {
            return Err(Error::unsupported(format!(
                "table property {o} is not supported"
            )));
        };
        let text = option_text(value);
        if key.value == crate::storage::sort_order::KEY
            || ident(key) == crate::storage::sort_order::OPTION
        {
            out.sort_order = Some(crate::storage::sort_order::parse(&text)?);
            continue;
        }
        let Some(column) = key.value.strip_prefix("lakegate.tags.") else {
            return Err(Error::unsupported(format!(
                "table property {} is not supported (lakegate.tags.<column> and sort_order are)",
                key.value
            )));
        };
        let list = text
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        out.tags.push((column.to_string(), list));
    }
    Ok(out)
}

pub(super) fn statement_words(s: &str) -> String {
    s.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

async fn create_table_as(
    session: &mut Session,
    ct: &ast::CreateTable,
    schema_name: &str,
    table: &str,
    query: &ast::Query,
    spec: &TableSpec,
) -> Result<Outcome> {
    let stmt = datafusion::sql::parser::Statement::Statement(Box::new(ast::Statement::Query(
        Box::new(query.clone()),
    )));
    let plan = session.plan(&stmt).await?;
    let mut fields = Vec::new();
    let mut names = Vec::new();
    for (i, f) in plan.schema().fields().iter().enumerate() {
        let name = match ct.columns.get(i) {
            Some(c) => ident(&c.name),
            None => f.name().clone(),
        };
        names.push(name.clone());
        let mut field = Field::new(name, storable(f.data_type())?, true);
        if let Some(t) = field_pg_type(f) {
            field = field.with_metadata([(PG_TYPE_KEY.to_string(), t.to_string())].into());
        }
        fields.push(field);
    }
    let catalog = session.engine.planner.catalog().clone();
    if !catalog
        .create_table(
            schema_name,
            table,
            &Schema::new(fields),
            ct.if_not_exists,
            spec,
        )
        .await?
    {
        return Ok(Outcome::Command(CommandTag::new("CREATE TABLE AS")));
    }
    // The new table's columns carry the classification tags of what they are made from.
    let inherited = session.inherited_tags(&plan, &names);
    let tagged = match inherited {
        Ok(t) if t.is_empty() => Ok(()),
        Ok(t) => catalog.set_tags(schema_name, table, &t, &[]).await,
        Err(e) => Err(e),
    };
    if let Err(e) = tagged {
        let _ = catalog
            .drop_relation(schema_name, table, RelationKind::Table, true)
            .await;
        return Err(e);
    }
    let _beat = session.heartbeat(
        format!("CREATE TABLE {schema_name}.{table} AS"),
        std::time::Duration::from_secs(10),
    );
    let insert = insert_from(schema_name, table, query);
    let inserted = match session.dml(&insert, vec![], "INSERT").await {
        Ok(Outcome::Command(t)) => Ok(t.rows.unwrap_or(0)),
        Ok(_) => Ok(0),
        Err(e) => Err(e),
    };
    match inserted {
        Ok(rows) => Ok(Outcome::Command(CommandTag::rows("SELECT", rows))),
        Err(e) => {
            // CREATE TABLE AS is one statement: no empty table stays behind.
            let _ = catalog
                .drop_relation(schema_name, table, RelationKind::Table, true)
                .await;
            Err(e)
        }
    }
}

/// `INSERT INTO schema.table <query>` as a statement, the query's syntax tree as it was parsed
/// (never printed and parsed again).
fn insert_from(
    schema: &str,
    table: &str,
    query: &ast::Query,
) -> datafusion::sql::parser::Statement {
    let name = ObjectName::from(vec![
        ast::Ident::with_quote('"', schema),
        ast::Ident::with_quote('"', table),
    ]);
    let insert = ast::Insert {
        insert_token: ast::helpers::attached_token::AttachedToken::empty(),
        optimizer_hint: None,
        or: None,
        ignore: false,
        into: true,
        table: ast::TableObject::TableName(name),
        table_alias: None,
        columns: vec![],
        overwrite: false,
        source: Some(Box::new(query.clone())),
        assignments: vec![],
        partitioned: None,
        after_columns: vec![],
        has_table_keyword: false,
        on: None,
        returning: None,
        replace_into: false,
        priority: None,
        insert_alias: None,
        settings: None,
        format_clause: None,
    };
    datafusion::sql::parser::Statement::Statement(Box::new(ast::Statement::Insert(insert)))
}

/// The type a query result column is stored as in a Delta table.
pub(crate) fn storable(dt: &DataType) -> Result<DataType> {
    use DataType as D;
    Ok(match dt {
        D::Utf8 | D::LargeUtf8 | D::Utf8View | D::Null => D::Utf8,
        D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => D::Binary,
        D::Int8 | D::UInt8 => D::Int16,
        D::UInt16 => D::Int32,
        D::UInt32 => D::Int64,
        D::UInt64 => D::Decimal128(20, 0),
        D::Float16 => D::Float32,
        D::Date64 => D::Date32,
        D::Timestamp(_, tz) => D::Timestamp(TimeUnit::Microsecond, tz.as_ref().map(|_| UTC.into())),
        D::Decimal256(p, s) | D::Decimal64(p, s) | D::Decimal32(p, s) if *p <= 38 => {
            D::Decimal128(*p, *s)
        }
        D::Dictionary(_, v) => storable(v)?,
        D::List(f)
        | D::LargeList(f)
        | D::FixedSizeList(f, _)
        | D::ListView(f)
        | D::LargeListView(f) => D::List(Arc::new(Field::new(
            "element",
            storable(f.data_type())?,
            true,
        ))),
        D::Struct(fs) => D::Struct(Fields::from(
            fs.iter()
                .map(|f| Ok(Field::new(f.name(), storable(f.data_type())?, true)))
                .collect::<Result<Vec<_>>>()?,
        )),
        D::Boolean
        | D::Int16
        | D::Int32
        | D::Int64
        | D::Float32
        | D::Float64
        | D::Date32
        | D::Decimal128(..) => dt.clone(),
        other => {
            return Err(Error::unsupported(format!(
                "a column of type {other} cannot be stored in a lakehouse table; cast it to TEXT or a number"
            )));
        }
    })
}

pub async fn create_view(session: &mut Session, v: &ast::CreateView) -> Result<Outcome> {
    if v.materialized {
        return Err(Error::unsupported(
            "materialized views are not supported yet",
        ));
    }
    let (schema_name, name) = resolve(session, &v.name)?;
    refuse_temp_schema(session, &schema_name)?;
    session.authorize(&format!("{schema_name}.{name}"), Action::Admin)?;
    let catalog = session.engine.planner.catalog().clone();
    if !catalog.schema_exists(&schema_name) {
        return Err(Error::UndefinedSchema(format!(
            "schema \"{schema_name}\" does not exist"
        )));
    }
    if v.if_not_exists && catalog.relation(&schema_name, &name).is_some() {
        return Ok(Outcome::Command(CommandTag::new("CREATE VIEW")));
    }
    // Bound at creation: bare names that name a relation of the creator's schema are stored
    // qualified (as PostgreSQL does), so no reader's search_path changes what the view reads.
    let mut query = v.query.as_ref().clone();
    let current = session.current_schema();
    crate::pg::names::qualify_relations(&mut query, &current, &|t| {
        catalog.relation(&current, t).is_some()
    });
    let sql = query.to_string();
    // Check the definition plans now, so a broken view is refused at creation.
    let stmt = datafusion::sql::parser::Statement::Statement(Box::new(ast::Statement::Query(
        Box::new(query),
    )));
    let plan = session.plan(&stmt).await?;
    let columns: Vec<String> = v.columns.iter().map(|c| ident(&c.name)).collect();
    if columns.len() > plan.schema().fields().len() {
        return Err(Error::Syntax(
            "CREATE VIEW specifies more column names than columns".into(),
        ));
    }
    // Qualify the definition with the schema it was created in, via the stored schema.
    catalog
        .create_view(
            &schema_name,
            &name,
            ViewEntry {
                sql,
                columns,
                schema: session.current_schema(),
                comments: Default::default(),
            },
            v.or_replace,
        )
        .await?;
    Ok(Outcome::Command(CommandTag::new("CREATE VIEW")))
}

pub async fn drop(
    session: &mut Session,
    object_type: ObjectType,
    if_exists: bool,
    names: &[ObjectName],
    cascade: bool,
) -> Result<Outcome> {
    let catalog = session.engine.planner.catalog().clone();
    let tag = match object_type {
        ObjectType::Table | ObjectType::View => {
            let kind = if object_type == ObjectType::Table {
                RelationKind::Table
            } else {
                RelationKind::View
            };
            for n in names {
                let (s, t) = resolve(session, n)?;
                session.authorize(&format!("{s}.{t}"), Action::Admin)?;
                catalog.drop_relation(&s, &t, kind, if_exists).await?;
            }
            if kind == RelationKind::Table {
                "DROP TABLE"
            } else {
                "DROP VIEW"
            }
        }
        ObjectType::Schema => {
            for n in names {
                let s = match n.0.as_slice() {
                    [ast::ObjectNamePart::Identifier(i)] => ident(i),
                    _ => return Err(Error::Syntax(format!("invalid schema name {n}"))),
                };
                session.authorize(&format!("{s}.*"), Action::Admin)?;
                catalog.drop_schema(&s, if_exists, cascade).await?;
            }
            session.rebuild_context();
            "DROP SCHEMA"
        }
        other => return Err(Error::unsupported(format!("DROP {other} is not supported"))),
    };
    Ok(Outcome::Command(CommandTag::new(tag)))
}

/// `CREATE INDEX` (dbt-postgres's `indexes` config, ORMs): lakehouse tables keep no indexes
/// (scans skip files and row groups by their statistics and partitions, and `sort_order` or
/// `OPTIMIZE ... ZORDER BY` cluster them), so a plain index is accepted with a NOTICE saying
/// so once its table and columns are checked. A UNIQUE index would promise a constraint
/// nothing enforces: 0A000.
pub fn create_index(session: &mut Session, ci: &ast::CreateIndex) -> Result<Outcome> {
    if ci.unique {
        return Err(Error::unsupported(
            "CREATE UNIQUE INDEX is not supported: lakehouse tables enforce no uniqueness",
        ));
    }
    let (schema, table) = resolve(session, &ci.table_name)?;
    session.authorize(&format!("{schema}.{table}"), Action::Admin)?;
    match session.engine.planner.catalog().relation(&schema, &table) {
        Some(crate::catalog::Relation::Table(_)) => {}
        Some(crate::catalog::Relation::View(_)) => {
            return Err(Error::Data {
                sqlstate: SqlState::WrongObjectType,
                message: format!("\"{table}\" is not a table or materialized view"),
            });
        }
        None => {
            return Err(Error::UndefinedTable(format!(
                "relation \"{table}\" does not exist"
            )));
        }
    }
    session.notice(format!(
        "index on \"{table}\" not kept: lakehouse tables are read by file and row-group \
         statistics (see sort_order and OPTIMIZE ... ZORDER BY)"
    ));
    Ok(Outcome::Command(CommandTag::new("CREATE INDEX")))
}

/// `ANALYZE [table [(columns)]]` (dbt projects' post-hooks, BI tools' maintenance): a table's
/// statistics are the ones its writes keep in each file's metadata, always current, so there
/// is nothing to collect; the named table and columns are checked (42P01, 42703) and readable
/// by the user (42501), and nothing is done.
pub async fn analyze(session: &mut Session, a: &ast::Analyze) -> Result<Outcome> {
    let done = Outcome::Command(CommandTag::new("ANALYZE"));
    let Some(name) = &a.table_name else {
        return Ok(done);
    };
    let (schema, table) = resolve(session, name)?;
    session.authorize(&format!("{schema}.{table}"), Action::Read)?;
    if session
        .engine
        .planner
        .catalog()
        .relation(&schema, &table)
        .is_none()
    {
        return Err(Error::UndefinedTable(format!(
            "relation \"{table}\" does not exist"
        )));
    }
    let columns: Vec<String> = a.columns.iter().map(ident).collect();
    check_columns(session, (&schema, &table), &columns).await?;
    Ok(done)
}

/// CREATE EXTERNAL TABLE name STORED AS PARQUET|CSV|JSON|DELTA LOCATION '...' [OPTIONS (...)]:
/// register files or a Delta table where they are (administrators only: it reads server files).
pub async fn create_external(
    session: &mut Session,
    ct: &datafusion::sql::parser::CreateExternalTable,
) -> Result<Outcome> {
    if !session.principal.admin {
        return Err(Error::PermissionDenied(
            "only administrators may register external tables".into(),
        ));
    }
    if ct.or_replace || ct.temporary || ct.unbounded {
        return Err(Error::unsupported(
            "CREATE OR REPLACE / TEMPORARY / UNBOUNDED EXTERNAL TABLE is not supported",
        ));
    }
    if !ct.columns.is_empty() || !ct.table_partition_cols.is_empty() {
        return Err(Error::unsupported(
            "external tables take their columns from the files; leave out the column list",
        ));
    }
    let (schema_name, table) = resolve(session, &ct.name)?;
    let Some(format) = TableFormat::parse(&ct.file_type) else {
        return Err(Error::unsupported(format!(
            "STORED AS {}: use PARQUET, CSV, JSON, DELTA or ICEBERG (its metadata file)",
            ct.file_type
        )));
    };
    let location = absolute_location(&ct.location)?;
    let options = ct
        .options
        .iter()
        .map(|(k, v)| {
            let v = match v {
                ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            };
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    let entry = crate::catalog::TableEntry {
        format,
        location,
        external: true,
        options,
        tags: Default::default(),
        matview: None,
        comments: Default::default(),
    };
    let catalog = session.engine.planner.catalog().clone();
    if !catalog.schema_exists(&schema_name) {
        return Err(Error::UndefinedSchema(format!(
            "schema \"{schema_name}\" does not exist"
        )));
    }
    catalog
        .create_external(&schema_name, &table, entry, ct.if_not_exists)
        .await?;
    Ok(Outcome::Command(CommandTag::new("CREATE EXTERNAL TABLE")))
}

/// A location as a URL: local paths become absolute file:// URLs (folders end in '/').
fn absolute_location(location: &str) -> Result<String> {
    if let Ok(u) = url::Url::parse(location)
        && u.scheme().len() > 1
    {
        if u.scheme() != "file" && !crate::storage::is_object_store(u.as_str()) {
            return Err(Error::unsupported(format!(
                "external locations on {}:// are not supported; use a local path, s3://, gs:// or az://",
                u.scheme()
            )));
        }
        return Ok(u.to_string());
    }
    let path = std::fs::canonicalize(location)
        .map_err(|e| Error::InvalidParameter(format!("location {location:?}: {e}")))?;
    let url = if path.is_dir() {
        url::Url::from_directory_path(&path)
    } else {
        url::Url::from_file_path(&path)
    };
    url.map(|u| u.to_string())
        .map_err(|_| Error::InvalidParameter(format!("location {location:?} is not a valid path")))
}

/// `COMMENT ON TABLE | VIEW | MATERIALIZED VIEW | COLUMN name IS 'text' | NULL` (views arrive
/// spelled TABLE, pg::dialect): kept with the relation's catalog entry and listed in
/// pg_description. Needs `admin` on the relation, as its other DDL does.
pub async fn comment(
    session: &mut Session,
    object_type: &ast::CommentObject,
    name: &ObjectName,
    text: Option<String>,
    if_exists: bool,
) -> Result<Outcome> {
    let done = Outcome::Command(CommandTag::new("COMMENT"));
    let (relation, column) = match object_type {
        ast::CommentObject::Table => (name.clone(), None),
        ast::CommentObject::Column => {
            let mut parts = name.0.clone();
            let column = match parts.pop() {
                Some(ast::ObjectNamePart::Identifier(c)) if !parts.is_empty() => ident(&c),
                _ => {
                    return Err(Error::Syntax(format!(
                        "column name must be qualified: {name}"
                    )));
                }
            };
            (ObjectName(parts), Some(column))
        }
        other => {
            return Err(Error::unsupported(format!(
                "COMMENT ON {other} is not supported (tables, views, materialized views and \
                 columns are)"
            )));
        }
    };
    let database = session.engine.planner.database().to_string();
    let (schema, table) = qualified(&relation, &session.current_schema(), &database)?;
    session.authorize(&format!("{schema}.{table}"), Action::Admin)?;
    let catalog = session.engine.planner.catalog().clone();
    if catalog.relation(&schema, &table).is_none() {
        return match if_exists {
            true => Ok(done),
            false => Err(Error::UndefinedTable(format!(
                "relation \"{schema}.{table}\" does not exist"
            ))),
        };
    }
    if let Some(c) = &column {
        check_columns(session, (&schema, &table), std::slice::from_ref(c)).await?;
    }
    catalog
        .set_comment((&schema, &table), column.as_deref(), text)
        .await?;
    Ok(done)
}

/// 42703 unless `schema.table` (as the session sees it) has every one of `columns`.
async fn check_columns(
    session: &Session,
    (schema, table): (&str, &str),
    columns: &[String],
) -> Result<()> {
    if columns.is_empty() {
        return Ok(());
    }
    let database = session.engine.planner.database().to_string();
    let reference = datafusion::sql::TableReference::full(database, schema, table);
    let fields = session.context().table_provider(reference).await?.schema();
    match columns.iter().find(|c| fields.field_with_name(c).is_err()) {
        Some(c) => Err(Error::UndefinedColumn(format!(
            "column \"{c}\" of relation \"{table}\" does not exist"
        ))),
        None => Ok(()),
    }
}
