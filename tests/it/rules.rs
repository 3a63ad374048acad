//! One test per rule of `engine/` that no other test shows: the plan change it makes, seen
//! in EXPLAIN over the wire, and the answer it leaves as it was. (Deferred build sides, shared
//! subplans, dynamic filters and the semi-join rules are shown in `engine.rs`.)

use crate::common::{Options, TestServer};
use crate::engine::{analyzed_plan, physical_plan, plan_line as line, two_partitions};

/// The position of the line of `plan` naming `node`.
fn line_at(plan: &str, node: &str) -> usize {
    plan.lines()
        .position(|l| l.contains(node))
        .unwrap_or_else(|| panic!("no {node} in {plan}"))
}

/// `engine::prune_only`: a Delta scan keeps its predicate for skipping row groups but does not
/// filter row by row; the FilterExec above it gives the exact answer. A server that asks for
/// row-level pushdown (`execution.parquet.pushdown_filters`) keeps DataFusion's plan, where the
/// filter moves into the scan.
#[tokio::test]
async fn prune_only_keeps_the_filter_above_a_delta_scan() {
    let setup = "CREATE TABLE po (id bigint NOT NULL, note text NOT NULL);
                 INSERT INTO po SELECT x, 'n' || x FROM generate_series(1, 1000) t(x);";
    let sql = "SELECT id FROM po WHERE note LIKE 'n5%' AND id > 10 ORDER BY id";
    let ours = TestServer::start(Options::default()).await;
    let c = ours.connect().await;
    c.batch_execute(setup).await.expect("table");
    let plan = physical_plan(&c, sql).await;
    assert!(plan.contains("FilterExec"), "{plan}");
    let rows = c.query(sql, &[]).await.expect("query");
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    ours.stop().await;
    let pushed = TestServer::start_with(Options::default(), |c| {
        c.engine.datafusion.insert(
            "execution".into(),
            serde_json::json!({ "parquet": { "pushdown_filters": true } }),
        );
    })
    .await;
    let c = pushed.connect().await;
    c.batch_execute(setup).await.expect("table");
    let plan = physical_plan(&c, sql).await;
    assert!(!plan.contains("FilterExec"), "{plan}");
    let rows = c.query(sql, &[]).await.expect("query");
    assert_eq!(ids, rows.iter().map(|r| r.get(0)).collect::<Vec<i64>>());
    let expected: Vec<i64> = (11..=1000)
        .filter(|x| x.to_string().starts_with('5'))
        .collect();
    assert_eq!(ids, expected);
    pushed.stop().await;
}

/// `engine::decimal_arith`: decimal products and differences are computed by the bounded
/// expression (no per-value overflow check where the batch cannot overflow); the sums are
/// the exact ones (an overflow still answers 22003: `select.slt`).
#[tokio::test]
async fn decimal_arithmetic_is_bounded_and_answers_the_same() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE da (price numeric(12,2) NOT NULL, discount numeric(12,2) NOT NULL);
         INSERT INTO da SELECT CAST(x AS numeric(12,2)) / 4, CAST(x % 10 AS numeric(12,2)) / 100
           FROM generate_series(1, 1000) t(x);",
    )
    .await
    .expect("table");
    let plan = physical_plan(&c, "SELECT price * (1 - discount) AS v FROM da").await;
    assert!(
        line(&plan, "ProjectionExec").contains("bounded_decimal("),
        "{plan}"
    );
    let sql = "SELECT CAST(sum(price * (1 - discount)) AS text) FROM da";
    let got: String = c.query_one(sql, &[]).await.expect("sum").get(0);
    // In cents: price = x/4, discount = (x % 10)/100; computed exactly in integers.
    let exact: i128 = (1..=1000i128)
        .map(|x| x * 25 * (100 - x % 10)) // price * 100 * (1 - discount) * 100
        .sum();
    let (units, frac) = (exact / 10_000, exact % 10_000);
    assert_eq!(got, format!("{units}.{frac:04}"));
    s.stop().await;
}

/// `engine::compact_views`: a hash join outputting text (string views into its build side's
/// buffers) is followed by CompactViewsExec; the rows are the join's.
#[tokio::test]
async fn a_joins_text_output_is_compacted() {
    let s = two_partitions().await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE cv_dim (k bigint NOT NULL, name text NOT NULL);
         INSERT INTO cv_dim SELECT x, 'name number ' || x FROM generate_series(1, 2000) t(x);
         CREATE TABLE cv_fact (k bigint NOT NULL, v bigint NOT NULL);
         INSERT INTO cv_fact SELECT x % 2000 + 1, x FROM generate_series(1, 20000) t(x);",
    )
    .await
    .expect("tables");
    let sql = "SELECT d.name, count(*) FROM cv_fact f JOIN cv_dim d ON d.k = f.k \
               WHERE d.k <= 3 GROUP BY d.name ORDER BY d.name";
    let plan = physical_plan(&c, sql).await;
    assert_eq!(
        line_at(&plan, "HashJoinExec"),
        line_at(&plan, "CompactViewsExec") + 1,
        "CompactViewsExec is right above the join: {plan}"
    );
    let rows = c.query(sql, &[]).await.expect("join");
    let got: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected: Vec<(String, i64)> = (1..=3).map(|k| (format!("name number {k}"), 10)).collect();
    assert_eq!(got, expected);
    s.stop().await;
}

/// `engine::filter_estimates`: a predicate DataFusion cannot analyse (a date range and a
/// LIKE) is estimated from the date column's range in the Delta log (10 of 100 days, times the
/// default for the LIKE), not at DataFusion's default share of the rows (20 %).
#[tokio::test]
async fn a_filter_datafusion_cannot_analyse_is_estimated_from_column_ranges() {
    let s = TestServer::start_with(Options::default(), |c| {
        c.engine.datafusion.insert(
            "explain".into(),
            serde_json::json!({ "show_statistics": true }),
        );
    })
    .await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE fe (id bigint NOT NULL, day date NOT NULL, note text NOT NULL);
         INSERT INTO fe SELECT x, DATE '2024-01-01' + CAST(x % 100 AS int), 'n' || x
           FROM generate_series(0, 9999) t(x);",
    )
    .await
    .expect("table");
    let sql = "SELECT id FROM fe WHERE day >= DATE '2024-02-01' AND day < DATE '2024-02-11' \
               AND note LIKE 'n1%'";
    let plan = physical_plan(&c, sql).await;
    let filter = line(&plan, "FilterExec");
    let rows = filter
        .split("Rows=Inexact(")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no row estimate in {filter}"));
    // 10 of 100 days (10 %) times the default 20 % for the LIKE: 2 % of 10,000 rows, where
    // DataFusion alone says 20 % (2,000).
    assert!(
        (100..=400).contains(&rows),
        "estimated {rows} rows: {filter}"
    );
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM ({sql}) q"), &[])
        .await
        .expect("count")
        .get(0);
    let expected = (0..10_000i64)
        .filter(|x| (31..41).contains(&(x % 100)) && x.to_string().starts_with('1'))
        .count();
    assert_eq!(n as usize, expected);
    s.stop().await;
}

/// `engine::adaptive_filter`: a filter's conjuncts run in the order the rows teach, shown by
/// EXPLAIN ANALYZE: the one removing most rows first, whatever the written order.
#[tokio::test]
async fn a_filters_conjuncts_run_in_the_order_the_rows_teach() {
    let s = TestServer::start(Options::default()).await;
    let c = s.connect().await;
    c.batch_execute(
        "CREATE TABLE af (a bigint NOT NULL, b bigint NOT NULL);
         INSERT INTO af SELECT x, x % 100 FROM generate_series(1, 200000) t(x);",
    )
    .await
    .expect("table");
    // Written first: keeps 95 % of the rows; second: keeps 2 %.
    let sql = "SELECT count(*) FROM af WHERE b < 95 AND b >= 93";
    let plan = analyzed_plan(&c, sql).await;
    let filter = line(&plan, "FilterExec");
    let at = |text: &str| {
        filter
            .find(text)
            .unwrap_or_else(|| panic!("no {text} in {filter}"))
    };
    assert!(at(">= 93") < at("< 95"), "{filter}");
    let n: i64 = c.query_one(sql, &[]).await.expect("count").get(0);
    assert_eq!(n, 4000);
    s.stop().await;
}
