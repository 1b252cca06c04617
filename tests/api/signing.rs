//! Signed components: with `--component-trust`, only components signed by a
//! trusted minisign key load, whichever way they arrive.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Options, Signer, TestServer, built_component, minisig, run_cli};

fn policy_a() -> Vec<u8> {
    std::fs::read(built_component("guest_auth")).unwrap()
}

fn policy_b() -> Vec<u8> {
    std::fs::read(built_component("guest_admin_delete")).unwrap()
}

/// Options for a server whose component (signed by `signer`) lives in
/// `dir`, trusting `trusted`.
fn trusting(dir: &Path, signer: &Signer, trusted: &[&Signer], watch_ms: u64) -> Options {
    let component = dir.join("policy.wasm");
    signer.install(&component, &policy_a());
    let trust = Signer::trust_file(dir, trusted);
    Options {
        component,
        extra_env: vec![
            (
                "TASKFLOW_COMPONENT_TRUST".into(),
                trust.display().to_string(),
            ),
            ("TASKFLOW_COMPONENT_WATCH_MS".into(), watch_ms.to_string()),
        ],
        ..Options::default()
    }
}

/// `taskflow serve` that must fail at start; returns its stderr.
fn refused_start(options: &Options) -> String {
    let data = tempfile::tempdir().unwrap();
    let out = run_cli(
        data.path(),
        options,
        &["serve", "--listen", "127.0.0.1:0"],
        "",
    );
    assert!(!out.status.success(), "the server started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The last line of a failed start, which names the problem.
fn last_line(stderr: &str) -> &str {
    stderr.trim_end().lines().last().unwrap_or_default()
}

#[tokio::test]
async fn with_trust_only_signed_components_start() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, other) = (Signer::new(), Signer::new());
    let options = trusting(dir.path(), &ours, &[&ours], 0);

    std::fs::remove_file(minisig(&options.component)).unwrap();
    let stderr = refused_start(&options);
    assert!(
        last_line(&stderr).contains("signature refused: no signature"),
        "{stderr}"
    );

    std::fs::write(minisig(&options.component), other.sign(&policy_a())).unwrap();
    let stderr = refused_start(&options);
    assert!(last_line(&stderr).contains("not trusted"), "{stderr}");

    let mut changed = policy_a();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    std::fs::write(minisig(&options.component), ours.sign(&policy_a())).unwrap();
    std::fs::write(&options.component, &changed).unwrap();
    let stderr = refused_start(&options);
    assert!(last_line(&stderr).contains("does not match"), "{stderr}");

    ours.install(&options.component, &policy_a());
    let server = TestServer::start_with(options).await;
    let health = server.health().await;
    assert_eq!(health["auth_component"]["name"], "guest-auth");
    assert_eq!(health["auth_component"]["signature_verified"], true);
    assert!(server.log().contains("must be signed by a trusted key"));
    assert!(!server.log().contains("no --component-trust configured"));
}

#[tokio::test]
async fn a_trust_file_without_keys_or_with_a_bad_one_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Signer::new();
    let options = trusting(dir.path(), &ours, &[&ours], 0);
    let trust = PathBuf::from(&options.extra_env[0].1);

    std::fs::write(&trust, "# nobody yet\n").unwrap();
    let stderr = refused_start(&options);
    assert!(
        last_line(&stderr).contains("names no public key"),
        "{stderr}"
    );

    std::fs::write(&trust, "untrusted comment: x\nnot-base64!\n").unwrap();
    let stderr = refused_start(&options);
    assert!(
        last_line(&stderr).contains("line 2: not a minisign public key"),
        "{stderr}"
    );

    std::fs::remove_file(&trust).unwrap();
    let stderr = refused_start(&options);
    assert!(
        last_line(&stderr).contains("component trust file"),
        "{stderr}"
    );
}

#[tokio::test]
async fn without_trust_the_server_warns_once() {
    let server = TestServer::start().await;
    assert_eq!(
        server
            .log()
            .matches("no --component-trust configured")
            .count(),
        1,
        "{}",
        server.log()
    );
    assert_eq!(
        server.health().await["auth_component"]["signature_verified"],
        false
    );
}

/// What `/metrics` says of refusals by reason.
async fn refusals(server: &TestServer, token: &str) -> String {
    let text = server
        .call("GET", "/metrics", Some(token), None)
        .await
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("taskflow_auth_component_refusals_total"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asks the server to reload through `taskflow auth reload`, which must be refused with `reason`.
fn reload_refused(server: &TestServer, reason: &str) {
    let out = server.cli(&["auth", "reload"], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted; expected {reason}");
    assert!(stderr.contains(reason), "expected {reason}: {stderr}");
}

/// Every way a bad signature can arrive through `auth reload` is refused,
/// counted by reason and logged; the signed policy keeps serving; a
/// properly signed one then takes over.
#[tokio::test]
async fn unsigned_or_badly_signed_files_are_refused_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, other) = (Signer::new(), Signer::new());
    let server = TestServer::start_with(trusting(dir.path(), &ours, &[&ours], 0)).await;
    let component = server.options.component.clone();
    server.add_user("ops", "metrics:read tasks:read");
    let token = server.token("ops", None).await;

    // A new component without its signature: the old signature no longer matches.
    crate::harness::replace_file(&component, &policy_b());
    reload_refused(&server, "does not match");
    std::fs::remove_file(minisig(&component)).unwrap();
    reload_refused(&server, "no signature");
    other.install(&component, &policy_b());
    reload_refused(&server, "not trusted");
    std::fs::write(minisig(&component), "untrusted comment: x\ngarbage\n").unwrap();
    reload_refused(&server, "not a minisign signature");

    let health = server.health().await;
    assert_eq!(health["auth_component"]["name"], "guest-auth");
    assert_eq!(health["auth_component"]["refused_candidates"], 4);
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&token), None)
            .await
            .status(),
        200
    );
    let counted = refusals(&server, &token).await;
    for reason in [
        "signature_mismatch",
        "signature_missing",
        "signature_untrusted",
        "signature_malformed",
    ] {
        assert!(
            counted.contains(&format!(
                "taskflow_auth_component_refusals_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {counted}"
        );
    }
    let log = server.log();
    assert!(
        log.contains("candidate refused") && log.contains("signature_untrusted"),
        "{log}"
    );

    ours.install(&component, &policy_b());
    let out = server.cli(&["auth", "reload"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        server.health().await["auth_component"]["name"],
        "guest-admin-delete"
    );
}

/// Waits (bounded) until `/health` counts `refused` refusals.
async fn wait_for_refusals(server: &TestServer, refused: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = server.health().await;
        if health["auth_component"]["refused_candidates"] == refused {
            return health;
        }
        assert!(Instant::now() < deadline, "no refusal: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An unsigned component dropped on disk is refused by the file watch and
/// on SIGHUP; the signed one keeps serving.
#[tokio::test]
async fn an_unsigned_file_dropped_on_disk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Signer::new();
    let server = TestServer::start_with(Options {
        process: true,
        ..trusting(dir.path(), &ours, &[&ours], 100)
    })
    .await;
    let component = server.options.component.clone();
    std::fs::remove_file(minisig(&component)).unwrap();
    crate::harness::replace_file(&component, &policy_b());
    let health = wait_for_refusals(&server, 1).await;
    assert_eq!(health["auth_component"]["name"], "guest-auth");
    server.signal("-HUP");
    let health = wait_for_refusals(&server, 2).await;
    assert_eq!(health["auth_component"]["name"], "guest-auth");
    assert!(server.log().contains("no signature"), "{}", server.log());

    // Signing it is what lets it in.
    std::fs::write(minisig(&component), ours.sign(&policy_b())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.health().await["auth_component"]["name"] != "guest-admin-delete" {
        assert!(Instant::now() < deadline, "the signed file never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `config check` checks the signature as `serve` would.
#[tokio::test]
async fn config_check_verifies_the_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, other) = (Signer::new(), Signer::new());
    let options = trusting(dir.path(), &ours, &[&ours], 0);
    let data = tempfile::tempdir().unwrap();
    let ok = run_cli(data.path(), &options, &["config", "check"], "");
    let report = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{report}");
    assert!(report.contains("signed by a key of"), "{report}");

    other.install(&options.component, &policy_a());
    let refused = run_cli(data.path(), &options, &["config", "check"], "");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not trusted"), "{stderr}");
}
