//! postgres_fdw's statements: `CREATE SERVER ... FOREIGN DATA WRAPPER postgres_fdw OPTIONS
//! (host, port, dbname)`, `CREATE | DROP USER MAPPING FOR ... SERVER ... OPTIONS (user,
//! password | password_file)`, `IMPORT FOREIGN SCHEMA ... [LIMIT TO | EXCEPT (...)] FROM SERVER
//! ... INTO ...`, `CREATE | DROP FOREIGN TABLE`, `DROP SERVER ... [CASCADE]` (the tables they
//! make are read by `foreign.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::foreign::{COLUMNS, REMOTE_SCHEMA, REMOTE_TABLE, SERVER, Server, Servers, column_field};
use super::statement::Tokens;
use crate::catalog::TableEntry;
use crate::error::{Error, Result, SqlState};

/// A parsed foreign-data statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    CreateServer {
        name: String,
        if_not_exists: bool,
        options: Vec<(String, String)>,
    },
    CreateUserMapping {
        user: String,
        server: String,
        options: Vec<(String, String)>,
    },
    DropUserMapping {
        user: String,
        server: String,
        if_exists: bool,
    },
    Import {
        remote: String,
        limit_to: Option<Vec<String>>,
        except: Vec<String>,
        server: String,
        into: String,
    },
    CreateForeignTable {
        schema: Option<String>,
        name: String,
        if_not_exists: bool,
        columns: Vec<(String, String)>,
        server: String,
        options: Vec<(String, String)>,
    },
    DropForeignTable {
        names: Vec<(Option<String>, String)>,
        if_exists: bool,
    },
    DropServer {
        name: String,
        if_exists: bool,
        cascade: bool,
    },
}

fn qualified(t: &mut Tokens) -> Result<(Option<String>, String)> {
    let first = t.name()?;
    if t.punct('.') {
        Ok((Some(first), t.name()?))
    } else {
        Ok((None, first))
    }
}

/// Parse a foreign-data statement.
pub fn parse(sql: &str) -> Result<Statement> {
    let mut t = Tokens::new(sql)?;
    let stmt = if t.keyword("create") {
        if t.keyword("server") {
            let if_not_exists = t.keyword("if") && {
                t.expect("not")?;
                t.expect("exists")?;
                true
            };
            let name = t.name()?;
            t.expect("foreign")?;
            t.expect("data")?;
            t.expect("wrapper")?;
            let wrapper = t.name()?;
            if wrapper != "postgres_fdw" {
                return Err(Error::unsupported(format!(
                    "foreign-data wrapper \"{wrapper}\" is not supported: use postgres_fdw"
                )));
            }
            Statement::CreateServer {
                name,
                if_not_exists,
                options: t.fdw_options()?,
            }
        } else if t.keyword("user") {
            t.expect("mapping")?;
            let _ = t.keyword("if") && t.keyword("not") && t.keyword("exists");
            t.expect("for")?;
            let user = t.name()?;
            t.expect("server")?;
            let server = t.name()?;
            Statement::CreateUserMapping {
                user,
                server,
                options: t.fdw_options()?,
            }
        } else {
            t.expect("foreign")?;
            t.expect("table")?;
            let if_not_exists = t.keyword("if") && {
                t.expect("not")?;
                t.expect("exists")?;
                true
            };
            let (schema, name) = qualified(&mut t)?;
            let columns = t.column_list()?;
            t.expect("server")?;
            let server = t.name()?;
            Statement::CreateForeignTable {
                schema,
                name,
                if_not_exists,
                columns,
                server,
                options: t.fdw_options()?,
            }
        }
    } else if t.keyword("drop") {
        if t.keyword("server") {
            let if_exists = t.keyword("if") && {
                t.expect("exists")?;
                true
            };
            let name = t.name()?;
            let cascade = t.keyword("cascade");
            let _ = t.keyword("restrict");
            Statement::DropServer {
                name,
                if_exists,
                cascade,
            }
        } else if t.keyword("user") {
            t.expect("mapping")?;
            let if_exists = t.keyword("if") && {
                t.expect("exists")?;
                true
            };
            t.expect("for")?;
            let user = t.name()?;
            t.expect("server")?;
            Statement::DropUserMapping {
                user,
                server: t.name()?,
                if_exists,
            }
        } else {
            t.expect("foreign")?;
            t.expect("table")?;
            let if_exists = t.keyword("if") && {
                t.expect("exists")?;
                true
            };
            let mut names = vec![qualified(&mut t)?];
            while t.punct(',') {
                names.push(qualified(&mut t)?);
            }
            let _ = t.keyword("cascade") || t.keyword("restrict");
            Statement::DropForeignTable { names, if_exists }
        }
    } else {
        t.expect("import")?;
        t.expect("foreign")?;
        t.expect("schema")?;
        let remote = t.name()?;
        let mut limit_to = None;
        let mut except = vec![];
        if t.keyword("limit") {
            t.expect("to")?;
            limit_to = Some(t.paren_names()?);
        } else if t.keyword("except") {
            except = t.paren_names()?;
        }
        t.expect("from")?;
        t.expect("server")?;
        let server = t.name()?;
        t.expect("into")?;
        let into = t.name()?;
        let _ = t.fdw_options()?;
        Statement::Import {
            remote,
            limit_to,
            except,
            server,
            into,
        }
    };
    t.end()?;
    Ok(stmt)
}

/// Run a foreign-data statement for administrator `owner`; the warnings for the client.
pub async fn run(
    servers: &Servers,
    engine: &Arc<crate::session::Engine>,
    owner: &str,
    stmt: Statement,
) -> Result<(&'static str, Vec<String>)> {
    let catalog = engine.planner.catalog().clone();
    let mut all = servers.all();
    match stmt {
        Statement::CreateServer { .. }
        | Statement::CreateUserMapping { .. }
        | Statement::DropUserMapping { .. } => {
            let out = change_servers(&mut all, owner, stmt)?;
            servers.save(&catalog, all)?;
            Ok(out)
        }
        Statement::DropServer { .. } | Statement::DropForeignTable { .. } => {
            drop_objects(servers, &catalog, all, stmt).await
        }
        Statement::CreateForeignTable { .. } | Statement::Import { .. } => {
            create_tables(&catalog, &all, owner, stmt).await
        }
    }
}

/// The error for a server that does not exist (42704).
fn missing(name: &str) -> Error {
    Error::Data {
        sqlstate: SqlState::UndefinedObject,
        message: format!("server \"{name}\" does not exist"),
    }
}

/// CREATE SERVER, CREATE / DROP USER MAPPING: the servers' list changed in `all`.
fn change_servers(
    all: &mut Vec<Server>,
    owner: &str,
    stmt: Statement,
) -> Result<(&'static str, Vec<String>)> {
    Ok(match stmt {
        Statement::CreateServer {
            name,
            if_not_exists,
            options,
        } => {
            if all.iter().any(|s| s.name == name) {
                if if_not_exists {
                    return Ok((
                        "CREATE SERVER",
                        vec![format!("server \"{name}\" already exists, skipping")],
                    ));
                }
                return Err(Error::Data {
                    sqlstate: SqlState::DuplicateObject,
                    message: format!("server \"{name}\" already exists"),
                });
            }
            for (k, _) in &options {
                if !matches!(
                    k.as_str(),
                    "host"
                        | "port"
                        | "dbname"
                        | "sslmode"
                        | "sslrootcert"
                        | "connect_timeout"
                        | "fetch_size"
                        | "use_remote_estimate"
                        | "updatable"
                        | "extensions"
                ) {
                    return Err(Error::Data {
                        sqlstate: SqlState::SyntaxError,
                        message: format!("invalid option \"{k}\""),
                    });
                }
            }
            all.push(Server {
                name,
                options: options.into_iter().collect(),
                mappings: BTreeMap::new(),
            });
            ("CREATE SERVER", vec![])
        }
        Statement::CreateUserMapping {
            user,
            server,
            options,
        } => {
            let s = all
                .iter_mut()
                .find(|s| s.name == server)
                .ok_or_else(|| missing(&server))?;
            let user = match user.as_str() {
                "current_user" | "user" => owner.to_string(),
                other => other.to_string(),
            };
            if s.mappings.contains_key(&user) {
                return Err(Error::Data {
                    sqlstate: SqlState::DuplicateObject,
                    message: format!(
                        "user mapping for \"{user}\" already exists for server \"{server}\""
                    ),
                });
            }
            for (k, _) in &options {
                if !matches!(
                    k.as_str(),
                    "user" | "password" | "password_file" | "password_required"
                ) {
                    return Err(Error::Data {
                        sqlstate: SqlState::SyntaxError,
                        message: format!("invalid option \"{k}\""),
                    });
                }
            }
            s.mappings.insert(user, options.into_iter().collect());
            ("CREATE USER MAPPING", vec![])
        }
        Statement::DropUserMapping {
            user,
            server,
            if_exists,
        } => {
            let s = all
                .iter_mut()
                .find(|s| s.name == server)
                .ok_or_else(|| missing(&server))?;
            let user = if user == "current_user" {
                owner.to_string()
            } else {
                user
            };
            if s.mappings.remove(&user).is_none() && !if_exists {
                return Err(Error::Data {
                    sqlstate: SqlState::UndefinedObject,
                    message: format!(
                        "user mapping for \"{user}\" does not exist for server \"{server}\""
                    ),
                });
            }
            ("DROP USER MAPPING", vec![])
        }
        _ => return Err(Error::internal("change_servers: not its statement")),
    })
}

/// DROP SERVER and DROP FOREIGN TABLE.
async fn drop_objects(
    servers: &Servers,
    catalog: &crate::catalog::Catalog,
    mut all: Vec<Server>,
    stmt: Statement,
) -> Result<(&'static str, Vec<String>)> {
    Ok(match stmt {
        Statement::DropServer {
            name,
            if_exists,
            cascade,
        } => {
            if !all.iter().any(|s| s.name == name) {
                if if_exists {
                    return Ok((
                        "DROP SERVER",
                        vec![format!("server \"{name}\" does not exist, skipping")],
                    ));
                }
                return Err(missing(&name));
            }
            let tables = foreign_tables_of(catalog, &name);
            if !tables.is_empty() && !cascade {
                return Err(Error::DependentObjects(format!(
                    "cannot drop server {name} because other objects depend on it: foreign table {}; use DROP ... CASCADE",
                    tables
                        .iter()
                        .map(|(s, t)| format!("{s}.{t}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let mut notices = vec![];
            for (s, t) in &tables {
                catalog
                    .drop_relation(s, t, crate::catalog::RelationKind::Table, true)
                    .await?;
                notices.push(format!("drop cascades to foreign table {s}.{t}"));
            }
            all.retain(|s| s.name != name);
            servers.save(catalog, all)?;
            ("DROP SERVER", notices)
        }
        Statement::DropForeignTable { names, if_exists } => {
            let mut notices = vec![];
            for (schema, name) in names {
                let schema = schema.unwrap_or_else(|| "public".into());
                match catalog.relation(&schema, &name) {
                    Some(crate::catalog::Relation::Table(e))
                        if e.format == crate::storage::TableFormat::Foreign =>
                    {
                        catalog
                            .drop_relation(
                                &schema,
                                &name,
                                crate::catalog::RelationKind::Table,
                                true,
                            )
                            .await?;
                    }
                    Some(_) => {
                        return Err(Error::Data {
                            sqlstate: SqlState::WrongObjectType,
                            message: format!("\"{schema}.{name}\" is not a foreign table"),
                        });
                    }
                    None if if_exists => notices.push(format!(
                        "foreign table \"{schema}.{name}\" does not exist, skipping"
                    )),
                    None => {
                        return Err(Error::UndefinedTable(format!(
                            "foreign table \"{schema}.{name}\" does not exist"
                        )));
                    }
                }
            }
            ("DROP FOREIGN TABLE", notices)
        }
        _ => return Err(Error::internal("drop_objects: not its statement")),
    })
}

/// CREATE FOREIGN TABLE and IMPORT FOREIGN SCHEMA.
async fn create_tables(
    catalog: &crate::catalog::Catalog,
    all: &[Server],
    owner: &str,
    stmt: Statement,
) -> Result<(&'static str, Vec<String>)> {
    Ok(match stmt {
        Statement::CreateForeignTable {
            schema,
            name,
            if_not_exists,
            columns,
            server,
            options,
        } => {
            if !all.iter().any(|s| s.name == server) {
                return Err(missing(&server));
            }
            let schema = schema.unwrap_or_else(|| "public".into());
            let opts: BTreeMap<String, String> = options.into_iter().collect();
            let remote_schema = opts
                .get("schema_name")
                .cloned()
                .unwrap_or_else(|| "public".into());
            let remote_table = opts
                .get("table_name")
                .cloned()
                .unwrap_or_else(|| name.clone());
            let created = create(
                catalog,
                &schema,
                &name,
                &server,
                &remote_schema,
                &remote_table,
                &columns,
                if_not_exists,
            )
            .await?;
            (
                "CREATE FOREIGN TABLE",
                if created {
                    vec![]
                } else {
                    vec![format!("relation \"{name}\" already exists, skipping")]
                },
            )
        }
        Statement::Import {
            remote,
            limit_to,
            except,
            server,
            into,
        } => {
            let s = all
                .iter()
                .find(|s| s.name == server)
                .ok_or_else(|| missing(&server))?;
            let notices = import(catalog, s, owner, &remote, limit_to, &except, &into).await?;
            ("IMPORT FOREIGN SCHEMA", notices)
        }
        _ => return Err(Error::internal("create_tables: not its statement")),
    })
}

/// IMPORT FOREIGN SCHEMA: a foreign table for each table of `remote` (its columns and types
/// read from the source's catalog).
async fn import(
    catalog: &crate::catalog::Catalog,
    s: &Server,
    owner: &str,
    remote: &str,
    limit_to: Option<Vec<String>>,
    except: &[String],
    into: &str,
) -> Result<Vec<String>> {
    if !catalog.schema_exists(into) {
        return Err(Error::UndefinedSchema(format!(
            "schema \"{into}\" does not exist"
        )));
    }
    let def = s.connection(Some(owner))?;
    let client = super::source::connect(&def).await?;
    let names: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY 1",
            &[&remote],
        )
        .await
        .map_err(|e| super::source::source_error("IMPORT FOREIGN SCHEMA", e))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|n| limit_to.as_ref().is_none_or(|l| l.contains(n)) && !except.contains(n))
        .collect();
    let mut notices = vec![];
    for n in names {
        let t = super::source::table(&client, remote, &n).await?;
        let cols: Vec<(String, String)> = t
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.pg_type.clone()))
            .collect();
        if !create(catalog, into, &n, &s.name, remote, &n, &cols, false).await? {
            notices.push(format!("relation \"{into}.{n}\" already exists, skipping"));
        }
    }
    Ok(notices)
}

#[allow(clippy::too_many_arguments)]
async fn create(
    catalog: &crate::catalog::Catalog,
    schema: &str,
    name: &str,
    server: &str,
    remote_schema: &str,
    remote_table: &str,
    columns: &[(String, String)],
    if_not_exists: bool,
) -> Result<bool> {
    for (c, ty) in columns {
        column_field(c, ty)?;
    }
    let mut options = BTreeMap::new();
    options.insert(SERVER.to_string(), server.to_string());
    options.insert(REMOTE_SCHEMA.to_string(), remote_schema.to_string());
    options.insert(REMOTE_TABLE.to_string(), remote_table.to_string());
    options.insert(
        COLUMNS.to_string(),
        serde_json::to_string(columns).map_err(|e| Error::internal(e.to_string()))?,
    );
    let entry = TableEntry {
        format: crate::storage::TableFormat::Foreign,
        location: format!("postgres_fdw://{server}/{remote_schema}.{remote_table}"),
        external: true,
        options,
        tags: BTreeMap::new(),
        matview: None,
        comments: Default::default(),
    };
    catalog
        .create_external(schema, name, entry, if_not_exists)
        .await
}

/// The foreign tables of server `name`.
fn foreign_tables_of(catalog: &crate::catalog::Catalog, name: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    for s in catalog.schema_names() {
        for t in catalog.relation_names(&s) {
            if let Some(crate::catalog::Relation::Table(e)) = catalog.relation(&s, &t)
                && e.format == crate::storage::TableFormat::Foreign
                && e.options.get(SERVER).map(String::as_str) == Some(name)
            {
                out.push((s.clone(), t));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_fdw_statements() -> Result<()> {
        assert_eq!(
            parse(
                "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h', port '5432')"
            )?,
            Statement::CreateServer {
                name: "s".into(),
                if_not_exists: false,
                options: vec![("host".into(), "h".into()), ("port".into(), "5432".into())],
            }
        );
        assert!(matches!(
            parse("CREATE USER MAPPING FOR PUBLIC SERVER s OPTIONS (user 'u', password 'p')")?,
            Statement::CreateUserMapping { ref user, .. } if user == "public"
        ));
        assert_eq!(
            parse("IMPORT FOREIGN SCHEMA public LIMIT TO (a, b) FROM SERVER s INTO src")?,
            Statement::Import {
                remote: "public".into(),
                limit_to: Some(vec!["a".into(), "b".into()]),
                except: vec![],
                server: "s".into(),
                into: "src".into(),
            }
        );
        let Statement::CreateForeignTable {
            schema,
            name,
            columns,
            ..
        } = parse(
            "CREATE FOREIGN TABLE src.t (id int NOT NULL, amount numeric(12, 2), tags text[], \
             at timestamp with time zone) SERVER s OPTIONS (table_name 'orders')",
        )?
        else {
            return Err(Error::internal("not a foreign table"));
        };
        assert_eq!((schema.as_deref(), name.as_str()), (Some("src"), "t"));
        let types: Vec<&str> = columns.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            types,
            vec![
                "int",
                "numeric(12, 2)",
                "text[]",
                "timestamp with time zone"
            ]
        );
        for (_, ty) in &columns {
            column_field("c", ty)?;
        }
        assert!(parse("CREATE SERVER s FOREIGN DATA WRAPPER file_fdw").is_err());
        assert_eq!(
            parse("DROP SERVER IF EXISTS s CASCADE")?,
            Statement::DropServer {
                name: "s".into(),
                if_exists: true,
                cascade: true
            }
        );
        Ok(())
    }
}
