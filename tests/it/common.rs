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
        let (tmp, dir) = match &opts.dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                let d = t.path().join("warehouse");
                (Some(t), d)
            }
        };
        let settings = config(&opts, &dir).validate().expect("valid test config");
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
