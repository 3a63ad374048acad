//! The cost of governance: the same queries run as an administrator (no policies), as a user
//! whose row filter and masks apply (through the secure scan), and as an administrator with that
//! filter and those masks written into the query by hand. The secure scan should cost little
//! beyond evaluating the filter and masks themselves: `governed / by hand` near 1.
//!
//! `cargo bench --bench governance` (release; `-- --rows N` to change the table's size), or
//! `cargo bench --profile dev --bench governance` for a quick look. Prints medians and ratios
//! measured in this one process; no absolute time is asserted anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark may stop at the first surprise

use std::time::{Duration, Instant};

use lakegate::config::{Config, Secret, UserConfig};
use lakegate::server::Server;
use tokio_postgres::{Client, NoTls};

const POLICIES: &str = r#"
[[principal]]
name = "bench"
roles = ["analyst"]
attributes = { region = "EU" }

[[grant]]
to = "analyst"
on = "b.*"
actions = ["read"]

[[row_filter]]
table = "b.t"
to = "analyst"
filter = "region = $region"

[[mask]]
table = "b.t"
column = "ssn"
to = "analyst"
kind = "partial"
prefix = "***-**-"
keep_last = 4

[[mask]]
table = "b.t"
column = "salary"
to = "analyst"
kind = "nullify"
"#;

/// (name, query as the governed user, the same by hand as the administrator)
const QUERIES: &[(&str, &str, &str)] = &[
    // The fixed cost of a statement (policy refresh, planning, the audit record).
    ("no table", "SELECT 1", "SELECT 1"),
    (
        "count",
        "SELECT count(*) FROM b.t",
        "SELECT count(*) FROM b.t WHERE region = 'EU'",
    ),
    (
        "group by",
        "SELECT dept, count(*), max(salary), min(ssn) FROM b.t GROUP BY dept",
        "SELECT dept, count(*), max(CAST(NULL AS INT)), min(concat('***-**-', right(ssn, 4))) \
         FROM b.t WHERE region = 'EU' GROUP BY dept",
    ),
    (
        "rows",
        "SELECT id, ssn, salary FROM b.t WHERE id % 50 = 0",
        "SELECT id, concat('***-**-', right(ssn, 4)), CAST(NULL AS INT) FROM b.t \
         WHERE region = 'EU' AND id % 50 = 0",
    ),
    (
        "join",
        "SELECT count(*) FROM b.t a JOIN b.t c ON a.id = c.id + 1",
        "SELECT count(*) FROM (SELECT * FROM b.t WHERE region = 'EU') a \
         JOIN (SELECT * FROM b.t WHERE region = 'EU') c ON a.id = c.id + 1",
    ),
];

async fn connect(port: u16, user: &str, password: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user={user} password={password} dbname=lakegate"),
        NoTls,
    )
    .await
    .expect("connects");
    tokio::spawn(conn);
    client
}

async fn median(c: &Client, sql: &str, runs: usize) -> Duration {
    c.simple_query(sql).await.expect(sql); // warm-up
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        c.simple_query(sql).await.expect(sql);
        times.push(t.elapsed());
    }
    times.sort();
    times[runs / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let runs = 7;
    let tmp = tempfile::tempdir().expect("tmp");
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).expect("dir");
    std::fs::write(policies.join("bench.toml"), POLICIES).expect("policies");
    std::fs::write(tmp.path().join("pw"), "bench-pw").expect("pw");
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.storage.warehouse = tmp.path().join("wh").display().to_string();
    c.auth.admin_password = Some(Secret("admin-pw".into()));
    c.auth.users = vec![UserConfig {
        name: "bench".into(),
        password_file: Some(tmp.path().join("pw")),
        password_env: None,
        admin: false,
    }];
    c.policy.dir = policies;
    let server = Server::bind(c.validate().expect("config"))
        .await
        .expect("binds");
    let port = server.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let admin = connect(port, "lakegate", "admin-pw").await;
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA b; \
             CREATE TABLE b.t AS SELECT value AS id, \
               concat(CAST(100 + value % 900 AS TEXT), '-', CAST(10 + value % 90 AS TEXT), '-', CAST(1000 + value % 9000 AS TEXT)) AS ssn, \
               CAST(30000 + (value * 7919) % 150000 AS INT) AS salary, \
               CASE value % 4 WHEN 0 THEN 'eng' WHEN 1 THEN 'ops' WHEN 2 THEN 'hr' ELSE 'sales' END AS dept, \
               CASE value % 3 WHEN 0 THEN 'EU' WHEN 1 THEN 'US' ELSE 'APAC' END AS region \
             FROM generate_series(1, {rows})"
        ))
        .await
        .expect("the table");
    let governed = connect(port, "bench", "bench-pw").await;
    println!("governance benchmark: {rows} rows, median of {runs} runs each");
    println!(
        "{:<10} {:>12} {:>12} {:>12} {:>16} {:>16}",
        "query", "raw ms", "by hand ms", "governed ms", "governed/hand", "governed/raw"
    );
    for (name, sql, by_hand) in QUERIES {
        let raw = median(&admin, sql, runs).await;
        let hand = median(&admin, by_hand, runs).await;
        let gov = median(&governed, sql, runs).await;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{name:<10} {:>12.1} {:>12.1} {:>12.1} {:>16.2} {:>16.2}",
            ms(raw),
            ms(hand),
            ms(gov),
            ms(gov) / ms(hand),
            ms(gov) / ms(raw)
        );
    }
    let _ = stop.send(());
    let _ = task.await;
}
