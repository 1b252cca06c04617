//! Rolling a policy out through the database to every replica: deploy,
//! rollback, refusals, late starters. The scenarios run on two replicas
//! sharing one SQLite file (`tests/api`) and two on PostgreSQL
//! (`tests/replicas`).
//!
//! Bound: a deployment is served by every replica within [`CONVERGENCE`]
//! (it takes a notification or a poll of at most 1 s, then compiling and
//! self-checking the component: about a second; the bound leaves room for
//! a loaded test machine). `just bench` measures the real time.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Options, Signer, TestServer, built_component, run_cli, test_postgres};

/// Longest a deployment may take to be served by every replica.
pub const CONVERGENCE: Duration = Duration::from_secs(30);

pub fn policy_a() -> Vec<u8> {
    std::fs::read(built_component("guest_auth")).unwrap()
}

pub fn policy_b() -> Vec<u8> {
    std::fs::read(built_component("guest_admin_delete")).unwrap()
}

/// Replicas on one database, their component file (policy A) in `dir`.
pub struct Fleet {
    pub replicas: Vec<TestServer>,
    pub options: Options,
    pub dir: tempfile::TempDir,
    /// Signs components; trusted by the replicas when trust is on.
    pub signer: Signer,
    deployed: AtomicUsize,
}

impl Fleet {
    /// `count` replicas sharing a database: the test PostgreSQL server's, or one SQLite file.
    pub async fn start(count: usize, trust: bool) -> Self {
        Self::start_with_env(count, trust, &[]).await
    }

    /// [`Fleet::start`], with `env` set for the replicas and the CLI.
    pub async fn start_with_env(count: usize, trust: bool, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::new();
        let component = dir.path().join("policy.wasm");
        signer.install(&component, &policy_a());
        let mut options = Options {
            component,
            extra_env: std::iter::once(("TASKFLOW_COMPONENT_WATCH_MS", "0"))
                .chain(env.iter().copied())
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            ..Options::default()
        };
        if test_postgres().is_none() {
            options.database_url = Some(format!(
                "sqlite://{}",
                dir.path().join("shared.db").display()
            ));
        }
        if trust {
            let trust = Signer::trust_file(dir.path(), &[&signer]);
            options.extra_env.push((
                "TASKFLOW_COMPONENT_TRUST".into(),
                trust.display().to_string(),
            ));
        }
        let mut fleet = Fleet {
            replicas: Vec::new(),
            options,
            dir,
            signer,
            deployed: AtomicUsize::new(0),
        };
        for _ in 0..count {
            fleet.add_replica().await;
        }
        fleet
    }

    /// Starts one more replica on the same database.
    pub async fn add_replica(&mut self) -> &TestServer {
        let server = TestServer::start_with(self.options.clone()).await;
        self.replicas.push(server);
        self.replicas.last().unwrap()
    }

    /// Runs `taskflow ARGS` as an operator would, with the fleet's settings
    /// (or, `untrusting`, without the trust file).
    pub fn cli(&self, args: &[&str], untrusting: bool) -> Output {
        let mut options = self.options.clone();
        if untrusting {
            options
                .extra_env
                .retain(|(name, _)| name != "TASKFLOW_COMPONENT_TRUST");
        }
        let data = tempfile::tempdir().unwrap();
        run_cli(data.path(), &options, args, "")
    }

    /// Writes `bytes` (and `signature`, if any) as a new file and deploys
    /// it through `taskflow auth deploy`; returns the CLI's output.
    pub fn deploy(&self, bytes: &[u8], signature: Option<String>, untrusting: bool) -> Output {
        let n = self.deployed.fetch_add(1, Ordering::Relaxed);
        let file = self.dir.path().join(format!("candidate-{n}.wasm"));
        std::fs::write(&file, bytes).unwrap();
        if let Some(signature) = signature {
            std::fs::write(crate::harness::minisig(&file), signature).unwrap();
        }
        let note = format!("candidate {n}");
        self.cli(
            &["auth", "deploy", path(&file), "--note", &note],
            untrusting,
        )
    }

    /// Deploys `bytes`, signed, which must succeed; returns the revision.
    pub fn deploy_signed(&self, bytes: &[u8]) -> i64 {
        let out = self.deploy(bytes, Some(self.signer.sign(bytes)), false);
        revision_of(&out)
    }

    /// `taskflow auth status --json`.
    pub fn status(&self) -> Value {
        let out = self.cli(&["auth", "status", "--json"], false);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn path(file: &Path) -> &str {
    file.to_str().unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The revision `auth deploy` or `auth rollback` reports.
pub fn revision_of(out: &Output) -> i64 {
    assert!(out.status.success(), "{}", stderr(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {stdout:?}"))
}

/// Waits until `server` serves `revision` (at the swap itself); how long
/// it took.
pub async fn wait_for_revision(server: &TestServer, revision: i64) -> Duration {
    let started = Instant::now();
    let served = server
        .observer()
        .wait_until(CONVERGENCE, |o| {
            o.policy_status().active.revision == Some(revision)
        })
        .await;
    assert!(
        served,
        "revision {revision} not served within {CONVERGENCE:?}: {}",
        server.health().await
    );
    started.elapsed()
}

/// Waits until `auth status` shows every replica in `condition` for the
/// desired revision.
pub async fn wait_for_condition(fleet: &Fleet, condition: &str) -> Value {
    let started = Instant::now();
    loop {
        let status = fleet.status();
        let replicas = status["replicas"].as_array().unwrap();
        if replicas.len() >= fleet.replicas.len()
            && replicas.iter().all(|r| r["condition"] == condition)
        {
            return status;
        }
        assert!(
            started.elapsed() < CONVERGENCE,
            "replicas never all {condition}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clients sending authenticated requests to every replica until stopped;
/// returns the statuses of the failed ones and how many were sent.
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<Vec<u16>>>,
}

impl Load {
    pub fn start(fleet: &Fleet, token: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for server in &fleet.replicas {
            for _ in 0..2 {
                let (url, client, token, stop, sent) = (
                    server.url("/tasks"),
                    server.client.clone(),
                    token.to_owned(),
                    stop.clone(),
                    sent.clone(),
                );
                workers.push(tokio::spawn(async move {
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed)
                        && sent.fetch_add(1, Ordering::Relaxed) < 200_000
                    {
                        let response = client.get(&url).bearer_auth(&token).send().await;
                        match response {
                            Ok(r) if r.status() == 200 => {}
                            Ok(r) => failures.push(r.status().as_u16()),
                            Err(_) => failures.push(0),
                        }
                    }
                    failures
                }));
            }
        }
        Self {
            stop,
            sent,
            workers,
        }
    }

    /// Stops the clients; every request must have succeeded.
    pub async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for worker in self.workers {
            failures.extend(worker.await.unwrap());
        }
        let sent = self.sent.load(Ordering::Relaxed);
        assert!(
            failures.is_empty(),
            "{} of {sent} requests failed: {failures:?}",
            failures.len()
        );
        assert!(sent > 100, "the clients barely ran ({sent} requests)");
    }
}

/// A deployment reaches every replica under client load without one
/// failed request; a rollback returns every replica to the first revision;
/// `auth history` lists both.
pub async fn deploy_and_rollback_under_load(fleet: &Fleet) {
    for server in &fleet.replicas {
        wait_for_revision(server, 1).await;
    }
    let first = &fleet.replicas[0];
    first.add_user("alice", "tasks:read tasks:write");
    let token = first.token("alice", None).await;
    let load = Load::start(fleet, &token);

    let revision = fleet.deploy_signed(&policy_b());
    assert_eq!(revision, 2);
    for server in &fleet.replicas {
        let took = wait_for_revision(server, revision).await;
        eprintln!("{} serves revision {revision} after {took:?}", server.base);
        assert_eq!(
            server.health().await["auth_component"]["name"],
            "guest-admin-delete"
        );
    }
    let out = fleet.cli(&["auth", "rollback"], false);
    assert_eq!(revision_of(&out), 1);
    for server in &fleet.replicas {
        wait_for_revision(server, 1).await;
        assert_eq!(
            server.health().await["auth_component"]["name"],
            "guest-auth"
        );
    }
    load.finish().await;

    let status = wait_for_condition(fleet, "current").await;
    assert_eq!(status["desired"]["revision"], 1, "{status}");
    let history = fleet.cli(&["auth", "history", "--json"], false);
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(history["desired"], 1);
    let revisions = history["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 2, "{history}");
    assert_eq!(revisions[0]["revision"], 2);
    assert_eq!(revisions[0]["signed"], true);
    assert_eq!(revisions[0]["note"], "candidate 0");
    // Rolling back to what is desired, or to a revision that does not exist, is refused.
    let again = fleet.cli(&["auth", "rollback", "1"], false);
    assert!(stderr(&again).contains("already the desired revision"));
    let missing = fleet.cli(&["auth", "rollback", "99"], false);
    assert!(stderr(&missing).contains("no revision 99"));
}

/// Revisions signed by an untrusted key, or changed by one byte after
/// signing, are refused by every replica, which keep serving the revision
/// they have and report why. The CLI, when it has the trust file, refuses
/// to store them at all.
pub async fn bad_revisions_are_refused_everywhere(fleet: &Fleet) {
    let first = &fleet.replicas[0];
    first.add_user("alice", "tasks:read");
    let token = first.token("alice", None).await;
    let stranger = Signer::new();
    let mut changed = policy_b();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    let cases = [
        (
            "untrusted key",
            policy_b(),
            Some(stranger.sign(&policy_b())),
            "signature_untrusted",
        ),
        (
            "one byte changed",
            changed,
            Some(fleet.signer.sign(&policy_b())),
            "signature_mismatch",
        ),
        ("unsigned", policy_b(), None, "signature_missing"),
    ];
    for (what, bytes, signature, reason) in cases {
        let refused = fleet.deploy(&bytes, signature.clone(), false);
        assert!(!refused.status.success(), "{what}: stored");
        assert!(
            stderr(&refused).contains("not deployed"),
            "{what}: {}",
            stderr(&refused)
        );

        let revision = revision_of(&fleet.deploy(&bytes, signature, true));
        let status = wait_for_condition(fleet, "refused").await;
        for replica in status["replicas"].as_array().unwrap() {
            assert_eq!(
                replica["last_refusal_revision"], revision,
                "{what}: {status}"
            );
            assert_eq!(replica["last_refusal_reason"], reason, "{what}: {status}");
            assert_eq!(replica["active_revision"], 1, "{what}: {status}");
        }
        for server in &fleet.replicas {
            let health = server.health().await;
            assert_eq!(health["auth_component"]["revision"], 1, "{what}");
            assert_eq!(
                server
                    .call("GET", "/tasks", Some(&token), None)
                    .await
                    .status(),
                200
            );
            assert!(server.log().contains(reason), "{what}");
        }
    }
}

/// A replica starting while the desired revision is one it refuses serves
/// its component file instead, and reports the refusal.
pub async fn a_replica_falls_back_to_its_file(fleet: &mut Fleet) {
    let revision = revision_of(&fleet.deploy(&policy_b(), None, true));
    let late = fleet.add_replica().await;
    let health = late.health().await;
    assert_eq!(
        health["auth_component"]["revision"],
        Value::Null,
        "{health}"
    );
    assert_eq!(health["auth_component"]["name"], "guest-auth");
    assert_eq!(health["auth_component"]["refused_candidates"], 1);
    assert!(late.log().contains("serving the component file instead"));
    let status = wait_for_condition(fleet, "refused").await;
    assert!(
        status["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["last_refusal_revision"] == revision),
        "{status}"
    );
}

/// A replica that stopped is shown as stale once its heartbeat is late.
pub async fn a_stopped_replica_is_shown_stale(fleet: &mut Fleet) {
    wait_for_condition(fleet, "current").await;
    let mut stopped = fleet.replicas.pop().unwrap();
    stopped.stop();
    let started = Instant::now();
    loop {
        let status = fleet.status();
        let conditions: Vec<&str> = status["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["condition"].as_str().unwrap())
            .collect();
        let mut sorted = conditions.clone();
        sorted.sort();
        if sorted == ["current", "stale"] {
            break;
        }
        assert!(
            started.elapsed() < CONVERGENCE,
            "never shown stale: {status}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let table = fleet.cli(&["auth", "status"], false);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("desired revision 1"), "{table}");
    assert!(table.contains("\tstale\t"), "{table}");
}

/// A replica started after a deployment serves the desired revision, not
/// its component file.
pub async fn a_late_replica_serves_the_desired_revision(fleet: &mut Fleet) {
    let revision = fleet.deploy_signed(&policy_b());
    wait_for_revision(&fleet.replicas[0], revision).await;
    let late = fleet.add_replica().await;
    let health = late.health().await;
    assert_eq!(health["auth_component"]["revision"], revision, "{health}");
    assert_eq!(health["auth_component"]["name"], "guest-admin-delete");
}
