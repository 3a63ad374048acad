//! The engine under a memory limit: what cannot fit spills, or is computed another way.

use crate::common::{Options, TestServer};

/// A join whose hash table does not fit its share of the pool (DataFusion's hash join cannot
/// spill): computed again with sort-merge joins, whose sorts spill, it answers; with too little
/// memory even for that, 53200. Two partitions, as on a 2-core machine, where joins are
/// planned collect-left and the retry must still switch to sort-merge joins.
#[tokio::test]
async fn a_hash_join_short_of_memory_is_computed_again_with_sort_merge_joins() {
    let join = "SELECT count(*), sum(a.x) FROM generate_series(1, 4000000) a(x) \
                JOIN generate_series(1, 4000000) b(y) ON a.x = b.y";
    let s = TestServer::start_with(Options::default(), |c| {
        c.engine.memory_limit = Some("48MiB".into());
        c.engine.target_partitions = Some(2);
    })
    .await;
    let c = s.connect().await;
    let row = c.query_one(join, &[]).await.expect("the join answers");
    assert_eq!(row.get::<_, i64>(0), 4_000_000);
    assert_eq!(row.get::<_, i64>(1), 4_000_000 * 4_000_001 / 2);
    s.stop().await;

    let s = TestServer::start_with(Options::default(), |c| {
        c.engine.memory_limit = Some("8MiB".into());
    })
    .await;
    let c = s.connect().await;
    let e = c.query_one(join, &[]).await.expect_err("too little memory");
    assert_eq!(e.code().map(|c| c.code()), Some("53200"), "{e:?}");
    s.stop().await;
}

/// The line of `plan` naming `node` (the test fails when there is none).
pub(crate) fn plan_line<'a>(plan: &'a str, node: &str) -> &'a str {
    plan.lines()
        .find(|l| l.contains(node))
        .unwrap_or_else(|| panic!("no {node} in {plan}"))
}

/// The text of `EXPLAIN sql`'s physical plan.
pub(crate) async fn physical_plan(c: &tokio_postgres::Client, sql: &str) -> String {
    let rows = c
        .query(&format!("EXPLAIN {sql}"), &[])
        .await
        .expect("explain");
    rows.iter()
        .filter(|r| r.get::<_, String>(0) == "physical_plan")
        .map(|r| r.get::<_, String>(1))
        .collect()
}

/// A server computing on two partitions, as on a 2-core machine.
pub(crate) async fn two_partitions() -> TestServer {
    TestServer::start_with(Options::default(), |c| {
        c.engine.target_partitions = Some(2);
    })
    .await
}

/// The text of `EXPLAIN ANALYZE sql`: the plan as it ran, with its metrics.
pub(crate) async fn analyzed_plan(c: &tokio_postgres::Client, sql: &str) -> String {
    let rows = c
        .query(&format!("EXPLAIN ANALYZE {sql}"), &[])
        .await
        .expect("explain analyze");
    rows.iter().map(|r| r.get::<_, String>(1)).collect()
}

/// A Delta table's scan reports its columns' min/max, null counts and sizes from the Delta log
/// (deltalake itself only min/max for the columns a filter names), which the join planner needs;
/// and
/// `engine.datafusion` options reach DataFusion (here `explain.show_statistics`, which shows
/// them).
#[tokio::test]
async fn delta_scans_report_column_statistics_from_the_log() {
    let s = TestServer::start_with(Options::default(), |c| {
        c.engine.datafusion.insert(
            "explain".into(),
            serde_json::json!({ "show_statistics": true }),
        );
    })
    .await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE stats_t (id bigint, day date, note text, maybe int);
         INSERT INTO stats_t SELECT x, DATE '2024-01-01' + CAST(x AS int), 'n' || x, NULL
           FROM generate_series(1, 100) t(x);
         INSERT INTO stats_t VALUES (-5, DATE '2023-12-25', 'z', 7);",
    )
    .await
    .expect("table");
    let plan = physical_plan(&c, "SELECT id, day, note, maybe FROM stats_t").await;
    let files = plan_line(&plan, "TableFilesExec");
    for expected in [
        "Rows=Exact(101)",
        "Min=Inexact(Int64(-5)) Max=Inexact(Int64(100)) Null=Inexact(0)",
        "Min=Inexact(Date32(\"2023-12-25\")) Max=Inexact(Date32(\"2024-04-10\"))",
        "Null=Inexact(100)",
    ] {
        assert!(files.contains(expected), "{expected} not in {files}");
    }
    // Text min/max are not taken: the log truncates long strings. A text column's size is
    // estimated from the lengths of each file's min and max, plus an offset per value ("n1" and
    // "n99" over 100 rows, "z" over 1: 100 * 6 + 5), and the scan's size is the sum of its
    // columns' (8 + 4 + 4 bytes for each of 101 rows, and the text).
    assert!(!files.contains("Utf8(\"n1\")"), "{files}");
    assert!(files.contains("ScanBytes=Inexact(605)"), "{files}");
    assert!(files.contains("Bytes=Inexact(2221)"), "{files}");
    let e = c
        .query_one(
            "SELECT count(*) FROM stats_t WHERE id > 50 AND maybe IS NULL",
            &[],
        )
        .await
        .expect("count");
    assert_eq!(e.get::<_, i64>(0), 50);
    s.stop().await;
}

/// On two partitions a join's build side is read when the join first asks for it
/// (`engine::deferred_build`), after the joins above have built theirs and filled the dynamic
/// filters they push into it. The answer is the join's.
#[tokio::test]
async fn build_sides_are_deferred_until_their_join_asks() {
    let s = two_partitions().await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE dim_n (k bigint NOT NULL, name text NOT NULL);
         INSERT INTO dim_n VALUES (1, 'one'), (2, 'two'), (3, 'three');
         CREATE TABLE fact_n (k bigint NOT NULL, v bigint NOT NULL);
         INSERT INTO fact_n SELECT x % 10, x FROM generate_series(1, 1000) t(x);",
    )
    .await
    .expect("tables");
    let sql = "SELECT d.name, count(*), sum(f.v) FROM fact_n f JOIN dim_n d ON f.k = d.k \
               WHERE d.name <> 'two' GROUP BY d.name ORDER BY d.name";
    let plan = physical_plan(&c, sql).await;
    assert!(plan.contains("DeferredExec"), "{plan}");
    let rows = c.query(sql, &[]).await.expect("join");
    let got: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    // k = 1: 1, 11, ..., 991 (100 rows, sum 49,600); k = 3: 3, 13, ..., 993 (sum 49,800).
    assert_eq!(
        got,
        vec![
            ("one".to_string(), 100, 49_600),
            ("three".to_string(), 100, 49_800)
        ]
    );
    s.stop().await;
}

/// A CTE's aggregation used twice (TPC-H q15's shape) is computed once and read by both
/// places; one computing a volatile expression is not shared (two draws stay two draws).
#[tokio::test]
async fn an_aggregation_used_twice_is_computed_once() {
    let s = two_partitions().await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE sales_s (k bigint NOT NULL, v bigint NOT NULL);
         INSERT INTO sales_s SELECT x % 7, x FROM generate_series(1, 700) t(x);",
    )
    .await
    .expect("table");
    let sql = "WITH r AS (SELECT k, sum(v) AS total FROM sales_s WHERE v > 10 GROUP BY k) \
               SELECT k, total FROM r WHERE total = (SELECT max(total) FROM r) ORDER BY k";
    let plan = physical_plan(&c, sql).await;
    assert!(
        plan.contains("SharedExec: computed once for 2 places"),
        "{plan}"
    );
    assert!(plan.contains("SharedExec: reads the result"), "{plan}");
    // The largest total is k = 0's: 7, 14, ..., 700 without 7 (v > 10): 35,350 - 7.
    for _ in 0..3 {
        let rows = c.query(sql, &[]).await.expect("query");
        let got: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(got, vec![(0, 35_343)]);
    }
    // The same from a prepared statement in a second session.
    let other = s.connect().await;
    let stmt = other.prepare(sql).await.expect("prepare");
    let rows = other.query(&stmt, &[]).await.expect("prepared");
    assert_eq!(rows.len(), 1);
    let volatile = "WITH r AS (SELECT k, sum(v * random()) AS total FROM sales_s GROUP BY k) \
                    SELECT count(*) FROM r WHERE total >= (SELECT min(total) FROM r)";
    let plan = physical_plan(&c, volatile).await;
    assert!(!plan.contains("SharedExec"), "{plan}");
    // Two versions of the table are two results, even where they read the same files.
    c.batch_execute("UPDATE sales_s SET v = v + 1 WHERE k = 3")
        .await
        .expect("update");
    let versions = "SELECT (SELECT sum(v) FROM (SELECT k, sum(v) AS v FROM sales_s GROUP BY k) a), \
                    (SELECT sum(v) FROM (SELECT k, sum(v) AS v FROM sales_s FOR VERSION AS OF 1 \
                     GROUP BY k) b)";
    let row = c.query_one(versions, &[]).await.expect("two versions");
    let (now, then): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((now - then, then), (100, 245_350));
    s.stop().await;
}

/// A join's key set (its dynamic filter) reaches a scan that also has a filter of its own, and
/// is applied to the rows that filter keeps (`engine::dynamic_filter`), so an aggregation
/// between the scan and the join (TPC-H q20's shape) groups only the keys the join can use.
/// The answer is the join's.
#[tokio::test]
async fn a_joins_key_set_filters_the_rows_under_an_aggregation() {
    let s = two_partitions().await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE fact_k (k bigint NOT NULL, d date NOT NULL, v bigint NOT NULL);
         INSERT INTO fact_k SELECT x % 5000, DATE '2024-01-01' + CAST(x % 365 AS int), x
           FROM generate_series(1, 200000) t(x);
         CREATE TABLE dim_k (k bigint NOT NULL, name text NOT NULL);
         INSERT INTO dim_k SELECT x, 'n' || x FROM generate_series(0, 4999) t(x);",
    )
    .await
    .expect("tables");
    let sql = "SELECT d.k, a.total FROM dim_k d \
               JOIN (SELECT k, sum(v) AS total FROM fact_k WHERE d >= DATE '2024-03-01' \
                     GROUP BY k) a ON a.k = d.k \
               WHERE d.name LIKE 'n12%' ORDER BY d.k";
    let plan = analyzed_plan(&c, sql).await;
    let filter = plan_line(&plan, "DynamicFilterExec");
    assert!(!filter.contains("rows_filtered=0,"), "{filter}");
    // 2024-03-01 is day 60 of the year: rows with x % 365 >= 60 count.
    let mut expected = std::collections::BTreeMap::<i64, i64>::new();
    for x in 1..=200_000i64 {
        let k = x % 5000;
        if x % 365 >= 60 && k.to_string().starts_with("12") {
            *expected.entry(k).or_default() += x;
        }
    }
    let rows = c.query(sql, &[]).await.expect("join");
    let got: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, expected.into_iter().collect::<Vec<_>>());
    s.stop().await;
}

/// `IN (SELECT k ... GROUP BY k HAVING ...)` (TPC-H q18's shape): the subquery's keys are
/// distinct, so its semi join is computed as an inner join (`engine::semi_join`), whose key
/// set filters the scans of the other side. Each row is kept once, as by the semi join; a
/// subquery with repeated keys keeps its semi join.
#[tokio::test]
async fn a_semi_join_on_distinct_keys_filters_the_other_sides_scans() {
    let s = two_partitions().await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE ord_s (k bigint NOT NULL, v bigint NOT NULL);
         INSERT INTO ord_s SELECT x, x * 10 FROM generate_series(1, 20000) t(x);
         CREATE TABLE line_s (k bigint NOT NULL, q bigint NOT NULL);
         INSERT INTO line_s SELECT x % 20000 + 1, x % 13 FROM generate_series(1, 200000) t(x);",
    )
    .await
    .expect("tables");
    let sql = "SELECT o.k, o.v, sum(l.q) FROM ord_s o JOIN line_s l ON o.k = l.k \
               WHERE o.k IN (SELECT k FROM line_s GROUP BY k HAVING sum(q) >= 70) \
               GROUP BY o.k, o.v ORDER BY o.k";
    let plan = physical_plan(&c, sql).await;
    assert!(!plan.contains("Semi"), "{plan}");
    let analyzed = analyzed_plan(&c, sql).await;
    let orders = analyzed
        .lines()
        .find(|l| l.contains("DataSourceExec") && l.contains("ord_s"))
        .unwrap_or_else(|| panic!("no scan of ord_s in {analyzed}"));
    assert!(orders.contains("DynamicFilter"), "{orders}");
    let mut sums = vec![0i64; 20_001];
    for x in 1..=200_000i64 {
        sums[(x % 20_000 + 1) as usize] += x % 13;
    }
    let expected: Vec<(i64, i64, i64)> = (1..=20_000i64)
        .filter(|k| sums[*k as usize] >= 70)
        .map(|k| (k, k * 10, sums[k as usize]))
        .collect();
    assert!(!expected.is_empty() && expected.len() < 20_000);
    let rows = c.query(sql, &[]).await.expect("query");
    let got: Vec<(i64, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got, expected);
    // Repeated keys: a semi join still, each row once.
    let sql = "SELECT count(*), count(DISTINCT k) FROM ord_s WHERE k IN (SELECT k FROM line_s)";
    let row = c.query_one(sql, &[]).await.expect("semi join");
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (20_000, 20_000)
    );
    s.stop().await;
}

/// A semi join with a filtered table (TPC-H q20's `partsupp` semi-joined with the parts named
/// "forest...") is estimated at the share of rows the filter keeps (`engine::semi_join`),
/// not all of `partsupp`; the join above it then builds on it, and its key set filters the
/// scan of the aggregated side.
#[tokio::test]
async fn a_semi_join_with_a_filtered_table_is_estimated_small() {
    let s = two_partitions().await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE part_e (pk bigint NOT NULL, name text NOT NULL);
         INSERT INTO part_e SELECT x, CASE WHEN x % 100 = 0 THEN 'forest ' ELSE 'plain ' END || x
           FROM generate_series(1, 20000) t(x);
         CREATE TABLE ps_e (pk bigint NOT NULL, sk bigint NOT NULL, avail bigint NOT NULL);
         INSERT INTO ps_e SELECT x % 20000 + 1, x % 20, x % 97 FROM generate_series(0, 399999) t(x);
         CREATE TABLE li_e (pk bigint NOT NULL, sk bigint NOT NULL, q bigint NOT NULL, d date NOT NULL);
         INSERT INTO li_e SELECT x % 20000 + 1, x % 20, x % 7, DATE '2024-01-01' + CAST(x % 360 AS int)
           FROM generate_series(0, 399999) t(x);",
    )
    .await
    .expect("tables");
    let sql = "SELECT count(*) FROM ps_e \
               WHERE pk IN (SELECT pk FROM part_e WHERE name LIKE 'forest%') \
               AND avail > (SELECT sum(q) FROM li_e WHERE li_e.pk = ps_e.pk AND li_e.sk = ps_e.sk \
                            AND d >= DATE '2024-03-01' AND d < DATE '2024-07-01')";
    let plan = analyzed_plan(&c, sql).await;
    let filter = plan_line(&plan, "DynamicFilterExec");
    assert!(!filter.contains("rows_filtered=0,"), "{filter}");
    // The answer, computed here: li_e's sums per (pk, sk) from March to June.
    let day = |x: i64| x % 360; // days after 2024-01-01; March 1st is day 60, July 1st 182
    let mut sums = std::collections::HashMap::<(i64, i64), i64>::new();
    for x in 0..400_000i64 {
        if (60..182).contains(&day(x)) {
            *sums.entry((x % 20_000 + 1, x % 20)).or_default() += x % 7;
        }
    }
    let expected = (0..400_000i64)
        .filter(|x| (x % 20_000 + 1) % 100 == 0)
        .filter(|x| {
            // A NULL sum (no rows) keeps nothing.
            sums.get(&(x % 20_000 + 1, x % 20))
                .is_some_and(|s| x % 97 > *s)
        })
        .count() as i64;
    let row = c.query_one(sql, &[]).await.expect("query");
    assert_eq!(row.get::<_, i64>(0), expected);
    s.stop().await;
}

/// The first column of `sql`'s one row, a bigint sum (None for the sum of no rows).
async fn first_sum(
    c: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Option<i64> {
    let rows = c.query(sql, params).await.expect(sql);
    rows[0].get::<_, Option<i64>>(0)
}

/// A session runs a repeated query on the plan DataFusion's optimizer made of it the first
/// time, and only while that plan still stands for the same thing: a write (a new table
/// version), a table dropped and created again under the same name, another search_path,
/// other parameter values and `lakegate.plan_cache = off` each answer as a new query would.
#[tokio::test]
async fn a_repeated_query_reuses_its_optimized_plan_only_while_it_stands() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    c.batch_execute(
        "SET lakegate.result_cache = off;
         CREATE SCHEMA pc; CREATE SCHEMA pc2;
         CREATE TABLE pc.t (a bigint, b text);
         INSERT INTO pc.t VALUES (1, 'x'), (2, 'y');
         CREATE TABLE pc2.t (a bigint, b text);
         INSERT INTO pc2.t VALUES (100, 'z');",
    )
    .await
    .expect("setup");
    let q = "SELECT sum(a) FROM pc.t WHERE a > 0";
    for _ in 0..3 {
        assert_eq!(first_sum(&c, q, &[]).await, Some(3));
    }
    c.batch_execute("INSERT INTO pc.t VALUES (3, 'z')")
        .await
        .expect("insert");
    assert_eq!(first_sum(&c, q, &[]).await, Some(6));
    c.batch_execute(
        "DROP TABLE pc.t; CREATE TABLE pc.t (a bigint, b text);
         INSERT INTO pc.t VALUES (10, 'x'); INSERT INTO pc.t VALUES (20, 'y');",
    )
    .await
    .expect("drop and create (to the version the dropped table was read at)");
    assert_eq!(first_sum(&c, q, &[]).await, Some(30));
    let unqualified = "SELECT sum(a) FROM t";
    for (path, want) in [("pc", 30), ("pc2", 100), ("pc", 30)] {
        c.batch_execute(&format!("SET search_path = {path}"))
            .await
            .expect("search_path");
        assert_eq!(
            first_sum(&c, unqualified, &[]).await,
            Some(want),
            "search_path {path}"
        );
    }
    let param = "SELECT sum(a) FROM pc.t WHERE a > $1";
    for (bound, want) in [(5i64, Some(30)), (15, Some(20)), (25, None), (5, Some(30))] {
        assert_eq!(first_sum(&c, param, &[&bound]).await, want, "a > {bound}");
    }
    c.batch_execute("SET lakegate.plan_cache = off; INSERT INTO pc.t VALUES (5, 'w')")
        .await
        .expect("off");
    assert_eq!(first_sum(&c, q, &[]).await, Some(35));
    let e = c
        .batch_execute("SET lakegate.plan_cache = maybe")
        .await
        .expect_err("not a Boolean");
    assert_eq!(e.code().map(|c| c.code()), Some("22023"), "{e:?}");
    s.stop().await;
}

/// A table dropped and created again under its name reaches the version numbers the old one
/// was read at: the result cache answers from the new table, in this session and in others.
#[tokio::test]
async fn a_table_created_again_under_its_name_is_not_answered_from_the_old_ones_results() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    let q = "SELECT sum(a) FROM rc.t";
    c.batch_execute(
        "CREATE SCHEMA rc; CREATE TABLE rc.t (a bigint);
         INSERT INTO rc.t VALUES (1); INSERT INTO rc.t VALUES (2);",
    )
    .await
    .expect("setup");
    assert_eq!(first_sum(&c, q, &[]).await, Some(3));
    assert_eq!(first_sum(&c, q, &[]).await, Some(3));
    c.batch_execute(
        "DROP TABLE rc.t; CREATE TABLE rc.t (a bigint);
         INSERT INTO rc.t VALUES (10); INSERT INTO rc.t VALUES (20);",
    )
    .await
    .expect("drop and create");
    assert_eq!(first_sum(&c, q, &[]).await, Some(30));
    let other = s.connect().await;
    assert_eq!(first_sum(&other, q, &[]).await, Some(30));
    s.stop().await;
}
