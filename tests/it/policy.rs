//! Coarse decisions from the policy files: table grants by user and role, default deny,
//! SET ROLE to granted roles only; every path that reads a table needs its read grant.

use crate::common::{Options, TestServer};

const POLICIES: &str = r#"
[[principal]]
name = "alice"
roles = ["analyst", "hr_writer"]
attributes = { region = "EU" }

[[grant]]
to = "analyst"
on = "hr.*"
actions = ["read"]

[[grant]]
to = "hr_writer"
on = "hr.emp"
actions = ["write"]
"#;

fn code(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

#[tokio::test]
async fn grants_decide_and_nothing_else_is_allowed() {
    let (s, _tmp) = TestServer::start_with_policies(POLICIES).await;
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE SCHEMA hr; CREATE SCHEMA sales; \
             CREATE TABLE hr.emp (id BIGINT, name TEXT); INSERT INTO hr.emp VALUES (1, 'a'); \
             CREATE TABLE hr.other (id BIGINT); \
             CREATE TABLE sales.orders (id BIGINT, amount INTEGER); INSERT INTO sales.orders VALUES (1, 10); \
             CREATE VIEW hr.leak AS SELECT * FROM sales.orders",
        )
        .await
        .expect("setup as admin");
    let alice = s.connect_as("alice", "alice-pw").await.expect("alice");
    let n: i64 = alice
        .query_one("SELECT count(*) FROM hr.emp", &[])
        .await
        .expect("granted read")
        .get(0);
    assert_eq!(n, 1);
    // Every way of reading sales.orders is refused.
    for sql in [
        "SELECT * FROM sales.orders",
        "SELECT e.id FROM hr.emp e JOIN sales.orders o ON o.id = e.id",
        "SELECT id FROM hr.emp WHERE id IN (SELECT id FROM sales.orders)",
        "WITH o AS (SELECT * FROM sales.orders) SELECT count(*) FROM o",
        "SELECT id FROM hr.emp UNION ALL SELECT id FROM sales.orders",
        "SELECT * FROM hr.leak",
        "SELECT * FROM sales.orders FOR VERSION AS OF 1",
        "SELECT * FROM table_history('sales.orders')",
        "EXPLAIN SELECT * FROM sales.orders",
        "INSERT INTO hr.emp SELECT id, 'x' FROM sales.orders",
        "CREATE TABLE hr.copy AS SELECT * FROM sales.orders",
    ] {
        let e = alice.simple_query(sql).await.expect_err(sql);
        assert_eq!(code(&e), Some("42501"), "{sql}: {e:?}");
        assert!(
            format!("{e:?}").contains("permission denied for table"),
            "{sql}: {e:?}"
        );
    }
    // Listings show only what alice may read.
    let listed: Vec<String> = alice
        .query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema IN ('hr', 'sales') ORDER BY 1",
            &[],
        )
        .await
        .expect("listing")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(listed, vec!["hr.emp", "hr.leak", "hr.other"]);
    let listed: i64 = admin
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('hr', 'sales')",
            &[],
        )
        .await
        .expect("admin listing")
        .get(0);
    assert_eq!(listed, 4);
    // Prepared statements are checked too.
    let e = alice
        .prepare("SELECT * FROM sales.orders WHERE id = $1")
        .await
        .expect_err("prepare");
    assert_eq!(code(&e), Some("42501"));
    // Writes need a write grant (alice holds hr_writer's, on hr.emp only), DDL an admin grant.
    alice
        .batch_execute("UPDATE hr.emp SET name = 'A' WHERE id = 1")
        .await
        .expect("write through a role held");
    for sql in [
        "INSERT INTO hr.other VALUES (2)",
        "UPDATE hr.other SET id = 3",
        "DELETE FROM hr.other",
        "CREATE TABLE hr.mine (a INT)",
        "DROP TABLE hr.emp",
        "ALTER TABLE hr.emp ADD COLUMN c INT",
        "OPTIMIZE hr.emp",
        "CREATE SCHEMA other",
    ] {
        let e = alice.simple_query(sql).await.expect_err(sql);
        assert_eq!(code(&e), Some("42501"), "{sql}: {e:?}");
    }
    // SET ROLE to a held role adds that role's grants and takes none of the user's away;
    // others cannot be taken.
    let e = alice
        .simple_query("SET ROLE dba")
        .await
        .expect_err("not granted");
    assert_eq!(code(&e), Some("42501"));
    alice
        .batch_execute("SET ROLE hr_writer; INSERT INTO hr.emp VALUES (2, 'b')")
        .await
        .expect("the role may write");
    alice
        .simple_query("SELECT * FROM hr.emp")
        .await
        .expect("alice's own read grant still counts under the role");
    alice
        .batch_execute("RESET ROLE")
        .await
        .expect("back to the user");
    let n: i64 = alice
        .query_one("SELECT count(*) FROM hr.emp", &[])
        .await
        .expect("read again")
        .get(0);
    assert_eq!(n, 2);
    s.stop().await;
}

#[tokio::test]
async fn a_policy_folder_that_does_not_parse_stops_the_server() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("policies");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("bad.toml"), "[[grant]]\nto = \"x\"\n").expect("file");
    let mut c = crate::common::config(&Options::default(), &tmp.path().join("wh"));
    c.policy.dir = dir;
    let settings = c.validate().expect("config is fine");
    let e = lakegate::server::Server::bind(settings)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("bad.toml"), "{e}");
}

const HR_POLICIES: &str = r#"
[[principal]]
name = "alice"
roles = ["analyst"]
attributes = { region = "EU" }

[[grant]]
to = "analyst"
on = "hr.*"
actions = ["read"]

[[row_filter]]
name = "emp_by_region"
table = "hr.emp"
to = "analyst"
filter = "region = $region"

[[mask]]
name = "ssn_last4"
table = "hr.emp"
column = "ssn"
to = "analyst"
kind = "partial"
prefix = "***-**-"
keep_last = 4

[[mask]]
table = "hr.emp"
column = "salary"
to = "analyst"
kind = "nullify"

[[mask]]
table = "hr.emp"
column = "dob"
to = "analyst"
kind = "year"

[[mask]]
table = "hr.emp"
column = "name"
to = "analyst"
kind = "redact"
value = "(hidden)"
unless = "consent"
"#;

#[tokio::test]
async fn row_filters_and_masks_hold_behind_the_secure_scan() {
    let (s, _tmp) = TestServer::start_with_policies(HR_POLICIES).await;
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE SCHEMA hr; \
             CREATE TABLE hr.emp (id BIGINT, name TEXT, ssn TEXT, salary INTEGER, region TEXT, dob DATE, consent BOOLEAN); \
             INSERT INTO hr.emp VALUES \
               (1, 'Ann', '123-45-6789', 5000, 'EU', '1990-05-17', true), \
               (2, 'Bob', '987-65-4321', 6000, 'EU', '1985-11-02', false), \
               (3, 'Cy', '555-55-5555', 9000, 'US', '1970-01-01', true); \
             CREATE VIEW hr.v AS SELECT * FROM hr.emp",
        )
        .await
        .expect("setup");
    let alice = s.connect_as("alice", "alice-pw").await.expect("alice");
    let rows = alice
        .query(
            "SELECT id, name, ssn, salary, dob::text FROM hr.emp ORDER BY id",
            &[],
        )
        .await
        .expect("read");
    let got: Vec<(i64, String, String, Option<i32>, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                1,
                "Ann".into(),
                "***-**-6789".into(),
                None,
                "1990-01-01".into()
            ),
            (
                2,
                "(hidden)".into(),
                "***-**-4321".into(),
                None,
                "1985-01-01".into()
            ),
        ]
    );
    let count = |sql: &'static str| {
        let c = &alice;
        async move { c.query_one(sql, &[]).await.map(|r| r.get::<_, i64>(0)) }
    };
    // The same through a view, a CTE, a subquery, aliases, UNION, time travel and a prepared statement.
    for sql in [
        "SELECT count(*) FROM hr.v",
        "WITH e AS (SELECT * FROM hr.emp) SELECT count(*) FROM e",
        "SELECT count(*) FROM (SELECT * FROM hr.emp x) y",
        "SELECT count(*) FROM (SELECT id FROM hr.emp UNION ALL SELECT id FROM hr.emp WHERE region = 'US') u",
        "SELECT count(*) FROM hr.emp FOR VERSION AS OF 1",
        "SELECT count(*) FROM hr.emp e1 JOIN hr.emp e2 ON e1.id = e2.id",
    ] {
        let n = count(sql).await.expect(sql);
        assert!(n <= 4 && n % 2 == 0, "{sql}: {n}");
    }
    assert_eq!(
        count("SELECT count(*) FROM hr.emp WHERE region = 'US'")
            .await
            .expect("us"),
        0
    );
    // Predicates see masked values: the raw salary and ssn cannot be probed.
    assert_eq!(
        count("SELECT count(*) FROM hr.emp WHERE salary > 0")
            .await
            .expect("salary"),
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM hr.emp WHERE ssn = '123-45-6789'")
            .await
            .expect("ssn"),
        0
    );
    // A predicate that would fail on a hidden row raises nothing: it never sees that row.
    assert_eq!(
        count(
            "SELECT count(*) FROM hr.emp WHERE 10 / CASE WHEN region = 'US' THEN 0 ELSE 1 END > 1"
        )
        .await
        .expect("no division by zero from a hidden row"),
        2
    );
    let stmt = alice
        .prepare("SELECT count(*) FROM hr.emp WHERE id = $1")
        .await
        .expect("prepare");
    let n: i64 = alice.query_one(&stmt, &[&3i64]).await.expect("run").get(0);
    assert_eq!(n, 0, "a prepared statement is filtered too");
    // SET cannot change attributes.
    alice
        .batch_execute("SET application_name = 'region=US'")
        .await
        .expect("set");
    assert_eq!(
        count("SELECT count(*) FROM hr.emp").await.expect("count"),
        2
    );
    // EXPLAIN names the policies but shows none of their bodies; history is refused.
    let plan: Vec<String> = alice
        .query("EXPLAIN SELECT * FROM hr.emp", &[])
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("SecureScan"), "{plan}");
    assert!(plan.contains("emp_by_region"), "{plan}");
    assert!(!plan.contains("EU") && !plan.contains("***"), "{plan}");
    let e = alice
        .simple_query("SELECT * FROM table_history('hr.emp')")
        .await
        .expect_err("history");
    assert_eq!(code(&e), Some("42501"));
    // The administrator sees everything raw.
    let n: i64 = admin
        .query_one("SELECT count(*) FROM hr.emp WHERE salary > 0", &[])
        .await
        .expect("admin")
        .get(0);
    assert_eq!(n, 3);
    s.stop().await;
}

const WRITER_POLICIES: &str = r#"
[[principal]]
name = "alice"
roles = ["clerk"]
attributes = { region = "EU" }

[[grant]]
to = "clerk"
on = "hr.emp"
actions = ["read", "write"]

[[row_filter]]
table = "hr.emp"
to = "clerk"
filter = "region = $region"

[[mask]]
table = "hr.emp"
column = "ssn"
to = "clerk"
kind = "redact"
"#;

#[tokio::test]
async fn writes_stay_inside_the_writers_row_filter_and_off_masked_columns() {
    let (s, _tmp) = TestServer::start_with_policies(WRITER_POLICIES).await;
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE SCHEMA hr; CREATE TABLE hr.emp (id BIGINT, name TEXT, ssn TEXT, region TEXT); \
             INSERT INTO hr.emp VALUES (1, 'a', '111', 'EU'), (2, 'b', '222', 'EU'), (3, 'c', '333', 'US')",
        )
        .await
        .expect("setup");
    let alice = s.connect_as("alice", "alice-pw").await.expect("alice");
    alice
        .execute(
            "INSERT INTO hr.emp (id, name, region) VALUES (4, 'd', 'EU')",
            &[],
        )
        .await
        .expect("a row inside the filter");
    for (sql, message) in [
        (
            "INSERT INTO hr.emp (id, name, region) VALUES (5, 'e', 'US')",
            "new row violates row-level security policy",
        ),
        (
            "INSERT INTO hr.emp (id, ssn, region) VALUES (6, '666', 'EU')",
            "permission denied for column ssn",
        ),
        (
            "INSERT INTO hr.emp SELECT id + 100, name, ssn, region FROM hr.emp",
            "permission denied for column ssn",
        ),
        (
            "UPDATE hr.emp SET region = 'US' WHERE id = 1",
            "row-level security policy",
        ),
        (
            "UPDATE hr.emp SET ssn = 'x'",
            "permission denied for column ssn",
        ),
        (
            "MERGE INTO hr.emp t USING hr.emp s ON t.id = s.id WHEN MATCHED THEN DELETE",
            "MERGE is not allowed",
        ),
    ] {
        let e = alice.simple_query(sql).await.expect_err(sql);
        assert_eq!(code(&e), Some("42501"), "{sql}: {e:?}");
        assert!(format!("{e:?}").contains(message), "{sql}: {e:?}");
    }
    let n = alice
        .execute("UPDATE hr.emp SET name = 'z'", &[])
        .await
        .expect("update");
    assert_eq!(n, 3, "only the rows alice sees");
    let n = alice
        .execute("DELETE FROM hr.emp", &[])
        .await
        .expect("delete");
    assert_eq!(n, 3);
    let rows = admin
        .query("SELECT id, name, ssn FROM hr.emp ORDER BY id", &[])
        .await
        .expect("admin");
    let got: Vec<(i64, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![(3, "c".into(), "333".into())],
        "the US row untouched"
    );
    s.stop().await;
}

#[tokio::test]
async fn keyed_hash_tokens_join_but_do_not_reveal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("policies");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("h.toml"),
        r#"
[[principal]]
name = "alice"
roles = ["hr"]

[[grant]]
to = "hr"
on = "hr.*"
actions = ["read"]

[[mask]]
table = "hr.*"
column = "ssn"
to = "hr"
kind = "hash"
"#,
    )
    .expect("policy file");
    let key = tmp.path().join("mask-key");
    std::fs::write(&key, "a server secret").expect("key");
    let s = TestServer::start_with(Options::default(), |c| {
        c.policy.dir = dir.clone();
        c.policy.mask_key_file = Some(key.clone());
    })
    .await;
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE SCHEMA hr; CREATE TABLE hr.emp (id BIGINT, ssn TEXT); CREATE TABLE hr.pay (ssn TEXT, amount INT); \
             INSERT INTO hr.emp VALUES (1, '123-45-6789'), (2, '987-65-4321'); \
             INSERT INTO hr.pay VALUES ('123-45-6789', 10), ('123-45-6789', 20)",
        )
        .await
        .expect("setup");
    let alice = s.connect_as("alice", "alice-pw").await.expect("alice");
    let rows = alice
        .query("SELECT id, ssn FROM hr.emp ORDER BY id", &[])
        .await
        .expect("read");
    let tokens: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
    assert!(
        tokens.iter().all(|t| t.len() == 64 && !t.contains('-')),
        "{tokens:?}"
    );
    assert_ne!(tokens[0], tokens[1]);
    // Equal values stay joinable.
    let n: i64 = alice
        .query_one(
            "SELECT sum(p.amount)::bigint FROM hr.emp e JOIN hr.pay p ON p.ssn = e.ssn WHERE e.id = 1",
            &[],
        )
        .await
        .expect("join on tokens")
        .get(0);
    assert_eq!(n, 30);
    // Hashing a guess without the key finds nothing.
    let n: i64 = alice
        .query_one(
            "SELECT count(*) FROM hr.emp WHERE ssn = encode(sha256('123-45-6789'), 'hex')",
            &[],
        )
        .await
        .expect("guess")
        .get(0);
    assert_eq!(n, 0);
    s.stop().await;
}

/// examples/hr as shipped (run from the repository root, as its README says), on a temp
/// warehouse and an ephemeral port.
#[tokio::test]
async fn the_hr_example_governs_ana_hiro_and_the_auditor() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/hr/lakegate.toml")).expect("config");
    let mut c = lakegate::config::Config::from_toml(&text).expect("parses");
    let tmp = tempfile::tempdir().expect("tmp");
    c.server.listen = "127.0.0.1:0".into();
    c.storage.warehouse = tmp.path().join("wh").display().to_string();
    let rel = |p: &std::path::Path| root.join(p);
    c.auth.admin_password_file = c.auth.admin_password_file.as_deref().map(rel);
    for u in &mut c.auth.users {
        u.password_file = u.password_file.as_deref().map(rel);
    }
    c.policy.dir = rel(&c.policy.dir);
    c.policy.mask_key_file = c.policy.mask_key_file.as_deref().map(rel);
    c.demo.setup_sql = c.demo.setup_sql.as_deref().map(rel);
    let server = lakegate::server::Server::bind(c.validate().expect("valid"))
        .await
        .expect("binds");
    let port = server.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = server
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    let connect = |user: &'static str| async move {
        let (client, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={port} user={user} password={user} dbname=lakegate"),
            tokio_postgres::NoTls,
        )
        .await
        .expect(user);
        tokio::spawn(conn);
        client
    };
    let admin = connect("admin").await;
    let all: i64 = admin
        .query_one("SELECT count(*) FROM hr.emp", &[])
        .await
        .expect("admin")
        .get(0);
    let ana = connect("ana").await;
    let rows = ana
        .query("SELECT region, ssn, salary, dob::text FROM hr.emp", &[])
        .await
        .expect("ana");
    assert!(!rows.is_empty() && (rows.len() as i64) < all);
    for r in &rows {
        assert_eq!(r.get::<_, String>(0), "EU");
        assert!(r.get::<_, String>(1).starts_with("***-**-"));
        assert_eq!(r.get::<_, Option<i32>>(2), None);
        assert!(r.get::<_, String>(3).ends_with("-01-01"));
    }
    // COPY TO carries what a SELECT shows: EU rows, masked.
    let out = {
        use futures::TryStreamExt;
        let stream = ana
            .copy_out("COPY hr.emp (region, ssn, salary) TO STDOUT (FORMAT csv)")
            .await
            .expect("ana copies");
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await.expect("copy rows");
        String::from_utf8_lossy(&chunks.concat()).to_string()
    };
    assert_eq!(out.lines().count(), rows.len());
    for line in out.lines() {
        assert!(
            line.starts_with("EU,***-**-") && line.ends_with(','),
            "{line}"
        );
    }
    // A table made from hr.emp inherits its columns' tags, so the masks by tag follow the data
    // (whatever the columns are called now); and an administrator may tag columns.
    admin
        .batch_execute(
            "CREATE TABLE hr.emp_copy AS SELECT id, ssn AS tin, salary * 2 AS pay, region FROM hr.emp; \
             CREATE TABLE hr.notes (id BIGINT, phone TEXT); INSERT INTO hr.notes VALUES (1, '555-0100'); \
             ALTER TABLE hr.notes SET TBLPROPERTIES ('lakegate.tags.phone' = 'PII.ssn')",
        )
        .await
        .expect("derived and tagged tables");
    for r in ana
        .query("SELECT tin, pay FROM hr.emp_copy", &[])
        .await
        .expect("ana reads the copy")
    {
        assert!(
            r.get::<_, String>(0).starts_with("***-**-"),
            "inherited PII.ssn"
        );
        // integer * 2 is an integer, as in PostgreSQL.
        assert_eq!(r.get::<_, Option<i32>>(1), None, "inherited FIN");
    }
    let phone: String = ana
        .query_one("SELECT phone FROM hr.notes", &[])
        .await
        .expect("ana reads notes")
        .get(0);
    assert_eq!(phone, "***-**-0100");
    let e = ana
        .simple_query("ALTER TABLE hr.notes SET TBLPROPERTIES ('lakegate.tags.phone' = '')")
        .await
        .expect_err("only administrators tag");
    assert_eq!(code(&e), Some("42501"));
    let e = ana
        .simple_query("UPDATE hr.emp SET name = 'x'")
        .await
        .expect_err("ana writes nothing");
    assert_eq!(code(&e), Some("42501"));
    let hiro = connect("hiro").await;
    let rows = hiro
        .query("SELECT region, ssn, salary FROM hr.emp", &[])
        .await
        .expect("hiro");
    for r in &rows {
        assert_eq!(r.get::<_, String>(0), "APAC");
        assert_eq!(r.get::<_, String>(1).len(), 64, "a token");
        assert!(r.get::<_, Option<i32>>(2).is_some(), "salary raw");
    }
    let n = hiro
        .execute("UPDATE hr.emp SET salary = salary + 1", &[])
        .await
        .expect("hiro raises APAC salaries");
    assert_eq!(n as usize, rows.len());
    // Salary only: no other column, no INSERT or DELETE.
    for sql in [
        "UPDATE hr.emp SET name = 'x'",
        "UPDATE hr.emp SET salary = 1, dept = 'x'",
        "DELETE FROM hr.emp",
        "INSERT INTO hr.emp (id, region) VALUES (999, 'APAC')",
    ] {
        let e = hiro.simple_query(sql).await.expect_err(sql);
        assert_eq!(code(&e), Some("42501"), "{sql}");
    }
    match hiro
        .copy_in::<_, bytes::Bytes>("COPY hr.emp (id, region) FROM STDIN")
        .await
    {
        Err(e) => assert_eq!(code(&e), Some("42501")),
        Ok(_) => panic!("COPY FROM needs a write grant"),
    }
    let auditor = connect("auditor").await;
    let e = auditor
        .simple_query("SELECT * FROM hr.emp")
        .await
        .expect_err("auditor has no access to hr");
    assert_eq!(code(&e), Some("42501"));
    // Every statement left one record; the auditor (and only a named grant) reads them.
    let e = ana
        .simple_query("SELECT * FROM lakegate.audit_log")
        .await
        .expect_err("ana cannot read the audit log");
    assert_eq!(code(&e), Some("42501"));
    let rows = auditor
        .query(
            "SELECT principal, decision, sqlstate, rows, statement, array_to_string(policies, ',') \
             FROM lakegate.audit_log WHERE principal = 'ana' ORDER BY time",
            &[],
        )
        .await
        .expect("the auditor reads the log");
    type Record = (String, String, Option<String>, Option<i64>, String, String);
    let got: Vec<Record> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get::<_, Option<i64>>(3),
                r.get(4),
                r.get(5),
            )
        })
        .collect();
    assert!(got.len() >= 3, "{got:?}");
    let copy = got
        .iter()
        .find(|r| r.4.starts_with("COPY"))
        .expect("ana's COPY is recorded as the COPY");
    assert_eq!(copy.1, "allowed");
    assert!(copy.3.unwrap_or(0) > 0, "its rows are counted: {copy:?}");
    let select = got
        .iter()
        .find(|r| r.4.contains("SELECT region"))
        .expect("ana's SELECT");
    assert_eq!(select.1, "allowed");
    assert!(
        select.3.unwrap_or(0) > 0,
        "rows returned are counted: {select:?}"
    );
    assert!(
        select.5.contains("emp_own_region") && select.5.contains("ssn_last4"),
        "{select:?}"
    );
    let update = got
        .iter()
        .find(|r| r.4.contains("UPDATE"))
        .expect("ana's UPDATE");
    assert_eq!(
        (update.1.as_str(), update.2.as_deref()),
        ("denied", Some("42501"))
    );
    assert!(
        !update.4.contains("'x'"),
        "literals are redacted: {update:?}"
    );
    let denied_log = got
        .iter()
        .find(|r| r.4.contains("audit_log"))
        .expect("the denied read");
    assert_eq!(denied_log.1, "denied");
    let _ = stop.send(());
    let _ = task.await;
}

#[tokio::test]
async fn a_changed_policy_file_applies_to_the_next_statement_and_a_broken_one_keeps_the_old() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("policies");
    std::fs::create_dir_all(&dir).expect("dir");
    let open = "[[grant]]\nto = \"alice\"\non = \"public.*\"\nactions = [\"read\"]\n";
    std::fs::write(dir.join("p.toml"), open).expect("policy file");
    let s = TestServer::start_with(Options::default(), |c| c.policy.dir = dir.clone()).await;
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE t (id BIGINT, region TEXT); INSERT INTO t VALUES (1, 'EU'), (2, 'US'); \
             CREATE SCHEMA other; CREATE TABLE other.t (id BIGINT)",
        )
        .await
        .expect("setup");
    let alice = s.connect_as("alice", "alice-pw").await.expect("alice");
    let stmt = alice
        .prepare("SELECT count(*) FROM t")
        .await
        .expect("prepare");
    let n: i64 = alice.query_one(&stmt, &[]).await.expect("run").get(0);
    assert_eq!(n, 2);
    // A row filter appears: the very next execution of the prepared statement obeys it.
    std::fs::write(
        dir.join("p.toml"),
        format!(
            "{open}\n[[row_filter]]\ntable = \"public.t\"\nto = \"alice\"\nfilter = \"region = 'EU'\"\n"
        ),
    )
    .expect("change");
    let n: i64 = alice.query_one(&stmt, &[]).await.expect("run again").get(0);
    assert_eq!(n, 1);
    // A file that does not parse: the last good policies stay, and the status says why.
    std::fs::write(dir.join("p.toml"), "[[grant]]\nthis is not toml").expect("break");
    let n: i64 = alice
        .query_one(&stmt, &[])
        .await
        .expect("still governed")
        .get(0);
    assert_eq!(n, 1);
    let status: String = alice
        .query_one("SELECT lakegate.policy_status()", &[])
        .await
        .expect("status")
        .get(0);
    // A user learns that the files do not load, never what they say.
    assert!(
        status.starts_with("error:") && !status.contains("p.toml") && !status.contains("this is"),
        "{status}"
    );
    let status: String = admin
        .query_one("SELECT lakegate.policy_status()", &[])
        .await
        .expect("status")
        .get(0);
    assert!(
        status.starts_with("error:") && status.contains("p.toml"),
        "{status}"
    );
    // The grant goes: 42501 at once.
    std::fs::write(dir.join("p.toml"), "# nothing granted\n").expect("revoke");
    let e = alice.query_one(&stmt, &[]).await.expect_err("revoked");
    assert_eq!(code(&e), Some("42501"));
    let status: String = admin
        .query_one("SELECT lakegate.policy_status()", &[])
        .await
        .expect("status")
        .get(0);
    assert!(status.starts_with("ok:"), "{status}");
    // The folder disappears: the policies in force stay (never the allow-all defaults).
    std::fs::write(dir.join("p.toml"), open).expect("grant again");
    let n: i64 = alice.query_one(&stmt, &[]).await.expect("granted").get(0);
    assert_eq!(n, 2);
    std::fs::remove_dir_all(&dir).expect("remove the folder");
    let n: i64 = alice
        .query_one(&stmt, &[])
        .await
        .expect("still the last policies")
        .get(0);
    assert_eq!(n, 2);
    let e = alice
        .query_one("SELECT count(*) FROM other.t", &[])
        .await
        .expect_err("not granted by the last policies");
    assert_eq!(code(&e), Some("42501"), "{e:?}");
    let status: String = admin
        .query_one("SELECT lakegate.policy_status()", &[])
        .await
        .expect("status")
        .get(0);
    assert!(
        status.starts_with("error:") && status.contains("missing"),
        "{status}"
    );
    s.stop().await;
}

#[tokio::test]
async fn denied_columns_are_hidden_everywhere_and_refused_when_named() {
    let (s, _tmp) = TestServer::start_with_policies(
        r#"
[[principal]]
name = "alice"
roles = ["analyst"]

[[grant]]
to = "analyst"
on = "hr.*"
actions = ["read"]

[[mask]]
table = "hr.emp"
column = "ssn"
to = "analyst"
kind = "deny"
"#,
    )
    .await;
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE SCHEMA hr; CREATE TABLE hr.emp (id BIGINT, name TEXT, ssn TEXT); \
             INSERT INTO hr.emp VALUES (1, 'a', '111-22-3333'); \
             CREATE VIEW hr.v AS SELECT id, ssn FROM hr.emp",
        )
        .await
        .expect("setup");
    let alice = s.connect_as("alice", "alice-pw").await.expect("alice");
    let row = alice
        .query_one("SELECT * FROM hr.emp", &[])
        .await
        .expect("select *");
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["id", "name"], "ssn is not there");
    for sql in [
        "SELECT ssn FROM hr.emp",
        "SELECT id FROM hr.emp WHERE ssn = '111-22-3333'",
        "SELECT e.ssn FROM hr.emp e",
        "SELECT count(*) FROM hr.emp GROUP BY ssn",
    ] {
        let e = alice.simple_query(sql).await.expect_err(sql);
        assert_eq!(code(&e), Some("42501"), "{sql}: {e}");
    }
    let cols: Vec<String> = alice
        .query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'emp' ORDER BY ordinal_position",
            &[],
        )
        .await
        .expect("listing")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cols, vec!["id", "name"]);
    let attrs: Vec<String> = alice
        .query(
            "SELECT attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             WHERE c.relname = 'emp' AND a.attnum > 0 ORDER BY a.attnum",
            &[],
        )
        .await
        .expect("pg_attribute")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(attrs, vec!["id", "name"], "pg_attribute leaves it out too");
    // Through a view, or an old version, the column is NULL, never its value.
    let v: Option<String> = alice
        .query_one("SELECT ssn FROM hr.v", &[])
        .await
        .expect("view")
        .get(0);
    assert_eq!(v, None);
    let old = alice
        .simple_query("SELECT * FROM hr.emp FOR VERSION AS OF 1")
        .await
        .expect("time travel");
    for m in old {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            for i in 0..r.len() {
                assert_ne!(r.get(i), Some("111-22-3333"));
            }
        }
    }
    s.stop().await;
}

/// The policy folder is watched for changes (storage::watch): one made after the server
/// started, and one swapped in by a rename (as a deployment replaces a folder atomically),
/// apply to the very next statement like a file changed in place.
#[tokio::test]
async fn a_policy_folder_made_or_swapped_after_start_applies_to_the_next_statement() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("policies");
    let s = TestServer::start_with(Options::default(), |c| c.policy.dir = dir.clone()).await;
    let admin = s.connect().await;
    admin
        .batch_execute("CREATE TABLE t (id BIGINT); INSERT INTO t VALUES (1), (2)")
        .await
        .expect("setup");
    let grant =
        |on: &str| format!("[[grant]]\nto = \"alice\"\non = \"{on}\"\nactions = [\"read\"]\n");
    // No folder yet, though one is configured: nothing is allowed (never the built-in
    // allow-all defaults, which only a server with no policy folder configured runs with).
    let alice = s.connect_as("alice", "alice-pw").await.expect("alice");
    let e = alice
        .prepare("SELECT count(*) FROM t")
        .await
        .expect_err("nothing is allowed without the folder");
    assert_eq!(code(&e), Some("42501"));
    // The folder appears, granting alice another table only.
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("p.toml"), grant("public.other")).expect("policy file");
    let e = alice
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect_err("not granted");
    assert_eq!(code(&e), Some("42501"));
    std::fs::write(dir.join("p.toml"), grant("public.t")).expect("policy file");
    let stmt = alice
        .prepare("SELECT count(*) FROM t")
        .await
        .expect("prepare");
    let n: i64 = alice.query_one(&stmt, &[]).await.expect("granted").get(0);
    assert_eq!(n, 2);
    std::fs::write(dir.join("p.toml"), grant("public.other")).expect("policy file");
    let e = alice.query_one(&stmt, &[]).await.expect_err("not granted");
    assert_eq!(code(&e), Some("42501"));
    // A new folder renamed over it grants t.
    let next = tmp.path().join("policies.next");
    std::fs::create_dir_all(&next).expect("dir");
    std::fs::write(next.join("p.toml"), grant("public.*")).expect("policy file");
    std::fs::rename(&dir, tmp.path().join("policies.old")).expect("move old");
    std::fs::rename(&next, &dir).expect("swap");
    let n: i64 = alice.query_one(&stmt, &[]).await.expect("granted").get(0);
    assert_eq!(n, 2);
    // And a change in place in the swapped-in folder still applies at once.
    std::fs::write(dir.join("p.toml"), "# nothing granted\n").expect("revoke");
    let e = alice.query_one(&stmt, &[]).await.expect_err("revoked");
    assert_eq!(code(&e), Some("42501"));
    s.stop().await;
}
