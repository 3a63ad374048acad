//! Materialized views and the result cache as several users with different policies: the
//! answers always equal what the query returns with rewrite and cache off; a view answers a
//! row-filtered user through that user's filter, never a masked one; read directly, a view
//! gives each user what their policies on its sources give them (refused where they cannot
//! apply); cached results are never shared across different policies.

use crate::common::{Options, TestServer};
use lakegate::config::UserConfig;
use tokio_postgres::{Client, SimpleQueryMessage};

const POLICIES: &str = r#"
[[principal]]
name = "alice"
[principal.attributes]
region = "EU"

[[principal]]
name = "carl"
[principal.attributes]
region = "US"

[[grant]]
to = "*"
on = "shop.*"
actions = ["read"]

[[row_filter]]
name = "sales_by_region"
table = "shop.sales"
to = "alice"
filter = "region = $region"

[[row_filter]]
name = "sales_by_region_carl"
table = "shop.sales"
to = "carl"
filter = "region = $region"

[[mask]]
table = "shop.sales"
column = "amount"
to = "bob"
kind = "round"
"#;

async fn rows(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(String::from)).collect())
            }
            _ => None,
        })
        .collect()
}

async fn plan_text(c: &Client, sql: &str) -> String {
    rows(c, &format!("EXPLAIN {sql}"))
        .await
        .into_iter()
        .flatten()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rows with rewrite and cache on, checked against the rows with both off.
async fn answer(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let with = rows(c, sql).await;
    c.batch_execute("SET lakegate.mv_rewrite = off; SET lakegate.result_cache = off")
        .await
        .expect("off");
    let without = rows(c, sql).await;
    c.batch_execute("SET lakegate.mv_rewrite = on; SET lakegate.result_cache = on")
        .await
        .expect("on");
    assert_eq!(with, without, "{sql}");
    with
}

/// A server with the policies above and the users alice, bob and carl (password `<name>-pw`).
async fn server(tmp: &tempfile::TempDir) -> TestServer {
    let dir = tmp.path().join("policies");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("p.toml"), POLICIES).expect("policies");
    let mut users = vec![];
    for u in ["alice", "bob", "carl"] {
        let pw = tmp.path().join(format!("{u}.pw"));
        std::fs::write(&pw, format!("{u}-pw")).expect("pw");
        users.push(UserConfig {
            name: u.into(),
            password_env: None,
            password_file: Some(pw),
            admin: false,
        });
    }
    TestServer::start_with(Options::default(), |c| {
        c.policy.dir = dir.clone();
        c.auth.users = users;
    })
    .await
}

#[tokio::test]
async fn views_answer_each_user_under_their_policies_and_results_never_cross_users() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = server(&tmp).await;
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE SCHEMA shop; \
             CREATE TABLE shop.sales (region TEXT, month TEXT, amount BIGINT); \
             INSERT INTO shop.sales VALUES ('EU','2024-01',10),('EU','2024-02',20),('US','2024-01',5),\
               ('US','2024-02',7),('EU','2024-01',1),('AS','2024-01',3); \
             CREATE MATERIALIZED VIEW shop.by_month AS SELECT region, month, sum(amount) AS total, \
               count(*) AS n FROM shop.sales GROUP BY region, month",
        )
        .await
        .expect("setup");
    let q = |month: &str| {
        format!(
            "SELECT region, sum(amount) AS s, count(*) AS n FROM shop.sales WHERE month = '{month}' \
             GROUP BY region ORDER BY region"
        )
    };
    // The administrator: answered from the view, equal to the plain query.
    assert!(plan_text(&admin, &q("2024-01")).await.contains("by_month"));
    assert_eq!(answer(&admin, &q("2024-01")).await.len(), 3);
    let alice = s.connect_as("alice", "alice-pw").await.expect("alice");
    let bob = s.connect_as("bob", "bob-pw").await.expect("bob");
    let carl = s.connect_as("carl", "carl-pw").await.expect("carl");
    // alice's row filter applies on top of the view's rows; another month is the same view.
    assert!(plan_text(&alice, &q("2024-02")).await.contains("by_month"));
    let a = answer(&alice, &q("2024-01")).await;
    assert_eq!(
        a,
        vec![vec![Some("EU".into()), Some("11".into()), Some("2".into())]]
    );
    assert_eq!(answer(&alice, &q("2024-02")).await.len(), 1);
    // carl runs the same text right after alice: his own rows, never alice's cached ones.
    let c1 = answer(&carl, &q("2024-01")).await;
    assert_eq!(
        c1,
        vec![vec![Some("US".into()), Some("5".into()), Some("1".into())]]
    );
    // bob's mask on amount is not expressible over the view: not answered from it.
    assert!(!plan_text(&bob, &q("2024-01")).await.contains("by_month"));
    answer(&bob, &q("2024-01")).await;
    // Read directly, the view gives each user what their policies on its source give them:
    // alice's row filter applies through the view's region column ...
    assert_eq!(
        rows(
            &alice,
            "SELECT region, count(*) FROM shop.by_month GROUP BY region ORDER BY region"
        )
        .await,
        vec![vec![Some("EU".into()), Some("2".into())]]
    );
    // ... and bob's mask on amount cannot apply to sums computed from raw amounts: refused.
    let err = bob
        .simple_query("SELECT * FROM shop.by_month")
        .await
        .expect_err("refused");
    assert_eq!(err.code().map(|c| c.code()), Some("42501"));
    // A write makes the view stale: the answers follow the table at once.
    admin
        .batch_execute("INSERT INTO shop.sales VALUES ('EU','2024-01',100)")
        .await
        .expect("insert");
    assert!(!plan_text(&alice, &q("2024-01")).await.contains("by_month"));
    assert_eq!(
        answer(&alice, &q("2024-01")).await,
        vec![vec![
            Some("EU".into()),
            Some("111".into()),
            Some("3".into())
        ]]
    );
    // The refresh reads only the new rows (appends), and the view answers again.
    admin
        .batch_execute("REFRESH MATERIALIZED VIEW shop.by_month")
        .await
        .expect("refresh");
    let state = rows(
        &admin,
        "SELECT freshness, last_refresh_incremental, sources FROM lakegate.materialized_views",
    )
    .await;
    assert_eq!(state[0][0].as_deref(), Some("fresh"));
    assert_eq!(state[0][1].as_deref(), Some("t"));
    assert!(plan_text(&alice, &q("2024-01")).await.contains("by_month"));
    assert_eq!(
        answer(&alice, &q("2024-01")).await[0][1].as_deref(),
        Some("111")
    );
    // The cache answers a repeated query, and says so.
    let before = rows(&admin, "SELECT hits FROM lakegate.cache_stats").await[0][0]
        .clone()
        .and_then(|h| h.parse::<i64>().ok())
        .unwrap_or(0);
    for _ in 0..3 {
        rows(&alice, &q("2024-02")).await;
    }
    let after = rows(&admin, "SELECT hits FROM lakegate.cache_stats").await[0][0]
        .clone()
        .and_then(|h| h.parse::<i64>().ok())
        .unwrap_or(0);
    assert!(after >= before + 2, "cache hits {before} -> {after}");
    s.stop().await;
}

#[tokio::test]
async fn averages_refresh_incrementally_and_answer_pinned_groups_for_each_user() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = server(&tmp).await;
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE SCHEMA shop; \
             CREATE TABLE shop.sales (region TEXT, month TEXT, amount DECIMAL(12,2)); \
             INSERT INTO shop.sales VALUES ('EU','2024-01',10.10),('EU','2024-01',1.01),\
               ('US','2024-01',5),('EU','2024-02',20),('US','2024-02',NULL); \
             CREATE MATERIALIZED VIEW shop.sales_avg AS SELECT region, month, avg(amount) AS mean, \
               count(*) AS n FROM shop.sales GROUP BY region, month",
        )
        .await
        .expect("setup");
    let q = |month: &str| {
        format!(
            "SELECT region, avg(amount)::text AS mean, count(*) AS n FROM shop.sales \
             WHERE month = '{month}' GROUP BY region ORDER BY region"
        )
    };
    let alice = s.connect_as("alice", "alice-pw").await.expect("alice");
    for round in 0..2 {
        // Each group of the query is one row of the view (the month is fixed): its AVG as is.
        assert!(plan_text(&admin, &q("2024-01")).await.contains("sales_avg"));
        assert!(plan_text(&alice, &q("2024-01")).await.contains("sales_avg"));
        let all = answer(&admin, &q("2024-01")).await;
        let eu = answer(&alice, &q("2024-01")).await;
        assert_eq!(eu.len(), 1, "{eu:?}");
        assert_eq!(all.len(), if round == 0 { 2 } else { 3 }, "{all:?}");
        answer(&admin, &q("2024-02")).await;
        answer(&alice, &q("2024-02")).await;
        // Appends: the averages follow from the new rows alone.
        admin
            .batch_execute(
                "INSERT INTO shop.sales VALUES ('EU','2024-01',0.03),('AS','2024-01',3),\
                   ('US','2024-02',2.50); \
                 REFRESH MATERIALIZED VIEW shop.sales_avg",
            )
            .await
            .expect("append and refresh");
        assert_eq!(
            rows(
                &admin,
                "SELECT freshness, last_refresh_incremental FROM lakegate.materialized_views \
                 WHERE name = 'sales_avg'"
            )
            .await,
            vec![vec![Some("fresh".into()), Some("t".into())]]
        );
    }
    assert_eq!(
        answer(&admin, &q("2024-01")).await[1],
        vec![Some("EU".into()), Some("2.792500".into()), Some("4".into())]
    );
}

#[tokio::test]
async fn repeated_queries_answer_from_memory_yet_follow_writes_settings_and_policies() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = server(&tmp).await;
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE SCHEMA shop; CREATE SCHEMA other; \
             CREATE TABLE shop.sales (region TEXT, month TEXT, amount BIGINT); \
             INSERT INTO shop.sales VALUES ('EU','2024-01',10),('US','2024-01',5),('EU','2024-02',1); \
             CREATE TABLE other.sales (region TEXT, month TEXT, amount BIGINT); \
             INSERT INTO other.sales VALUES ('EU','2024-01',1000); \
             CREATE SCHEMA third; \
             CREATE TABLE third.sales (region TEXT, month TEXT, amount BIGINT); \
             INSERT INTO third.sales VALUES ('EU','2024-01',2000)",
        )
        .await
        .expect("setup");
    let alice = s.connect_as("alice", "alice-pw").await.expect("alice");
    let q = alice
        .prepare("SELECT count(*), sum(amount) FROM shop.sales WHERE amount > $1")
        .await
        .expect("prepare");
    let run = |p: i64| {
        let (alice, q) = (&alice, &q);
        async move {
            let r = alice.query_one(q, &[&p]).await.expect("execute");
            (r.get::<_, i64>(0), r.get::<_, Option<i64>>(1))
        }
    };
    for _ in 0..3 {
        // Alice's row filter (EU) applies every time, planned or not.
        assert_eq!(run(0).await, (2, Some(11)));
        assert_eq!(run(5).await, (1, Some(10)));
    }
    admin
        .batch_execute("INSERT INTO shop.sales VALUES ('EU','2024-03',7),('US','2024-03',70)")
        .await
        .expect("append");
    assert_eq!(run(0).await, (3, Some(18)));
    assert_eq!(run(0).await, (3, Some(18)));
    // A policy change applies to the next execution.
    std::fs::write(
        tmp.path().join("policies/p.toml"),
        POLICIES.replace("region = \"EU\"", "region = \"US\""),
    )
    .expect("policies");
    assert_eq!(run(0).await, (2, Some(75)));
    // Settings: the same text reads another table on another search_path.
    let sql = "SELECT sum(amount) FROM sales";
    admin
        .batch_execute("SET search_path = shop")
        .await
        .expect("set");
    let sum = async || {
        admin
            .query_one(sql, &[])
            .await
            .expect("sum")
            .get::<_, Option<i64>>(0)
    };
    assert_eq!(sum().await, Some(93));
    assert_eq!(sum().await, Some(93));
    admin
        .batch_execute("SET search_path = other")
        .await
        .expect("set");
    assert_eq!(sum().await, Some(1000));
    // Another table of the same name, shape and version: never the other's cached result.
    admin
        .batch_execute("SET search_path = third")
        .await
        .expect("set");
    assert_eq!(sum().await, Some(2000));
    let other = s.connect().await;
    other
        .batch_execute("SET search_path = other")
        .await
        .expect("set");
    assert_eq!(
        other
            .query_one(sql, &[])
            .await
            .expect("sum")
            .get::<_, Option<i64>>(0),
        Some(1000)
    );
    // Each execution left its record, with what it read and the policies that applied.
    let records = rows(
        &admin,
        "SELECT array_to_string(reads, ','), array_to_string(policies, ',') FROM lakegate.audit_log \
         WHERE principal = 'alice' AND statement LIKE 'SELECT count(*)%'",
    )
    .await;
    assert_eq!(records.len(), 9, "{records:?}");
    for r in &records {
        assert_eq!(r[0].as_deref(), Some("shop.sales"), "{r:?}");
        assert!(
            r[1].as_deref().unwrap_or("").contains("sales_by_region"),
            "{r:?}"
        );
    }
    let hits = rows(&admin, "SELECT hits FROM lakegate.cache_stats").await;
    assert!(
        hits[0][0]
            .as_deref()
            .unwrap_or("0")
            .parse::<u64>()
            .unwrap_or(0)
            >= 5,
        "{hits:?}"
    );
}
