//! Persistence across restarts, views, concurrent sessions, the demo data.

use crate::common::{Options, TestServer};

#[tokio::test]
async fn data_survives_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("wh");
    let s = TestServer::start(Options::in_dir(&dir)).await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE SCHEMA sales; \
         CREATE TABLE sales.items (id BIGINT NOT NULL, name VARCHAR(20), price DOUBLE PRECISION, at TIMESTAMP); \
         INSERT INTO sales.items VALUES (1, 'a', 1.5, '2024-01-01 00:00:00'), (2, 'b', 2.5, NULL); \
         CREATE VIEW sales.cheap AS SELECT id, name FROM sales.items WHERE price < 2",
    )
    .await
    .expect("setup");
    drop(c);
    s.stop().await;

    let s = TestServer::start(Options::in_dir(&dir)).await;
    let c = s.connect().await;
    let rows = c
        .query(
            "SELECT id, name, price, at FROM sales.items ORDER BY id",
            &[],
        )
        .await
        .expect("read back");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].columns()[0].type_(),
        &tokio_postgres::types::Type::INT8
    );
    assert_eq!(
        rows[0].columns()[2].type_(),
        &tokio_postgres::types::Type::FLOAT8
    );
    assert_eq!(
        rows[0].columns()[3].type_(),
        &tokio_postgres::types::Type::TIMESTAMP
    );
    assert_eq!(rows[1].get::<_, String>(1), "b");
    let v = c
        .query("SELECT * FROM sales.cheap", &[])
        .await
        .expect("view survives");
    assert_eq!(v.len(), 1);
    c.batch_execute("DROP VIEW sales.cheap; DROP TABLE sales.items; DROP SCHEMA sales")
        .await
        .expect("drop");
    let e = c
        .query("SELECT * FROM sales.items", &[])
        .await
        .expect_err("gone");
    assert_eq!(e.code().map(|c| c.code()), Some("42P01"));
    s.stop().await;
}

#[tokio::test]
async fn not_null_and_types_are_enforced() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    c.batch_execute("CREATE TABLE nn (id BIGINT NOT NULL, v INTEGER)")
        .await
        .expect("create");
    let e = c
        .batch_execute("INSERT INTO nn VALUES (NULL, 1)")
        .await
        .expect_err("null refused");
    assert_eq!(e.code().map(|c| c.code()), Some("23502"), "{e}");
    let e = c
        .batch_execute("INSERT INTO nn VALUES (1, 'abc')")
        .await
        .expect_err("bad type refused");
    assert_eq!(e.code().map(|c| c.code()), Some("22P02"), "{e}");
    let row = c
        .query_one("SELECT count(*) FROM nn", &[])
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 0, "nothing written");
    let e = c
        .batch_execute("CREATE TABLE nn (x INT)")
        .await
        .expect_err("duplicate");
    assert_eq!(e.code().map(|c| c.code()), Some("42P07"));
    s.stop().await;
}

#[tokio::test]
async fn concurrent_sessions_insert_and_read() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    for format in ["delta", "iceberg"] {
        let table = format!("conc_{format}");
        c.batch_execute(&format!(
            "CREATE TABLE {table} (worker INTEGER, n INTEGER) USING {format}"
        ))
        .await
        .expect("create");
        let mut clients = vec![];
        for w in 0..4 {
            clients.push((w, s.connect().await));
        }
        crate::common::insert_concurrently(clients, &table, 5)
            .await
            .expect("appends retry by themselves");
        let row = c
            .query_one(
                &format!("SELECT count(*), count(DISTINCT worker) FROM {table}"),
                &[],
            )
            .await
            .expect("count");
        assert_eq!(row.get::<_, i64>(0), 20, "no acknowledged insert is lost");
        assert_eq!(row.get::<_, i64>(1), 4);
    }
    s.stop().await;
}

#[tokio::test]
async fn demo_data_is_there_on_first_start() {
    let s = TestServer::start(Options {
        demo: true,
        ..Default::default()
    })
    .await;
    let c = s.connect().await;
    let row = c
        .query_one(
            "SELECT count(*) FROM demo.customers c JOIN demo.orders o ON o.customer_id = c.id",
            &[],
        )
        .await
        .expect("join");
    assert_eq!(row.get::<_, i64>(0), 200);
    let row = c
        .query_one("SELECT email FROM demo.customers WHERE id = 1", &[])
        .await
        .expect("email");
    assert!(row.get::<_, String>(0).contains('@'));
    s.stop().await;
}

#[tokio::test]
async fn update_and_delete_with_parameters() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    c.batch_execute("CREATE TABLE u (id BIGINT NOT NULL, name TEXT, score INTEGER); INSERT INTO u VALUES (1, 'a', 10), (2, 'b', 20), (3, 'c', 30)")
        .await
        .expect("setup");
    let n = c
        .execute("UPDATE u SET score = $1 WHERE id >= $2", &[&99i32, &2i64])
        .await
        .expect("update");
    assert_eq!(n, 2);
    let n = c
        .execute("DELETE FROM u WHERE name = $1", &[&"a"])
        .await
        .expect("delete");
    assert_eq!(n, 1);
    let rows = c
        .query("SELECT id, score FROM u ORDER BY id", &[])
        .await
        .expect("read");
    let got: Vec<(i64, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(2, 99), (3, 99)]);
    // NOT NULL holds for updates too, and a failed update changes nothing.
    let e = c
        .execute("UPDATE u SET id = NULL WHERE id = 2", &[])
        .await
        .expect_err("not null");
    assert_eq!(e.code().map(|c| c.code()), Some("23502"), "{e}");
    let row = c
        .query_one("SELECT count(*) FROM u WHERE id = 2", &[])
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 1);
    s.stop().await;
}

#[tokio::test]
async fn external_tables_read_files_in_place() {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::record_batch::RecordBatch;
    let tmp = tempfile::tempdir().expect("tmp");
    let csv = tmp.path().join("people.csv");
    std::fs::write(&csv, "id,name\n1,ana\n2,ben\n").expect("csv");
    let json = tmp.path().join("events.json");
    std::fs::write(
        &json,
        "{\"id\": 1, \"kind\": \"click\"}\n{\"id\": 2, \"kind\": \"view\"}\n",
    )
    .expect("json");
    let pq_dir = tmp.path().join("pq");
    std::fs::create_dir_all(&pq_dir).expect("dir");
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            std::sync::Arc::new(Int64Array::from(vec![1, 2, 3])) as _,
        ),
        (
            "city",
            std::sync::Arc::new(StringArray::from(vec!["Lisbon", "Oslo", "Lima"])) as _,
        ),
    ])
    .expect("batch");
    let file = std::fs::File::create(pq_dir.join("part-0.parquet")).expect("file");
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)
        .expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");

    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    c.batch_execute(&format!(
        "CREATE EXTERNAL TABLE people STORED AS CSV LOCATION '{}'; \
         CREATE EXTERNAL TABLE events STORED AS JSON LOCATION '{}'; \
         CREATE EXTERNAL TABLE cities STORED AS PARQUET LOCATION '{}/'",
        csv.display(),
        json.display(),
        pq_dir.display()
    ))
    .await
    .expect("register");
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM people) AS p, (SELECT count(*) FROM events) AS e, (SELECT count(*) FROM cities) AS c",
            &[],
        )
        .await
        .expect("read");
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (2, 2, 3)
    );
    let row = c
        .query_one("SELECT name FROM people WHERE id = 2", &[])
        .await
        .expect("csv row");
    assert_eq!(row.get::<_, String>(0), "ben");
    // External files are read-only.
    let e = c
        .batch_execute("INSERT INTO cities VALUES (4, 'Rome')")
        .await
        .expect_err("read-only");
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{e:?}");
    // A non-admin may not register server files.
    let alice = s.connect_as("alice", "alice-pw").await.expect("alice");
    let e = alice
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '{}'",
            csv.display()
        ))
        .await
        .expect_err("denied");
    assert_eq!(e.code().map(|c| c.code()), Some("42501"));
    // Dropping an external table leaves its files alone.
    c.batch_execute("DROP TABLE people; DROP TABLE cities")
        .await
        .expect("drop");
    assert!(csv.exists() && pq_dir.join("part-0.parquet").exists());
    s.stop().await;
}

#[tokio::test]
async fn inserts_in_a_transaction_appear_at_commit_only() {
    let s = TestServer::start(Options::default()).await;
    let a = s.connect().await;
    let b = s.connect().await;
    a.batch_execute("CREATE TABLE tx (id BIGINT NOT NULL, v TEXT); CREATE TABLE tx2 (id BIGINT)")
        .await
        .expect("create");
    a.batch_execute("BEGIN; INSERT INTO tx VALUES (1, 'a'), (2, 'b'); INSERT INTO tx2 VALUES (9)")
        .await
        .expect("insert");
    a.execute("INSERT INTO tx VALUES ($1, $2)", &[&3i64, &"c"])
        .await
        .expect("insert with params");
    assert_eq!(count(&b, "tx").await, 0, "nothing visible before COMMIT");
    a.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(count(&b, "tx").await, 3);
    assert_eq!(count(&b, "tx2").await, 1);
    // ROLLBACK leaves no trace
    a.batch_execute("BEGIN; INSERT INTO tx VALUES (4, 'd'); ROLLBACK")
        .await
        .expect("rollback");
    assert_eq!(count(&b, "tx").await, 3);
    // an error aborts the transaction: NOT NULL is checked when the INSERT runs
    a.batch_execute("BEGIN; INSERT INTO tx VALUES (5, 'e')")
        .await
        .expect("begin");
    let e = a
        .batch_execute("INSERT INTO tx VALUES (NULL, 'x')")
        .await
        .expect_err("not null");
    assert_eq!(e.code().map(|c| c.code()), Some("23502"));
    let e = a
        .batch_execute("INSERT INTO tx VALUES (6, 'f')")
        .await
        .expect_err("aborted");
    assert_eq!(e.code().map(|c| c.code()), Some("25P02"));
    a.batch_execute("COMMIT")
        .await
        .expect("commit of a failed transaction rolls back");
    assert_eq!(count(&b, "tx").await, 3);
    // a dropped connection leaves no trace
    let c = s.connect().await;
    c.batch_execute("BEGIN; INSERT INTO tx VALUES (7, 'g')")
        .await
        .expect("begin");
    drop(c);
    assert_eq!(count(&b, "tx").await, 3);
    s.stop().await;
}

#[tokio::test]
async fn updates_and_deletes_in_a_transaction_apply_at_commit_in_order() {
    let s = TestServer::start(Options::default()).await;
    let a = s.connect().await;
    let b = s.connect().await;
    a.batch_execute(
        "CREATE TABLE acct (id BIGINT, bal BIGINT); INSERT INTO acct VALUES (1, 100), (2, 50), (3, 0)",
    )
    .await
    .expect("setup");
    a.batch_execute("BEGIN").await.expect("begin");
    let n = a
        .execute("UPDATE acct SET bal = bal - $1 WHERE id = 1", &[&30i64])
        .await
        .expect("update");
    assert_eq!(n, 1, "the tag counts the rows it will change");
    a.execute("UPDATE acct SET bal = bal + 30 WHERE id = 2", &[])
        .await
        .expect("update");
    assert_eq!(
        a.execute("DELETE FROM acct WHERE bal = 0", &[])
            .await
            .expect("delete"),
        1
    );
    a.execute("INSERT INTO acct VALUES (4, 7)", &[])
        .await
        .expect("insert");
    assert_eq!(sum(&b).await, (150, 3), "nothing visible before COMMIT");
    let n = a
        .execute(
            "MERGE INTO acct USING acct s ON acct.id = s.id WHEN MATCHED THEN DELETE",
            &[],
        )
        .await
        .expect("MERGE in a block waits for COMMIT like UPDATE and DELETE");
    assert_eq!(n, 3, "its tag counts the committed rows it matches");
    a.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(sum(&b).await, (150, 3), "ROLLBACK leaves no trace");

    a.batch_execute(
        "BEGIN; UPDATE acct SET bal = bal - 30 WHERE id = 1; UPDATE acct SET bal = bal + 30 WHERE id = 2; \
         DELETE FROM acct WHERE id = 3; INSERT INTO acct VALUES (4, 7)",
    )
    .await
    .expect("block");
    assert_eq!(sum(&b).await, (150, 3));
    a.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(sum(&b).await, (157, 3), "all four writes, in order");
    let rows = b
        .query("SELECT id, bal FROM acct ORDER BY id", &[])
        .await
        .expect("rows");
    let got: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, 70), (2, 80), (4, 7)]);
    s.stop().await;
}

async fn sum(c: &tokio_postgres::Client) -> (i64, i64) {
    c.query_one(
        "SELECT coalesce(sum(bal), 0)::bigint, count(*) FROM acct",
        &[],
    )
    .await
    .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
    .expect("sum")
}

async fn count(c: &tokio_postgres::Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get::<_, i64>(0)
}

#[tokio::test]
async fn conflicting_writers_fail_with_40001_and_lose_nothing() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    c.batch_execute("CREATE TABLE ctr (id BIGINT, n BIGINT); INSERT INTO ctr VALUES (1, 0)")
        .await
        .expect("setup");
    let mut tasks = vec![];
    for _ in 0..3 {
        let client = s.connect().await;
        tasks.push(tokio::spawn(async move {
            let mut ok = 0i64;
            let mut conflicts = 0;
            for _ in 0..4 {
                match client
                    .execute("UPDATE ctr SET n = n + 1 WHERE id = 1", &[])
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) if e.code().map(|c| c.code()) == Some("40001") => conflicts += 1,
                    Err(e) => return Err(format!("unexpected error: {e:?}")),
                }
            }
            Ok((ok, conflicts))
        }));
    }
    let mut succeeded = 0;
    for t in tasks {
        let (ok, conflicts) = t.await.expect("join").expect("only successes or 40001");
        eprintln!("writer: {ok} committed, {conflicts} conflicts");
        succeeded += ok;
    }
    let row = c
        .query_one("SELECT n FROM ctr WHERE id = 1", &[])
        .await
        .expect("read");
    assert_eq!(
        row.get::<_, i64>(0),
        succeeded,
        "every acknowledged update is there, no other"
    );
    s.stop().await;
}

/// The Parquet files of CREATE TABLE AS and INSERT under `dir`, as (rows, row groups, largest
/// row group) each.
fn parquet_files(dir: &std::path::Path) -> Vec<(i64, usize, i64)> {
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    parquet_files_in(dir)
        .iter()
        .map(|p| {
            let f = std::fs::File::open(p).expect("open");
            let r = SerializedFileReader::new(f).expect("parquet");
            let m = r.metadata();
            let groups = m.row_groups();
            assert!(
                groups
                    .iter()
                    .all(|g| g.column(0).column_index_offset().is_some()),
                "{p:?} has no page index"
            );
            (
                m.file_metadata().num_rows(),
                groups.len(),
                groups.iter().map(|g| g.num_rows()).max().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test]
async fn create_table_as_and_insert_write_row_groups_of_122880_rows_with_page_indexes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("wh");
    let s = TestServer::start(Options::in_dir(&dir)).await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE SCHEMA rg; \
         CREATE TABLE rg.big AS SELECT v AS id, v % 7 AS k FROM generate_series(1, 300000) AS g(v); \
         INSERT INTO rg.big SELECT v + 300000, 0 FROM generate_series(1, 130000) AS g(v)",
    )
    .await
    .expect("write");
    let row = c
        .query_one(
            "SELECT count(*), sum(id)::bigint, count(DISTINCT k) FROM rg.big",
            &[],
        )
        .await
        .expect("read back");
    assert_eq!(row.get::<_, i64>(0), 430_000);
    assert_eq!(row.get::<_, i64>(1), 430_000 * 430_001 / 2);
    assert_eq!(row.get::<_, i64>(2), 7);
    let files = parquet_files(&dir);
    assert_eq!(files.iter().map(|f| f.0).sum::<i64>(), 430_000, "{files:?}");
    assert!(files.iter().all(|f| f.2 <= 122_880), "{files:?}");
    assert!(files.iter().map(|f| f.1).sum::<usize>() >= 5, "{files:?}");
    s.stop().await;
}

/// A commit made by another writer (here a second server on the same warehouse) is seen by
/// the very next execution of a statement whose result was remembered (the freshness check
/// behind the memo and the open-table cache waits for no notice and no timer).
#[tokio::test]
async fn another_writers_commit_is_seen_by_the_next_execution() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("wh");
    let opts = || Options::in_dir(&dir);
    let a = TestServer::start(opts()).await;
    let ca = a.connect().await;
    ca.batch_execute("CREATE TABLE w (id BIGINT); INSERT INTO w VALUES (1), (2)")
        .await
        .expect("setup");
    let b = TestServer::start(opts()).await;
    let cb = b.connect().await;
    let stmt = ca.prepare("SELECT count(*) FROM w").await.expect("prepare");
    for expected in [2i64, 3, 4] {
        for _ in 0..3 {
            let n: i64 = ca.query_one(&stmt, &[]).await.expect("count").get(0);
            assert_eq!(n, expected);
        }
        cb.execute("INSERT INTO w VALUES (9)", &[])
            .await
            .expect("the other writer");
    }
    let n: i64 = ca.query_one(&stmt, &[]).await.expect("count").get(0);
    assert_eq!(n, 5);
    drop((ca, cb));
    b.stop().await;
    a.stop().await;
}

/// The Parquet files under `dir`, by path.
fn parquet_files_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The rows of one Parquet file as the text of `columns`, or `None` when it lacks one of them.
fn parquet_rows(path: &std::path::Path, columns: &[&str]) -> Option<Vec<Vec<String>>> {
    use datafusion::arrow::util::display::array_value_to_string;
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let f = std::fs::File::open(path).expect("open");
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let cols = columns
            .iter()
            .map(|c| batch.column_by_name(c).cloned())
            .collect::<Option<Vec<_>>>()?;
        for i in 0..batch.num_rows() {
            rows.push(
                cols.iter()
                    .map(|c| array_value_to_string(c, i).expect("value"))
                    .collect(),
            );
        }
    }
    Some(rows)
}

/// The rows of each Parquet file under `dir` that has all of `columns`.
fn parquet_columns(dir: &std::path::Path, columns: &[&str]) -> Vec<Vec<Vec<String>>> {
    parquet_files_in(dir)
        .iter()
        .filter_map(|p| parquet_rows(p, columns))
        .collect()
}

/// The folder of table `name` in the schema folder `schema` (`<name>-<uuid>`).
fn table_dir(schema: &std::path::Path, name: &str) -> std::path::PathBuf {
    std::fs::read_dir(schema)
        .expect("schema folder")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.rsplit_once('-').is_some_and(|(t, _)| t == name))
        })
        .expect("table folder")
}

/// Each file holds rows in the order `key` gives: true if so.
fn sorted_by<K: Ord>(files: &[Vec<Vec<String>>], key: impl Fn(&[String]) -> K) -> bool {
    files
        .iter()
        .all(|rows| rows.windows(2).all(|w| key(&w[0]) <= key(&w[1])))
}

/// A table's sort order (`WITH (sort_order = ...)`, `ALTER TABLE ... SET (sort_order = ...)`):
/// INSERT and CREATE TABLE AS write their rows in that order, so a filter on the first column
/// skips row groups by their statistics; the order follows RENAME COLUMN and leaves with DROP
/// COLUMN; the answers are the same.
#[tokio::test]
async fn writes_follow_the_tables_sort_order() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("wh");
    let s = TestServer::start(Options::in_dir(&dir)).await;
    let c = s.connect().await;
    // 250,000 rows in a scrambled order: three row groups of 122,880 or fewer.
    c.batch_execute(
        "CREATE SCHEMA so; \
         CREATE TABLE so.t (id BIGINT NOT NULL, d DATE, v TEXT) \
           WITH (sort_order = 'd, id DESC'); \
         INSERT INTO so.t SELECT v, DATE '2020-01-01' + ((v * 7919) % 1000)::int, \
           md5(v::text) FROM generate_series(1, 250000) AS g(v)",
    )
    .await
    .expect("write");
    let table = table_dir(&dir.join("so"), "t");
    let files = parquet_columns(&table, &["d", "id"]);
    assert_eq!(files.iter().map(Vec::len).sum::<usize>(), 250_000);
    assert!(
        sorted_by(&files, |r| (
            r[0].clone(),
            std::cmp::Reverse(r[1].parse::<i64>().unwrap_or(0))
        )),
        "rows of an INSERT in the sort order"
    );
    // A filter on the sort column skips the row groups outside its range.
    let plan: Vec<String> = c
        .query(
            "EXPLAIN ANALYZE SELECT count(*) FROM so.t WHERE d < DATE '2020-02-01'",
            &[],
        )
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("row_groups_pruned_statistics=3 total → 1 matched"),
        "{plan}"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM so.t WHERE d < DATE '2020-02-01'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 7750);

    // CREATE TABLE AS sorts its rows too.
    c.batch_execute(
        "CREATE TABLE so.c WITH (sort_order = 'k') AS \
           SELECT v AS id, (v * 31) % 97 AS k FROM generate_series(1, 1000) AS g(v)",
    )
    .await
    .expect("ctas");
    let files = parquet_columns(&table_dir(&dir.join("so"), "c"), &["k"]);
    assert!(sorted_by(&files, |r| r[0].parse::<i64>().unwrap_or(-1)));

    // A new sort order applies to later writes; a renamed column keeps its place in it (the
    // rename's rewrite leaves the rows in the order it reads them).
    c.batch_execute(
        "ALTER TABLE so.t SET (sort_order = 'v'); \
         INSERT INTO so.t SELECT v, NULL, md5(v::text) FROM generate_series(250001, 260000) AS g(v); \
         ALTER TABLE so.t RENAME COLUMN v TO h; \
         INSERT INTO so.t SELECT v, NULL, md5(v::text) FROM generate_series(260001, 270000) AS g(v)",
    )
    .await
    .expect("alter");
    for column in ["v", "h"] {
        // (the files of the INSERT after each ALTER: 10,000 rows, with that column)
        let files: Vec<_> = parquet_columns(&table, &[column])
            .into_iter()
            .filter(|rows| rows.len() == 10_000)
            .collect();
        assert_eq!(files.len(), 1, "{column}");
        assert!(sorted_by(&files, |r| r[0].clone()), "{column}");
    }
    let rows = c
        .query(
            "SELECT count(*), count(DISTINCT h), min(id), max(id) FROM so.t",
            &[],
        )
        .await
        .expect("read");
    assert_eq!(rows[0].get::<_, i64>(0), 270_000);
    assert_eq!(rows[0].get::<_, i64>(1), 270_000);
    assert_eq!(rows[0].get::<_, i64>(2), 1);
    assert_eq!(rows[0].get::<_, i64>(3), 270_000);
    // Dropping the sort column leaves the table without a sort order; writes go on.
    c.batch_execute(
        "ALTER TABLE so.t DROP COLUMN h; INSERT INTO so.t VALUES (0, NULL), (-1, DATE '2020-01-01')",
    )
    .await
    .expect("drop the sort column");
    let n: i64 = c
        .query_one("SELECT count(*) FROM so.t", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 270_002);
    s.stop().await;
}

/// Under a memory limit smaller than the rows of one INSERT, a table's sort order is kept in
/// runs: the write succeeds, each run is written sorted to files of its own, and no row is lost.
#[tokio::test]
async fn a_sorted_write_larger_than_the_memory_limit_is_written_in_sorted_runs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("wh");
    let s = TestServer::start_with(Options::in_dir(&dir), |c| {
        c.engine.memory_limit = Some("16MiB".into())
    })
    .await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE SCHEMA runs; \
         CREATE TABLE runs.t (id BIGINT, k BIGINT, v TEXT) WITH (sort_order = 'k'); \
         INSERT INTO runs.t SELECT v, (v * 7919) % 100000, repeat(md5(v::text), 3) \
           FROM generate_series(1, 400000) AS g(v)",
    )
    .await
    .expect("a write larger than the memory limit");
    let files = parquet_columns(&table_dir(&dir.join("runs"), "t"), &["k"]);
    assert!(files.len() >= 2, "{} files", files.len());
    assert!(sorted_by(&files, |r| r[0].parse::<i64>().unwrap_or(-1)));
    let row = c
        .query_one(
            "SELECT count(*), count(DISTINCT id), sum(k)::bigint FROM runs.t",
            &[],
        )
        .await
        .expect("read back");
    assert_eq!(row.get::<_, i64>(0), 400_000);
    assert_eq!(row.get::<_, i64>(1), 400_000);
    // (7919 is prime to 100000: k takes every value 0..99999 four times)
    assert_eq!(row.get::<_, i64>(2), 4 * (99_999 * 100_000 / 2));
    s.stop().await;
}

/// A COMMIT that fails (here: its table was dropped by another session meanwhile) ends the
/// block, as in PostgreSQL: the connection is idle, not in a failed block, and the next
/// statements run; in the simple and the extended protocol.
#[tokio::test]
async fn a_failed_commit_ends_the_block() {
    let s = TestServer::start(Options::default()).await;
    let a = s.connect().await;
    let b = s.connect().await;
    for (n, extended) in [(1, false), (2, true)] {
        let table = format!("fc{n}");
        a.batch_execute(&format!("CREATE TABLE {table} (x INT)"))
            .await
            .expect("create");
        a.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
            .await
            .expect("insert");
        b.batch_execute(&format!("DROP TABLE {table}"))
            .await
            .expect("drop");
        let failed = if extended {
            a.execute("COMMIT", &[]).await.map(|_| ())
        } else {
            a.batch_execute("COMMIT").await
        };
        assert!(failed.is_err(), "COMMIT into a dropped table");
        // Not 25P02: the block is over.
        let row = a.query_one("SELECT 1", &[]).await.expect("after COMMIT");
        assert_eq!(row.get::<_, i32>(0), 1);
        a.batch_execute("SELECT 2")
            .await
            .expect("simple after COMMIT");
        // A new block starts as usual.
        a.batch_execute("BEGIN; SELECT 1; COMMIT")
            .await
            .expect("new block");
    }
    s.stop().await;
}
