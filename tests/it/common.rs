//! Start a server in this process on 127.0.0.1:0 with a temp warehouse, and connect to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lakegate::config::{Config, Secret, UserConfig};
use lakegate::server::Server;
use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls};

pub const PASSWORD: &str = "s3cret-pw";

pub struct TestServer {
    pub addr: SocketAddr,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub struct Options {
    pub demo: bool,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub tls_required: bool,
    pub max_connections: usize,
    pub dir: Option<PathBuf>,
    pub default_format: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            demo: false,
            tls: None,
            tls_required: false,
            max_connections: 100,
            dir: None,
            default_format: None,
        }
    }
}

impl Options {
    /// The defaults, with the warehouse in `dir` (which outlives the server: restarts, files
    /// read by the test).
    pub fn in_dir(dir: &Path) -> Self {
        Options {
            dir: Some(dir.to_path_buf()),
            ..Default::default()
        }
    }
}

pub fn config(opts: &Options, dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.server.max_connections = opts.max_connections;
    c.server.shutdown_grace_secs = 5;
    c.storage.warehouse = dir.display().to_string();
    if let Some(f) = &opts.default_format {
        c.storage.default_format = f.clone();
    }
    c.auth.admin_password = Some(Secret(PASSWORD.into()));
    let pw = dir.with_extension("alice-password");
    if let Some(parent) = pw.parent() {
        std::fs::create_dir_all(parent).expect("temp dir");
    }
    std::fs::write(&pw, "alice-pw").expect("password file");
    c.auth.users = vec![UserConfig {
        name: "alice".into(),
        password_env: None,
        password_file: Some(pw),
        admin: false,
    }];
    c.demo.enabled = opts.demo;
    c.demo.customers = 50;
    c.demo.orders = 200;
    if let Some((cert, key)) = &opts.tls {
        c.tls.cert = Some(cert.clone());
        c.tls.key = Some(key.clone());
    }
    c.tls.required = opts.tls_required;
    c
}

impl TestServer {
    pub async fn start(opts: Options) -> TestServer {
        Self::start_with(opts, |_| {}).await
    }

    /// Start with a config changed by `tweak` (e.g. a warehouse on S3).
    pub async fn start_with(opts: Options, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let (tmp, dir) = match &opts.dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                let d = t.path().join("warehouse");
                (Some(t), d)
            }
        };
        let mut c = config(&opts, &dir);
        tweak(&mut c);
        let settings = c.validate().expect("valid test config");
        let server = Server::bind(settings).await.expect("server binds");
        let addr = server.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs");
        });
        TestServer {
            addr,
            _tmp: tmp,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Start with a policy folder holding `policies` (one file); the folder lives as long as
    /// the returned TempDir.
    pub async fn start_with_policies(policies: &str) -> (TestServer, tempfile::TempDir) {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("policies");
        std::fs::create_dir_all(&dir).expect("policy dir");
        std::fs::write(dir.join("policies.toml"), policies).expect("policy file");
        let s = Self::start_with(Options::default(), |c| c.policy.dir = dir.clone()).await;
        (s, tmp)
    }

    pub fn url(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=lakegate",
            self.addr.port()
        )
    }

    pub async fn connect(&self) -> Client {
        self.connect_as("lakegate", PASSWORD)
            .await
            .expect("admin connects")
    }

    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::connect(&self.url(user, password), NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// An admin connection and the (code, message) of every NOTICE/WARNING it receives.
    pub async fn connect_with_notices(
        &self,
    ) -> (
        Client,
        tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    ) {
        use futures::StreamExt;
        let (c, mut conn) = tokio_postgres::connect(&self.url("lakegate", PASSWORD), NoTls)
            .await
            .expect("connect");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notice(n) = m {
                    let _ = tx.send((n.code().code().to_string(), n.message().to_string()));
                }
            }
        });
        (c, rx)
    }

    /// Stop the server (as SIGTERM would) and wait until it has.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self._tmp.take()
    }
}

/// A Python test server from tests/it (it prints `port N` and serves until its stdin closes);
/// stopped when dropped.
pub struct PyServer {
    pub port: u16,
    child: std::process::Child,
}

impl PyServer {
    /// Start `tests/it/SCRIPT ARGS...`. None when `modules` cannot be imported and this is not
    /// CI (CI installs them through scripts/install-test-deps, so there a missing one fails).
    pub fn start(script: &str, args: &[&str], modules: &str) -> Option<PyServer> {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let available = Command::new("python3")
            .args(["-c", &format!("import {modules}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            assert!(
                std::env::var("CI").is_err(),
                "{modules} not installed: run scripts/install-test-deps"
            );
            eprintln!("skipped: {modules} not installed (scripts/install-test-deps)");
            return None;
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/it")
            .join(script);
        let mut child = Command::new("python3")
            .arg(path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the python test server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("port line");
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .expect("the server prints its port");
        Some(PyServer { port, child })
    }
}

impl Drop for PyServer {
    /// Close its stdin so that it stops what it started, give it a moment, then kill it.
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An S3-protocol server (moto, from PyPI) on a loopback port it picks itself.
pub struct S3Server {
    pub endpoint: String,
    _server: PyServer,
}

impl S3Server {
    pub fn start(buckets: &[&str]) -> Option<S3Server> {
        let server = PyServer::start("moto_server.py", buckets, "moto.server, boto3")?;
        Some(S3Server {
            endpoint: format!("http://127.0.0.1:{}", server.port),
            _server: server,
        })
    }

    /// Point a config's warehouse at `s3://bucket/prefix` on this server.
    pub fn configure(&self, c: &mut Config, warehouse: &str, metadata_dir: &Path) {
        c.storage.warehouse = warehouse.into();
        c.storage.metadata_dir = Some(metadata_dir.display().to_string());
        c.storage.s3.endpoint = Some(self.endpoint.clone());
        c.storage.s3.region = Some("us-east-1".into());
        c.storage.s3.access_key_id = Some("test".into());
        let secret = metadata_dir.with_extension("s3-secret");
        std::fs::create_dir_all(metadata_dir).expect("metadata dir");
        std::fs::write(&secret, "test").expect("secret file");
        c.storage.s3.secret_access_key_file = Some(secret);
        c.storage.s3.allow_http = true;
        c.storage.s3.path_style = true;
    }
}

/// Each client inserts `(worker, n)` for n in 0..`rows` into `table`, all clients at once;
/// worker ids are given. Fails with the first error any client got.
pub async fn insert_concurrently(
    clients: Vec<(i32, Client)>,
    table: &str,
    rows: i32,
) -> Result<(), String> {
    let mut tasks = vec![];
    for (w, client) in clients {
        let sql = format!("INSERT INTO {table} VALUES ($1, $2)");
        tasks.push(tokio::spawn(async move {
            for n in 0..rows {
                client
                    .execute(&sql, &[&w, &n])
                    .await
                    .map_err(|e| format!("{e:?}"))?;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}
