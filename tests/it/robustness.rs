//! No statement crashes or freezes the server: nesting beyond the server's depth answers 54001,
//! values too large 54000, and the connection (and every other) goes on; queries wait their
//! turn under the configured limits, and what reads no table never waits.

use crate::common::{Options, TestServer};
use lakegate::config::LimitConfig;
use tokio_postgres::error::SqlState;

async fn code(c: &tokio_postgres::Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(_) => "ok".into(),
        Err(e) => e
            .code()
            .map(|c| c.code().to_string())
            .unwrap_or_else(|| format!("no sqlstate: {e}")),
    }
}

async fn one(c: &tokio_postgres::Client, sql: &str) -> String {
    let rows = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(String::from),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn nesting_beyond_the_limit_answers_54001_and_the_session_goes_on() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    let n = 20_000;
    let cases = [
        format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
        format!("SELECT 1{}", "+1".repeat(n)),
        format!("SELECT {}1{}", "ARRAY[".repeat(n), "]".repeat(n)),
        format!(
            "SELECT * FROM {}(SELECT 1 AS x){}",
            "(SELECT * FROM ".repeat(n),
            " AS t)".repeat(n)
        ),
        format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(n)),
        format!(
            "SELECT {}1{}",
            "CASE WHEN true THEN ".repeat(n),
            " END".repeat(n)
        ),
        format!("SELECT {}", "NOT ".repeat(n) + "true"),
        format!("SELECT {}", "- ".repeat(n) + "1"),
        format!("SELECT 'a'{}", " || 'a'".repeat(n)),
    ];
    for sql in &cases {
        assert_eq!(code(&c, sql).await, "54001", "{}", &sql[..60]);
        // The extended protocol refuses the same way.
        let e = c.prepare(sql).await.expect_err("too deep");
        assert_eq!(
            e.code(),
            Some(&SqlState::STATEMENT_TOO_COMPLEX),
            "{}",
            &sql[..60]
        );
        assert_eq!(one(&c, "SELECT 41 + 1").await, "42");
    }
    // Long but flat statements are fine: a 20,000-value IN list, a 2,000-row VALUES.
    let list = (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM (VALUES (1), (19999)) v(x) WHERE x IN ({list})")
        )
        .await,
        "2"
    );
    let values = (0..2000)
        .map(|i| format!("({i})"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        one(&c, &format!("SELECT sum(x) FROM (VALUES {values}) v(x)")).await,
        "1999000"
    );
    // Views over views add up their definitions' depths: a chain deeper than one statement
    // may be answers 54001 (when made, or when read), never overflows.
    let mut refused = None;
    for i in 0..6 {
        let from = match i {
            0 => "(SELECT 1 AS x) s".to_string(),
            _ => format!("deep{}", i - 1),
        };
        let sql = format!(
            "CREATE VIEW deep{i} AS SELECT {}x{} + 1 AS x FROM {from}",
            "(".repeat(600),
            ")".repeat(600)
        );
        let made = code(&c, &sql).await;
        let read = match made.as_str() {
            "ok" => code(&c, &format!("SELECT x FROM deep{i}")).await,
            _ => made,
        };
        match read.as_str() {
            "ok" => assert_eq!(
                one(&c, &format!("SELECT x FROM deep{i}")).await,
                (i + 2).to_string()
            ),
            other => {
                assert_eq!(other, "54001", "view {i}");
                refused = Some(i);
                break;
            }
        }
    }
    assert!(refused.is_some_and(|i| i >= 2), "refused at {refused:?}");
    // Modest nesting still works.
    assert_eq!(
        one(
            &c,
            &format!("SELECT {}7{}", "(".repeat(200), ")".repeat(200))
        )
        .await,
        "7"
    );
    s.stop().await;
}

#[tokio::test]
async fn values_larger_than_postgresql_allows_answer_54000() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    for sql in [
        "SELECT lpad('a', 2147483647)",
        "SELECT rpad('a', 300000000)",
        "SELECT repeat('abc', 400000000)",
        "SELECT length(repeat(x, 1000000000)) FROM (VALUES ('ab'), ('c')) v(x)",
    ] {
        assert_eq!(code(&c, sql).await, "54000", "{sql}");
    }
    assert_eq!(one(&c, "SELECT length(repeat('ab', 1000))").await, "2000");
    assert_eq!(one(&c, "SELECT lpad('7', 3, '0')").await, "007");
    // A statement over the size limit is refused before it is read further.
    let big = format!("SELECT 1 /*{}*/", " ".repeat(65 << 20));
    assert_eq!(code(&c, &big).await, "54000");
    assert_eq!(one(&c, "SELECT 1").await, "1");
    s.stop().await;
}

#[tokio::test]
async fn a_user_over_their_running_limit_waits_and_others_and_table_free_queries_do_not() {
    let s = TestServer::start_with(Options::default(), |c| {
        c.engine.queue_timeout = Some("300ms".into());
        c.limits = vec![LimitConfig {
            to: "alice".into(),
            max_running_queries: Some(1),
            statement_timeout: Some("20s".into()),
        }];
    })
    .await;
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE one (x INT); INSERT INTO one VALUES (1); GRANT SELECT ON one TO alice",
        )
        .await
        .ok();
    let a1 = s.connect_as("alice", "alice-pw").await.unwrap();
    let a2 = s.connect_as("alice", "alice-pw").await.unwrap();
    // alice's statement_timeout comes from her limit, and SET cannot lift it.
    assert_eq!(one(&a2, "SHOW statement_timeout").await, "20s");
    a2.batch_execute("SET statement_timeout = 0").await.unwrap();
    assert_eq!(one(&a2, "SHOW statement_timeout").await, "20s");
    let slow = tokio::spawn(async move {
        let r = a1.simple_query("SELECT pg_sleep(3) FROM one").await;
        (a1, r.map(|_| ()))
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    // Her second query waits for her first, past the queue timeout: 57014.
    assert_eq!(code(&a2, "SELECT x FROM one").await, "57014");
    // What reads no table does not wait; nor does another user.
    assert_eq!(one(&a2, "SELECT 1 + 1").await, "2");
    assert_eq!(one(&admin, "SELECT x FROM one").await, "1");
    let (a1, r) = slow.await.unwrap();
    r.unwrap();
    // Her turn is back once the first is done.
    assert_eq!(one(&a1, "SELECT x FROM one").await, "1");
    assert_eq!(one(&a2, "SELECT x FROM one").await, "1");
    s.stop().await;
}

#[tokio::test]
async fn concurrent_appends_to_one_table_all_commit_exactly_once() {
    let s = TestServer::start(Options::default()).await;
    let admin = s.connect().await;
    admin
        .batch_execute("CREATE TABLE app (worker INT, n INT)")
        .await
        .unwrap();
    let workers = 16;
    let rows = 12;
    let mut tasks = vec![];
    for w in 0..workers {
        let c = s.connect().await;
        tasks.push(tokio::spawn(async move {
            for n in 0..rows {
                match (w % 4, n % 3) {
                    // A transaction block's INSERTs commit at COMMIT.
                    (0, 0) => {
                        c.batch_execute(&format!(
                            "BEGIN; INSERT INTO app VALUES ({w}, {n}); COMMIT"
                        ))
                        .await?;
                    }
                    // INSERT ... SELECT, and the extended protocol.
                    (1, _) => {
                        c.execute("INSERT INTO app SELECT $1::int, $2::int", &[&w, &n])
                            .await?;
                    }
                    _ => {
                        c.batch_execute(&format!("INSERT INTO app VALUES ({w}, {n})"))
                            .await?;
                    }
                }
            }
            Ok::<_, tokio_postgres::Error>(())
        }));
    }
    for t in tasks {
        t.await
            .unwrap()
            .expect("blind appends never fail (no 40001)");
    }
    let got = admin
        .query_one("SELECT count(*), count(DISTINCT (worker, n)) FROM app", &[])
        .await
        .unwrap();
    let want = i64::from(workers * rows);
    assert_eq!(got.get::<_, i64>(0), want, "every acknowledged row once");
    assert_eq!(got.get::<_, i64>(1), want, "no row twice");
    s.stop().await;
}

#[tokio::test]
async fn a_fresh_connection_is_answered_while_heavy_queries_run() {
    let s = TestServer::start(Options::default()).await;
    let heavy = "SELECT sum(a.x * b.x) FROM generate_series(1, 100000) a(x), \
                 generate_series(1, 100000) b(x)";
    let mut running = vec![];
    for _ in 0..2 {
        let c = s.connect().await;
        let token = c.cancel_token();
        let task = tokio::spawn(async move { c.simple_query(heavy).await.map(|_| ()) });
        running.push((token, task));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // Both cores are busy with the heavy queries; a new session logs in and is answered.
    for _ in 0..3 {
        let fresh = s.connect().await;
        assert_eq!(one(&fresh, "SELECT 1").await, "1");
        assert!(!one(&fresh, "SHOW server_version").await.is_empty());
    }
    assert!(
        running.iter().all(|(_, t)| !t.is_finished()),
        "the heavy queries were still running"
    );
    // And cancel reaches them under that load.
    for (token, task) in running {
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        let e = task.await.unwrap().expect_err("cancelled");
        assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED));
    }
    s.stop().await;
}

#[tokio::test]
async fn a_query_beyond_the_memory_limit_spills_or_answers_53200() {
    let s = TestServer::start_with(Options::default(), |c| {
        c.engine.memory_limit = Some("64MiB".into());
    })
    .await;
    let c = s.connect().await;
    for sql in [
        "SELECT count(DISTINCT x::text) FROM generate_series(1, 3000000) t(x)",
        "SELECT max(s) FROM (SELECT x::text || 'padding-padding' AS s FROM generate_series(1, 2000000) t(x) ORDER BY s) q",
        "SELECT x, string_agg(y::text, ',') FROM (SELECT x % 1000 AS x, x AS y FROM generate_series(1, 2000000) t(x)) q GROUP BY x ORDER BY x LIMIT 1",
    ] {
        let got = code(&c, sql).await;
        assert!(got == "ok" || got == "53200", "{sql}: {got}");
    }
    assert_eq!(one(&c, "SELECT 1").await, "1");
    s.stop().await;
}

/// The audit log fails closed: when a statement's record cannot be written (the audit folder
/// made unwritable mid-session), the statement is refused with 58030 naming the folder, a write
/// commits nothing, later statements keep failing so, and all works again once it is writable.
#[tokio::test]
async fn an_unwritable_audit_folder_refuses_every_statement_and_writes_commit_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let server = TestServer::start(Options::in_dir(tmp.path())).await;
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE audited (id INT); INSERT INTO audited VALUES (1)")
        .await
        .expect("setup");
    let audit = tmp.path().join("_lakegate").join("audit");
    assert!(audit.is_dir(), "the audit folder is {}", audit.display());
    std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o555)).expect("chmod");

    for sql in [
        "INSERT INTO audited VALUES (2)",
        "SELECT count(*) FROM audited",
        "SELECT 1",
        "UPDATE audited SET id = 3",
        "CREATE TABLE not_made (id INT)",
    ] {
        let e = c.simple_query(sql).await.expect_err(sql);
        assert_eq!(e.code(), Some(&SqlState::IO_ERROR), "{sql}: {e}");
        let message = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(message.contains(&audit.display().to_string()), "{message}");
    }
    // The extended protocol too.
    let e = c
        .query("SELECT count(*) FROM audited", &[])
        .await
        .expect_err("extended");
    assert_eq!(e.code(), Some(&SqlState::IO_ERROR), "{e}");
    // A new connection is refused its statements as well.
    let other = server.connect().await;
    assert_eq!(code(&other, "SELECT 1").await, "58030");

    std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Nothing of the refused statements happened.
    assert_eq!(one(&c, "SELECT count(*) FROM audited").await, "1");
    assert_eq!(one(&c, "SELECT max(id) FROM audited").await, "1");
    assert_eq!(code(&c, "SELECT * FROM not_made").await, "42P01");
    c.batch_execute("INSERT INTO audited VALUES (4)")
        .await
        .expect("insert again");
    assert_eq!(one(&other, "SELECT count(*) FROM audited").await, "2");
    // The statements that ran are in the log; the refused ones are not.
    let mut log = String::new();
    for f in std::fs::read_dir(&audit).expect("audit files") {
        log.push_str(&std::fs::read_to_string(f.expect("entry").path()).expect("read"));
    }
    assert!(log.contains("INSERT INTO audited VALUES"), "{log}");
    assert!(
        !log.contains("not_made (id"),
        "a refused statement was audited: {log}"
    );
}
