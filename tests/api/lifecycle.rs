//! Starting, restarting and refusing to start; the user CLI; health; logs.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{Options, PASSWORD, TestServer, component_path, run_cli};

/// With no secret configured, one is generated (0600) and kept, so tokens
/// issued before a restart are still accepted after it.
#[tokio::test]
async fn restart_keeps_tokens_valid() {
    let server = TestServer::start_with(Options {
        secret: None,
        ..Options::default()
    })
    .await;
    server.add_user("alice", "tasks:read");
    let token = server.token("alice", None).await;
    let secret_file = server.data.path().join("jwt-secret");
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let secret = std::fs::read_to_string(&secret_file).unwrap();

    let server = server.restart().await;
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&token), None)
            .await
            .status(),
        200
    );
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), secret);
    assert!(
        !server.log().contains(secret.trim()),
        "the secret was logged"
    );
}

/// A stopped application leaves nothing of its own running: its admin
/// socket answers no more, the component watch swaps nothing, and its port
/// is free.
#[tokio::test]
async fn a_stopped_application_stops_its_background_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("policy.wasm");
    std::fs::copy(component_path(), &component).unwrap();
    let mut server = TestServer::start_with(Options {
        component: component.clone(),
        extra_env: vec![("TASKFLOW_COMPONENT_WATCH_MS".into(), "10".into())],
        ..Options::default()
    })
    .await;
    let socket = server.data.path().join("admin.sock");
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_ok());
    let observer = server.observer().clone();
    let address = server.address().to_owned();

    server.stop();
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_err(),
        "the admin socket still answers"
    );
    crate::harness::replace_file(
        &component,
        &std::fs::read(crate::harness::built_component("guest_admin_delete")).unwrap(),
    );
    assert!(
        !observer
            .wait_until(std::time::Duration::from_millis(500), |o| {
                o.policy_status().swaps > 0
            })
            .await,
        "the component watch still swaps"
    );
    assert!(
        std::net::TcpListener::bind(&address).is_ok(),
        "the port is still bound"
    );
}

/// SIGTERM shuts the server down cleanly.
#[tokio::test]
async fn sigterm_exits_cleanly() {
    let mut server = TestServer::start_with(Options::process()).await;
    assert!(server.terminate().success());
}

/// `/health` names the loaded component and its digest.
#[tokio::test]
async fn health_shows_the_component() {
    let server = TestServer::start().await;
    let health: Value = server
        .call("GET", "/health", None, None)
        .await
        .json()
        .await
        .unwrap();
    let digest = hex::encode(Sha256::digest(std::fs::read(component_path()).unwrap()));
    assert_eq!(health["status"], "ok");
    assert_eq!(health["auth_component"]["name"], "guest-auth");
    assert_eq!(health["auth_component"]["version"], "0.4.0");
    assert_eq!(health["auth_component"]["sha256"], digest);
}

fn start_failure(options: Options) -> String {
    let data = tempfile::tempdir().unwrap();
    let out = run_cli(
        data.path(),
        &options,
        &["serve", "--listen", "127.0.0.1:0"],
        "",
    );
    assert!(!out.status.success(), "serve should have refused to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A missing or invalid component is a clear error at start, naming the file.
#[tokio::test]
async fn bad_components_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.wasm");
    let stderr = start_failure(Options {
        component: missing.clone(),
        ..Options::default()
    });
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");

    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not wasm").unwrap();
    let stderr = start_failure(Options {
        component: garbage.clone(),
        ..Options::default()
    });
    assert!(stderr.contains(&garbage.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("not a valid WebAssembly component"),
        "{stderr}"
    );

    // A valid core module is still not a component.
    let module = dir.path().join("module.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let stderr = start_failure(Options {
        component: module,
        ..Options::default()
    });
    assert!(
        stderr.contains("not a valid WebAssembly component"),
        "{stderr}"
    );
}

/// Each kind of bad component is one line an operator can act on: it
/// names the file, what is wrong and what to do; and the refused first
/// start leaves nothing behind (no data directory, no secret, no SQLite
/// file, no tables in a PostgreSQL database).
#[tokio::test]
async fn each_bad_component_is_one_line_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let built = |name: &str| std::fs::read(crate::harness::built_component(name)).unwrap();
    let signer = crate::harness::Signer::new();
    let trust = crate::harness::Signer::trust_file(dir.path(), &[&signer]);
    let unsigned = write("unsigned.wasm", &built("guest_auth"));
    let trusting = || {
        vec![(
            "TASKFLOW_COMPONENT_TRUST".to_owned(),
            trust.display().to_string(),
        )]
    };
    let cases = [
        (
            "missing",
            dir.path().join("missing.wasm"),
            vec![],
            &["cannot read it", "--auth-component"][..],
        ),
        (
            "not wasm",
            write("garbage.wasm", b"this is not wasm, it is text\n"),
            vec![],
            &["not WebAssembly at all", "wasm32-wasip2"],
        ),
        (
            "core module",
            write("module.wasm", b"\0asm\x01\0\0\0"),
            vec![],
            &["core WebAssembly module", "wasm32-wasip2"],
        ),
        (
            "other world",
            write("other.wasm", &built("other_world")),
            vec![],
            &["does not implement", "wit/auth.wit"],
        ),
        (
            "self-check",
            write("lax.wasm", &built("lax_policy")),
            vec![],
            &["failed its start-up check", "fix the policy"],
        ),
        (
            "unsigned",
            unsigned,
            trusting(),
            &["signature refused", "minisign -Sm", "--component-trust"][..],
        ),
    ];
    for (what, component, extra_env, expected) in cases {
        let data = dir.path().join(format!("data-{}", what.replace(' ', "-")));
        let options = Options {
            component: component.clone(),
            secret: None,
            extra_env,
            ..Options::default()
        };
        let out = run_cli(&data, &options, &["serve", "--listen", "127.0.0.1:0"], "");
        assert!(!out.status.success(), "{what}: the server started");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{what}: {stderr}");
        let line = errors[0];
        assert_eq!(
            stderr.trim_end().lines().last(),
            Some(line),
            "{what}: {stderr}"
        );
        assert!(
            line.contains(&component.display().to_string()),
            "{what}: {line}"
        );
        for word in expected {
            assert!(line.contains(word), "{what}: {line} lacks {word}");
        }
        // Said once, not once per cause.
        assert!(line.matches("os error").count() <= 1, "{what}: {line}");
        // In words, not in Rust's debug form of a value.
        for debug in ["Ok(", "Err(", "Some(", " { ", "[\""] {
            assert!(!line.contains(debug), "{what}: {line}");
        }
        assert!(
            !data.exists(),
            "{what}: the refused start made {}",
            data.display()
        );
        if let Some(url) = &options.database_url {
            assert!(
                !crate::harness::postgres_has_tables(url),
                "{what}: the refused start made tables in {url}"
            );
        }
    }
}

/// A secret under 32 bytes is refused at start, without being echoed.
#[tokio::test]
async fn short_secret_is_refused() {
    let stderr = start_failure(Options {
        secret: Some("short-secret".into()),
        ..Options::default()
    });
    assert!(stderr.contains("at least 32"), "{stderr}");
    assert!(!stderr.contains("short-secret"), "{stderr}");
}

/// Users are managed by the CLI while the server runs on the same database.
#[tokio::test]
async fn user_cli_works_alongside_the_server() {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read tasks:write");
    let duplicate = server.cli(
        &["user", "add", "alice", "--scopes", ""],
        &format!("{PASSWORD}\n"),
    );
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));
    let empty = server.cli(&["user", "add", "bob", "--scopes", ""], "\n");
    assert!(!empty.status.success());
    let bad_scope = server.cli(&["user", "add", "bob", "--scopes", "a\"b"], "pw\n");
    assert!(!bad_scope.status.success());

    let list = server.cli(&["user", "list"], "");
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "alice\ttasks:read tasks:write\n"
    );

    let token = server.token("alice", None).await;
    let created = server
        .call(
            "POST",
            "/tasks",
            Some(&token),
            Some(serde_json::json!({"title": "t"})),
        )
        .await;
    assert_eq!(created.status(), 201);

    let removed = server.cli(&["user", "remove", "alice"], "");
    assert!(removed.status.success());
    let again = server.cli(&["user", "remove", "alice"], "");
    assert!(!again.status.success());
    let login = server
        .token_request(&format!(
            "grant_type=password&username=alice&password={}",
            crate::harness::urlencode(PASSWORD)
        ))
        .await;
    assert_eq!(login.status(), 400);
    // The removed user's token is refused at once, not when it expires.
    crate::harness::assert_error(
        server.call("GET", "/tasks", Some(&token), None).await,
        401,
        "invalid_token",
        Some("Bearer realm=\"taskflow\", error=\"invalid_token\""),
    )
    .await;
}

/// Neither passwords nor tokens nor the secret appear in the server's log.
#[tokio::test]
async fn secrets_stay_out_of_the_log() {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read");
    let token = server.token("alice", None).await;
    server
        .token_request("grant_type=password&username=alice&password=wrong-password-here")
        .await;
    server.call("GET", "/tasks", Some(&token), None).await;
    server
        .call("GET", "/tasks", Some("forged.token.value"), None)
        .await;
    let log = server.log();
    assert!(log.contains("/tasks"), "requests should be logged: {log}");
    for secret in [
        PASSWORD,
        "wrong-password-here",
        &token,
        "forged.token.value",
        crate::harness::SECRET,
    ] {
        assert!(!log.contains(secret), "{secret:?} leaked into the log");
    }
}

/// A task acknowledged with 201 is on disk: it survives `kill -9` right after.
#[tokio::test]
async fn acknowledged_task_survives_kill_9() {
    let server = TestServer::start_with(Options::process()).await;
    server.add_user("alice", "tasks:read tasks:write");
    let token = server.token("alice", None).await;
    let response = server
        .call(
            "POST",
            "/tasks",
            Some(&token),
            Some(serde_json::json!({"title": "durable"})),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    server.signal("-KILL");
    let server = server.restart().await;
    let task: Value = server
        .call("GET", &location, Some(&token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["title"], "durable");
}

/// SIGTERM lets a request in flight finish, then the server exits cleanly.
#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    use std::io::{Read, Write};
    let mut server = TestServer::start_with(Options::process()).await;
    server.add_user("alice", "tasks:write");
    let token = server.token("alice", None).await;
    let body = br#"{"title":"sent slowly"}"#;
    let mut stream = std::net::TcpStream::connect(server.address()).unwrap();
    write!(
        stream,
        "POST /tasks HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..5]).unwrap();
    // The server has the headers and waits for the rest of the body.
    std::thread::sleep(std::time::Duration::from_millis(300));
    server.signal("-TERM");
    std::thread::sleep(std::time::Duration::from_millis(300));
    stream.write_all(&body[5..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(server.wait_exit().success());
}
