//! Governance on the paths around the query: EXPLAIN in every format and option shows a user
//! bound by policies the plan above each secure scan and nothing computed below it (no policy
//! bodies, no statistics or metrics over hidden rows).

use crate::common::TestServer;

const POLICIES: &str = r##"
[[principal]]
name = "alice"
[principal.attributes]
zone = "ZONE_Q"

[[grant]]
to = "alice"
on = "hr.*"
actions = ["read"]

[[row_filter]]
name = "own_zone"
table = "hr.emp"
to = "alice"
filter = "zone = $zone"

[[mask]]
name = "ssn_tail"
table = "hr.emp"
column = "ssn"
to = "alice"
kind = "partial"
prefix = "#MASK#"
keep_last = 2
"##;

async fn text(c: &tokio_postgres::Client, sql: &str) -> String {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .filter_map(|i| r.get(i).map(String::from))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn explain_in_every_format_and_option_stops_at_the_secure_scan() {
    let (s, _tmp) = TestServer::start_with_policies(POLICIES).await;
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE SCHEMA hr; CREATE TABLE hr.emp (id BIGINT, ssn TEXT, salary BIGINT, zone TEXT); \
             INSERT INTO hr.emp VALUES (1, '111-22-3333', 10, 'ZONE_Q'), (2, '222-33-4444', 20, 'ZONE_Q'), \
             (987654321, '555-66-7777', 123456789, 'ZONE_X')",
        )
        .await
        .expect("setup");
    let alice = s.connect_as("alice", "alice-pw").await.expect("alice");
    let query = "SELECT id, ssn FROM hr.emp WHERE id > 0 ORDER BY id";
    for options in [
        "",
        "VERBOSE",
        "FORMAT INDENT",
        "FORMAT TREE",
        "FORMAT PGJSON",
        "FORMAT GRAPHVIZ",
        "ANALYZE",
        "ANALYZE VERBOSE",
    ] {
        let sql = format!("EXPLAIN {options} {query}");
        let plan = text(&alice, &sql).await;
        assert!(plan.contains("SecureScan"), "{sql}: {plan}");
        if !options.contains("TREE") && !options.contains("ANALYZE") {
            assert!(plan.contains("own_zone"), "{sql}: {plan}");
        }
        for secret in [
            "ZONE_Q",
            "ZONE_X",
            "#MASK#",
            "987654321",
            "123456789",
            "right(",
            "zone =",
            "files_",
            "555-66",
        ] {
            assert!(!plan.contains(secret), "{sql} shows {secret}: {plan}");
        }
    }
    // The administrator sees the whole plan.
    let plan = text(&admin, &format!("EXPLAIN VERBOSE {query}")).await;
    assert!(plan.contains("TableScan"), "{plan}");
    // And alice's answer is what her policies give.
    let rows = alice.query(query, &[]).await.expect("rows");
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, "#MASK#33".into()), (2, "#MASK#44".into())]);
    s.stop().await;
}
