//! The login limits under concurrent guesses: a limit bounds how many
//! passwords are checked, however many requests arrive at once.

use futures_util::future::join_all;
use serde_json::Value;

use crate::harness::{Options, PASSWORD, TestServer, urlencode};

fn grant(user: &str, password: &str) -> String {
    format!(
        "grant_type=password&username={user}&password={}",
        urlencode(password)
    )
}

/// The status and `error` code of an answer from `/token`.
async fn answer(server: &TestServer, form: &str) -> (u16, String) {
    let response = server.token_request(form).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Sends every form in `forms` to `/token` at once; the answers, in the
/// order of `forms`. Each is a checked wrong password (400), a refusal past
/// the limit (429), or, on a loaded machine, the policy's refusal to run a
/// password check past its normal cost (503: nothing was checked).
async fn all_at_once(server: &TestServer, forms: &[String]) -> Vec<(u16, String)> {
    let answers = join_all(forms.iter().map(|form| answer(server, form))).await;
    for a in &answers {
        assert!(
            matches!(
                (a.0, a.1.as_str()),
                (400, "invalid_grant")
                    | (429, "too_many_attempts")
                    | (503, "temporarily_unavailable")
            ),
            "{a:?} among {answers:?}"
        );
    }
    answers
}

fn checked(answers: &[(u16, String)]) -> usize {
    answers.iter().filter(|(status, _)| *status == 400).count()
}

/// Sends wrong passwords made by `form` one at a time until one is refused
/// with 429; the number checked on the way. Attempts the policy did not
/// run (503) do not count.
async fn checked_until_refused(server: &TestServer, form: impl Fn(usize) -> String) -> usize {
    let mut checked = 0;
    for i in 0.. {
        match answer(server, &form(i)).await {
            (400, _) => checked += 1,
            (429, _) => return checked,
            (503, _) => {}
            other => panic!("{other:?}"),
        }
        assert!(checked <= 1000, "never refused");
    }
    unreachable!()
}

/// 60 wrong passwords for one user at once, under the default limit of 5:
/// at most 5 are checked, in every round, and no more is checked after
/// them. Once the limit is reached, the right password sent among another
/// burst of guesses is refused like them, never answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_guesses_for_one_user_stop_at_the_limit() {
    let server = TestServer::start().await;
    for round in 0..3 {
        let user = format!("victim{round}");
        server.add_user(&user, "tasks:read");
        let guesses: Vec<String> = (0..60)
            .map(|i| grant(&user, &format!("guess {i}")))
            .collect();
        let answers = all_at_once(&server, &guesses).await;
        let at_once = checked(&answers);
        assert!(
            (1..=5).contains(&at_once),
            "round {round}: {at_once} passwords checked at once: {answers:?}"
        );
        // Only those the policy refused to run (503) left places free.
        let after = checked_until_refused(&server, |i| grant(&user, &format!("later {i}"))).await;
        assert_eq!(at_once + after, 5, "round {round}: {answers:?}");

        let mut burst: Vec<String> = (0..30)
            .map(|i| grant(&user, &format!("more {i}")))
            .collect();
        burst.insert(15, grant(&user, PASSWORD));
        let answers = all_at_once(&server, &burst).await;
        assert!(
            answers.iter().all(|a| a.0 == 429),
            "round {round}: past the limit: {answers:?}"
        );
    }
}

/// 150 wrong logins for as many usernames from one address at once, under a
/// per-address limit of 100: at most 100 are checked, and no more after
/// them; then even a right password from that address is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_guesses_from_one_address_stop_at_the_limit() {
    let server = TestServer::start_with(Options {
        extra_env: vec![("TASKFLOW_LOGIN_MAX_FAILURES_PER_USER".into(), "1000".into())],
        ..Options::default()
    })
    .await;
    server.add_user("alice", "tasks:read");
    let guesses: Vec<String> = (0..150)
        .map(|i| grant(&format!("user{i}"), "a guess"))
        .collect();
    let answers = all_at_once(&server, &guesses).await;
    let at_once = checked(&answers);
    assert!(
        (1..=100).contains(&at_once),
        "{at_once} passwords checked at once"
    );
    let after = checked_until_refused(&server, |i| grant(&format!("later{i}"), "a guess")).await;
    assert_eq!(at_once + after, 100);
    assert_eq!(answer(&server, &grant("alice", PASSWORD)).await.0, 429);
}
