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

#[tokio::test]
async fn sigterm_lets_the_running_statement_finish() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut child = lakegate()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("wh"))
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
    let url =
        format!("host=127.0.0.1 port={port} user=lakegate password=bin-test-pw dbname=lakegate");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
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
