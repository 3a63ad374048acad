//! SCRAM-SHA-256 good and bad passwords, unknown users, TLS optional and required, channel binding.

use crate::common::{Options, PASSWORD, TestServer};

fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no sqlstate: {e}"))
}

#[tokio::test]
async fn scram_accepts_the_right_password_only() {
    let s = TestServer::start(Options::default()).await;
    let c = s
        .connect_as("lakegate", PASSWORD)
        .await
        .expect("admin logs in");
    let row = c
        .query_one("SELECT current_user", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "lakegate");
    let alice = s
        .connect_as("alice", "alice-pw")
        .await
        .expect("alice logs in");
    let row = alice
        .query_one("SELECT current_user", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "alice");

    let wrong = s
        .connect_as("lakegate", "nope")
        .await
        .expect_err("wrong password refused");
    let unknown = s
        .connect_as("mallory", "nope")
        .await
        .expect_err("unknown user refused");
    assert_eq!(code(&wrong), "28P01");
    assert_eq!(code(&unknown), "28P01");
    // Same message shape: nothing tells an unknown user from a wrong password.
    let strip = |e: &tokio_postgres::Error, u: &str| e.to_string().replace(u, "USER");
    assert_eq!(strip(&wrong, "lakegate"), strip(&unknown, "mallory"));
    s.stop().await;
}

#[tokio::test]
async fn identity_cannot_be_changed_with_set() {
    let s = TestServer::start(Options::default()).await;
    let alice = s.connect_as("alice", "alice-pw").await.expect("login");
    assert!(
        alice
            .batch_execute("SET session_authorization = 'lakegate'")
            .await
            .is_err()
    );
    assert!(alice.batch_execute("SET ROLE lakegate").await.is_err());
    alice
        .batch_execute("SET application_name = 'lakegate'")
        .await
        .expect("harmless");
    let row = alice
        .query_one("SELECT current_user, session_user", &[])
        .await
        .expect("q");
    assert_eq!(row.get::<_, String>(0), "alice");
    assert_eq!(row.get::<_, String>(1), "alice");
    s.stop().await;
}

fn make_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("cert");
    let cert_pem = cert.cert.pem();
    let key_pem = cert.key_pair.serialize_pem();
    let c = dir.join("server.crt");
    let k = dir.join("server.key");
    std::fs::write(&c, &cert_pem).expect("write cert");
    std::fs::write(&k, key_pem).expect("write key");
    (c, k, cert.cert.der().to_vec())
}

fn tls_connector(der: &[u8]) -> tokio_postgres_rustls::MakeRustlsConnect {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
        .expect("root");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

#[tokio::test]
async fn tls_required_and_channel_binding() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (c, k, der) = make_cert(tmp.path());
    let s = TestServer::start(Options {
        tls: Some((c, k)),
        tls_required: true,
        ..Default::default()
    })
    .await;
    // Plain connections are refused.
    let plain = s
        .connect_as("lakegate", PASSWORD)
        .await
        .expect_err("plain refused");
    assert_eq!(code(&plain), "28000");
    // TLS with SCRAM-SHA-256-PLUS (channel binding required by the client).
    let url = format!(
        "host=localhost port={} user=lakegate password={PASSWORD} dbname=lakegate sslmode=require channel_binding=require",
        s.addr.port()
    );
    let (client, conn) = tokio_postgres::connect(&url, tls_connector(&der))
        .await
        .expect("tls login");
    tokio::spawn(conn);
    let row = client
        .query_one("SELECT 1::int4", &[])
        .await
        .expect("query over tls");
    assert_eq!(row.get::<_, i32>(0), 1);
    s.stop().await;
}

#[tokio::test]
async fn tls_optional_accepts_both() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (c, k, der) = make_cert(tmp.path());
    let s = TestServer::start(Options {
        tls: Some((c, k)),
        ..Default::default()
    })
    .await;
    s.connect_as("lakegate", PASSWORD).await.expect("plain ok");
    let url = format!(
        "host=localhost port={} user=alice password=alice-pw dbname=lakegate sslmode=require",
        s.addr.port()
    );
    let (client, conn) = tokio_postgres::connect(&url, tls_connector(&der))
        .await
        .expect("tls login");
    tokio::spawn(conn);
    client.simple_query("SELECT 1").await.expect("q");
    s.stop().await;
}

#[tokio::test]
async fn connection_limit_answers_53300() {
    let s = TestServer::start(Options {
        max_connections: 2,
        ..Default::default()
    })
    .await;
    let _a = s.connect().await;
    let _b = s.connect().await;
    let e = s
        .connect_as("lakegate", PASSWORD)
        .await
        .expect_err("third refused");
    assert_eq!(code(&e), "53300");
    drop(_a);
    // A slot frees up once a client leaves.
    let mut ok = false;
    for _ in 0..50 {
        if s.connect_as("lakegate", PASSWORD).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ok, "a freed slot is reused");
    s.stop().await;
}
