//! The source PostgreSQL, over an ordinary connection (tokio-postgres): the published tables
//! with their columns, types and keys; the replication slot (created and dropped by SQL); and
//! the initial copy of a table, read with `COPY ... TO STDOUT` inside the snapshot a temporary
//! replication slot exports, so that the copy ends exactly where that slot's position begins.

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use bytes::Bytes;
use futures::StreamExt;
use tokio_postgres::{Client, NoTls};

use super::statement::Definition;
use crate::error::{Error, Result, SqlState};
use crate::pg::names::quote;

/// A source error, as the subscription's status and the client show it (never with the
/// connection string).
pub fn source_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Data {
        sqlstate: SqlState::ConnectionFailure,
        message: format!("{what}: {e}"),
    }
}

/// Connect to the source with the subscription's connection string.
pub async fn connect(def: &Definition) -> Result<Client> {
    let mut settings = def.connection.clone();
    // sslmode is ours to read: tokio-postgres knows only disable / prefer / require.
    let sslmode = settings
        .remove("sslmode")
        .unwrap_or_else(|| "prefer".into());
    let sslrootcert = settings.remove("sslrootcert");
    let mut probe = def.clone();
    probe.connection = settings;
    let conn = probe.connection_string()?;
    let mut config: tokio_postgres::Config = conn
        .parse()
        .map_err(|e| source_error("invalid connection string", e))?;
    config.application_name(format!("lakegate subscription {}", def.name));
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    let failed = |e: tokio_postgres::Error| {
        // With its causes: "error performing TLS handshake: invalid peer certificate ...".
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        for _ in 0..8 {
            let Some(c) = cause else { break };
            let more = c.to_string();
            if !text.contains(&more) {
                text = format!("{text}: {more}");
            }
            cause = c.source();
        }
        if text.contains("UnknownIssuer") || text.contains("CaUsedAsEndEntity") {
            text.push_str(" (the server's certificate is not signed by sslrootcert's)");
        }
        // A foreign server is named as postgres_fdw names it.
        let what = match &def.server {
            Some(server) => format!("could not connect to server \"{server}\""),
            None => "could not connect to the publisher".to_string(),
        };
        source_error(&what, text)
    };
    let client = match sslmode.as_str() {
        "disable" | "allow" => {
            let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
            drive(connection);
            client
        }
        // prefer (libpq's default): TLS when the server offers it, the certificate unchecked
        // (as libpq), plain otherwise.
        "prefer" | "require" | "verify-ca" | "verify-full" => {
            config.ssl_mode(if sslmode == "prefer" {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            let tls = tls_config(&sslmode, sslrootcert.as_deref())?;
            let (client, connection) = config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                .await
                .map_err(failed)?;
            drive(connection);
            client
        }
        other => {
            return Err(Error::InvalidParameter(format!(
                "invalid sslmode value: \"{other}\""
            )));
        }
    };
    Ok(client)
}

/// Run a connection's I/O on a task of its own until it ends.
fn drive<F>(connection: F)
where
    F: std::future::Future<Output = std::result::Result<(), tokio_postgres::Error>>
        + Send
        + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "source connection ended");
        }
    });
}

/// The TLS settings of an sslmode: `require` (and `prefer`) encrypt without checking the
/// certificate (as libpq does); `verify-ca` and `verify-full` check it against `sslrootcert`
/// (else the web's roots), both with the host name (rustls always checks it: `verify-ca` is
/// stricter here).
fn tls_config(sslmode: &str, rootcert: Option<&str>) -> Result<rustls::ClientConfig> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let _ = provider.clone().install_default();
    let builder = rustls::ClientConfig::builder();
    if sslmode == "require" || sslmode == "prefer" {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                provider,
                check: None,
            }))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    let mut pinned = vec![];
    match rootcert {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                Error::InvalidParameter(format!("sslrootcert \"{path}\": {e}"))
            };
            let pem = std::fs::read(path).map_err(|e| bad(&e))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| bad(&e))?;
                pinned.push(cert.clone());
                roots.add(cert).map_err(|e| bad(&e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(provider.clone()),
    )
    .build()
    .map_err(|e| Error::InvalidParameter(format!("sslrootcert: {e}")))?;
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier {
            provider,
            check: Some((webpki, pinned)),
        }))
        .with_no_client_auth())
}

/// The source's certificate check. `check` None (`sslmode=require`): any certificate (the
/// connection is encrypted, the server not verified). Otherwise the certificate chains to a
/// root (webpki), or is itself one of `sslrootcert`'s certificates: a self-signed server
/// certificate, which libpq accepts and webpki refuses as a CA used as an end entity; the host
/// name is checked either way.
#[derive(Debug)]
struct Verifier {
    provider: rustls::crypto::CryptoProvider,
    check: Option<(
        Arc<rustls::client::WebPkiServerVerifier>,
        Vec<rustls::pki_types::CertificateDer<'static>>,
    )>,
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let Some((webpki, pinned)) = &self.check else {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(v) => Ok(v),
            Err(e) if pinned.iter().any(|c| c.as_ref() == end_entity.as_ref()) => {
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)
                    .map_err(|_| e.clone())?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One column of a published table, with the PostgreSQL type its target column gets.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceColumn {
    pub name: String,
    /// The type as Lakegate declares it (`integer`, `numeric(12,2)`, `text[]` ...).
    pub pg_type: String,
}

/// A published table: its columns in order and the columns that identify a row (primary key
/// or replica identity index; empty: whole-row identity).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceTable {
    pub schema: String,
    pub name: String,
    pub columns: Vec<SourceColumn>,
    pub key: Vec<String>,
}

impl SourceTable {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// The type a target column gets for a source column: the source's own where Lakegate has it,
/// enums and other types as text, domains as their base type. `time` is text too: Delta has no
/// time-of-day type (CREATE TABLE refuses it as well).
fn target_type(
    formatted: &str,
    typtype: &str,
    base: Option<&str>,
    elem_typtype: Option<&str>,
) -> String {
    let (base_name, array) = match formatted.strip_suffix("[]") {
        Some(b) => (b, true),
        None => (formatted, false),
    };
    let name = if typtype == "d" {
        base.unwrap_or("text").to_string()
    } else if typtype == "e" || elem_typtype == Some("e") {
        "text".to_string()
    } else {
        base_name.to_string()
    };
    let head = name.split('(').next().unwrap_or("").trim().to_string();
    let head = head.as_str();
    const KNOWN: &[&str] = &[
        "smallint",
        "integer",
        "bigint",
        "numeric",
        "real",
        "double precision",
        "text",
        "character varying",
        "character",
        "boolean",
        "bytea",
        "date",
        "timestamp without time zone",
        "timestamp with time zone",
        "uuid",
        "json",
        "jsonb",
    ];
    let known = KNOWN.contains(&head) || name.starts_with("timestamp(");
    let name = if known { name } else { "text".to_string() };
    // bytea[] and json[] have no array form here: text[].
    if array && !matches!(head, "bytea" | "json" | "jsonb") {
        format!("{name}[]")
    } else if array {
        "text[]".into()
    } else {
        name
    }
}

/// The tables of `publications`, in name order.
pub async fn tables(client: &Client, publications: &[String]) -> Result<Vec<SourceTable>> {
    let rows = client
        .query(
            "SELECT DISTINCT schemaname::text, tablename::text FROM pg_publication_tables \
             WHERE pubname = ANY($1) ORDER BY 1, 2",
            &[&publications],
        )
        .await
        .map_err(|e| source_error("could not list the publications' tables", e))?;
    let found = client
        .query(
            "SELECT pubname::text FROM pg_publication WHERE pubname = ANY($1)",
            &[&publications],
        )
        .await
        .map_err(|e| source_error("could not read the publications", e))?;
    for p in publications {
        if !found.iter().any(|r| r.get::<_, String>(0) == *p) {
            return Err(Error::UndefinedObject(format!(
                "publication \"{p}\" does not exist on the publisher"
            )));
        }
    }
    let mut out = vec![];
    for r in rows {
        let (schema, name): (String, String) = (r.get(0), r.get(1));
        out.push(table(client, &schema, &name).await?);
    }
    Ok(out)
}

/// One table's columns and key.
pub async fn table(client: &Client, schema: &str, name: &str) -> Result<SourceTable> {
    let rel = format!("{}.{}", quote(schema), quote(name));
    let cols = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typtype::text, \
                    CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END, \
                    et.typtype::text \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A' \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&rel],
        )
        .await
        .map_err(|e| source_error(&format!("could not read the columns of {rel}"), e))?;
    let columns = cols
        .iter()
        .map(|r| SourceColumn {
            name: r.get(0),
            pg_type: target_type(
                &r.get::<_, String>(1),
                &r.get::<_, String>(2),
                r.get::<_, Option<String>>(3).as_deref(),
                r.get::<_, Option<String>>(4).as_deref(),
            ),
        })
        .collect();
    // The replica identity index, else the primary key (with REPLICA IDENTITY FULL too: the
    // key still identifies rows).
    let key = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1::text::regclass AND i.indexrelid = ( \
               SELECT indexrelid FROM pg_index WHERE indrelid = $1::text::regclass \
                 AND (indisreplident OR indisprimary) ORDER BY indisreplident DESC LIMIT 1) \
             ORDER BY k.n",
            &[&rel],
        )
        .await
        .map_err(|e| source_error(&format!("could not read the key of {rel}"), e))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    Ok(SourceTable {
        schema: schema.to_string(),
        name: name.to_string(),
        columns,
        key,
    })
}

/// An LSN in PostgreSQL's text form (`16/B374D848`).
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Whether the slot exists; create it when `create` (logical, pgoutput) and it does not.
pub async fn ensure_slot(client: &Client, slot: &str, create: bool) -> Result<()> {
    let exists = !client
        .query(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| source_error("could not read the replication slots", e))?
        .is_empty();
    if exists {
        return Ok(());
    }
    if !create {
        return Err(Error::Data {
            sqlstate: SqlState::UndefinedObject,
            message: format!("replication slot \"{slot}\" does not exist on the publisher"),
        });
    }
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .map_err(|e| source_error(&format!("could not create replication slot \"{slot}\""), e))?;
    Ok(())
}

/// Drop the slot (its walsender, if one is still attached, is stopped first).
pub async fn drop_slot(client: &Client, slot: &str) -> Result<bool> {
    let _ = client
        .execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
             WHERE slot_name = $1 AND active_pid IS NOT NULL",
            &[&slot],
        )
        .await;
    for _ in 0..50 {
        let r = client
            .query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND NOT active",
                &[&slot],
            )
            .await;
        match r {
            Ok(rows) if !rows.is_empty() => return Ok(true),
            Ok(_) => {
                let left = client
                    .query(
                        "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                        &[&slot],
                    )
                    .await
                    .map_err(|e| source_error("could not read the replication slots", e))?;
                if left.is_empty() {
                    return Ok(false);
                }
            }
            Err(e) => tracing::debug!(error = %e, "dropping the slot"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(Error::Data {
        sqlstate: SqlState::ObjectNotInPrerequisiteState,
        message: format!("replication slot \"{slot}\" is still in use on the publisher"),
    })
}

/// A snapshot exported by a temporary replication slot: its name and LSN. The slot (and so
/// the snapshot) lives until this is dropped.
pub struct ExportedSnapshot {
    pub name: String,
    pub lsn: u64,
    release: Option<std_mpsc::Sender<()>>,
}

impl Drop for ExportedSnapshot {
    fn drop(&mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
    }
}

/// Create a temporary slot exporting a snapshot. pg_walstream's replication connection does
/// blocking I/O (CREATE_REPLICATION_SLOT waits for the source's running transactions), so it
/// lives on a thread of its own with its own runtime, until the snapshot is released.
pub async fn export_snapshot(def: &Definition, client: &Client) -> Result<ExportedSnapshot> {
    let conn = format!("{} replication=database", def.connection_string()?);
    let slot = format!(
        "{}_sync_{}",
        def.slot_name.chars().take(40).collect::<String>(),
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..8)
            .unwrap_or("0")
    );
    let (name_tx, name_rx) = tokio::sync::oneshot::channel::<Result<String>>();
    let (release_tx, release_rx) = std_mpsc::channel::<()>();
    let slot_for_thread = slot.clone();
    std::thread::Builder::new()
        .name("lakegate-snapshot".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = name_tx.send(Err(Error::internal(format!("runtime: {e}"))));
                    return;
                }
            };
            rt.block_on(async move {
                let mut config = pg_walstream::ReplicationStreamConfig::builder(
                    slot_for_thread.clone(),
                    "unused",
                );
                config = config.with_slot_options(pg_walstream::ReplicationSlotOptions {
                    temporary: true,
                    snapshot: Some("export".into()),
                    ..Default::default()
                });
                let made = async {
                    let mut stream = pg_walstream::LogicalReplicationStream::new(&conn, config)
                        .await
                        .map_err(|e| source_error("could not open a replication connection", e))?;
                    stream
                        .ensure_replication_slot()
                        .await
                        .map_err(|e| source_error("could not export a snapshot", e))?;
                    let name = stream
                        .exported_snapshot_name()
                        .map(str::to_string)
                        .ok_or_else(|| Error::internal("the publisher exported no snapshot"))?;
                    Ok::<_, Error>((stream, name))
                }
                .await;
                match made {
                    Ok((stream, name)) => {
                        let _ = name_tx.send(Ok(name));
                        // Held until the copy is done (or the copier is gone).
                        let _ = tokio::task::spawn_blocking(move || release_rx.recv()).await;
                        drop(stream);
                    }
                    Err(e) => {
                        let _ = name_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| Error::internal(format!("could not start a thread: {e}")))?;
    let name = name_rx
        .await
        .map_err(|_| Error::internal("the snapshot thread ended"))??;
    let lsn = client
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| source_error("could not read the snapshot's position", e))?;
    let lsn = parse_lsn(&lsn.get::<_, String>(0))
        .ok_or_else(|| Error::internal("the snapshot's position did not parse"))?;
    Ok(ExportedSnapshot {
        name,
        lsn,
        release: Some(release_tx),
    })
}

/// Read `table` as of `snapshot` with COPY text format on a connection of its own, handing
/// its rows to `sink` about COPY_BUFFER bytes at a time (memory bounded by the chunks).
pub async fn copy_table<F, Fut>(
    def: &Definition,
    snapshot: &ExportedSnapshot,
    table: &SourceTable,
    mut sink: F,
) -> Result<()>
where
    F: FnMut(Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let client = connect(def).await?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'; \
             SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO'; \
             SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'",
            snapshot.name.replace('\'', "''")
        ))
        .await
        .map_err(|e| source_error("could not open the snapshot", e))?;
    let cols = table
        .columns
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "COPY (SELECT {cols} FROM ONLY {}.{}) TO STDOUT",
        quote(&table.schema),
        quote(&table.name)
    );
    let stream = client
        .copy_out(&sql)
        .await
        .map_err(|e| source_error(&format!("could not copy {}", table.qualified()), e))?;
    futures::pin_mut!(stream);
    // PostgreSQL sends a CopyData message per row: handing each one on would wake the
    // parser once per row (a context switch each, the copy's main cost when measured).
    let mut buf = bytes::BytesMut::with_capacity(COPY_BUFFER);
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| source_error(&format!("copying {}", table.qualified()), e))?;
        buf.extend_from_slice(&chunk);
        if buf.len() >= COPY_BUFFER {
            sink(buf.split().freeze()).await?;
        }
    }
    if !buf.is_empty() {
        sink(buf.freeze()).await?;
    }
    let _ = client.batch_execute("COMMIT").await;
    Ok(())
}

/// The bytes of COPY data handed on at a time.
const COPY_BUFFER: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_types_and_lsns() {
        assert_eq!(target_type("integer", "b", None, None), "integer");
        assert_eq!(
            target_type("numeric(12,2)", "b", None, None),
            "numeric(12,2)"
        );
        assert_eq!(target_type("mood", "e", None, None), "text");
        assert_eq!(target_type("mood[]", "b", None, Some("e")), "text[]");
        assert_eq!(target_type("posint", "d", Some("integer"), None), "integer");
        assert_eq!(target_type("inet", "b", None, None), "text");
        assert_eq!(target_type("integer[]", "b", None, Some("b")), "integer[]");
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(lsn_text(0x16_B374_D848), "16/B374D848");
    }
}
