//! The `thermacore` command as a user runs it.

use std::process::{Command, Output};

fn thermacore(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thermacore"));
    cmd.args(args).env_remove("THERMACORE_JWT_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run thermacore")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_config_accepts_the_example_and_names_the_bad_key() {
    let ok = thermacore(
        &[
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/thermacore.example.toml"),
        ],
        &[],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("valid (1 tenants"), "{}", text(&ok));

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[tenants]]\nname = \"a\"\n[[tenants.units]]\nname = \"u\"\nlocation = { lat = 91, lon = 0 }\n").expect("write");
    let o = thermacore(&["check-config", bad.to_str().expect("path")], &[]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("bad.toml")
            && t.contains("line 5")
            && t.contains("lat must be within -90..=90, got 91"),
        "{t}"
    );

    let o = thermacore(&["check-config", "/nonexistent/x.toml"], &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("cannot read"), "{}", text(&o));
}

#[test]
fn schema_prints_the_sdl() {
    let o = thermacore(&["schema"], &[]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        thermacore::api::graphql::sdl()
    );
}

#[test]
fn migrate_and_user_add_work_on_a_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("tc.toml");
    std::fs::write(
        &cfg,
        "[storage]\nurl = \"sqlite:data.db\"\n[[tenants]]\nname = \"acme\"\n",
    )
    .expect("write");
    let c = cfg.to_str().expect("path");
    let o = thermacore(&["migrate", "--config", c], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        dir.path().join("data.db").exists(),
        "the SQLite file lives next to the config"
    );
    let user_add = |tenant: &str, username: &str, role: &str| {
        thermacore(
            &[
                "user",
                "add",
                "--config",
                c,
                "--tenant",
                tenant,
                "--username",
                username,
                "--role",
                role,
            ],
            &[("THERMACORE_USER_PASSWORD", "long enough password")],
        )
    };
    let o = user_add("acme", "ann", "operator");
    assert!(o.status.success(), "{}", text(&o));
    let o = user_add("acme", "ann", "operator");
    assert!(
        !o.status.success() && text(&o).contains("already exists"),
        "{}",
        text(&o)
    );
    let o = user_add("nope", "x", "viewer");
    assert!(
        !o.status.success() && text(&o).contains("no tenant named `nope`"),
        "{}",
        text(&o)
    );
    let o = user_add("acme", "x", "root");
    assert!(
        !o.status.success() && text(&o).contains("unknown role"),
        "{}",
        text(&o)
    );
}

#[test]
fn serve_refuses_to_start_without_a_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("tc.toml");
    std::fs::write(&cfg, "[server]\nlisten = \"127.0.0.1:0\"\n").expect("write");
    let o = thermacore(&["serve", "--config", cfg.to_str().expect("path")], &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("THERMACORE_JWT_SECRET"), "{}", text(&o));
    let o = thermacore(
        &["serve", "--config", cfg.to_str().expect("path")],
        &[("THERMACORE_JWT_SECRET", "short")],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("at least 32 characters"), "{}", text(&o));
}
