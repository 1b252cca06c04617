//! Tokens against credential changes: a password change leaves nothing
//! issued on the old password, a token issued after a change works, and a
//! removed account's tokens stay refused when its name is added again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Options, PASSWORD, TestServer, urlencode, wait_for_count};
use crate::revoke::{PROPAGATION_BOUND, refused_within_bound};

/// Failed logins do not get in the way of these tests.
fn unthrottled() -> Options {
    Options {
        extra_env: vec![
            (
                "TASKFLOW_LOGIN_MAX_FAILURES_PER_USER".into(),
                "100000".into(),
            ),
            (
                "TASKFLOW_LOGIN_MAX_FAILURES_PER_ADDRESS".into(),
                "100000".into(),
            ),
        ],
        ..Options::default()
    }
}

/// A password grant: the answer's status, and its access and refresh
/// tokens when it is 200.
async fn login(server: &TestServer, user: &str, password: &str) -> (u16, Option<(String, String)>) {
    let response = server
        .token_request(&format!(
            "grant_type=password&username={user}&password={}",
            urlencode(password)
        ))
        .await;
    let status = response.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    let body: Value = response.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    (status, Some((access, refresh)))
}

async fn refresh_status(server: &TestServer, token: &str) -> u16 {
    server
        .token_request(&format!(
            "grant_type=refresh_token&refresh_token={}",
            urlencode(token)
        ))
        .await
        .status()
        .as_u16()
}

fn cli_ok(server: &TestServer, args: &[&str], stdin: &str) {
    let out = server.cli(args, stdin);
    assert!(
        out.status.success(),
        "taskflow {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts that `token` is accepted by every check for the whole time a
/// change made elsewhere may take to arrive: a change that was going to
/// refuse it would have done so within that bound.
async fn accepted_throughout(server: &TestServer, token: &str, what: &str) {
    let started = Instant::now();
    while started.elapsed() < PROPAGATION_BOUND {
        let status = server
            .call("GET", "/users/me", Some(token), None)
            .await
            .status();
        assert_eq!(status, 200, "{what}: refused after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that `token` is refused by every check for the propagation bound.
async fn refused_throughout(server: &TestServer, token: &str, what: &str) {
    let started = Instant::now();
    while started.elapsed() < PROPAGATION_BOUND {
        let status = server
            .call("GET", "/users/me", Some(token), None)
            .await
            .status();
        assert_eq!(
            status,
            401,
            "{what}: answered after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logins with the old password run back to back, several at once, while
/// `taskflow user passwd` changes it, so that some are in flight when the
/// change commits. Whatever any of them got, before or after the change,
/// is dead once it has arrived: every refresh token is refused, and every
/// access token too. Three rounds, each a new change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_racing_a_password_change_leave_nothing_behind() {
    let server = Arc::new(TestServer::start_with(unthrottled()).await);
    server.add_user("alice", "tasks:read");
    let mut old = PASSWORD.to_owned();
    for round in 0..3 {
        let new = format!("new passphrase, round {round}");
        let stop = Arc::new(AtomicBool::new(false));
        // Logins answered, and those of them begun after the change.
        let (answered, answered_after) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let changed = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (server, stop, old) = (Arc::clone(&server), Arc::clone(&stop), old.clone());
                let (answered, answered_after, changed) = (
                    Arc::clone(&answered),
                    Arc::clone(&answered_after),
                    Arc::clone(&changed),
                );
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while !stop.load(Ordering::Acquire) {
                        let after = changed.load(Ordering::Acquire);
                        let (status, tokens) = login(&server, "alice", &old).await;
                        assert!(
                            status == 200 || status == 400,
                            "a login with the old password answered {status}"
                        );
                        got.extend(tokens);
                        answered.fetch_add(1, Ordering::AcqRel);
                        if after {
                            answered_after.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                    got
                })
            })
            .collect();
        // Every worker is logging in when the change is made.
        wait_for_count(&answered, 4, "logins before the change").await;
        let change = {
            let (server, new) = (Arc::clone(&server), new.clone());
            tokio::task::spawn_blocking(move || {
                cli_ok(&server, &["user", "passwd", "alice"], &format!("{new}\n"));
            })
        };
        change.await.unwrap();
        changed.store(true, Ordering::Release);
        // Logins begun before the change finish after it, while others
        // begin: some of each before the clients stop.
        wait_for_count(&answered_after, 4, "logins after the change").await;
        stop.store(true, Ordering::Release);
        let mut issued = Vec::new();
        for worker in workers {
            issued.extend(worker.await.unwrap());
        }
        assert!(!issued.is_empty(), "round {round}: no login got through");
        for (i, (access, refresh)) in issued.iter().enumerate() {
            assert_eq!(
                refresh_status(&server, refresh).await,
                400,
                "round {round}: refresh token {i} of {} outlived the change",
                issued.len()
            );
            refused_within_bound(&server, access, "an access token from the old password").await;
        }
        let (status, _) = login(&server, "alice", &new).await;
        assert_eq!(status, 200, "round {round}: the new password");
        old = new;
    }
}

/// A login right after `taskflow user passwd`, most often in the same
/// second, gets a token that works, and keeps working once the change has
/// reached every check. Five rounds, each a new change.
#[tokio::test]
async fn a_token_issued_right_after_a_password_change_works() {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read");
    for round in 0..5 {
        let new = format!("passphrase number {round}");
        cli_ok(&server, &["user", "passwd", "alice"], &format!("{new}\n"));
        let (status, tokens) = login(&server, "alice", &new).await;
        assert_eq!(status, 200, "round {round}");
        let (access, refresh) = tokens.unwrap();
        accepted_throughout(&server, &access, &format!("round {round}")).await;
        assert_eq!(
            refresh_status(&server, &refresh).await,
            200,
            "round {round}"
        );
    }
}

/// A removed user's token is refused, and stays refused when the name is
/// added again: it was the old account's, not the new one's. The new
/// account's own token, issued at once, works; the old account's tasks are
/// gone with it and the new account sees none of them.
#[tokio::test]
async fn a_removed_users_tokens_do_not_come_back_with_the_name() {
    let server = TestServer::start().await;
    server.add_user("victim", "tasks:read tasks:write");
    let (_, tokens) = login(&server, "victim", PASSWORD).await;
    let (old, old_refresh) = tokens.unwrap();
    let created = server
        .call(
            "POST",
            "/tasks",
            Some(&old),
            Some(serde_json::json!({"title": "the old account's"})),
        )
        .await;
    assert_eq!(created.status(), 201);

    cli_ok(&server, &["user", "remove", "victim"], "");
    refused_within_bound(&server, &old, "the removed user's token").await;
    cli_ok(
        &server,
        &[
            "user",
            "add",
            "victim",
            "--scopes",
            "tasks:read tasks:write",
        ],
        "another long passphrase\n",
    );
    let (status, tokens) = login(&server, "victim", "another long passphrase").await;
    assert_eq!(status, 200);
    let (new, _) = tokens.unwrap();

    refused_throughout(&server, &old, "the old account's token").await;
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&old), None)
            .await
            .status(),
        401
    );
    assert_eq!(refresh_status(&server, &old_refresh).await, 400);
    accepted_throughout(&server, &new, "the new account's token").await;
    let tasks: Value = server
        .call("GET", "/tasks", Some(&new), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tasks["items"], serde_json::json!([]), "{tasks}");

    // After a restart, with nothing remembered, the same holds.
    let server = server.restart().await;
    assert_eq!(
        server
            .call("GET", "/users/me", Some(&old), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        server
            .call("GET", "/users/me", Some(&new), None)
            .await
            .status(),
        200
    );
}
