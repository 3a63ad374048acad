//! Partitioned tables: scans prune files (EXPLAIN ANALYZE says how many), OPTIMIZE ... WHERE
//! compacts chosen partitions, and maintenance reports progress as NOTICEs.

use crate::common::{Options, TestServer};

async fn plan_text(c: &tokio_postgres::Client, sql: &str) -> String {
    c.query(sql, &[])
        .await
        .expect(sql)
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn partitions_prune_and_optimize_where_compacts_one_partition() {
    let s = TestServer::start(Options::default()).await;
    let (c, mut notices) = s.connect_with_notices().await;
    c.batch_execute(
        "CREATE TABLE sales (id BIGINT, region TEXT, amount INTEGER) PARTITIONED BY (region); \
         INSERT INTO sales VALUES (1, 'EU', 10), (2, 'US', 20); \
         INSERT INTO sales VALUES (3, 'EU', 30), (4, 'APAC', 40); \
         INSERT INTO sales VALUES (5, 'US', 50)",
    )
    .await
    .expect("setup");
    let plan = plan_text(
        &c,
        "EXPLAIN ANALYZE SELECT sum(amount) FROM sales WHERE region = 'EU'",
    )
    .await;
    assert!(
        plan.contains("files_total=5, files_scanned=2, files_pruned=3"),
        "{plan}"
    );
    // min/max statistics skip files too, not only partition values.
    let plan = plan_text(&c, "EXPLAIN ANALYZE SELECT * FROM sales WHERE id >= 5").await;
    assert!(plan.contains("files_scanned=1, files_pruned=4"), "{plan}");
    let row = c
        .query_one(
            "SELECT sum(amount)::bigint FROM sales WHERE region = 'EU'",
            &[],
        )
        .await
        .expect("sum");
    assert_eq!(row.get::<_, i64>(0), 40);

    while notices.try_recv().is_ok() {}
    c.batch_execute("OPTIMIZE sales WHERE region = 'EU'")
        .await
        .expect("optimize one partition");
    let progress = notices.recv().await.expect("a progress notice").1;
    assert!(
        progress.contains("optimize public.sales: 5 files"),
        "{progress}"
    );
    let done = notices.recv().await.expect("the result notice").1;
    assert!(done.contains("2 files removed, 1 files added"), "{done}");
    let plan = plan_text(&c, "EXPLAIN ANALYZE SELECT * FROM sales").await;
    assert!(plan.contains("files_total=4"), "{plan}");
    assert_eq!(
        c.query_one("SELECT count(*) FROM sales", &[])
            .await
            .expect("count")
            .get::<_, i64>(0),
        5
    );
    let e = c
        .batch_execute("OPTIMIZE sales WHERE amount > 3")
        .await
        .expect_err("not a partition column");
    assert!(format!("{e:?}").contains("partition columns only"), "{e:?}");
    s.stop().await;
}
