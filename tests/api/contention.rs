//! Writes racing each other: every one waits its turn for the database (up
//! to `--database-timeout-ms`) instead of failing, and none is lost.

use futures_util::future::join_all;
use serde_json::Value;

use crate::harness::{PASSWORD, TestServer, urlencode};

/// Access and refresh token of a new login of `user`.
async fn login(server: &TestServer, user: &str) -> (String, String) {
    let response = server
        .token_request(&format!(
            "grant_type=password&username={user}&password={}",
            urlencode(PASSWORD)
        ))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// `n` logins one after the other, so that the server's connection pool
/// has not grown by the time the revocations arrive all at once.
async fn logins(server: &TestServer, n: usize) -> Vec<(String, String)> {
    let mut issued = Vec::new();
    for _ in 0..n {
        issued.push(login(server, "alice").await);
    }
    issued
}

async fn me(server: &TestServer, access: &str) -> u16 {
    server
        .call("GET", "/users/me", Some(access), None)
        .await
        .status()
        .as_u16()
}

/// 30 logins revoked at once, each by its access token and by its refresh
/// token (60 revocations): every one is answered 200 (none fails with 503
/// for want of the write lock), and every token is refused afterwards.
/// Three rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_revocations_all_apply() {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read");
    for round in 0..3 {
        let issued = logins(&server, 30).await;
        let answers = join_all(
            issued
                .iter()
                .flat_map(|(access, refresh)| [server.revoke(access), server.revoke(refresh)]),
        )
        .await;
        let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "round {round}: {statuses:?}"
        );
        for (i, (access, refresh)) in issued.iter().enumerate() {
            assert_eq!(me(&server, access).await, 401, "round {round}: token {i}");
            let again = server
                .token_request(&format!(
                    "grant_type=refresh_token&refresh_token={}",
                    urlencode(refresh)
                ))
                .await;
            assert_eq!(again.status(), 400, "round {round}: refresh token {i}");
        }
    }
}

/// For each of 30 logins at once, a revocation of its refresh token races a
/// refresh with that same token. Nothing is answered 503, and every login
/// is dead afterwards, whichever came first: the refreshed successor (when
/// the refresh won) is refused, and so are the access tokens of the login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_racing_refreshes_are_never_lost() {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read");
    for round in 0..3 {
        let issued = logins(&server, 30).await;
        let races = issued.iter().map(|(_, refresh)| {
            let server = &server;
            async move {
                let refresh_form = format!(
                    "grant_type=refresh_token&refresh_token={}",
                    urlencode(refresh)
                );
                let (revoked, refreshed) =
                    tokio::join!(server.revoke(refresh), server.token_request(&refresh_form));
                let revoked = revoked.status().as_u16();
                let status = refreshed.status().as_u16();
                let body: Value = refreshed.json().await.unwrap_or_default();
                (revoked, status, body)
            }
        });
        for (i, (revoked, status, body)) in join_all(races).await.into_iter().enumerate() {
            assert_eq!(revoked, 200, "round {round}, login {i}: the revocation");
            assert!(
                status == 200 || status == 400,
                "round {round}, login {i}: the refresh answered {status}: {body}"
            );
            assert_eq!(
                me(&server, &issued[i].0).await,
                401,
                "round {round}, login {i}: the login's first access token"
            );
            if status == 200 {
                let successor = body["refresh_token"].as_str().unwrap();
                let access = body["access_token"].as_str().unwrap();
                let again = server
                    .token_request(&format!(
                        "grant_type=refresh_token&refresh_token={}",
                        urlencode(successor)
                    ))
                    .await;
                assert_eq!(
                    again.status(),
                    400,
                    "round {round}, login {i}: the successor outlived the revocation"
                );
                assert_eq!(
                    me(&server, access).await,
                    401,
                    "round {round}, login {i}: the refreshed access token"
                );
            }
        }
    }
}
