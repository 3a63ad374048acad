//! Iceberg tables over the wire: time travel by snapshot id and timestamp, restart persistence,
//! the configured default format, attached REST catalogs. (Concurrent appends: storage.rs.)

use crate::common::{Options, TestServer};

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.expect(sql).get::<_, i64>(0)
}

#[tokio::test]
async fn iceberg_time_travel_by_snapshot_and_timestamp() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE ev (id BIGINT, v TEXT) USING iceberg; \
         INSERT INTO ev VALUES (1, 'a'); INSERT INTO ev VALUES (2, 'b')",
    )
    .await
    .expect("setup");
    let history = c
        .query(
            "SELECT version, committed_at::text FROM table_history('public.ev') ORDER BY committed_at",
            &[],
        )
        .await
        .expect("history");
    assert_eq!(history.len(), 2, "one snapshot per INSERT");
    let first: i64 = history[0].get(0);
    let first_at: String = history[0].get(1);
    c.batch_execute("INSERT INTO ev VALUES (3, 'c')")
        .await
        .expect("third append");
    assert_eq!(count(&c, "SELECT count(*) FROM ev").await, 3);
    assert_eq!(
        count(
            &c,
            &format!("SELECT count(*) FROM ev FOR VERSION AS OF {first}")
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &c,
            &format!("SELECT count(*) FROM ev FOR TIMESTAMP AS OF '{first_at}'")
        )
        .await,
        1
    );
    // A join of the table with an old snapshot of itself.
    let added = count(
        &c,
        &format!(
            "SELECT count(*) FROM ev n LEFT JOIN ev VERSION AS OF {first} o ON o.id = n.id WHERE o.id IS NULL"
        ),
    )
    .await;
    assert_eq!(added, 2);
    s.stop().await;
}

#[tokio::test]
async fn iceberg_tables_survive_a_restart_and_default_format_applies() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("wh");
    let s = TestServer::start(Options::in_dir(&dir)).await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE keep (id BIGINT, d DATE, j JSONB) USING iceberg; \
         INSERT INTO keep VALUES (1, '2026-01-01', '{\"a\": 1}')",
    )
    .await
    .expect("setup");
    drop(c);
    s.stop().await;

    let s = TestServer::start(Options {
        default_format: Some("iceberg".into()),
        ..Options::in_dir(&dir)
    })
    .await;
    let c = s.connect().await;
    let row = c
        .query_one("SELECT id, d::text, j FROM keep", &[])
        .await
        .expect("read back");
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, String>(1), "2026-01-01");
    assert_eq!(
        row.columns()[2].type_(),
        &tokio_postgres::types::Type::JSONB,
        "the PostgreSQL type survives in the table properties"
    );
    // CREATE TABLE without USING takes the configured default: Iceberg answers UPDATE with 0A000.
    c.batch_execute("CREATE TABLE dflt (a INT); INSERT INTO dflt VALUES (1)")
        .await
        .expect("default format");
    let e = c
        .execute("UPDATE dflt SET a = 2", &[])
        .await
        .expect_err("iceberg is append-only");
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"));
    assert!(
        iceberg_files(&dir).iter().any(|f| f.contains("dflt-")),
        "dflt is an Iceberg table"
    );
    s.stop().await;
}

/// Folders of the warehouse that hold Iceberg metadata.
fn iceberg_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    if let Ok(schemas) = std::fs::read_dir(dir) {
        for s in schemas.flatten() {
            if let Ok(tables) = std::fs::read_dir(s.path()) {
                for t in tables.flatten() {
                    if t.path().join("metadata").is_dir() {
                        out.push(t.file_name().to_string_lossy().to_string());
                    }
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn an_attached_rest_catalog_is_read_and_appended_to() {
    let tmp = tempfile::tempdir().expect("tmp");
    let wh = tmp.path().join("rest");
    std::fs::create_dir_all(&wh).expect("dir");
    let wh_s = wh.display().to_string();
    let Some(rest) = crate::common::PyServer::start(
        "rest_catalog.py",
        &[&wh_s, "secret-token"],
        "pyiceberg, sqlalchemy",
    ) else {
        return;
    };
    // Another engine (pyiceberg) makes the table in the REST catalog's store.
    let made = std::process::Command::new("python3")
        .args(["-c", &format!(
            "from pyiceberg.catalog.sql import SqlCatalog\nimport pyarrow as pa\n\
             c = SqlCatalog('rest', uri='sqlite:///{wh_s}/rest.db', warehouse='file://{wh_s}')\n\
             c.create_namespace('sales')\n\
             t = c.create_table(('sales', 'orders'), schema=pa.schema([('id', pa.int64()), ('item', pa.string())]))\n\
             t.append(pa.Table.from_pylist([{{'id': 1, 'item': 'a'}}, {{'id': 2, 'item': 'b'}}], schema=t.schema().as_arrow()))"
        )])
        .status()
        .expect("python");
    assert!(made.success());
    let token = tmp.path().join("token");
    std::fs::write(&token, "secret-token").expect("token file");
    // alice may read nothing of the attached catalog: its listings must not show it either.
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).expect("policy dir");
    std::fs::write(
        policies.join("p.toml"),
        "[[grant]]\nto = \"alice\"\non = \"public.*\"\nactions = [\"read\"]\n",
    )
    .expect("policy");
    let port = rest.port;
    let s = TestServer::start_with(Options::default(), |c| {
        c.policy.dir = policies.clone();
        c.catalogs = vec![lakegate::config::CatalogConfig {
            name: "lake".into(),
            r#type: "rest".into(),
            uri: format!("http://127.0.0.1:{port}"),
            token_file: Some(token.clone()),
            ..Default::default()
        }];
    })
    .await;
    let c = s.connect().await;
    let rows = c
        .query("SELECT id, item FROM lake.sales.orders ORDER BY id", &[])
        .await
        .expect("read through REST");
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, "a".into()), (2, "b".into())]);
    c.batch_execute("INSERT INTO lake.sales.orders VALUES (3, 'c')")
        .await
        .expect("append through REST");
    assert_eq!(count(&c, "SELECT count(*) FROM lake.sales.orders").await, 3);
    let listed = count(
        &c,
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'lake' AND table_schema = 'sales'",
    )
    .await;
    assert_eq!(listed, 1, "the catalog's tables are listed");
    let alice = s.connect_as("alice", "alice-pw").await.expect("alice");
    let theirs = count(
        &alice,
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'lake' AND table_schema = 'sales'",
    )
    .await;
    assert_eq!(theirs, 0, "nothing alice may not read is listed");
    let e = alice
        .query("SELECT * FROM lake.sales.orders", &[])
        .await
        .expect_err("no grant");
    assert_eq!(e.code().map(|c| c.code()), Some("42501"));
    let e = c
        .query("SELECT * FROM lake.sales.nope", &[])
        .await
        .expect_err("no such table");
    assert_eq!(e.code().map(|c| c.code()), Some("42P01"));
    s.stop().await;
}
