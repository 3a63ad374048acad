//! The `lakegate` binary itself: it prints how to connect, refuses unsafe settings with exit 2,
//! and on SIGTERM lets a running statement finish, then exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn lakegate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lakegate"));
    c.env("LAKEGATE__DEMO__ENABLED", "false")
        .env("LAKEGATE_PASSWORD", "bin-test-pw")
        .env_remove("LAKEGATE_LOG");
    c
}

#[test]
fn unsafe_listen_is_refused_with_exit_2() {
    let out = lakegate()
        .args(["serve", "--listen", "0.0.0.0:5999", "--data-dir"])
        .arg(tempfile::tempdir().expect("tmp").path())
        .env("LAKEGATE_PASSWORD", "lakegate")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS"), "{err}");
}

/// Start the binary on an ephemeral port; returns it and the port from its banner.
async fn spawn(data_dir: &std::path::Path) -> (std::process::Child, u16) {
    let mut child = lakegate()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("join")
    .expect("first line");
    assert!(
        line.contains("psql postgresql://lakegate@127.0.0.1:"),
        "{line}"
    );
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("port in the banner");
    (child, port)
}

async fn connect(port: u16) -> tokio_postgres::Client {
    let url =
        format!("host=127.0.0.1 port={port} user=lakegate password=bin-test-pw dbname=lakegate");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

#[tokio::test]
async fn sigterm_lets_the_running_statement_finish() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (mut child, port) = spawn(&tmp.path().join("wh")).await;
    let client = connect(port).await;
    let query = tokio::spawn(async move {
        client
            .simple_query("SELECT pg_sleep(1.5)")
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    query
        .await
        .expect("join")
        .expect("the running statement completes");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_killed_server_keeps_every_acknowledged_write() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("wh");
    let (mut child, port) = spawn(&dir).await;
    let client = connect(port).await;
    client
        .batch_execute("CREATE TABLE crash (i BIGINT)")
        .await
        .expect("create");
    let writer = tokio::spawn(async move {
        let mut acknowledged = 0i64;
        for i in 0..10_000i64 {
            match client.execute("INSERT INTO crash VALUES ($1)", &[&i]).await {
                Ok(_) => acknowledged += 1,
                Err(_) => break,
            }
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let acknowledged = writer.await.expect("join");
    assert!(acknowledged > 0, "some inserts ran before the kill");
    let (mut child, port) = spawn(&dir).await;
    let client = connect(port).await;
    let row = client
        .query_one("SELECT count(*), count(DISTINCT i) FROM crash", &[])
        .await
        .expect("readable");
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    // Every acknowledged insert is there; at most the one in flight at the kill may be too.
    assert!(
        rows == acknowledged || rows == acknowledged + 1,
        "{rows} rows, {acknowledged} acknowledged"
    );
    assert_eq!(rows, distinct);
    let _ = child.kill();
    let _ = child.wait();
}
