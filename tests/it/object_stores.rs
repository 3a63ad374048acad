//! Warehouses on object stores: S3 (moto, from PyPI, started by the test) with Delta and
//! Iceberg, concurrent writers on one Delta table, restart, external files; Azure Blob Storage
//! (Azurite, from npm).

use crate::common::{Options, S3Server, TestServer};

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.expect(sql).get::<_, i64>(0)
}

/// Where the catalog document says a table of schema public lives.
fn location_of(meta: &std::path::Path, table: &str) -> String {
    let text = std::fs::read_to_string(meta.join("_lakegate/catalog.json")).expect("catalog");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("json");
    doc["schemas"]["public"]["tables"][table]["location"]
        .as_str()
        .expect("location")
        .to_string()
}

async fn start(s3: &S3Server, meta: &std::path::Path) -> TestServer {
    TestServer::start_with(Options::default(), |c| {
        s3.configure(c, "s3://lakehouse/warehouse", meta)
    })
    .await
}

#[tokio::test]
async fn tables_on_s3_write_read_travel_and_survive_a_restart() {
    let Some(s3) = S3Server::start(&["lakehouse"]) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let meta = tmp.path().join("meta");
    let s = start(&s3, &meta).await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE d (id BIGINT, v TEXT) PARTITIONED BY (v); \
         INSERT INTO d VALUES (1, 'a'), (2, 'b'), (3, 'b'); \
         UPDATE d SET v = 'z' WHERE id = 1; DELETE FROM d WHERE id = 3; \
         CREATE TABLE i (id BIGINT, v TEXT) USING iceberg; \
         INSERT INTO i VALUES (1, 'a'); INSERT INTO i SELECT id + 1, v FROM i; \
         CREATE TABLE gone (a INT); INSERT INTO gone VALUES (1); DROP TABLE gone",
    )
    .await
    .expect("writes on S3");
    let rows = c
        .query("SELECT id, v FROM d ORDER BY id", &[])
        .await
        .expect("read d");
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, "z".to_string()), (2, "b".to_string())]);
    assert_eq!(
        count(&c, "SELECT count(*) FROM d FOR VERSION AS OF 1").await,
        3
    );
    assert_eq!(count(&c, "SELECT count(*) FROM i").await, 2);
    drop(c);
    s.stop().await;

    let s = start(&s3, &meta).await;
    let c = s.connect().await;
    assert_eq!(count(&c, "SELECT count(*) FROM d").await, 2);
    assert_eq!(count(&c, "SELECT count(*) FROM i").await, 2);
    // External tables on S3: the Delta table's Parquet files, and the Delta table itself.
    let loc = location_of(&meta, "d");
    assert!(
        loc.starts_with("s3://lakehouse/warehouse/public/d-"),
        "{loc}"
    );
    c.batch_execute(&format!(
        "CREATE EXTERNAL TABLE d_again STORED AS DELTA LOCATION '{loc}'"
    ))
    .await
    .expect("external delta on s3");
    assert_eq!(count(&c, "SELECT count(*) FROM d_again").await, 2);
    s.stop().await;
}

#[tokio::test]
async fn concurrent_writers_on_one_s3_delta_table() {
    let Some(s3) = S3Server::start(&["lakehouse"]) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let s = start(&s3, &tmp.path().join("meta")).await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE app (worker INTEGER, n INTEGER); \
         CREATE TABLE ctr (id BIGINT, n BIGINT); INSERT INTO ctr VALUES (1, 0)",
    )
    .await
    .expect("create");
    // Appends from several sessions at once: each commit lands (non-conflicting retries).
    let mut clients = vec![];
    for w in 0..3 {
        clients.push((w, s.connect().await));
    }
    crate::common::insert_concurrently(clients, "app", 4)
        .await
        .expect("appends succeed");
    assert_eq!(count(&c, "SELECT count(*) FROM app").await, 12);
    // Conflicting updates: each either commits or fails with 40001; none is lost.
    let mut tasks = vec![];
    for _ in 0..2 {
        let client = s.connect().await;
        tasks.push(tokio::spawn(async move {
            let mut ok = 0i64;
            for _ in 0..3 {
                match client
                    .execute("UPDATE ctr SET n = n + 1 WHERE id = 1", &[])
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) if e.code().map(|c| c.code()) == Some("40001") => {}
                    Err(e) => return Err(format!("unexpected: {e:?}")),
                }
            }
            Ok(ok)
        }));
    }
    let mut committed = 0;
    for t in tasks {
        committed += t.await.expect("join").expect("success or 40001");
    }
    assert_eq!(
        count(&c, "SELECT n FROM ctr WHERE id = 1").await,
        committed,
        "every acknowledged update is there, no other"
    );

    // Two servers (separate processes' worth of state) commit to the same Delta table at once:
    // S3's conditional writes order their commits, and no acknowledged row is lost.
    let loc = location_of(&tmp.path().join("meta"), "app");
    let other = start(&s3, &tmp.path().join("meta2")).await;
    let c2 = other.connect().await;
    c2.batch_execute(&format!(
        "CREATE EXTERNAL TABLE app STORED AS DELTA LOCATION '{loc}'"
    ))
    .await
    .expect("second server registers the table");
    let clients = vec![(10, s.connect().await), (20, other.connect().await)];
    crate::common::insert_concurrently(clients, "app", 4)
        .await
        .expect("both servers' appends succeed");
    assert_eq!(count(&c, "SELECT count(*) FROM app").await, 20);
    assert_eq!(count(&c2, "SELECT count(*) FROM app").await, 20);
    other.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn a_warehouse_on_azure_blob_storage() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("azurite");
    std::fs::create_dir_all(&data).expect("dir");
    let Some(az) = crate::common::PyServer::start(
        "azurite_server.py",
        &[&data.display().to_string(), "lakehouse"],
        "azure.storage.blob",
    ) else {
        return;
    };
    let key = tmp.path().join("azure-key");
    std::fs::write(
        &key,
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
    )
    .expect("key");
    let meta = tmp.path().join("meta");
    let port = az.port;
    let s = TestServer::start_with(Options::default(), |c| {
        c.storage.warehouse = "az://lakehouse/warehouse".into();
        c.storage.metadata_dir = Some(meta.display().to_string());
        c.storage.azure.account = Some("devstoreaccount1".into());
        c.storage.azure.access_key_file = Some(key.clone());
        c.storage.azure.endpoint = Some(format!("http://127.0.0.1:{port}/devstoreaccount1"));
        c.storage.azure.allow_http = true;
    })
    .await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE d (id BIGINT, v TEXT); INSERT INTO d VALUES (1, 'a'), (2, 'b'); \
         UPDATE d SET v = 'z' WHERE id = 1; DELETE FROM d WHERE id = 2",
    )
    .await
    .expect("writes on Azure");
    let rows = c.query("SELECT id, v FROM d", &[]).await.expect("read");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(1), "z");
    assert_eq!(
        count(&c, "SELECT count(*) FROM d FOR VERSION AS OF 1").await,
        2
    );
    let loc = location_of(&meta, "d");
    assert!(
        loc.starts_with("az://lakehouse/warehouse/public/d-"),
        "{loc}"
    );
    s.stop().await;
}
