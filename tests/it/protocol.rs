//! The protocol surface: types in text and binary, parameters, portal suspension, errors and
//! recovery, multi-statement simple queries, command tags, cancel.

use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::types::Type;

use crate::common::{Options, TestServer};

fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no sqlstate: {e}"))
}

#[tokio::test]
async fn every_type_in_text_and_binary() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    let sql = "SELECT true AS b, 2::smallint AS i2, 4::integer AS i4, 8::bigint AS i8, 1.5::real AS f4, \
               2.25::double precision AS f8, 123.45::numeric(10,2) AS n, 'txt'::text AS t, 'vc'::varchar AS vc, \
               '\\xdeadbeef'::bytea AS by, DATE '2024-02-29' AS d, TIME '13:14:15.5' AS tm, \
               TIMESTAMP '2024-01-02 03:04:05.123456' AS ts, TIMESTAMPTZ '2024-01-02 03:04:05+00' AS tz, \
               INTERVAL '1 day 2 hours' AS iv, make_array(1, 2, 3) AS arr, NULL::int AS nul";
    // Binary (extended protocol, tokio-postgres asks for binary results).
    let row = c.query_one(sql, &[]).await.expect("binary query");
    assert!(row.get::<_, bool>("b"));
    assert_eq!(row.get::<_, i16>("i2"), 2);
    assert_eq!(row.get::<_, i32>("i4"), 4);
    assert_eq!(row.get::<_, i64>("i8"), 8);
    assert_eq!(row.get::<_, f32>("f4"), 1.5);
    assert_eq!(row.get::<_, f64>("f8"), 2.25);
    assert_eq!(row.get::<_, String>("t"), "txt");
    assert_eq!(row.get::<_, Vec<u8>>("by"), vec![0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(
        row.get::<_, chrono::NaiveDate>("d"),
        chrono::NaiveDate::from_ymd_opt(2024, 2, 29).expect("date")
    );
    assert_eq!(
        row.get::<_, chrono::NaiveTime>("tm"),
        chrono::NaiveTime::from_hms_milli_opt(13, 14, 15, 500).expect("t")
    );
    let ts = row.get::<_, chrono::NaiveDateTime>("ts");
    assert_eq!(ts.to_string(), "2024-01-02 03:04:05.123456");
    let tz = row.get::<_, chrono::DateTime<chrono::Utc>>("tz");
    assert_eq!(tz.to_rfc3339(), "2024-01-02T03:04:05+00:00");
    // Integer literals are int4, as in PostgreSQL: an int4[].
    assert_eq!(row.get::<_, Vec<i32>>("arr"), vec![1, 2, 3]);
    assert_eq!(row.get::<_, Option<i32>>("nul"), None);
    let types: Vec<Type> = row.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        vec![
            Type::BOOL,
            Type::INT2,
            Type::INT4,
            Type::INT8,
            Type::FLOAT4,
            Type::FLOAT8,
            Type::NUMERIC,
            Type::TEXT,
            Type::VARCHAR,
            Type::BYTEA,
            Type::DATE,
            Type::TIME,
            Type::TIMESTAMP,
            Type::TIMESTAMPTZ,
            Type::INTERVAL,
            Type::INT4_ARRAY,
            Type::INT4
        ]
    );
    // Text (simple protocol).
    let msgs = c.simple_query(sql).await.expect("text query");
    let SimpleQueryMessage::Row(r) = &msgs[1] else {
        panic!("expected a row, got {:?}", msgs.len())
    };
    let text: Vec<Option<&str>> = (0..r.len()).map(|i| r.get(i)).collect();
    assert_eq!(
        text,
        vec![
            Some("t"),
            Some("2"),
            Some("4"),
            Some("8"),
            Some("1.5"),
            Some("2.25"),
            Some("123.45"),
            Some("txt"),
            Some("vc"),
            Some("\\xdeadbeef"),
            Some("2024-02-29"),
            Some("13:14:15.5"),
            Some("2024-01-02 03:04:05.123456"),
            Some("2024-01-02 03:04:05+00"),
            Some("1 day 02:00:00"),
            Some("{1,2,3}"),
            None
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn parameters_typed_by_client_or_inferred() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    c.batch_execute("CREATE TABLE p (id BIGINT NOT NULL, name TEXT, amount NUMERIC(10,2), at TIMESTAMP, ok BOOLEAN)")
        .await
        .expect("create");
    let ts = chrono::NaiveDate::from_ymd_opt(2024, 5, 6)
        .and_then(|d| d.and_hms_opt(7, 8, 9))
        .expect("ts");
    let n = c
        .execute(
            "INSERT INTO p VALUES ($1, $2, 10.5, $3, $4)",
            &[&1i64, &"one", &ts, &true],
        )
        .await
        .expect("insert with params");
    assert_eq!(n, 1);
    let stmt = c
        .prepare("SELECT name, at FROM p WHERE id = $1")
        .await
        .expect("prepare");
    assert_eq!(stmt.params(), &[Type::INT8]);
    let row = c.query_one(&stmt, &[&1i64]).await.expect("query");
    assert_eq!(row.get::<_, String>(0), "one");
    assert_eq!(row.get::<_, chrono::NaiveDateTime>(1), ts);
    // Client-declared parameter type differs from the inferred one: int4 against a BIGINT column.
    let stmt = c
        .prepare_typed("SELECT count(*) FROM p WHERE id = $1", &[Type::INT4])
        .await
        .expect("typed");
    let row = c.query_one(&stmt, &[&1i32]).await.expect("query");
    assert_eq!(row.get::<_, i64>(0), 1);
    s.stop().await;
}

#[tokio::test]
async fn portal_suspension_resumes() {
    let s = TestServer::start(Options::default()).await;
    let mut c = s.connect().await;
    let tx = c.transaction().await.expect("tx");
    let stmt = tx
        .prepare("SELECT * FROM generate_series(1, 25) AS t(x)")
        .await
        .expect("prepare");
    let portal = tx.bind(&stmt, &[]).await.expect("bind");
    let mut seen = vec![];
    loop {
        let rows = tx.query_portal(&portal, 10).await.expect("fetch");
        if rows.is_empty() {
            break;
        }
        seen.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
    }
    assert_eq!(seen, (1..=25).collect::<Vec<i64>>());
    tx.commit().await.expect("commit");
    s.stop().await;
}

/// An Execute's rows reach the client as they are computed, as from PostgreSQL: a query that
/// fails part way delivers the rows before the failure, then the error (pgwire collected every
/// row of an Execute before it sent the first, so the client saw the error alone, after the
/// server had held the whole result in memory). Both protocols, and a limited Execute too.
#[tokio::test]
async fn rows_stream_before_an_error_part_way() {
    use futures::{StreamExt, pin_mut};
    let s = TestServer::start(Options::default()).await;
    let mut c = s.connect().await;
    let sql = "SELECT 1 / (x - 300000) AS y FROM generate_series(1, 400000) AS t(x)";
    let rows = c
        .query_raw(sql, std::iter::empty::<i64>())
        .await
        .expect("query");
    pin_mut!(rows);
    let mut before = 0;
    let error = loop {
        match rows.next().await {
            Some(Ok(_)) => before += 1,
            Some(Err(e)) => break e,
            None => panic!("no error after {before} rows"),
        }
    };
    assert_eq!(code(&error), "22012", "{error}");
    assert!(before > 0, "no row before the error");
    // Not every row: the error ends the stream. (Rows past x = 300000 may come first: the
    // series is computed in partitions on the compute runtime, one of which can run ahead of
    // the one that fails.)
    assert!(before < 400000, "{before} rows before the error");
    let mut simple = c.simple_query(sql).await;
    assert!(simple.is_err(), "the simple protocol failed too");
    simple = c.simple_query("SELECT 1").await;
    assert!(simple.is_ok(), "usable afterwards: {simple:?}");
    // A portal read 1,000 rows at a time resumes where it stopped, past the first batch.
    let tx = c.transaction().await.expect("tx");
    let stmt = tx
        .prepare("SELECT x FROM generate_series(1, 20000) AS t(x)")
        .await
        .expect("prepare");
    let portal = tx.bind(&stmt, &[]).await.expect("bind");
    let mut seen = 0i64;
    loop {
        let rows = tx.query_portal(&portal, 1000).await.expect("fetch");
        if rows.is_empty() {
            break;
        }
        for r in rows {
            seen += 1;
            assert_eq!(r.get::<_, i64>(0), seen);
        }
    }
    assert_eq!(seen, 20000);
    tx.commit().await.expect("commit");
    s.stop().await;
}

#[tokio::test]
async fn errors_carry_sqlstates_and_the_connection_recovers() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    let cases = [
        ("SELEC 1", "42601"),
        ("SELECT * FROM no_such_table", "42P01"),
        ("SELECT no_such_column FROM (SELECT 1 AS a) t", "42703"),
        ("SELECT no_such_function(1)", "42883"),
        ("SELECT 1/0", "22012"),
        ("SELECT 'abc'::int", "22P02"),
        ("CREATE TABLE bad (c INTERVAL)", "0A000"),
    ];
    for (sql, want) in cases {
        let e = c.simple_query(sql).await.expect_err(sql);
        assert_eq!(code(&e), want, "{sql}: {e}");
        let e = c.query(sql, &[]).await.expect_err(sql);
        assert_eq!(code(&e), want, "{sql} (extended): {e}");
        // usable afterwards in both protocols
        c.simple_query("SELECT 1")
            .await
            .expect("simple after error");
        c.query("SELECT 1", &[])
            .await
            .expect("extended after error");
    }
    s.stop().await;
}

#[tokio::test]
async fn multi_statement_simple_query_and_command_tags() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    let msgs = c
        .simple_query(
            "CREATE TABLE t (a INTEGER, b TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y'); \
             SELECT * FROM t ORDER BY a; CREATE TABLE t2 AS SELECT * FROM t; DROP TABLE t2",
        )
        .await
        .expect("multi");
    let tags: Vec<u64> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(tags, vec![0, 2, 2, 2, 0]);
    let rows = msgs
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(rows, 2);
    // An error stops the rest of the message.
    let e = c
        .simple_query("INSERT INTO t VALUES (3, 'z'); SELECT 1/0; INSERT INTO t VALUES (4, 'w')")
        .await;
    assert!(e.is_err());
    let row = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 3);
    s.stop().await;
}

#[tokio::test]
async fn cancel_stops_a_running_query() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let e = c
        .simple_query("SELECT pg_sleep(30)")
        .await
        .expect_err("cancelled");
    assert_eq!(code(&e), "57014");
    canceller.await.expect("join").expect("cancel sent");
    // and again through the extended protocol
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let e = c
        .query("SELECT pg_sleep(30)", &[])
        .await
        .expect_err("cancelled");
    assert_eq!(code(&e), "57014");
    canceller.await.expect("join").expect("cancel sent");
    let row = c
        .query_one("SELECT 42::int4", &[])
        .await
        .expect("usable after cancel");
    assert_eq!(row.get::<_, i32>(0), 42);
    s.stop().await;
}

#[tokio::test]
async fn startup_parameters_and_settings() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    let v = c.query_one("SHOW server_version", &[]).await.expect("show");
    let version: String = v.get(0);
    assert!(version.starts_with("15."), "{version}");
    let row = c.query_one("SELECT version()", &[]).await.expect("version");
    assert!(
        row.get::<_, String>(0)
            .starts_with(&format!("PostgreSQL {version}"))
    );
    c.batch_execute("SET TimeZone = 'Asia/Kolkata'")
        .await
        .expect("set tz");
    let msgs = c
        .simple_query("SELECT TIMESTAMPTZ '2024-01-01 00:00:00+00'")
        .await
        .expect("q");
    let SimpleQueryMessage::Row(r) = &msgs[1] else {
        panic!("row")
    };
    assert_eq!(r.get(0), Some("2024-01-01 05:30:00+05:30"));
    let msgs = c.simple_query("SHOW TimeZone").await.expect("show");
    let SimpleQueryMessage::Row(r) = &msgs[1] else {
        panic!("row")
    };
    assert_eq!(r.get(0), Some("Asia/Kolkata"));
    c.batch_execute("RESET TimeZone; DISCARD ALL; BEGIN; COMMIT; ROLLBACK")
        .await
        .expect("session commands");
    s.stop().await;
}

#[tokio::test]
async fn uuid_json_and_varchar_keep_their_types() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE typed (u UUID, j JSON, jb JSONB, v VARCHAR(10), ch CHAR(2), t TEXT); \
         INSERT INTO typed VALUES ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{\"b\": 1}', '{\"bb\":1,\"a\":2}', 'vv', 'cc', 'tt')",
    )
    .await
    .expect("setup");
    for sql in [
        "SELECT u, j, jb, v, ch, t FROM typed",
        "SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '{\"b\": 1}'::json AS j, \
         '{\"bb\":1,\"a\":2}'::jsonb AS jb, 'vv'::varchar AS v, 'cc'::char(2) AS ch, 'tt'::text AS t",
    ] {
        let row = c.query_one(sql, &[]).await.expect(sql);
        let types: Vec<Type> = row.columns().iter().map(|c| c.type_().clone()).collect();
        assert_eq!(
            types,
            vec![
                Type::UUID,
                Type::JSON,
                Type::JSONB,
                Type::VARCHAR,
                Type::BPCHAR,
                Type::TEXT
            ],
            "{sql}"
        );
        let u: uuid::Uuid = row.get(0);
        assert_eq!(u.to_string(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        let jb: serde_json::Value = row.get(2);
        assert_eq!(jb, serde_json::json!({"a": 2, "bb": 1}));
        assert_eq!(row.get::<_, String>(3), "vv");
        let msgs = c.simple_query(sql).await.expect(sql);
        let SimpleQueryMessage::Row(r) = &msgs[1] else {
            panic!("row")
        };
        assert_eq!(r.get(2), Some("{\"a\": 2, \"bb\": 1}"));
    }
    // uuid parameters, binary
    let u = uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").expect("uuid");
    let row = c
        .query_one("SELECT count(*) FROM typed WHERE u = $1", &[&u])
        .await
        .expect("uuid param");
    assert_eq!(row.get::<_, i64>(0), 1);
    let e = c
        .simple_query("SELECT 'nope'::uuid")
        .await
        .expect_err("bad uuid");
    assert_eq!(code(&e), "22P02");
    s.stop().await;
}

#[tokio::test]
async fn statement_timeout_cancels_with_57014() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    c.batch_execute("SET statement_timeout = '200ms'")
        .await
        .expect("set");
    let e = c
        .simple_query("SELECT pg_sleep(10)")
        .await
        .expect_err("timed out");
    assert_eq!(code(&e), "57014");
    let message = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("statement timeout"), "{message}");
    let e = c
        .query("SELECT pg_sleep(10)", &[])
        .await
        .expect_err("timed out");
    assert_eq!(code(&e), "57014");
    c.batch_execute("SET statement_timeout = 0")
        .await
        .expect("reset");
    let row = c.query_one("SELECT 1::int4", &[]).await.expect("usable");
    assert_eq!(row.get::<_, i32>(0), 1);
    s.stop().await;
}

#[tokio::test]
async fn transaction_commands_warn_like_postgres() {
    let s = TestServer::start(Options::default()).await;
    let (c, mut rx) = s.connect_with_notices().await;
    c.batch_execute("COMMIT")
        .await
        .expect("commit outside a transaction is a warning");
    assert_eq!(rx.recv().await.map(|n| n.0), Some("25P01".to_string()));
    c.batch_execute(
        "CREATE TABLE tw (a INT); INSERT INTO tw VALUES (1); BEGIN; UPDATE tw SET a = 2; CREATE TABLE tw2 (b INT); ALTER TABLE tw ADD COLUMN c INT; ROLLBACK",
    )
    .await
    .expect("tx");
    let (code, message) = rx.recv().await.expect("a warning at ROLLBACK");
    assert_eq!(code, "01000");
    assert!(
        message.contains("cannot undo its 1 ALTER TABLE"),
        "{message}"
    );
    // The CREATE TABLE of the block was rolled back with it.
    let e = c.query("SELECT * FROM tw2", &[]).await.expect_err("gone");
    assert_eq!(e.code().map(|c| c.code()), Some("42P01"));
    s.stop().await;
}

async fn copied(c: &tokio_postgres::Client, sql: &str) -> Vec<u8> {
    use futures::TryStreamExt;
    let stream = c.copy_out(sql).await.expect(sql);
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.expect(sql);
    chunks.concat()
}

#[tokio::test]
async fn copy_to_stdout_in_text_csv_and_binary() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE t (id BIGINT, name TEXT, d DATE); \
         INSERT INTO t VALUES (1, 'a\tb', '2024-01-02'), (2, NULL, NULL), (3, 'x,\"y\"', '2024-03-04')",
    )
    .await
    .expect("setup");
    let text = copied(&c, "COPY (SELECT * FROM t ORDER BY id) TO STDOUT").await;
    assert_eq!(
        String::from_utf8_lossy(&text),
        "1\ta\\tb\t2024-01-02\n2\t\\N\t\\N\n3\tx,\"y\"\t2024-03-04\n"
    );
    let csv = copied(
        &c,
        "COPY (SELECT id, name FROM t ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&csv),
        "id,name\n1,a\tb\n2,\n3,\"x,\"\"y\"\"\"\n"
    );
    let empty = copied(
        &c,
        "COPY (SELECT id FROM t WHERE false) TO STDOUT (FORMAT csv, HEADER)",
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&empty), "id\n");
    // Binary: decoded by the client's own PGCOPY reader.
    use futures::TryStreamExt;
    let stream = c
        .copy_out("COPY t (id, name) TO STDOUT (FORMAT binary)")
        .await
        .expect("binary");
    let rows: Vec<tokio_postgres::binary_copy::BinaryCopyOutRow> =
        tokio_postgres::binary_copy::BinaryCopyOutStream::new(stream, &[Type::INT8, Type::TEXT])
            .try_collect()
            .await
            .expect("binary rows");
    let mut ids: Vec<i64> = rows.iter().map(|r| r.get::<i64>(0)).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2, 3]);
    // The server's files are not the client's.
    let e = c
        .simple_query("COPY t TO '/tmp/lakegate-copy-test'")
        .await
        .expect_err("no server files");
    assert_eq!(e.code().map(|c| c.code()), Some("42501"));
    s.stop().await;
}

async fn copy_in(
    c: &tokio_postgres::Client,
    sql: &str,
    data: &str,
) -> Result<u64, tokio_postgres::Error> {
    use futures::SinkExt;
    let sink = c.copy_in(sql).await?;
    futures::pin_mut!(sink);
    // In pieces, so rows and quoted fields span CopyData messages.
    for chunk in data.as_bytes().chunks(7) {
        sink.send(bytes::Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

#[tokio::test]
async fn copy_from_stdin_in_text_and_csv_commits_once() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    c.batch_execute("CREATE TABLE t (id BIGINT NOT NULL, name TEXT, d DATE, ok BOOLEAN)")
        .await
        .expect("table");
    let n = copy_in(
        &c,
        "COPY t FROM STDIN (FORMAT csv, HEADER)",
        "id,name,d,ok\n1,\"a,\nb\",2024-01-02,t\n2,,,f\n3,\"\",2024-03-04,\n",
    )
    .await
    .expect("csv");
    assert_eq!(n, 3);
    let n = copy_in(
        &c,
        "COPY t (id, name) FROM STDIN",
        "4\ttab\\there\n5\t\\N\n",
    )
    .await
    .expect("text");
    assert_eq!(n, 2);
    let rows = c
        .query(
            "SELECT id, name, CAST(d AS TEXT), ok FROM t ORDER BY id",
            &[],
        )
        .await
        .expect("rows");
    type Row = (i64, Option<String>, Option<String>, Option<bool>);
    let got: Vec<Row> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                1,
                Some("a,\nb".into()),
                Some("2024-01-02".into()),
                Some(true)
            ),
            (2, None, None, Some(false)),
            (3, Some(String::new()), Some("2024-03-04".into()), None),
            (4, Some("tab\there".into()), None, None),
            (5, None, None, None),
        ]
    );
    // A bad row anywhere: nothing of the COPY is written.
    for (sql, data) in [
        ("COPY t FROM STDIN (FORMAT csv)", "6,x,2024-01-01,t\n7,y\n"),
        ("COPY t FROM STDIN (FORMAT csv)", "8,x,not-a-date,t\n"),
        ("COPY t (name) FROM STDIN", "no id\n"),
    ] {
        assert!(copy_in(&c, sql, data).await.is_err(), "{data}");
    }
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 5);
    c.batch_execute("SELECT 1")
        .await
        .expect("the connection goes on");
    s.stop().await;
}
