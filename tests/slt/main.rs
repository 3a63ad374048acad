//! sqllogictest files run over the real wire against an in-process server, once with the simple
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may stop at the first surprise
//! protocol and once with the extended protocol. A file names its user in a `# user: NAME` line,
//! and may run against a config of the repository with `# config: examples/hr/lakegate.toml`
//! (its users, policies and setup SQL; users' passwords are in its files). A file that plays
//! several users switches between their sessions with a statement `\connect NAME` (each user's
//! session is opened once and kept; without a config, `# users: a, b` creates them, password
//! `NAME-pw`, and `lakegate` is the administrator).

use std::path::{Path, PathBuf};

use lakegate::config::{Config, Secret, UserConfig};
use lakegate::server::Server;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const ADMIN_PASSWORD: &str = "slt-admin";

#[derive(Clone, Copy, Debug)]
enum Protocol {
    Simple,
    Extended,
}

struct Db {
    client: Client,
    protocol: Protocol,
    /// The connection string of a user, for `\connect`.
    url_of: std::sync::Arc<dyn Fn(&str) -> String + Send + Sync>,
    /// Sessions opened by `\connect`, by user (the current one is `client`).
    others: std::collections::HashMap<String, Client>,
    current: String,
}

async fn open(url: &str) -> Result<Client, DbError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.map_err(err)?;
    tokio::spawn(conn);
    Ok(client)
}

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DbError {}

fn err(e: tokio_postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(d) => DbError(format!("{}: {}", d.code().code(), d.message())),
        None => DbError(e.to_string()),
    }
}

#[async_trait::async_trait]
impl AsyncDB for Db {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        if let Some(user) = sql.trim().strip_prefix("\\connect ") {
            let user = user.trim().to_string();
            if user != self.current {
                let next = match self.others.remove(&user) {
                    Some(c) => c,
                    None => open(&(self.url_of)(&user)).await?,
                };
                let previous = std::mem::replace(&mut self.client, next);
                self.others
                    .insert(std::mem::replace(&mut self.current, user), previous);
            }
            return Ok(DBOutput::StatementComplete(0));
        }
        match self.protocol {
            Protocol::Simple => {
                let msgs = self.client.simple_query(sql).await.map_err(err)?;
                let mut rows = vec![];
                let mut ncols = None;
                let mut count = 0;
                for m in msgs {
                    match m {
                        SimpleQueryMessage::Row(r) => {
                            rows.push(
                                (0..r.len())
                                    .map(|i| shown(r.get(i).unwrap_or("NULL")))
                                    .collect::<Vec<_>>(),
                            );
                        }
                        SimpleQueryMessage::RowDescription(d) => ncols = Some(d.len()),
                        SimpleQueryMessage::CommandComplete(n) => count = n,
                        _ => {}
                    }
                }
                Ok(match ncols {
                    Some(n) => DBOutput::Rows {
                        types: vec![DefaultColumnType::Any; n],
                        rows,
                    },
                    None => DBOutput::StatementComplete(count),
                })
            }
            Protocol::Extended => {
                let stmt = self.client.prepare(sql).await.map_err(err)?;
                if stmt.columns().is_empty() {
                    let n = self.client.execute(&stmt, &[]).await.map_err(err)?;
                    return Ok(DBOutput::StatementComplete(n));
                }
                let rows = self.client.query(&stmt, &[]).await.map_err(err)?;
                let out = rows
                    .iter()
                    .map(|r| (0..r.len()).map(|i| shown(&text(r, i))).collect())
                    .collect();
                Ok(DBOutput::Rows {
                    types: vec![DefaultColumnType::Any; stmt.columns().len()],
                    rows: out,
                })
            }
        }
    }

    fn engine_name(&self) -> &str {
        "lakegate"
    }

    async fn shutdown(&mut self) {}
}

/// Empty strings are written `(empty)` in the files.
fn shown(v: &str) -> String {
    if v.is_empty() {
        "(empty)".into()
    } else {
        v.to_string()
    }
}

/// Binary values rendered as PostgreSQL's text format would show them.
fn text(r: &tokio_postgres::Row, i: usize) -> String {
    fn opt<'a, T: ToString + tokio_postgres::types::FromSql<'a>>(
        r: &'a tokio_postgres::Row,
        i: usize,
    ) -> String {
        match r.try_get::<_, Option<T>>(i) {
            Ok(v) => v.map(|v| v.to_string()).unwrap_or_else(|| "NULL".into()),
            // A mismatch the diff shows with its statement, rather than a panic without one.
            Err(e) => format!("<{} not decoded: {e}>", r.columns()[i].type_()),
        }
    }
    let t = r.columns()[i].type_().clone();
    match t {
        Type::BOOL => match opt::<bool>(r, i).as_str() {
            "true" => "t".into(),
            "false" => "f".into(),
            other => other.into(),
        },
        Type::INT2 => opt::<i16>(r, i),
        Type::INT4 => opt::<i32>(r, i),
        Type::INT8 => opt::<i64>(r, i),
        Type::FLOAT4 => opt::<f32>(r, i),
        Type::FLOAT8 => opt::<f64>(r, i),
        Type::DATE => opt::<chrono::NaiveDate>(r, i),
        Type::TIMESTAMP => opt::<chrono::NaiveDateTime>(r, i),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => opt::<String>(r, i),
        other => format!("<{other} not rendered by the slt runner: cast to text>"),
    }
}

fn user_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("# user:").map(|u| u.trim().to_string()))
        })
        .unwrap_or_else(|| "lakegate".into())
}

/// The users a file without a config plays besides its `# user:` (`# users: a, b`).
fn users_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("# users:").map(|u| {
                    u.split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
            })
        })
        .unwrap_or_default()
}

/// The `# config:` a file names, loaded with its paths made absolute (repository root).
fn config_of(path: &Path) -> Option<Config> {
    let text = std::fs::read_to_string(path).ok()?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("# config:").map(|c| c.trim().to_string()))?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let toml = std::fs::read_to_string(root.join(&rel)).expect("the named config");
    let mut c = Config::from_toml(&toml).expect("the named config parses");
    let abs = |p: &Path| root.join(p);
    c.auth.admin_password_file = c.auth.admin_password_file.as_deref().map(abs);
    for u in &mut c.auth.users {
        u.password_file = u.password_file.as_deref().map(abs);
    }
    c.policy.dir = abs(&c.policy.dir);
    c.policy.mask_key_file = c.policy.mask_key_file.as_deref().map(abs);
    c.demo.setup_sql = c.demo.setup_sql.as_deref().map(abs);
    Some(c)
}

fn password_of(user: &str) -> String {
    if user == "lakegate" {
        ADMIN_PASSWORD.into()
    } else {
        format!("{user}-pw")
    }
}

#[tokio::main]
async fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/slt")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let mut passed = 0;
    let mut failed = 0;
    for file in &files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        for protocol in [Protocol::Simple, Protocol::Extended] {
            // A fresh server and warehouse per run, so files cannot depend on each other.
            let tmp = tempfile::tempdir().expect("tempdir");
            let named = config_of(file);
            let example = named.is_some();
            let mut c = named.unwrap_or_default();
            c.server.listen = "127.0.0.1:0".into();
            c.storage.warehouse = tmp.path().join("wh").display().to_string();
            if !example {
                c.auth.admin_password = Some(Secret(ADMIN_PASSWORD.into()));
                c.demo.customers = 100;
                c.demo.orders = 400;
            }
            let user = user_of(file);
            if !example {
                let mut users: Vec<String> = users_of(file);
                if user != "lakegate" && !users.contains(&user) {
                    users.push(user.clone());
                }
                c.auth.users = users
                    .iter()
                    .map(|u| {
                        let pw = tmp.path().join(format!("{u}.pw"));
                        std::fs::write(&pw, password_of(u)).expect("pw file");
                        UserConfig {
                            name: u.clone(),
                            password_file: Some(pw),
                            password_env: None,
                            admin: false,
                        }
                    })
                    .collect();
            }
            let server = Server::bind(c.validate().expect("config"))
                .await
                .expect("bind");
            let port = server.local_addr().expect("addr").port();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(server.run(async {
                let _ = stopped.await;
            }));
            let url_of: std::sync::Arc<dyn Fn(&str) -> String + Send + Sync> =
                std::sync::Arc::new(move |u: &str| {
                    let password = if example {
                        u.to_string()
                    } else {
                        password_of(u)
                    };
                    format!(
                        "host=127.0.0.1 port={port} user={u} password={password} dbname=lakegate"
                    )
                });
            let first = user.clone();
            let mut runner = sqllogictest::Runner::new(move || {
                let url_of = url_of.clone();
                let first = first.clone();
                async move {
                    let client = open(&url_of(&first)).await?;
                    Ok(Db {
                        client,
                        protocol,
                        url_of,
                        others: Default::default(),
                        current: first,
                    })
                }
            });
            match runner.run_file_async(file).await {
                Ok(()) => {
                    passed += 1;
                    println!("ok {name} ({protocol:?})");
                }
                Err(e) => {
                    failed += 1;
                    println!("FAILED {name} ({protocol:?}):\n{e}");
                }
            }
            let _ = stop.send(());
            let _ = task.await;
        }
    }
    println!("sqllogictest: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
