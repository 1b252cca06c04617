//! Bearer checks answer from each replica's memory, kept current by the
//! change log: a change made through one replica (or the CLI) is refused by
//! the other within the bound, and a replica that cannot follow the log
//! falls back to the database, never to a stale answer, and catches up.

use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::harness::{Options, TestServer, fresh_postgres_database};
use crate::proxy::{self, Proxy};

/// What the tests allow for a change to reach the other replica: NOTIFY
/// takes milliseconds, the poll that backs it up runs every 100 ms; the
/// rest is room for a loaded test machine.
pub const BOUND: Duration = Duration::from_millis(1000);

/// Polls `GET path` at `server` with `token` until the answer is `want`,
/// for at most `within`; fails on any status but `want` and `meanwhile`.
pub async fn wait_for_status(
    server: &TestServer,
    path: &str,
    token: &str,
    want: u16,
    meanwhile: &[u16],
    within: Duration,
    what: &str,
) -> Duration {
    let started = Instant::now();
    loop {
        let status = server
            .call("GET", path, Some(token), None)
            .await
            .status()
            .as_u16();
        if status == want {
            return started.elapsed();
        }
        assert!(
            meanwhile.contains(&status),
            "{what}: answered {status} while waiting for {want}"
        );
        assert!(
            started.elapsed() < within,
            "{what}: still {status} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A revocation through one replica, and a removal, a password change and a
/// scope change through the CLI, are each refused by the other replica
/// within the bound; so is one made while the other replica's listener
/// connection has just been killed (the poll carries it).
#[tokio::test]
async fn changes_reach_the_other_replica_within_the_bound() {
    let database = fresh_postgres_database(&crate::postgres_server());
    let options = Options {
        database_url: Some(database.clone()),
        ..Options::default()
    };
    let (a, b) = tokio::join!(
        TestServer::start_with(options.clone()),
        TestServer::start_with(options),
    );
    let users = ["alice", "bob", "carol", "dave", "erin"];
    for user in users {
        a.add_user(user, "tasks:read");
    }
    let mut tokens = std::collections::HashMap::new();
    for user in users {
        let token = a.token(user, None).await;
        // Replica b checks each once, and remembers the user.
        assert_eq!(
            b.call("GET", "/tasks", Some(&token), None).await.status(),
            200
        );
        tokens.insert(user, token);
    }

    assert_eq!(a.revoke(&tokens["alice"]).await.status(), 200);
    let took = wait_for_status(
        &b,
        "/tasks",
        &tokens["alice"],
        401,
        &[200],
        BOUND,
        "revocation",
    )
    .await;
    eprintln!("revocation reached the other replica in {took:?}");

    assert!(a.cli(&["user", "remove", "bob"], "").status.success());
    wait_for_status(&b, "/tasks", &tokens["bob"], 401, &[200], BOUND, "removal").await;

    assert!(
        a.cli(&["user", "passwd", "carol"], "a new long passphrase\n")
            .status
            .success()
    );
    wait_for_status(
        &b,
        "/tasks",
        &tokens["carol"],
        401,
        &[200],
        BOUND,
        "password change",
    )
    .await;

    assert!(a.cli(&["user", "scopes", "dave", ""], "").status.success());
    wait_for_status(
        &b,
        "/tasks",
        &tokens["dave"],
        403,
        &[200],
        BOUND,
        "scope change",
    )
    .await;

    // Kill b's listener connection: the change arrives by the poll instead.
    let mut admin = sqlx::PgConnection::connect(&database).await.unwrap();
    let killed = sqlx::query_scalar::<_, bool>(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "the replicas listen for changes");
    assert_eq!(a.revoke(&tokens["erin"]).await.status(), 200);
    wait_for_status(
        &b,
        "/tasks",
        &tokens["erin"],
        401,
        &[200],
        BOUND,
        "revocation without a listener",
    )
    .await;
    admin.close().await.unwrap();
}

/// With its database connections cut, a replica cannot follow the log: once
/// its memory's lease runs out it answers from the database (here: 503,
/// since that is cut too), never the stale "valid" for a token revoked
/// meanwhile at the other replica; when the connection returns it catches
/// up from the log and refuses the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_the_log_never_answers_stale_and_catches_up() {
    let database = fresh_postgres_database(&crate::postgres_server());
    let relay = Proxy::start(proxy::address_of(&database)).await;
    let timeout = ("TASKFLOW_DATABASE_TIMEOUT_MS".to_owned(), "1000".to_owned());
    let a = TestServer::start_with(Options {
        database_url: Some(database.clone()),
        ..Options::default()
    })
    .await;
    let b = TestServer::start_with(Options {
        database_url: Some(proxy::through(&database, relay.address)),
        extra_env: vec![timeout],
        ..Options::default()
    })
    .await;
    a.add_user("alice", "tasks:read");
    let revoked = a.token("alice", None).await;
    let kept = a.token("alice", None).await;
    for token in [&revoked, &kept] {
        assert_eq!(
            b.call("GET", "/users/me", Some(token), None).await.status(),
            200
        );
    }

    relay.cut();
    // The lease (500 ms) runs out: from then on b reads the database, which it cannot reach.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(a.revoke(&revoked).await.status(), 200);
    for _ in 0..20 {
        let status = b
            .call("GET", "/users/me", Some(&revoked), None)
            .await
            .status();
        assert_eq!(status, 503, "cut off, b must not answer from its memory");
    }
    assert!(
        b.log().contains("cannot read the change log"),
        "{}",
        b.log()
    );

    relay.restore().await;
    wait_for_status(
        &b,
        "/users/me",
        &revoked,
        401,
        &[503],
        Duration::from_secs(10),
        "catching up",
    )
    .await;
    assert_eq!(
        b.call("GET", "/users/me", Some(&kept), None).await.status(),
        200
    );
    // The follower, too, is back: the memory answers again.
    let back = Instant::now();
    while !b.log().contains("following the change log again") {
        assert!(back.elapsed() < Duration::from_secs(10), "{}", b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
