//! Signed tokens as passwords: a JWT verified against the configured key (issuer, audience,
//! expiry, algorithm), its claims naming the user, its roles and attributes, which the policies
//! then use like any principal's.

use crate::common::{Options, TestServer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const POLICIES: &str = r#"
[[grant]]
to = "analyst"
on = "hr.*"
actions = ["read"]

[[row_filter]]
table = "hr.emp"
to = "analyst"
filter = "region = $region"
"#;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no sqlstate: {e}"))
}

#[tokio::test]
async fn a_signed_token_logs_in_with_its_claims_and_nothing_else_does() {
    let tmp = tempfile::tempdir().expect("tmp");
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).expect("dir");
    std::fs::write(policies.join("p.toml"), POLICIES).expect("policy");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let public = tmp.path().join("idp.pem");
    std::fs::write(&public, key.public_key_pem()).expect("pem");
    let signing = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("signing key");
    let s = TestServer::start_with(Options::default(), |c| {
        c.policy.dir = policies.clone();
        c.auth.jwt = Some(lakegate::config::JwtConfig {
            issuer: "https://idp.test/".into(),
            audience: "lakegate".into(),
            public_key_file: Some(public.clone()),
            attribute_claims: vec!["region".into()],
            allow_without_tls: true,
            ..Default::default()
        });
    })
    .await;
    let admin = s.connect().await;
    admin
        .batch_execute(
            "CREATE SCHEMA hr; CREATE TABLE hr.emp (id BIGINT, region TEXT); \
             INSERT INTO hr.emp VALUES (1, 'EU'), (2, 'EU'), (3, 'US')",
        )
        .await
        .expect("setup");
    let token = |claims: serde_json::Value, alg: Algorithm| {
        jsonwebtoken::encode(&Header::new(alg), &claims, &signing).expect("token")
    };
    let good = |sub: &str| {
        serde_json::json!({
            "sub": sub, "iss": "https://idp.test/", "aud": "lakegate",
            "exp": now() + 600, "roles": ["analyst"], "region": "EU",
        })
    };

    let tina = s
        .connect_as("tina", &token(good("tina"), Algorithm::ES256))
        .await
        .expect("a valid token logs in");
    let row = tina
        .query_one("SELECT current_user, count(*) FROM hr.emp", &[])
        .await
        .expect("reads through the claimed role, filtered by the claimed region");
    assert_eq!(row.get::<_, String>(0), "tina");
    assert_eq!(row.get::<_, i64>(1), 2);
    // Settings never change the claimed attributes.
    let _ = tina.batch_execute("SET region = 'US'").await;
    let row = tina
        .query_one("SELECT count(*) FROM hr.emp WHERE region = 'US'", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, i64>(0), 0);
    assert!(
        tina.batch_execute("CREATE SCHEMA x").await.is_err(),
        "a token never makes an administrator"
    );

    let mut refused = vec![];
    let mut expired = good("tina");
    expired["exp"] = serde_json::json!(now() - 3600);
    refused.push(("expired", "tina", token(expired, Algorithm::ES256)));
    let mut aud = good("tina");
    aud["aud"] = serde_json::json!("someone-else");
    refused.push(("wrong audience", "tina", token(aud, Algorithm::ES256)));
    let mut iss = good("tina");
    iss["iss"] = serde_json::json!("https://evil.test/");
    refused.push(("wrong issuer", "tina", token(iss, Algorithm::ES256)));
    let mut no_exp = good("tina");
    no_exp.as_object_mut().map(|o| o.remove("exp"));
    refused.push(("no expiry", "tina", token(no_exp, Algorithm::ES256)));
    refused.push((
        "another user's token",
        "tom",
        token(good("tina"), Algorithm::ES256),
    ));
    // The public key as an HMAC secret (algorithm confusion).
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good("tina"),
        &EncodingKey::from_secret(key.public_key_pem().as_bytes()).expect("hmac key"),
    )
    .expect("token");
    refused.push(("HS256", "tina", hmac));
    // A changed payload under the old signature.
    let t = token(good("tina"), Algorithm::ES256);
    let parts: Vec<&str> = t.split('.').collect();
    let mut forged = good("tina");
    forged["region"] = serde_json::json!("US");
    let payload = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string())
    };
    refused.push((
        "tampered",
        "tina",
        format!("{}.{payload}.{}", parts[0], parts[2]),
    ));
    refused.push(("garbage", "tina", "not-a-token".into()));
    // A SCRAM user keeps its password: a token for it is just a wrong password.
    refused.push((
        "SCRAM user",
        "alice",
        token(good("alice"), Algorithm::ES256),
    ));
    for (why, user, t) in refused {
        let e = s.connect_as(user, &t).await.expect_err(why);
        assert_eq!(code(&e), "28P01", "{why}");
    }
    s.stop().await;
}
