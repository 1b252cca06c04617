//! What commands do and, as much, what they do not: a command that reads
//! creates nothing, only `serve` makes the signing secret, a locked-out
//! user is unlocked without a restart, logs carry no colour codes where no
//! terminal reads them, a command line prints only what it was asked for,
//! and an error says each thing once.

use futures_util::future::join_all;

use crate::harness::{Options, PASSWORD, TestServer, run_cli, urlencode};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// SQLite in the data directory, whatever database the suite runs on: the
/// mistyped `--data-dir` case is about files.
fn on_sqlite() -> Options {
    Options {
        database_url: None,
        ..Options::default()
    }
}

#[tokio::test]
async fn commands_that_read_create_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let mistyped = parent.path().join("taskflow-dtaa");
    for args in [
        &["user", "list"][..],
        &["user", "remove", "alice"],
        &["user", "scopes", "alice", "tasks:read"],
        &["user", "unlock", "alice"],
        &["keys", "list"],
        &["keys", "retire", "k1"],
        &["auth", "status"],
        &["auth", "history"],
        &["auth", "rollback"],
        &["auth", "promote"],
        &["auth", "shadow", "status"],
        &["config", "show"],
    ] {
        let out = run_cli(&mistyped, &on_sqlite(), args, "");
        let said = stderr(&out);
        match args {
            ["config", "show"] => assert!(out.status.success(), "{args:?}: {said}"),
            // Nothing runs, so nothing is locked: said, not an error.
            ["user", "unlock", _] => assert!(
                out.status.success() && stdout(&out).contains("no server is running"),
                "{args:?}: {said}"
            ),
            _ => {
                assert!(!out.status.success(), "{args:?} succeeded");
                assert!(
                    said.contains("no database at") && said.contains("taskflow-dtaa"),
                    "{args:?}: {said}"
                );
                assert_eq!(said.lines().count(), 1, "{args:?}: {said}");
            }
        }
        assert!(
            !mistyped.exists(),
            "{args:?} created {}",
            mistyped.display()
        );
    }
}

#[tokio::test]
async fn only_serve_makes_the_signing_secret() {
    let data = tempfile::tempdir().unwrap();
    let options = Options {
        secret: None,
        ..Options::default()
    };
    let secret = data.path().join("jwt-secret");
    let out = run_cli(
        data.path(),
        &options,
        &["user", "add", "alice", "--scopes", "tasks:read"],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!secret.exists(), "user add wrote a signing secret");
    for args in [&["keys", "list"][..], &["keys", "rotate"]] {
        let out = run_cli(data.path(), &options, args, "");
        assert!(!out.status.success(), "{args:?} ran without a secret");
        let said = stderr(&out);
        assert!(
            said.contains("no signing secret yet") && said.contains(&secret.display().to_string()),
            "{args:?}: {said}"
        );
        assert!(!secret.exists(), "{args:?} wrote a signing secret");
    }
    // The user added before the secret existed logs in once `serve` made it.
    let server = TestServer::start_in(data, options);
    assert!(secret.exists());
    server.token("alice", None).await;
    let out = server.cli(&["keys", "list"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    assert!(
        listed.contains("first start") && !listed.contains("1970"),
        "{listed}"
    );
}

#[tokio::test]
async fn user_add_asks_for_scopes() {
    let server = TestServer::start().await;
    let out = server.cli(&["user", "add", "alice"], &format!("{PASSWORD}\n"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--scopes"), "{}", stderr(&out));
    // None on purpose is said so.
    let out = server.cli(
        &["user", "add", "bob", "--scopes", ""],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("with scopes []"), "{}", stdout(&out));
}

fn grant(user: &str, password: &str) -> String {
    format!(
        "grant_type=password&username={user}&password={}",
        urlencode(password)
    )
}

/// The statuses `/token` answers to `forms` sent at once.
async fn statuses(server: &TestServer, forms: &[String]) -> Vec<u16> {
    join_all(
        forms
            .iter()
            .map(|form| async move { server.token_request(form).await.status().as_u16() }),
    )
    .await
}

#[tokio::test]
async fn an_unlocked_user_logs_in_at_once_and_the_limit_still_holds() {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read");
    let wrong = vec![grant("alice", "not the password"); 5];
    assert!(
        statuses(&server, &wrong).await.iter().all(|s| *s == 400),
        "five wrong passwords are each checked"
    );
    let right = grant("alice", PASSWORD);
    assert_eq!(statuses(&server, std::slice::from_ref(&right)).await, [429]);

    // Any spelling of the name unlocks it, as any spelling counted.
    let out = server.cli(&["user", "unlock", "ALICE"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("forgot 5 failed logins"),
        "{}",
        stdout(&out)
    );
    assert_eq!(statuses(&server, std::slice::from_ref(&right)).await, [200]);

    // Unlocked, the limit holds as before: of a burst of wrong guesses,
    // no more than the limit are checked, every time.
    for round in 0..3 {
        let burst = vec![grant("alice", "still not it"); 16];
        let answers = statuses(&server, &burst).await;
        let checked = answers.iter().filter(|s| **s == 400).count();
        assert!(
            checked <= 5 && answers.iter().all(|s| matches!(s, 400 | 429 | 503)),
            "round {round}: {answers:?}"
        );
        assert_eq!(statuses(&server, std::slice::from_ref(&right)).await, [429]);
        let out = server.cli(&["user", "unlock", "alice"], "");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(statuses(&server, &[right]).await, [200]);
}

#[tokio::test]
async fn logs_in_a_file_carry_no_colour_codes() {
    // NO_COLOR set but empty does not ask for plain text (no-color.org):
    // the log is plain because it goes to a file.
    let mut options = Options::process();
    options.extra_env.push(("NO_COLOR".into(), String::new()));
    let server = TestServer::start_with(options).await;
    server.add_user("alice", "tasks:read");
    server.token("alice", None).await;
    let log = server.log();
    assert!(log.contains("auth policy loaded"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
}

#[tokio::test]
async fn a_command_line_prints_only_what_it_was_asked_for() {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read");
    let mut options = server.options.clone();
    // RUST_LOG as an operator's shell has it: not set (empty is the same).
    options.extra_env.push(("RUST_LOG".into(), String::new()));
    for args in [
        &["user", "list"][..],
        &["auth", "status"],
        &["keys", "list"],
    ] {
        let out = run_cli(server.data.path(), &options, args, "");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?} logged");
    }
}

#[tokio::test]
async fn an_error_says_each_thing_once() {
    let data = tempfile::tempdir().unwrap();
    let mut options = on_sqlite();
    // A database that never answers: the pool gives up after the timeout.
    options.database_url = Some("postgres://taskflow@127.0.0.1:9/taskflow".into());
    options
        .extra_env
        .push(("TASKFLOW_DATABASE_TIMEOUT_MS".into(), "300".into()));
    let out = run_cli(data.path(), &options, &["user", "list"], "");
    assert!(!out.status.success());
    let said = stderr(&out);
    let line = said.trim().strip_prefix("error: ").unwrap_or(&said);
    let parts: Vec<&str> = line.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..]
                .iter()
                .any(|later| later.contains(part) || part.contains(later)),
            "said twice: {said}"
        );
    }
}
