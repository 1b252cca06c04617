//! Shadow evaluation: a candidate decides the live traffic next to the
//! active policy, whose answer alone is used; replicas report how the two
//! compared. The scenarios run on one or two replicas sharing a SQLite file
//! (`tests/api/shadow.rs`) and on two on PostgreSQL
//! (`tests/replicas/shadow.rs`).

use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;

use crate::fleet::{
    CONVERGENCE, Fleet, Load, policy_a, policy_b, revision_of, stderr, wait_for_revision,
};
use crate::harness::{PASSWORD, TestServer, built_component, urlencode};

pub fn hostile_policy() -> Vec<u8> {
    std::fs::read(built_component("hostile_policy")).unwrap()
}

/// Writes `bytes` (signed by the fleet's signer when `signed`) as `name`
/// in the fleet's directory.
pub fn candidate_file(fleet: &Fleet, name: &str, bytes: &[u8], signed: bool) -> PathBuf {
    let file = fleet.dir.path().join(name);
    if signed {
        fleet.signer.install(&file, bytes);
    } else {
        std::fs::write(&file, bytes).unwrap();
    }
    file
}

/// `taskflow auth shadow FILE|REVISION`, which must succeed; the revision.
pub fn shadow(fleet: &Fleet, candidate: &str) -> i64 {
    let out = fleet.cli(&["auth", "shadow", candidate], false);
    assert!(out.status.success(), "{}", stderr(&out));
    revision_of(&out)
}

/// `taskflow auth shadow status --json`.
pub fn shadow_status(fleet: &Fleet) -> Value {
    let out = fleet.cli(&["auth", "shadow", "status", "--json"], false);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until every replica reports `state` for the newest shadow, and
/// `done` holds of the status.
pub async fn wait_for_shadow(fleet: &Fleet, state: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let status = shadow_status(fleet);
        let replicas = status["replicas"].as_array().unwrap();
        if replicas.len() >= fleet.replicas.len()
            && replicas.iter().all(|r| r["state"] == state)
            && done(&status)
        {
            return status;
        }
        assert!(
            started.elapsed() < CONVERGENCE,
            "replicas never all {state}: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The sum of one count over every replica.
pub fn total(status: &Value, count: &str) -> u64 {
    status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["totals"][count].as_u64().unwrap())
        .sum()
}

/// Every request offered to the shadow, on every replica.
pub fn offered(status: &Value) -> u64 {
    [
        "agree",
        "allowed_vs_denied",
        "different_denial",
        "different_scopes",
        "candidate_failed",
        "dropped",
    ]
    .iter()
    .map(|count| total(status, count))
    .sum()
}

/// Waits until the replicas have counted `sent` requests.
pub async fn wait_for_counts(fleet: &Fleet, sent: u64) -> Value {
    wait_for_shadow(fleet, "running", |status| offered(status) >= sent).await
}

/// Sends `method path` with `token`; the status.
async fn status_of(server: &TestServer, method: &str, path: &str, token: Option<&str>) -> u16 {
    let body = (method == "POST" || method == "PATCH").then(|| serde_json::json!({ "title": "t" }));
    server
        .call(method, path, token, body)
        .await
        .status()
        .as_u16()
}

/// A password grant for `user`; the response body.
async fn password_grant(server: &TestServer, user: &str) -> Value {
    let form = format!(
        "grant_type=password&username={user}&password={}",
        urlencode(PASSWORD)
    );
    server.token_request(&form).await.json().await.unwrap()
}

/// A task of `token`'s user; its id.
async fn new_task(server: &TestServer, token: &str) -> String {
    let response = server
        .call(
            "POST",
            "/tasks",
            Some(token),
            Some(serde_json::json!({ "title": "t" })),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["id"].to_string().trim_matches('"').to_owned()
}

/// The shadow of the policy that serves (the same component) agrees on
/// every Bearer decision and every grant of a run of varied requests,
/// which are answered as without it; `/metrics` has the counts by route.
pub async fn an_identical_candidate_only_agrees(fleet: &Fleet) {
    let server = &fleet.replicas[0];
    server.add_user("alice", "tasks:read tasks:write metrics:read");
    server.add_user("bob", "tasks:read");
    let alice = server.token("alice", None).await;
    let bob = server.token("bob", None).await;
    let file = candidate_file(fleet, "same.wasm", &policy_a(), true);
    let revision = shadow(fleet, file.to_str().unwrap());
    assert_eq!(revision, 2, "stored as a new revision");
    wait_for_shadow(fleet, "running", |_| true).await;

    let mut sent = 0;
    let id = new_task(server, &alice).await;
    sent += 1;
    let task = format!("/tasks/{id}");
    let cases: [(&str, &str, Option<&str>, u16); 9] = [
        ("GET", "/tasks", Some(&alice), 200),
        ("GET", "/tasks", Some(&bob), 200),
        ("GET", "/tasks", None, 401),
        ("GET", "/tasks", Some("not-a-token"), 401),
        ("POST", "/tasks", Some(&bob), 403),
        ("GET", &task, Some(&alice), 200),
        ("PATCH", &task, Some(&alice), 200),
        ("PATCH", &task, Some(&bob), 403),
        ("GET", "/metrics", Some(&bob), 403),
    ];
    for _ in 0..3 {
        for (method, path, token, expected) in &cases {
            let status = status_of(server, method, path, *token).await;
            assert_eq!(status, *expected, "{method} {path}");
            sent += 1;
        }
    }
    assert_eq!(status_of(server, "DELETE", &task, Some(&alice)).await, 204);
    sent += 1;
    // Grants: a password grant (every one is in the sample here), a
    // refused one, and a refresh grant.
    let granted = password_grant(server, "alice").await;
    assert!(granted["access_token"].is_string(), "{granted}");
    let refused = server
        .token_request("grant_type=password&username=alice&password=wrong")
        .await;
    assert_eq!(refused.status(), 400);
    let refresh = granted["refresh_token"].as_str().unwrap();
    let refreshed = server
        .token_request(&format!(
            "grant_type=refresh_token&refresh_token={}",
            urlencode(refresh)
        ))
        .await;
    assert_eq!(refreshed.status(), 200);
    sent += 3;

    let status = wait_for_counts(fleet, sent).await;
    assert_eq!(offered(&status), sent, "{status}");
    assert_eq!(total(&status, "agree"), sent, "{status}");
    let replica = &status["replicas"][0];
    assert_eq!(replica["revision"], 2);
    assert!(replica["recent"].as_array().unwrap().is_empty(), "{status}");
    let calls: Vec<(&str, &str)> = replica["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["call"].as_str().unwrap(), r["route"].as_str().unwrap()))
        .collect();
    for expected in [
        ("decision", "/tasks"),
        ("decision", "/tasks/{id}"),
        ("decision", "/metrics"),
        ("password_grant", "/token"),
        ("refresh_grant", "/token"),
    ] {
        assert!(calls.contains(&expected), "{expected:?} in {calls:?}");
    }

    let metrics = server
        .call("GET", "/metrics", Some(&alice), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "taskflow_auth_shadow_comparisons_total{call=\"decision\",route=\"/tasks\",outcome=\"agree\"} "
        ) && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        metrics.contains("taskflow_auth_shadow_running 1"),
        "{metrics}"
    );
}

/// `guest-admin-delete` as the candidate disagrees exactly on `DELETE`
/// with a token that has `tasks:write` but not `tasks:admin`: allowed by
/// the active policy (and done), denied by the candidate. Every other
/// decision agrees. No token appears in what is reported.
pub async fn admin_delete_disagrees_only_on_delete(fleet: &Fleet) {
    let server = &fleet.replicas[0];
    server.add_user("alice", "tasks:read tasks:write");
    server.add_user("bob", "tasks:read");
    let alice = server.token("alice", None).await;
    let bob = server.token("bob", None).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(new_task(server, &alice).await);
    }
    let file = candidate_file(fleet, "admin-delete.wasm", &policy_b(), true);
    shadow(fleet, file.to_str().unwrap());
    wait_for_shadow(fleet, "running", |_| true).await;

    let mut sent = 0;
    let mut deletes = 0;
    for id in &ids {
        let task = format!("/tasks/{id}");
        for (method, path, token, expected) in [
            ("GET", "/tasks", Some(&alice), 200),
            ("GET", "/tasks", Some(&bob), 200),
            ("GET", &task, Some(&alice), 200),
            ("PATCH", &task, Some(&alice), 200),
            ("POST", "/tasks", Some(&bob), 403),
            ("GET", "/tasks", None, 401),
            ("DELETE", &task, None, 401),
            ("DELETE", &task, Some(&alice), 204),
        ] {
            let status = status_of(server, method, path, token.map(String::as_str)).await;
            assert_eq!(
                status, expected,
                "{method} {path}: the active policy answers"
            );
            sent += 1;
            if method == "DELETE" && token.is_some() {
                deletes += 1;
            }
        }
    }
    let status = wait_for_counts(fleet, sent).await;
    assert_eq!(offered(&status), sent, "{status}");
    assert_eq!(total(&status, "allowed_vs_denied"), deletes, "{status}");
    assert_eq!(total(&status, "agree"), sent - deletes, "{status}");
    let recent = status["replicas"][0]["recent"].as_array().unwrap();
    assert_eq!(recent.len() as u64, deletes, "{status}");
    for disagreement in recent {
        assert_eq!(disagreement["method"], "DELETE");
        assert_eq!(disagreement["route"], "/tasks/{id}");
        assert_eq!(disagreement["kind"], "allowed_vs_denied");
        assert_eq!(disagreement["active"], "allowed (tasks:read tasks:write)");
        let candidate = disagreement["candidate"].as_str().unwrap();
        assert!(
            candidate.starts_with("denied: insufficient_scope")
                && candidate.contains("tasks:admin"),
            "{candidate}"
        );
    }
    let table = fleet.cli(&["auth", "shadow", "status"], false);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.contains("RECENT DISAGREEMENTS"), "{table}");
    assert!(
        table.contains("DELETE\t/tasks/{id}\tallowed_vs_denied"),
        "{table}"
    );
    let json = status.to_string();
    for secret in [&alice, &bob] {
        assert!(!json.contains(secret.as_str()) && !table.contains(secret.as_str()));
    }
    assert!(!json.contains(PASSWORD) && !server.log().contains(&alice));
}

/// A candidate that spins, exhausts its memory or panics on some requests
/// fails there (counted), and never changes an answer or fails a request;
/// a password grant that makes it spin is answered as without it.
pub async fn a_hostile_candidate_changes_no_answer(fleet: &Fleet) {
    let server = &fleet.replicas[0];
    server.add_user("alice", "tasks:read tasks:write");
    let alice = server.token("alice", None).await;
    let file = candidate_file(fleet, "hostile.wasm", &hostile_policy(), true);
    shadow(fleet, file.to_str().unwrap());
    wait_for_shadow(fleet, "running", |_| true).await;

    let mut sent = 0;
    let mut hostile = 0;
    for _ in 0..3 {
        for token in ["loop", "bomb", "panic", alice.as_str()] {
            let expected = if token == alice { 200 } else { 401 };
            assert_eq!(
                status_of(server, "GET", "/tasks", Some(token)).await,
                expected,
                "{token}"
            );
            sent += 1;
            if token != alice {
                hostile += 1;
            }
        }
    }
    // `loop` as a username makes the candidate's password grant spin.
    let refused = password_grant(server, "loop").await;
    assert_eq!(refused["error"], "invalid_grant", "{refused}");
    sent += 1;
    hostile += 1;
    assert_eq!(status_of(server, "GET", "/tasks", Some(&alice)).await, 200);
    sent += 1;

    let status = wait_for_counts(fleet, sent).await;
    assert_eq!(offered(&status), sent, "{status}");
    assert_eq!(total(&status, "candidate_failed"), hostile, "{status}");
    assert_eq!(total(&status, "agree"), sent - hostile, "{status}");
    let health = server.health().await;
    assert_eq!(health["auth_component"]["name"], "guest-auth", "{health}");
    assert_eq!(health["status"], "ok", "{health}");
}

/// With a queue of one request and a candidate that spins, a burst of
/// requests fills the queue: the rest are dropped and counted, every
/// request is answered as without a shadow, and every one is accounted
/// for exactly once.
pub async fn a_full_queue_drops_and_counts(fleet: &Fleet) {
    let server = &fleet.replicas[0];
    server.add_user("alice", "tasks:read");
    let alice = server.token("alice", None).await;
    let file = candidate_file(fleet, "hostile.wasm", &hostile_policy(), true);
    shadow(fleet, file.to_str().unwrap());
    wait_for_shadow(fleet, "running", |_| true).await;

    const CLIENTS: usize = 32;
    const EACH: usize = 40;
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let (url, client) = (server.url("/tasks"), server.client.clone());
        // Most send the spinning token, some a valid one.
        let (token, expected) = if n % 4 == 0 {
            (alice.clone(), 200)
        } else {
            ("loop".to_owned(), 401)
        };
        clients.push(tokio::spawn(async move {
            for _ in 0..EACH {
                let response = client.get(&url).bearer_auth(&token).send().await.unwrap();
                assert_eq!(response.status(), expected);
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let sent = (CLIENTS * EACH) as u64;
    let status = wait_for_counts(fleet, sent).await;
    assert_eq!(offered(&status), sent, "{status}");
    let dropped = total(&status, "dropped");
    assert!(dropped > 0, "nothing dropped: {status}");
    assert_eq!(
        total(&status, "agree") + total(&status, "candidate_failed") + dropped,
        sent,
        "{status}"
    );
    assert_eq!(total(&status, "allowed_vs_denied"), 0, "{status}");
}

/// On two replicas: a shadow starts on both, is stopped on both (the
/// active policy unchanged), starts again from its stored revision and is
/// promoted: both serve it, and it shadows no more. Under client load,
/// without a failed request. A candidate whose signature is refused is not
/// stored by a CLI with the trust file, and refused by every replica
/// (reported) when stored by one without it.
pub async fn shadow_stop_and_promote_on_every_replica(fleet: &Fleet) {
    for server in &fleet.replicas {
        wait_for_revision(server, 1).await;
    }
    let first = &fleet.replicas[0];
    first.add_user("alice", "tasks:read tasks:write");
    let alice = first.token("alice", None).await;
    let load = Load::start(fleet, &alice);

    let nothing = fleet.cli(&["auth", "promote"], false);
    assert!(
        stderr(&nothing).contains("no shadow is running"),
        "{}",
        stderr(&nothing)
    );

    // Refused candidates.
    let unsigned = candidate_file(fleet, "unsigned.wasm", &policy_b(), false);
    let refused = fleet.cli(&["auth", "shadow", unsigned.to_str().unwrap()], false);
    assert!(
        stderr(&refused).contains("not shadowed"),
        "{}",
        stderr(&refused)
    );
    let stored = fleet.cli(&["auth", "shadow", unsigned.to_str().unwrap()], true);
    assert!(stored.status.success(), "{}", stderr(&stored));
    let status = wait_for_shadow(fleet, "refused", |_| true).await;
    for replica in status["replicas"].as_array().unwrap() {
        let refusal = replica["refusal"].as_str().unwrap();
        assert!(refusal.contains("signature_missing"), "{status}");
    }

    let file = candidate_file(fleet, "admin-delete.wasm", &policy_b(), true);
    let revision = shadow(fleet, file.to_str().unwrap());
    wait_for_shadow(fleet, "running", |_| true).await;
    for server in &fleet.replicas {
        let id = new_task(server, &alice).await;
        let path = format!("/tasks/{id}");
        assert_eq!(status_of(server, "DELETE", &path, Some(&alice)).await, 204);
    }
    let status = wait_for_shadow(fleet, "running", |s| {
        s["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["totals"]["allowed_vs_denied"].as_u64() >= Some(1))
    })
    .await;
    assert_eq!(status["shadow"]["revision"], revision);

    let stop = fleet.cli(&["auth", "shadow", "stop"], false);
    assert!(stop.status.success(), "{}", stderr(&stop));
    let status = wait_for_shadow(fleet, "stopped", |_| true).await;
    assert_eq!(status["shadow"]["outcome"], "stopped");
    for server in &fleet.replicas {
        assert_eq!(server.health().await["auth_component"]["revision"], 1);
    }
    let again = fleet.cli(&["auth", "shadow", "stop"], false);
    assert!(stderr(&again).contains("no shadow is running"));

    // The stored revision, by number.
    assert_eq!(shadow(fleet, &revision.to_string()), revision);
    wait_for_shadow(fleet, "running", |_| true).await;
    let promoted = fleet.cli(&["auth", "promote"], false);
    assert_eq!(revision_of(&promoted), revision);
    for server in &fleet.replicas {
        wait_for_revision(server, revision).await;
        assert_eq!(
            server.health().await["auth_component"]["name"],
            "guest-admin-delete"
        );
    }
    let status = wait_for_shadow(fleet, "stopped", |_| true).await;
    assert_eq!(status["shadow"]["outcome"], "promoted");
    load.finish().await;
    // The promoted policy answers now.
    let id = new_task(first, &alice).await;
    let path = format!("/tasks/{id}");
    assert_eq!(status_of(first, "DELETE", &path, Some(&alice)).await, 403);
    let history = fleet.cli(&["auth", "history", "--json"], false);
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(history["desired"], revision);
}
