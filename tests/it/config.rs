//! Shipped config files parse, and unsafe settings are refused at start.

use lakegate::config::{Config, Overrides};

#[test]
fn example_configs_parse_and_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("examples dir") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&p).expect("read");
            let c = Config::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            c.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn public_listen_needs_tls_and_a_real_password() {
    let c = Config::default().apply(&Overrides {
        listen: Some("0.0.0.0:5433".into()),
        data_dir: None,
    });
    let e = c.validate().expect_err("refused").to_string();
    assert!(e.contains("TLS"), "{e}");
    let mut c = Config::default().apply(&Overrides {
        listen: Some("0.0.0.0:5433".into()),
        data_dir: None,
    });
    c.tls.cert = Some("x.crt".into());
    c.tls.key = Some("x.key".into());
    let e = c.validate().expect_err("refused").to_string();
    assert!(e.contains("LAKEGATE_PASSWORD"), "{e}");
}
