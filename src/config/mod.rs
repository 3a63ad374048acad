//! One configuration tree. Defaults are the embedded mode: loopback, a warehouse folder under
//! the current directory, the demo data. Layering (later wins): defaults, the TOML file,
//! `LAKEGATE__SECTION__KEY` environment variables, command-line flags. Done with `figment`.
//!
//! Secrets (passwords) come from the environment or from files and never appear in `Debug`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod warehouse;
pub use warehouse::{
    AzureConfig, AzureSettings, GcsConfig, S3Config, S3Settings, StorageConfig, TableFormat,
};

/// The PostgreSQL release Lakegate advertises everywhere (startup, `SHOW`, `version()`).
/// 15 is the major Debian ships, which the compatibility tests use as their oracle.
pub const PG_VERSION: &str = "15.20";

/// The admin password used when none is configured; refused off loopback.
pub const DEFAULT_PASSWORD: &str = "lakegate";

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub demo: DemoConfig,
    /// Iceberg REST catalogs to attach, each seen in SQL under its name.
    pub catalogs: Vec<CatalogConfig>,
    pub policy: PolicyConfig,
    pub engine: EngineConfig,
    /// Per-user and per-role limits (`[[limits]]`).
    pub limits: Vec<LimitConfig>,
}

/// How queries execute (DataFusion's runtime, shared by all sessions).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Memory all running queries may use together, e.g. "4GiB" or "512MiB"; "0" for no
    /// limit. Unset: half of the machine's memory (or of the container's memory limit, when
    /// the cgroup sets one). Past it, sorts, joins and aggregations spill to `spill_dir`; a
    /// query whose hash join (which cannot spill) runs short is computed again with sort-merge
    /// joins; what still does not fit fails with 53200.
    #[serde(deserialize_with = "size_text")]
    pub memory_limit: Option<String>,
    /// Where spilled data goes (default: the system's temporary folder).
    pub spill_dir: Option<PathBuf>,
    /// Parallel partitions per query (default: the number of cores).
    pub target_partitions: Option<usize>,
    /// Rows per batch (default: DataFusion's, 8192).
    pub batch_size: Option<usize>,
    /// Memory for the result cache, e.g. "256MiB" ("0": no cache). Default 128MiB.
    #[serde(deserialize_with = "size_text")]
    pub result_cache: Option<String>,
    /// Queries computing at once, all users together; the next ones wait their turn (first
    /// come, first served). Default: 4 per core; 0: no bound. (Measured with 16 TPC-H clients
    /// under a 4GiB limit on 2 cores, a bound of 2 cut the memory peak by half and throughput
    /// by three: docs/benchmarks.md.)
    pub max_running_queries: Option<usize>,
    /// How long a query waits for its turn before it fails (57014), e.g. "60s" (the default).
    pub queue_timeout: Option<String>,
    /// How many queries may wait for a turn; one more fails at once (53300). Default 1000.
    pub max_queued: Option<usize>,
    /// DataFusion options for every query, by their name without the `datafusion.` prefix,
    /// e.g. `[engine.datafusion.optimizer] repartition_joins = true` or
    /// `LAKEGATE__ENGINE__DATAFUSION__EXECUTION__BATCH_SIZE=16384`. They apply after
    /// Lakegate's own choices ([`crate::planner`]), which they may undo; an unknown name or a
    /// bad value stops the server at startup.
    pub datafusion: serde_json::Map<String, serde_json::Value>,
}

/// The engine settings, validated.
#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    pub memory_limit: Option<usize>,
    /// Bytes of results the cache keeps (0: none).
    pub result_cache: usize,
    pub spill_dir: Option<PathBuf>,
    pub target_partitions: Option<usize>,
    pub batch_size: Option<usize>,
    /// None: no bound.
    pub max_running_queries: Option<usize>,
    pub queue_timeout: std::time::Duration,
    pub max_queued: usize,
    /// DataFusion options (full names, values as text), each checked by DataFusion.
    pub datafusion: Vec<(String, String)>,
}

/// `engine.datafusion`'s nested tables as (`datafusion.a.b`, value) pairs, each accepted by
/// DataFusion's own option parser (a Config error names the one it refuses).
fn datafusion_options(
    table: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(String, String)>> {
    fn walk(
        prefix: &str,
        table: &serde_json::Map<String, serde_json::Value>,
        out: &mut Vec<(String, String)>,
    ) {
        for (k, v) in table {
            let key = format!("{prefix}.{k}");
            match v {
                serde_json::Value::Object(inner) => walk(&key, inner, out),
                serde_json::Value::String(s) => out.push((key, s.clone())),
                other => out.push((key, other.to_string())),
            }
        }
    }
    let mut out = Vec::new();
    walk("datafusion", table, &mut out);
    let mut check = datafusion::config::ConfigOptions::default();
    for (k, v) in &out {
        check
            .set(k, v)
            .map_err(|e| Error::Config(format!("engine.datafusion: {k} = {v:?}: {e}")))?;
    }
    Ok(out)
}

/// A size as written: "4GiB" or a plain number of bytes (`result_cache = 0`, or
/// `LAKEGATE__ENGINE__RESULT_CACHE=0`, which the environment layer reads as a number).
fn size_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Text(String),
        Bytes(u64),
    }
    Ok(Option::<Size>::deserialize(d)?.map(|s| match s {
        Size::Text(t) => t,
        Size::Bytes(n) => n.to_string(),
    }))
}

/// "4GiB", "512MiB", "100MB", "1073741824" as bytes.
pub fn parse_size(s: &str) -> Result<usize> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| Error::Config(format!("invalid size {s:?}: expected e.g. 4GiB")))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(Error::Config(format!(
                "invalid size unit {other:?} in {s:?}: use B, KiB, MiB, GiB, KB, MB or GB"
            )));
        }
    };
    Ok((n * factor) as usize)
}

/// Where the policies are (see policies/README.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// A folder of `*.toml` policy files; when it does not exist, the built-in defaults (every
    /// authenticated user may read and write every table).
    pub dir: PathBuf,
    /// The secret key of `hash` masks, in a file (else the LAKEGATE_MASK_KEY variable).
    pub mask_key_file: Option<PathBuf>,
    /// When a statement's audit record reaches the disk (it is always written to the file
    /// before the statement's answer completes).
    pub audit_sync: AuditSync,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            dir: PathBuf::from("policies"),
            mask_key_file: None,
            audit_sync: AuditSync::default(),
        }
    }
}

/// When audit records are synced to disk (`fdatasync`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuditSync {
    /// Before the statement's answer completes (concurrent statements share one sync).
    Statement,
    /// By a background thread, at most every 100 ms: an answer never waits for the disk (as
    /// PostgreSQL's own statement log); an operating-system crash may lose the last 100 ms of
    /// records, a crash of Lakegate alone loses none (they are in the file already).
    #[default]
    Background,
}

/// An Iceberg REST catalog (Apache Polaris, Lakekeeper, Nessie, ...).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// The name queries use: `SELECT * FROM name.namespace.table`.
    pub name: String,
    /// Only `rest` today.
    #[serde(default = "rest_type")]
    pub r#type: String,
    /// The catalog's base URI (the part before `/v1/...`).
    pub uri: String,
    /// The warehouse the catalog serves, when it serves several.
    pub warehouse: Option<String>,
    /// A bearer token, from an environment variable or a file ...
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// ... or OAuth2 client credentials `client_id:client_secret`.
    pub credential_env: Option<String>,
    pub credential_file: Option<PathBuf>,
    /// Further catalog and FileIO properties, as iceberg names them (`s3.endpoint`, `scope`, ...).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

fn rest_type() -> String {
    "rest".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// The database name clients connect to (any name is accepted; this one is reported).
    pub database: String,
    /// At most this many client connections; more are refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// On SIGINT/SIGTERM, running statements get this many seconds to finish.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:5433".into(),
            database: "lakegate".into(),
            max_connections: 100,
            shutdown_grace_secs: 30,
        }
    }
}

#[derive(Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The administrator's user name.
    pub admin_user: String,
    /// The administrator's password. Prefer `LAKEGATE_PASSWORD` or `admin_password_file`.
    pub admin_password: Option<Secret>,
    /// A file holding the administrator's password (first line).
    pub admin_password_file: Option<PathBuf>,
    /// PBKDF2 iterations of the SCRAM-SHA-256 verifiers.
    pub scram_iterations: usize,
    /// Further users; each password comes from `password_env` or `password_file`.
    pub users: Vec<UserConfig>,
    /// Signed tokens (JWT) as passwords, for users not listed here (`[auth.jwt]`).
    pub jwt: Option<JwtConfig>,
}

/// Logins with a signed JWT as the password: any user name not configured above presents a
/// token, verified against `jwks_file` or `public_key_file`; issuer, audience and expiry are
/// checked, and the user name, roles and attributes come from its claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (one of, when it is a list).
    pub audience: String,
    /// A JWKS document (`{"keys": [...]}`), re-read when it changes (key rotation).
    pub jwks_file: Option<PathBuf>,
    /// Or one PEM public key (RSA or EC P-256).
    pub public_key_file: Option<PathBuf>,
    /// Accepted signature algorithms: RS256, RS384, RS512, PS256, ES256, ES384.
    pub algorithms: Vec<String>,
    /// The claim naming the user; it must equal the user name the client connects as.
    pub user_claim: String,
    /// The claim listing the user's roles (an array, or a space-separated string).
    pub roles_claim: String,
    /// Claims copied into the principal's attributes (for row filters' `$name`).
    pub attribute_claims: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Accept tokens over connections without TLS (tests and local demos only).
    pub allow_without_tls: bool,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            issuer: String::new(),
            audience: String::new(),
            jwks_file: None,
            public_key_file: None,
            algorithms: vec!["RS256".into(), "ES256".into()],
            user_claim: "sub".into(),
            roles_claim: "roles".into(),
            attribute_claims: vec![],
            leeway_secs: 30,
            allow_without_tls: false,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            admin_user: "lakegate".into(),
            admin_password: None,
            admin_password_file: None,
            scram_iterations: 4096,
            users: vec![],
            jwt: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct UserConfig {
    pub name: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Administrators may create and drop schemas and tables.
    pub admin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; TLS is on when both `cert` and `key` are set.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Refuse connections that do not use TLS.
    pub required: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Create the `demo` schema with customers and orders on first start.
    pub enabled: bool,
    pub customers: usize,
    pub orders: usize,
    /// A SQL file run once, as the administrator, on a new warehouse (e.g. examples/hr/setup.sql).
    pub setup_sql: Option<PathBuf>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            enabled: true,
            setup_sql: None,
            customers: 2000,
            orders: 8000,
        }
    }
}

/// Command-line overrides, applied last.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<String>,
}

/// A user that can log in: name, password (held only until turned into a SCRAM verifier), admin flag.
#[derive(Debug, Clone)]
pub struct UserSpec {
    pub name: String,
    pub password: Secret,
    pub admin: bool,
}

/// Limits for some users: a user, a role of the policy files (every user holding it), or `*`.
/// Where several name a user, the lowest of each applies.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    pub to: String,
    /// Queries one such user may compute at once (the next wait their turn).
    pub max_running_queries: Option<usize>,
    /// The longest a statement of theirs may run, e.g. "5min": the default of their sessions'
    /// `statement_timeout`, and its ceiling (SET may lower it, not raise or turn it off).
    pub statement_timeout: Option<String>,
}

/// A [`LimitConfig`], validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limit {
    pub to: String,
    pub max_running_queries: Option<usize>,
    pub statement_timeout: Option<std::time::Duration>,
}

/// A duration as PostgreSQL settings write them: a number with an optional unit (ms, s, min,
/// h, d; none: milliseconds).
pub fn parse_duration(v: &str) -> Option<std::time::Duration> {
    let v = v.trim().trim_matches('\'');
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1.0,
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    (n >= 0.0).then(|| std::time::Duration::from_millis((n * factor) as u64))
}

/// The cores the server may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// Half of the memory this process may have: the machine's, or the container's limit when its
/// cgroup sets a lower one (the default `engine.memory_limit`).
pub fn default_memory_limit() -> usize {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .map(|kib| kib * 1024);
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|f| std::fs::read_to_string(f).ok())
    .and_then(|v| v.trim().parse::<usize>().ok());
    let total = match (machine, cgroup) {
        (Some(m), Some(c)) => m.min(c),
        (Some(m), None) => m,
        (None, Some(c)) => c,
        (None, None) => 4 << 30,
    };
    total / 2
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database: String,
    pub max_connections: usize,
    pub shutdown_grace: std::time::Duration,
    pub warehouse: String,
    pub default_format: TableFormat,
    pub metadata_dir: Option<String>,
    pub s3: S3Settings,
    pub catalogs: Vec<RestSpec>,
    pub policy_dir: PathBuf,
    /// The policy folder was named in the configuration (not the default `policies`): when it
    /// is missing nothing is allowed, never the built-in defaults.
    pub policy_dir_configured: bool,
    pub audit_sync: AuditSync,
    /// The key of `hash` masks (redacted in Debug).
    pub mask_key: Option<Secret>,
    pub users: Vec<UserSpec>,
    pub scram_iterations: usize,
    pub jwt: Option<JwtConfig>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub tls_required: bool,
    pub demo: DemoConfig,
    pub engine: EngineSettings,
    pub limits: Vec<Limit>,
}

impl Config {
    /// Defaults, then the file (if given), then `LAKEGATE__SECTION__KEY` variables.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(Error::Config(format!(
                    "config file {} does not exist",
                    f.display()
                )));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("LAKEGATE__").split("__").lowercase(true));
        fig.extract()
            .map_err(|e| Error::Config(format!("invalid configuration: {e}")))
    }

    /// Parse a TOML text (used for the examples test).
    pub fn from_toml(text: &str) -> Result<Config> {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| Error::Config(format!("invalid configuration: {e}")))
    }

    pub fn apply(mut self, o: &Overrides) -> Config {
        if let Some(l) = &o.listen {
            self.server.listen = l.clone();
        }
        if let Some(d) = &o.data_dir {
            self.storage.warehouse = d.clone();
        }
        self
    }

    /// Check the configuration and resolve secrets; refuses unsafe combinations.
    pub fn validate(self) -> Result<Settings> {
        let listen: SocketAddr = tokio_listen_addr(&self.server.listen)?;
        let admin_password = match (&self.auth.admin_password, &self.auth.admin_password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => Secret(read_secret_file(f)?),
            (None, None) => Secret(
                std::env::var("LAKEGATE_PASSWORD").unwrap_or_else(|_| DEFAULT_PASSWORD.into()),
            ),
        };
        let tls = match (&self.tls.cert, &self.tls.key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => return Err(Error::Config("tls needs both tls.cert and tls.key".into())),
        };
        if self.tls.required && tls.is_none() {
            return Err(Error::Config(
                "tls.required is set but tls.cert and tls.key are not".into(),
            ));
        }
        exposed_safely(listen, tls.is_some(), &admin_password)?;
        if self.auth.scram_iterations < 4096 {
            return Err(Error::Config(
                "auth.scram_iterations must be at least 4096".into(),
            ));
        }
        let Some(default_format) =
            TableFormat::parse(&self.storage.default_format).filter(|f| f.is_lakehouse())
        else {
            return Err(Error::Config(format!(
                "storage.default_format must be delta or iceberg, not {:?}",
                self.storage.default_format
            )));
        };
        if self.server.max_connections == 0 {
            return Err(Error::Config(
                "server.max_connections must be at least 1".into(),
            ));
        }
        let s3 = self.object_store_settings()?;
        let mut catalogs = Vec::with_capacity(self.catalogs.len());
        for c in &self.catalogs {
            catalogs.push(rest_spec(c, &self.server.database)?);
        }
        if let Some(dup) = catalogs
            .iter()
            .enumerate()
            .find(|(i, c)| catalogs[..*i].iter().any(|o| o.name == c.name))
        {
            return Err(Error::Config(format!(
                "catalog {} is configured twice",
                dup.1.name
            )));
        }
        let users = self.user_specs(admin_password)?;
        Ok(Settings {
            listen,
            database: self.server.database,
            max_connections: self.server.max_connections,
            shutdown_grace: std::time::Duration::from_secs(self.server.shutdown_grace_secs),
            warehouse: self.storage.warehouse,
            default_format,
            metadata_dir: self.storage.metadata_dir,
            s3,
            catalogs,
            policy_dir_configured: self.policy.dir != PolicyConfig::default().dir,
            policy_dir: self.policy.dir,
            audit_sync: self.policy.audit_sync,
            mask_key: match &self.policy.mask_key_file {
                Some(f) => Some(Secret(read_secret_file(f)?)),
                None => std::env::var("LAKEGATE_MASK_KEY").ok().map(Secret),
            },
            users,
            scram_iterations: self.auth.scram_iterations,
            // Its keys and algorithms are checked where tokens are verified
            // (wire::jwt::check_config, when the server starts).
            jwt: self.auth.jwt,
            tls,
            tls_required: self.tls.required,
            demo: self.demo,
            engine: EngineSettings {
                memory_limit: match &self.engine.memory_limit {
                    Some(m) => Some(parse_size(m)?).filter(|n| *n > 0),
                    None => Some(default_memory_limit()),
                },
                max_running_queries: match self.engine.max_running_queries {
                    Some(0) => None,
                    Some(n) => Some(n),
                    None => Some(4 * cores()),
                },
                queue_timeout: match &self.engine.queue_timeout {
                    Some(t) => parse_duration(t).ok_or_else(|| {
                        Error::Config(format!(
                            "engine.queue_timeout {t:?}: a duration such as \"60s\" or \"5min\""
                        ))
                    })?,
                    None => std::time::Duration::from_secs(60),
                },
                max_queued: self.engine.max_queued.unwrap_or(1000),
                spill_dir: self.engine.spill_dir,
                result_cache: match &self.engine.result_cache {
                    Some(c) => parse_size(c)?,
                    None => 128 * 1024 * 1024,
                },
                target_partitions: self.engine.target_partitions.filter(|n| *n > 0),
                batch_size: self.engine.batch_size.filter(|n| *n > 0),
                datafusion: datafusion_options(&self.engine.datafusion)?,
            },
            limits: limits(&self.limits)?,
        })
    }

    /// The administrator and the configured users, passwords read from where they are kept.
    fn user_specs(&self, admin_password: Secret) -> Result<Vec<UserSpec>> {
        let mut users = vec![UserSpec {
            name: self.auth.admin_user.clone(),
            password: admin_password,
            admin: true,
        }];
        for u in &self.auth.users {
            let password = match (&u.password_env, &u.password_file) {
                (Some(var), _) => Secret(std::env::var(var).map_err(|_| {
                    Error::Config(format!(
                        "user {}: environment variable {var} is not set",
                        u.name
                    ))
                })?),
                (None, Some(f)) => Secret(read_secret_file(f)?),
                (None, None) => {
                    return Err(Error::Config(format!(
                        "user {}: set password_env or password_file",
                        u.name
                    )));
                }
            };
            users.push(UserSpec {
                name: u.name.clone(),
                password,
                admin: u.admin,
            });
        }
        Ok(users)
    }

    /// The object stores' settings (S3, Azure, GCS), secrets read from their files.
    fn object_store_settings(&self) -> Result<S3Settings> {
        let s3c = &self.storage.s3;
        Ok(S3Settings {
            endpoint: s3c.endpoint.clone(),
            region: s3c.region.clone(),
            access_key_id: s3c.access_key_id.clone(),
            secret_access_key: match &s3c.secret_access_key_file {
                Some(f) => Some(read_secret_file(f)?),
                None => None,
            },
            allow_http: s3c.allow_http,
            path_style: s3c.path_style,
            azure: AzureSettings {
                account: self.storage.azure.account.clone(),
                access_key: match &self.storage.azure.access_key_file {
                    Some(f) => Some(read_secret_file(f)?),
                    None => None,
                },
                endpoint: self.storage.azure.endpoint.clone(),
                allow_http: self.storage.azure.allow_http,
            },
            gcs_service_account_file: self
                .storage
                .gcs
                .service_account_file
                .as_ref()
                .map(|p| p.display().to_string()),
        })
    }
}

/// `[[limits]]`, validated.
fn limits(configured: &[LimitConfig]) -> Result<Vec<Limit>> {
    configured
        .iter()
        .map(|l| {
            if l.to.is_empty() {
                return Err(Error::Config(
                    "a [[limits]] entry names whom it limits: to = \"user\", \"role\" or \"*\""
                        .into(),
                ));
            }
            Ok(Limit {
                to: l.to.clone(),
                max_running_queries: l.max_running_queries.filter(|n| *n > 0),
                statement_timeout: match &l.statement_timeout {
                    Some(t) => Some(parse_duration(t).ok_or_else(|| {
                        Error::Config(format!(
                            "limits for {}: statement_timeout {t:?} is not a duration (\"30s\", \"5min\")",
                            l.to
                        ))
                    })?)
                    .filter(|d| !d.is_zero()),
                    None => None,
                },
            })
        })
        .collect()
}

/// Off loopback, only with TLS and a password of one's own.
fn exposed_safely(listen: SocketAddr, tls: bool, admin_password: &Secret) -> Result<()> {
    let loopback = listen.ip().is_loopback();
    if !loopback && !tls {
        return Err(Error::Config(format!(
            "refusing to listen on {listen} without TLS: set tls.cert and tls.key (or LAKEGATE__TLS__CERT and LAKEGATE__TLS__KEY), or listen on 127.0.0.1"
        )));
    }
    if !loopback && admin_password.0 == DEFAULT_PASSWORD {
        return Err(Error::Config(format!(
            "refusing to listen on {listen} with the default admin password: set LAKEGATE_PASSWORD (or auth.admin_password_file)"
        )));
    }
    Ok(())
}

/// A REST catalog's properties, with its secret read from the environment or a file.
fn rest_spec(c: &CatalogConfig, database: &str) -> Result<RestSpec> {
    let valid = !c.name.is_empty()
        && c.name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
    if !valid || c.name == database {
        return Err(Error::Config(format!(
            "catalog name {:?} must be a lowercase identifier other than the database name {database:?}",
            c.name
        )));
    }
    if c.r#type != "rest" {
        return Err(Error::Config(format!(
            "catalog {}: type {:?} is not supported (only \"rest\")",
            c.name, c.r#type
        )));
    }
    let secret = |env: &Option<String>, file: &Option<PathBuf>| -> Result<Option<String>> {
        match (env, file) {
            (Some(var), _) => std::env::var(var).map(Some).map_err(|_| {
                Error::Config(format!(
                    "catalog {}: environment variable {var} is not set",
                    c.name
                ))
            }),
            (None, Some(f)) => read_secret_file(f).map(Some),
            (None, None) => Ok(None),
        }
    };
    let mut props: std::collections::HashMap<String, String> = c
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    props.insert("uri".into(), c.uri.clone());
    if let Some(w) = &c.warehouse {
        props.insert("warehouse".into(), w.clone());
    }
    if let Some(t) = secret(&c.token_env, &c.token_file)? {
        props.insert("token".into(), t);
    }
    if let Some(t) = secret(&c.credential_env, &c.credential_file)? {
        props.insert("credential".into(), t);
    }
    Ok(RestSpec {
        name: c.name.clone(),
        props,
    })
}

fn tokio_listen_addr(s: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let s = if s.starts_with("localhost:") {
        s.replacen("localhost", "127.0.0.1", 1)
    } else {
        s.to_string()
    };
    s.to_socket_addrs()
        .map_err(|e| {
            Error::Config(format!(
                "invalid listen address {s:?}: {e} (expected HOST:PORT)"
            ))
        })?
        .next()
        .ok_or_else(|| Error::Config(format!("listen address {s:?} resolves to nothing")))
}

fn read_secret_file(f: &Path) -> Result<String> {
    let text = std::fs::read_to_string(f)
        .map_err(|e| Error::Config(format!("cannot read secret file {}: {e}", f.display())))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// An Iceberg REST catalog to attach (Polaris, Lakekeeper, Nessie, ...): its name in SQL and
/// the properties iceberg-rust's RestCatalog takes (`uri`, `warehouse`, `token` or
/// `credential`, `s3.*` for the data files).
#[derive(Clone, PartialEq, Eq)]
pub struct RestSpec {
    pub name: String,
    pub props: std::collections::HashMap<String, String>,
}

impl std::fmt::Debug for RestSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: std::collections::BTreeMap<_, _> = self
            .props
            .iter()
            .map(|(k, v)| {
                let secret = k == "token" || k == "credential" || k.contains("secret");
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("RestSpec")
            .field("name", &self.name)
            .field("props", &shown)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_embedded_mode() {
        let s = Config::default().validate().expect("defaults validate");
        assert!(s.listen.ip().is_loopback());
        assert_eq!(s.listen.port(), 5433);
        assert_eq!(s.users[0].name, "lakegate");
    }

    #[test]
    fn non_loopback_without_tls_is_refused() {
        let c = Config::default().apply(&Overrides {
            listen: Some("0.0.0.0:5433".into()),
            data_dir: None,
        });
        let e = c.validate().expect_err("must refuse");
        assert!(e.to_string().contains("TLS"), "{e}");
    }

    #[test]
    fn sizes_may_be_numbers_and_datafusion_options_nest() {
        let c = Config::from_toml(
            "[engine]\nresult_cache = 0\nmemory_limit = \"1GiB\"\n\
             [engine.datafusion.optimizer]\nrepartition_joins = true\n\
             [engine.datafusion]\n\"execution.batch_size\" = 4096\n",
        )
        .expect("parses");
        let s = c.validate().expect("validates");
        assert_eq!(s.engine.result_cache, 0);
        assert_eq!(s.engine.memory_limit, Some(1 << 30));
        let mut options = s.engine.datafusion.clone();
        options.sort();
        assert_eq!(
            options,
            vec![
                ("datafusion.execution.batch_size".into(), "4096".into()),
                (
                    "datafusion.optimizer.repartition_joins".into(),
                    "true".into()
                ),
            ]
        );
        let bad = Config::from_toml("[engine.datafusion.optimizer]\nno_such_option = 1\n")
            .expect("parses")
            .validate()
            .expect_err("unknown option refused");
        assert!(bad.to_string().contains("no_such_option"), "{bad}");
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
    }
}
