//! Usernames per RFC 8265 (PRECIS `UsernameCaseMapped`) at `user add` and
//! at login, and the least a password is.

use serde_json::Value;

use crate::harness::{PASSWORD, TestServer, urlencode};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `POST /token` with `name` and `password`: the status and the body.
async fn login(server: &TestServer, name: &str, password: &str) -> (u16, Value) {
    let response = server
        .token_request(&format!(
            "grant_type=password&username={}&password={}",
            urlencode(name),
            urlencode(password)
        ))
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// The `sub` of an access token.
fn subject(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sub"].as_str().unwrap().to_owned()
}

/// Names that differ only by case, width or Unicode normalisation are one
/// account: added in canonical form, refused when added again in another
/// spelling, and signed in to by any spelling.
#[tokio::test]
async fn names_that_look_the_same_are_one_account() {
    let server = TestServer::start().await;
    let added = server.cli(
        &["user", "add", "Jos\u{e9}", "--scopes", "tasks:read"],
        &format!("{PASSWORD}\n"),
    );
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(
        stdout(&added).contains("added user jos\u{e9} "),
        "{}",
        stdout(&added)
    );

    for same in [
        "jos\u{e9}",
        "JOS\u{c9}",
        "jose\u{301}",                             // NFD
        "\u{ff2a}\u{ff4f}\u{ff53}\u{e9}",          // fullwidth
        "\u{ff2a}\u{ff2f}\u{ff33}\u{ff25}\u{301}", // fullwidth, NFD
    ] {
        let again = server.cli(
            &["user", "add", same, "--scopes", ""],
            &format!("{PASSWORD}\n"),
        );
        assert!(!again.status.success(), "{same:?} was added");
        assert!(
            stderr(&again).contains("already exists"),
            "{same:?}: {}",
            stderr(&again)
        );
        let (status, body) = login(&server, same, PASSWORD).await;
        assert_eq!(status, 200, "{same:?}: {body}");
        assert_eq!(subject(body["access_token"].as_str().unwrap()), "jos\u{e9}");
    }
    assert_eq!(
        stdout(&server.cli(&["user", "list"], "")),
        "jos\u{e9}\ttasks:read\n"
    );
    // Administration finds the account by any spelling too.
    let scoped = server.cli(
        &["user", "scopes", "JOSE\u{301}", "tasks:read tasks:write"],
        "",
    );
    assert!(scoped.status.success(), "{}", stderr(&scoped));
    assert_eq!(
        stdout(&server.cli(&["user", "list"], "")),
        "jos\u{e9}\ttasks:read tasks:write\n"
    );
}

/// Every spelling of a name counts against its one per-user limit.
#[tokio::test]
async fn the_login_limit_counts_every_spelling_of_a_name() {
    let server = TestServer::start_with(crate::harness::Options {
        extra_env: vec![("TASKFLOW_LOGIN_MAX_FAILURES_PER_USER".into(), "3".into())],
        ..Default::default()
    })
    .await;
    server.add_user("alice", "tasks:read");
    for spelling in ["Alice", "ALICE", "\u{ff41}lice"] {
        assert_eq!(login(&server, spelling, "wrong guess").await.0, 400);
    }
    let (status, body) = login(&server, "alice", PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    // Failed logins and the refusal are logged with the name, never the password.
    let log = server.log();
    assert!(log.contains("login failed"), "{log}");
    assert!(log.contains("username=alice"), "{log}");
    assert!(log.contains("too many failed logins"), "{log}");
    assert!(!log.contains("wrong guess"), "a password was logged");
    assert!(!log.contains(PASSWORD), "a password was logged");
}

/// Invisible characters, bidi overrides and the like are refused with the
/// reason, and nothing is added.
#[tokio::test]
async fn invisible_and_bidi_characters_are_refused() {
    let server = TestServer::start().await;
    for (name, character) in [
        ("bob\u{200b}", "U+200B"),
        ("\u{feff}bob", "U+FEFF"),
        ("bo\u{ad}b", "U+00AD"),
        ("bob\u{202e}gpj.exe", "U+202E"),
        ("bob smith", "U+0020"),
    ] {
        let out = server.cli(
            &["user", "add", name, "--scopes", ""],
            &format!("{PASSWORD}\n"),
        );
        assert!(!out.status.success(), "{name:?} was added");
        let message = stderr(&out);
        assert!(message.contains(character), "{name:?}: {message}");
        assert!(message.contains("RFC 8265"), "{message}");
        assert!(
            !message.contains('\u{202e}'),
            "the message shows the override raw"
        );
        // At login, such a name is just not an account.
        assert_eq!(login(&server, name, PASSWORD).await.0, 400);
    }
    assert_eq!(stdout(&server.cli(&["user", "list"], "")), "");
}

/// NIST SP 800-63B: passwords under 8 characters are refused at `user add`
/// and `user passwd`, with the reason.
#[tokio::test]
async fn short_passwords_are_refused() {
    let server = TestServer::start().await;
    let out = server.cli(&["user", "add", "carol", "--scopes", ""], "1234567\n");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("at least 8 characters"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&server.cli(&["user", "list"], "")), "");

    server.add_user("carol", "");
    let out = server.cli(&["user", "passwd", "carol"], "short\n");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("at least 8 characters"),
        "{}",
        stderr(&out)
    );
    assert_eq!(login(&server, "carol", PASSWORD).await.0, 200, "unchanged");
    let out = server.cli(&["user", "passwd", "carol"], "eight ch\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(login(&server, "carol", "eight ch").await.0, 200);
}

/// Runs `statement` on the server's database directly, as an older
/// version of TaskFlow might have left it.
async fn execute(server: &TestServer, statement: &str) {
    use sqlx::{Connection, Executor};
    match &server.options.database_url {
        Some(url) => {
            let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
            connection.execute(statement).await.unwrap();
        }
        None => {
            let url = format!(
                "sqlite://{}",
                server.data.path().join("taskflow.db").display()
            );
            let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
            connection.execute(statement).await.unwrap();
        }
    }
}

/// A name stored before names were canonical still signs in, typed
/// exactly as stored; `user list` marks it; no new user may take its
/// canonical form; and a canonical account of that form would win.
#[tokio::test]
async fn a_name_stored_before_canonical_names_still_signs_in() {
    let server = TestServer::start().await;
    server.add_user("legacy", "tasks:read");
    execute(
        &server,
        "UPDATE users SET username = 'Legacy' WHERE username = 'legacy'",
    )
    .await;

    let (status, body) = login(&server, "Legacy", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(subject(body["access_token"].as_str().unwrap()), "Legacy");
    assert_eq!(login(&server, "legacy", PASSWORD).await.0, 400);
    let listed = stdout(&server.cli(&["user", "list"], ""));
    assert!(
        listed.starts_with("Legacy\ttasks:read\t# not canonical (RFC 8265)"),
        "{listed}"
    );
    let taken = server.cli(
        &["user", "add", "legacy", "--scopes", ""],
        &format!("{PASSWORD}\n"),
    );
    assert!(!taken.status.success());
    assert!(
        stderr(&taken).contains("user Legacy already exists"),
        "{}",
        stderr(&taken)
    );
    // The exact stored name is how administration reaches it.
    let removed = server.cli(&["user", "remove", "Legacy"], "");
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert_eq!(stdout(&server.cli(&["user", "list"], "")), "");
}
