//! Swapping the policy component while serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Options, TestServer, assert_error, built_component, replace_file};

/// A server whose policy file lives in its own directory, so tests can replace it.
async fn swappable(watch_ms: u64) -> (TestServer, PathBuf, tempfile::TempDir) {
    swappable_with(watch_ms, Options::default()).await
}

/// [`swappable`], started with `options` otherwise.
async fn swappable_with(
    watch_ms: u64,
    options: Options,
) -> (TestServer, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.wasm");
    std::fs::copy(built_component("guest_auth"), &policy).unwrap();
    let server = TestServer::start_with(Options {
        component: policy.clone(),
        extra_env: vec![("TASKFLOW_COMPONENT_WATCH_MS".into(), watch_ms.to_string())],
        ..options
    })
    .await;
    (server, policy, dir)
}

fn policy_a() -> Vec<u8> {
    std::fs::read(built_component("guest_auth")).unwrap()
}

fn policy_b() -> Vec<u8> {
    std::fs::read(built_component("guest_admin_delete")).unwrap()
}

/// Waits until the clients have sent `more` requests past the count in
/// `sent` now (or their cap of 20,000), so every version serves some of
/// the traffic however fast or slow the machine is.
async fn traffic(sent: &AtomicUsize, more: usize) {
    let until = (sent.load(Ordering::Relaxed) + more).min(20_000);
    crate::harness::wait_for_count(sent, until, "requests sent").await;
}

/// Several swaps between two policies while clients send requests at full
/// speed: not one request fails, tokens from before stay valid, and the
/// behaviour ends up the new policy's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swaps_under_load_fail_no_request() {
    let (server, policy, _dir) = swappable(0).await;
    server.add_user("alice", "tasks:read tasks:write");
    let token = server.token("alice", None).await;
    let server = Arc::new(server);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (server, token, stop, sent) =
            (server.clone(), token.clone(), stop.clone(), sent.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            // Bounded both by the stop flag and by a count.
            while !stop.load(Ordering::Relaxed) && sent.fetch_add(1, Ordering::Relaxed) < 20_000 {
                let response = server.call("GET", "/tasks", Some(&token), None).await;
                if response.status() != 200 {
                    failures.push(response.status().as_u16());
                }
            }
            failures
        }));
    }

    let versions = [policy_b(), policy_a(), policy_b(), policy_a(), policy_b()];
    for (i, bytes) in versions.iter().enumerate() {
        traffic(&sent, 100).await;
        replace_file(&policy, bytes);
        let server = server.clone();
        let out = tokio::task::spawn_blocking(move || server.cli(&["auth", "reload"], ""))
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "swap {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(reply["outcome"], "swapped", "swap {i}: {reply}");
    }
    traffic(&sent, 100).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await.unwrap());
    }
    let total = sent.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {failures:?}",
        failures.len()
    );
    assert!(total > 200, "the client loop barely ran ({total} requests)");

    let health = server.health().await;
    assert_eq!(health["auth_component"]["name"], "guest-admin-delete");
    assert_eq!(health["auth_component"]["swaps"], 5);
    // Policy B's rule: deleting needs tasks:admin as well.
    let task: Value = server
        .call(
            "POST",
            "/tasks",
            Some(&token),
            Some(json!({"title": "keep me"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let delete = server
        .call(
            "DELETE",
            &format!("/tasks/{}", task["id"]),
            Some(&token),
            None,
        )
        .await;
    let body = assert_error(
        delete,
        403,
        "insufficient_scope",
        Some("Bearer realm=\"taskflow\", error=\"insufficient_scope\""),
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("tasks:admin"),
        "{body}"
    );
}

/// Replacing the file is enough: the watcher loads it, and back again.
#[tokio::test]
async fn a_changed_file_is_picked_up() {
    let (server, policy, _dir) = swappable(100).await;
    server.add_user("alice", "tasks:read tasks:write");
    let token = server.token("alice", None).await;
    let task: Value = server
        .call("POST", "/tasks", Some(&token), Some(json!({"title": "t"})))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/tasks/{}", task["id"]);

    replace_file(&policy, &policy_b());
    server.wait_for_component("guest-admin-delete").await;
    assert_eq!(
        server
            .call("DELETE", &path, Some(&token), None)
            .await
            .status(),
        403
    );

    replace_file(&policy, &policy_a());
    let health = server.wait_for_component("guest-auth").await;
    assert_eq!(health["auth_component"]["swaps"], 2);
    assert_eq!(
        server
            .call("DELETE", &path, Some(&token), None)
            .await
            .status(),
        204
    );
}

/// SIGHUP reloads the file.
#[tokio::test]
async fn sighup_reloads() {
    let (server, policy, _dir) = swappable_with(0, Options::process()).await;
    replace_file(&policy, &policy_b());
    // Without the watcher, nothing happens until asked.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.health().await["auth_component"]["name"],
        "guest-auth"
    );
    server.signal("-HUP");
    server.wait_for_component("guest-admin-delete").await;
}

/// Broken candidates are refused with a reason, and the old policy keeps serving.
#[tokio::test]
async fn broken_candidates_are_refused() {
    let (server, policy, _dir) = swappable(0).await;
    server.add_user("alice", "tasks:read");
    let token = server.token("alice", None).await;
    let candidates: [(&str, Vec<u8>, &str); 4] = [
        (
            "not wasm",
            b"definitely not wasm".to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            "other world",
            std::fs::read(built_component("other_world")).unwrap(),
            "does not implement",
        ),
        (
            "accepts any token",
            std::fs::read(built_component("lax_policy")).unwrap(),
            "failed its start-up check",
        ),
    ];
    for (i, (what, bytes, reason)) in candidates.iter().enumerate() {
        replace_file(&policy, bytes);
        let out = server.cli(&["auth", "reload"], "");
        assert!(!out.status.success(), "{what} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(reason), "{what}: {stderr}");
        let health = server.health().await;
        assert_eq!(health["auth_component"]["name"], "guest-auth", "{what}");
        assert_eq!(health["auth_component"]["refused_candidates"], i + 1);
        assert_eq!(
            server
                .call("GET", "/tasks", Some(&token), None)
                .await
                .status(),
            200
        );
        let forged = server
            .call("GET", "/tasks", Some("not.a.token"), None)
            .await;
        assert_eq!(forged.status(), 401, "{what}");
    }
    let health = server.health().await;
    assert_eq!(health["auth_component"]["refused_candidates"], 4);
    assert_eq!(health["auth_component"]["swaps"], 0);
    // The replica reports its last refusal in `auth status`.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = server.cli(&["auth", "status", "--json"], "");
        assert!(status.status.success());
        let status: Value = serde_json::from_slice(&status.stdout).unwrap();
        let replica = &status["replicas"][0];
        if replica["last_refusal_reason"] == "self_check" {
            assert!(
                replica["last_refusal"]
                    .as_str()
                    .unwrap()
                    .contains("start-up check"),
                "{status}"
            );
            assert_eq!(replica["condition"], "current", "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "never reported: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.log().contains("candidate refused"));
}

/// A policy that fails its self-check cannot even start the server.
#[tokio::test]
async fn a_lax_policy_is_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    let options = Options {
        component: built_component("lax_policy"),
        ..Options::default()
    };
    let out = crate::harness::run_cli(
        data.path(),
        &options,
        &["serve", "--listen", "127.0.0.1:0"],
        "",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed its start-up check"));
}

/// A policy built for `taskflow:auth@0.1.1` before this host existed (the
/// artifact itself, not rebuilt: see `tests/components/fixtures`).
fn policy_built_for_wit_0_1() -> Vec<u8> {
    let path = crate::harness::workspace()
        .join("tests/components/fixtures/guest-auth-0.2.0-wit-0.1.1.wasm");
    std::fs::read(path).unwrap()
}

/// Swaps to `bytes` through `taskflow auth reload`, which must succeed.
fn reload_with(server: &TestServer, policy: &std::path::Path, bytes: &[u8]) {
    replace_file(policy, bytes);
    let out = server.cli(&["auth", "reload"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A policy built for the 0.1 contract keeps working after the host moved
/// to 0.2: it passes the checks and takes over while serving; logins, Bearer
/// checks and revocation work, and tokens stay good across the swap both
/// ways. It has no refresh grant, so no refresh tokens are issued while it
/// serves and a refresh is `unsupported_grant_type` (leaving the refresh
/// token usable once a 0.2 policy is back).
#[tokio::test]
async fn a_policy_built_for_the_0_1_contract_still_serves() {
    let (server, policy, _dir) = swappable(0).await;
    server.add_user("alice", "tasks:read tasks:write");
    let login = format!(
        "grant_type=password&username=alice&password={}",
        crate::harness::urlencode(crate::harness::PASSWORD)
    );
    let current: Value = server.token_request(&login).await.json().await.unwrap();
    let before = current["access_token"].as_str().unwrap().to_owned();
    let refresh_token = current["refresh_token"].as_str().unwrap().to_owned();
    let refresh = format!(
        "grant_type=refresh_token&refresh_token={}",
        crate::harness::urlencode(&refresh_token)
    );

    reload_with(&server, &policy, &policy_built_for_wit_0_1());
    let health = server.health().await;
    assert_eq!(health["auth_component"]["version"], "0.2.0");
    assert_eq!(health["auth_component"]["contract"], "taskflow:auth@0.1");
    assert!(server.log().contains("older contract"), "{}", server.log());
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&before), None)
            .await
            .status(),
        200
    );
    let old: Value = server.token_request(&login).await.json().await.unwrap();
    assert!(old.get("refresh_token").is_none(), "{old}");
    let issued_by_old = old["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&issued_by_old), None)
            .await
            .status(),
        200
    );
    assert_error(
        server.token_request(&refresh).await,
        400,
        "unsupported_grant_type",
        None,
    )
    .await;
    // The 0.1.1 policy asks the host about revoked tokens.
    assert_eq!(server.revoke(&before).await.status(), 200);
    assert_error(
        server.call("GET", "/tasks", Some(&before), None).await,
        401,
        "invalid_token",
        Some("Bearer realm=\"taskflow\", error=\"invalid_token\""),
    )
    .await;

    reload_with(&server, &policy, &policy_a());
    let health = server.health().await;
    assert_eq!(health["auth_component"]["version"], "0.4.0");
    assert_eq!(health["auth_component"]["contract"], "taskflow:auth@0.3.0");
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&issued_by_old), None)
            .await
            .status(),
        200
    );
    assert_eq!(server.token_request(&refresh).await.status(), 200);
}

/// `guest-auth` 0.3.0 as built for `taskflow:auth@0.2.0`, before 0.3 (the
/// artifact itself: see `tests/components/fixtures`).
fn policy_built_for_wit_0_2() -> Vec<u8> {
    let path = crate::harness::workspace()
        .join("tests/components/fixtures/guest-auth-0.3.0-wit-0.2.0.wasm");
    std::fs::read(path).unwrap()
}

/// A policy built for the 0.2 contract keeps serving after the host moved
/// to 0.3, swapped in and out while serving: its grants' token ids are
/// known (revoking its refresh family revokes the access tokens issued
/// with it), `/revoke` works, and its Bearer decision answers
/// introspection, with the claims of the token it accepted. Tokens stay
/// good across the swap both ways.
#[tokio::test]
async fn a_policy_built_for_the_0_2_contract_still_serves_and_introspects() {
    let (server, policy, _dir) = swappable(0).await;
    server.add_user("alice", "tasks:read tasks:write");
    let bearer = crate::introspect::introspector(&server).await;
    let before = server.token("alice", Some("tasks:read")).await;

    reload_with(&server, &policy, &policy_built_for_wit_0_2());
    let health = server.health().await;
    assert_eq!(health["auth_component"]["version"], "0.3.0");
    assert_eq!(health["auth_component"]["contract"], "taskflow:auth@0.2.0");
    assert!(
        server.log().contains("no introspection of its own"),
        "{}",
        server.log()
    );

    // Introspection falls back to the policy's Bearer decision.
    let active = crate::introspect::answer(&server, &bearer, &before).await;
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["token_type"], "access_token");
    assert_eq!(active["sub"], "alice");
    assert_eq!(active["scope"], "tasks:read");
    assert_eq!(active["iss"], "taskflow");
    assert!(
        active["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "{active}"
    );
    for inactive in ["garbage.x.y", "garbage"] {
        let body = crate::introspect::answer(&server, &bearer, inactive).await;
        assert_eq!(body, json!({"active": false}), "{inactive}");
    }

    // Its grants: a refresh family whose revocation takes its access tokens.
    let login = format!(
        "grant_type=password&username=alice&password={}",
        crate::harness::urlencode(crate::harness::PASSWORD)
    );
    let issued: Value = server.token_request(&login).await.json().await.unwrap();
    let access = issued["access_token"].as_str().unwrap().to_owned();
    let refresh = issued["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        crate::introspect::answer(&server, &bearer, &access).await["active"],
        true
    );
    assert_eq!(server.revoke(&refresh).await.status(), 200);
    assert_eq!(
        crate::introspect::answer(&server, &bearer, &access).await,
        json!({"active": false})
    );
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&access), None)
            .await
            .status(),
        401
    );
    // `/revoke` of an access token, through the fallback.
    let by_old = server.token("alice", None).await;
    assert_eq!(server.revoke(&before).await.status(), 200);
    assert_eq!(
        crate::introspect::answer(&server, &bearer, &before).await,
        json!({"active": false})
    );

    reload_with(&server, &policy, &policy_a());
    let health = server.health().await;
    assert_eq!(health["auth_component"]["contract"], "taskflow:auth@0.3.0");
    let active = crate::introspect::answer(&server, &bearer, &by_old).await;
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["sub"], "alice");
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&by_old), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        crate::introspect::answer(&server, &bearer, &before).await,
        json!({"active": false})
    );
}

/// The Python policy swaps in and out of a running server like any other:
/// under a client loop no request fails, a token issued by either policy
/// is accepted by the other, and a password set while the Python policy
/// serves (hashed by the host's argon2id) logs in under the Rust one: the
/// hashes are interchangeable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_python_policy_swaps_in_and_out() {
    let (server, policy, _dir) = swappable(0).await;
    server.add_user("alice", "tasks:read tasks:write");
    server.add_user("bob", "tasks:read");
    let from_rust = server.token("alice", None).await;
    let server = Arc::new(server);

    let stop = Arc::new(AtomicBool::new(false));
    let all_sent = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (server, token, stop, all_sent) = (
            server.clone(),
            from_rust.clone(),
            stop.clone(),
            all_sent.clone(),
        );
        workers.push(tokio::spawn(async move {
            let (mut sent, mut failures) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) && sent < 20_000 {
                sent += 1;
                all_sent.fetch_add(1, Ordering::Relaxed);
                let response = server.call("GET", "/tasks", Some(&token), None).await;
                if response.status() != 200 {
                    failures.push(response.status().as_u16());
                }
            }
            (sent, failures)
        }));
    }
    let swap_to = |bytes: Vec<u8>, name: &'static str| {
        let (server, policy, all_sent) = (server.clone(), policy.clone(), all_sent.clone());
        async move {
            traffic(&all_sent, 50).await;
            replace_file(&policy, &bytes);
            let cli = server.clone();
            let out = tokio::task::spawn_blocking(move || cli.cli(&["auth", "reload"], ""))
                .await
                .unwrap();
            let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(reply["outcome"], "swapped", "{reply}");
            assert_eq!(server.health().await["auth_component"]["name"], name);
        }
    };
    let bob_login = format!(
        "grant_type=password&username=bob&password={}",
        crate::harness::urlencode("a password set in python")
    );

    swap_to(
        std::fs::read(crate::harness::python_component()).unwrap(),
        "guest-python",
    )
    .await;
    let from_python = server.token("alice", None).await;
    let out = server.cli(&["user", "passwd", "bob"], "a password set in python\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.token_request(&bob_login).await.status(), 200);

    swap_to(policy_a(), "guest-auth").await;
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&from_python), None)
            .await
            .status(),
        200
    );
    assert_eq!(server.token_request(&bob_login).await.status(), 200);
    traffic(&all_sent, 50).await;

    stop.store(true, Ordering::Relaxed);
    let (mut total, mut failures) = (0, Vec::new());
    for worker in workers {
        let (sent, failed) = worker.await.unwrap();
        total += sent;
        failures.extend(failed);
    }
    // No request fails because of a swap. A CPython instance's first
    // decision faults in its pages, which counts as CPU time: on a loaded
    // machine it can pass a decision's normal cost while another does, and
    // the second finds no overrun slot and is answered 503 (over its
    // limits, as the contract allows). Nothing else is allowed, and that
    // only rarely.
    assert!(
        failures.iter().all(|status| *status == 503) && failures.len() * 1000 <= total,
        "{} of {total} requests failed: {failures:?}",
        failures.len()
    );
    assert!(total > 50, "the client loop barely ran ({total} requests)");
}

/// The host's `primitives` are optional: a policy of the current contract
/// built before they existed (hashing and signing in the component) loads
/// and serves, swapped in while serving: logins, Bearer checks, and tokens
/// and password hashes from the policy that uses them.
#[tokio::test]
async fn a_policy_without_the_primitives_import_still_serves() {
    let (server, policy, _dir) = swappable(0).await;
    server.add_user("alice", "tasks:read tasks:write");
    let before = server.token("alice", None).await;

    let without = crate::harness::workspace()
        .join("tests/components/fixtures/guest-auth-0.4.0-wit-0.3.0.wasm");
    reload_with(&server, &policy, &std::fs::read(without).unwrap());
    let health = server.health().await;
    assert_eq!(health["auth_component"]["version"], "0.4.0");
    assert_eq!(health["auth_component"]["contract"], "taskflow:auth@0.3.0");
    assert_eq!(health["auth_component"]["swaps"], 1);

    // A hash made by the host's argon2id checks in the component's own.
    let after = server.token("alice", None).await;
    for token in [&before, &after] {
        assert_eq!(
            server
                .call("GET", "/tasks", Some(token), None)
                .await
                .status(),
            200
        );
    }
    server.add_user("bob", "tasks:read");
    reload_with(&server, &policy, &policy_a());
    assert_eq!(server.health().await["auth_component"]["swaps"], 2);
    let bob = server.token("bob", None).await;
    assert_eq!(
        server
            .call("GET", "/users/me", Some(&bob), None)
            .await
            .status(),
        200
    );
}
