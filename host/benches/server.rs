//! Server benchmark: the real `taskflow` binary on loopback under `wrk`.
//!
//! - `GET /tasks` with a valid Bearer token against the same handler with no
//!   authentication (`/bench/unauthenticated/tasks`, only in builds with the
//!   `bench-control` feature), at concurrency 1 and 64: throughput, p50/p99
//!   latency, and peak resident memory;
//! - start-up: process start to the first answered request, with an empty
//!   and with a warm compiled-component cache;
//! - swap: from a new component file to it serving;
//! - hostile neighbours: valid Bearer traffic alone, and while clients send
//!   requests that spin, exhaust memory or panic in the policy's Bearer
//!   check;
//! - against the peer: the same Bearer `GET /tasks` on the stack TaskFlow
//!   replaces (FastAPI, PyJWT, SQLite under uvicorn; `benches/peer/`), with
//!   one worker and with one per core;
//! - propagation (with `TASKFLOW_TEST_POSTGRES_URL`, as `just bench` sets
//!   it): from a revocation's 200 at one replica to its refusal at the other;
//! - fleet rollout (PostgreSQL too): from `taskflow auth deploy` to both
//!   replicas serving the new revision, median of several deployments;
//! - shadow: Bearer `GET /tasks` at 64 connections with a candidate
//!   shadowing the policy (`taskflow auth shadow`) against without one.
//!
//! Run with `just bench`, which builds with the feature and installs `wrk`.

#[cfg(feature = "bench-control")]
mod common;

#[cfg(not(feature = "bench-control"))]
fn main() {
    eprintln!("the server benchmark needs the bench-control feature: run `just bench`");
    std::process::exit(2);
}

#[cfg(feature = "bench-control")]
fn main() {
    bench::run();
}

#[cfg(feature = "bench-control")]
mod bench {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::common;

    const SECRET: &str = "benchmark-secret-of-thirty-two-bytes-or-more";
    const PASSWORD: &str = "benchmark password";

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn component(name: &str) -> PathBuf {
        workspace().join(format!("target/wasm32-wasip2/component/{name}.wasm"))
    }

    fn seconds() -> u64 {
        std::env::var("TASKFLOW_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5)
    }

    struct Server {
        child: Child,
        address: String,
        started: Instant,
        ready_after: Duration,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn taskflow(data: &Path, policy: &Path, cache: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_taskflow"));
        command
            .env("TASKFLOW_DATA_DIR", data)
            .env("TASKFLOW_AUTH_COMPONENT", policy)
            .env("TASKFLOW_COMPONENT_CACHE_DIR", cache)
            .env("TASKFLOW_JWT_SECRET", SECRET)
            .env("TASKFLOW_COMPONENT_WATCH_MS", "0")
            .env("RUST_LOG", "warn");
        command
    }

    /// Starts the server and measures process start to the first `200` of `/health`.
    fn start(data: &Path, policy: &Path, cache: &Path) -> Server {
        let started = Instant::now();
        let mut child = taskflow(data, policy, cache)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start taskflow");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("taskflow listening on http://")
            .expect("the server's announcement")
            .to_owned();
        loop {
            if get(&address, "/health", None).0 == 200 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server never answered"
            );
        }
        let ready_after = started.elapsed();
        Server {
            child,
            address,
            started,
            ready_after,
        }
    }

    /// A minimal HTTP/1.1 exchange: (status, body).
    fn request(
        address: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let Ok(mut stream) = TcpStream::connect(address) else {
            return (0, String::new());
        };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        if stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.as_bytes()))
            .is_err()
        {
            return (0, String::new());
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    fn get(address: &str, path: &str, token: Option<&str>) -> (u16, String) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        request(address, "GET", path, &headers, "")
    }

    struct Load {
        requests_per_second: f64,
        p50_ms: f64,
        p99_ms: f64,
        non_2xx: u64,
    }

    impl Load {
        fn mean(a: &Load, b: &Load) -> Load {
            Load {
                requests_per_second: (a.requests_per_second + b.requests_per_second) / 2.0,
                p50_ms: (a.p50_ms + b.p50_ms) / 2.0,
                p99_ms: (a.p99_ms + b.p99_ms) / 2.0,
                non_2xx: a.non_2xx + b.non_2xx,
            }
        }
    }

    fn wrk(url: &str, connections: u32, token: Option<&str>) -> Load {
        let threads = connections.min(2).to_string();
        let mut command = Command::new("wrk");
        command.args([
            "-t",
            &threads,
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{}s", seconds()),
            "--latency",
        ]);
        if let Some(token) = token {
            command.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        let output = command
            .arg(url)
            .output()
            .expect("run wrk (just bench installs it)");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let field = |prefix: &str| -> &str {
            text.lines()
                .find_map(|l| l.trim_start().strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} in wrk's output:\n{text}"))
                .trim()
        };
        let non_2xx = text
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("Non-2xx or 3xx responses:"))
            .map_or(0, |n| n.trim().parse().unwrap_or(u64::MAX));
        Load {
            requests_per_second: field("Requests/sec:").parse().unwrap(),
            p50_ms: millis(field("50%")),
            p99_ms: millis(field("99%")),
            non_2xx,
        }
    }

    fn millis(value: &str) -> f64 {
        let split = value.find(|c: char| c.is_ascii_alphabetic()).unwrap();
        let (number, unit) = value.split_at(split);
        let number: f64 = number.parse().unwrap();
        match unit {
            "us" => number / 1000.0,
            "ms" => number,
            "s" => number * 1000.0,
            other => panic!("unknown unit {other}"),
        }
    }

    fn peak_rss_mib(pid: u32) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    fn median(mut samples: Vec<f64>) -> f64 {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    }

    pub fn run() {
        // TASKFLOW_BENCH_ONLY=hostile|peer|propagation|rollout|shadow runs one section alone.
        let cache = tempfile::tempdir().unwrap();
        match std::env::var("TASKFLOW_BENCH_ONLY").as_deref() {
            Ok("hostile") => return hostile_neighbours(cache.path()),
            Ok("shadow") => return shadow(cache.path()),
            Ok("peer") => {
                let data = tempfile::tempdir().unwrap();
                let policy = data.path().join("policy.wasm");
                std::fs::copy(component("guest_auth"), &policy).unwrap();
                let (server, token) = seeded_server(data.path(), &policy, cache.path());
                return against_peer(&server.address, &token);
            }
            Ok("propagation") => {
                let policy = cache.path().join("policy.wasm");
                std::fs::copy(component("guest_auth"), &policy).unwrap();
                let postgres = std::env::var("TASKFLOW_TEST_POSTGRES_URL")
                    .expect("propagation needs TASKFLOW_TEST_POSTGRES_URL");
                return propagation(&postgres, &policy, cache.path());
            }
            Ok("rollout") => {
                let policy = cache.path().join("policy.wasm");
                std::fs::copy(component("guest_auth"), &policy).unwrap();
                let postgres = std::env::var("TASKFLOW_TEST_POSTGRES_URL")
                    .expect("rollout needs TASKFLOW_TEST_POSTGRES_URL");
                return rollout(&postgres, &policy, cache.path());
            }
            _ => {}
        }
        let data = tempfile::tempdir().unwrap();
        let policy = data.path().join("policy.wasm");
        std::fs::copy(component("guest_auth"), &policy).unwrap();

        // Start-up: an empty cache compiles the component and runs its
        // self-check; a warm one deserialises it and remembers the check.
        let cold = start(data.path(), &policy, cache.path()).ready_after;
        let warm: Vec<f64> = (0..5)
            .map(|_| {
                start(data.path(), &policy, cache.path())
                    .ready_after
                    .as_secs_f64()
                    * 1000.0
            })
            .collect();
        let warm = median(warm);

        let (server, token) = seeded_server(data.path(), &policy, cache.path());
        let bearer_url = format!("http://{}/tasks", server.address);
        let control_url = format!("http://{}/bench/unauthenticated/tasks", server.address);
        assert_eq!(
            get(&server.address, "/bench/unauthenticated/tasks", None).1,
            get(&server.address, "/tasks", Some(&token)).1
        );

        let mut table = format!(
            "### `GET /tasks` under load (wrk; two runs of {} s per route, in the order control, Bearer, Bearer, control; 10 tasks listed)\n\n| concurrency | route | req/s | p50 | p99 | Bearer / control |\n|---|---|---|---|---|---|\n",
            seconds()
        );
        let mut peak = 0.0;
        for connections in [1, 64] {
            // A-B-B-A, so that drift on a shared machine weighs on both alike.
            let control_1 = wrk(&control_url, connections, None);
            let bearer_1 = wrk(&bearer_url, connections, Some(&token));
            let bearer_2 = wrk(&bearer_url, connections, Some(&token));
            let control_2 = wrk(&control_url, connections, None);
            let control = Load::mean(&control_1, &control_2);
            let bearer = Load::mean(&bearer_1, &bearer_2);
            assert_eq!(
                control.non_2xx + bearer.non_2xx,
                0,
                "requests failed under load"
            );
            peak = peak_rss_mib(server.child.id());
            for (name, load) in [
                ("control (no auth)", &control),
                ("Bearer via component", &bearer),
            ] {
                let ratio = if std::ptr::eq(load, &bearer) {
                    format!(
                        "throughput {:.1}%, p99 {:.2}×",
                        100.0 * bearer.requests_per_second / control.requests_per_second,
                        bearer.p99_ms / control.p99_ms
                    )
                } else {
                    String::new()
                };
                table.push_str(&format!(
                    "| {connections} | {name} | {:.0} | {:.2} ms | {:.2} ms | {ratio} |\n",
                    load.requests_per_second, load.p50_ms, load.p99_ms
                ));
            }
        }
        table.push_str(&format!(
            "\nPeak resident memory of the server after both loads: {peak:.0} MiB.\n"
        ));
        common::report(&table);
        against_peer(&server.address, &token);

        // Swap: a component never seen (compile + self-check), then back to
        // one already compiled and checked.
        let mut swaps = Vec::new();
        for (label, name, expect) in [
            (
                "new component (compile + self-check)",
                "guest_admin_delete",
                "guest-admin-delete",
            ),
            ("known component (cached)", "guest_auth", "guest-auth"),
        ] {
            let started = Instant::now();
            let temp = data.path().join("policy.partial");
            std::fs::copy(component(name), &temp).unwrap();
            std::fs::rename(&temp, &policy).unwrap();
            let reload = taskflow(data.path(), &policy, cache.path())
                .args(["auth", "reload"])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(reload.success());
            while !get(&server.address, "/health", None)
                .1
                .contains(&format!("\"name\":\"{expect}\""))
            {
                assert!(started.elapsed() < Duration::from_secs(60));
            }
            swaps.push((label, started.elapsed()));
        }
        let _ = server.started;
        let mut table = String::from("### Start-up and swap\n\n| what | time |\n|---|---|\n");
        table.push_str(&format!(
            "| start to first answer, empty compiled-component cache | {:.0} ms |\n",
            cold.as_secs_f64() * 1000.0
        ));
        table.push_str(&format!(
            "| start to first answer, warm cache (median of 5) | {warm:.0} ms |\n"
        ));
        for (label, time) in swaps {
            table.push_str(&format!(
                "| swap via `taskflow auth reload`, {label} | {:.0} ms |\n",
                time.as_secs_f64() * 1000.0
            ));
        }
        common::report(&table);
        drop(server);

        hostile_neighbours(cache.path());
        shadow(cache.path());
        match std::env::var("TASKFLOW_TEST_POSTGRES_URL") {
            Ok(server) => {
                propagation(&server, &policy, cache.path());
                rollout(&server, &policy, cache.path());
            }
            Err(_) => common::report(
                "### Propagation between replicas, fleet rollout\n\nNot measured: no PostgreSQL server (run `just bench`, which starts one).\n",
            ),
        }
    }

    /// Bearer `GET /tasks` at 64 connections without a shadow and with
    /// `guest-admin-delete` shadowing `guest-auth` (started and stopped by
    /// the CLI), in the order without, with, with, without.
    fn shadow(cache: &Path) {
        let data = tempfile::tempdir().unwrap();
        let policy = data.path().join("policy.wasm");
        std::fs::copy(component("guest_auth"), &policy).unwrap();
        let (server, token) = seeded_server(data.path(), &policy, cache);
        let url = format!("http://{}/tasks", server.address);
        let cli = |args: &[&str]| {
            let out = taskflow(data.path(), &policy, cache)
                .args(args)
                .output()
                .expect("run taskflow");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let wait_for = |state: &str| {
            let started = Instant::now();
            loop {
                let now: serde_json::Value =
                    serde_json::from_str(&cli(&["auth", "shadow", "status", "--json"])).unwrap();
                if now["replicas"][0]["state"] == state {
                    return now;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the shadow never became {state}: {now}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        let candidate = component("guest_admin_delete");
        let without_1 = wrk(&url, 64, Some(&token));
        cli(&["auth", "shadow", candidate.to_str().unwrap()]);
        wait_for("running");
        let with_1 = wrk(&url, 64, Some(&token));
        let with_2 = wrk(&url, 64, Some(&token));
        cli(&["auth", "shadow", "stop"]);
        let counts = wait_for("stopped");
        let without_2 = wrk(&url, 64, Some(&token));
        let without = Load::mean(&without_1, &without_2);
        let with = Load::mean(&with_1, &with_2);
        assert_eq!(
            without.non_2xx + with.non_2xx,
            0,
            "requests failed under load"
        );
        let totals = &counts["replicas"][0]["totals"];
        let mut table = format!(
            "### Shadow evaluation (wrk, 64 connections, two runs of {} s each, in the order without, with, with, without; Bearer `GET /tasks`, `guest-admin-delete` shadowing `guest-auth`)

| shadow | req/s | p50 | p99 | with / without |
|---|---|---|---|---|
",
            seconds()
        );
        for (name, load) in [("none", &without), ("running", &with)] {
            let ratio = if std::ptr::eq(load, &with) {
                format!(
                    "throughput {:.1}%, p99 {:.2}×",
                    100.0 * with.requests_per_second / without.requests_per_second,
                    with.p99_ms / without.p99_ms
                )
            } else {
                String::new()
            };
            table.push_str(&format!(
                "| {name} | {:.0} | {:.2} ms | {:.2} ms | {ratio} |
",
                load.requests_per_second, load.p50_ms, load.p99_ms
            ));
        }
        table.push_str(&format!(
            "
Compared by the candidate during both runs: {} agreed, {} dropped (queue full), {} failed, {} disagreed.
",
            totals["agree"],
            totals["dropped"],
            totals["candidate_failed"],
            totals["allowed_vs_denied"].as_u64().unwrap_or(0)
                + totals["different_denial"].as_u64().unwrap_or(0)
                + totals["different_scopes"].as_u64().unwrap_or(0)
        ));
        common::report(&table);
    }

    /// A server with the user `bench` owning 10 tasks, and a token of theirs.
    fn seeded_server(data: &Path, policy: &Path, cache: &Path) -> (Server, String) {
        let server = start(data, policy, cache);
        let token = login_with(taskflow(data, policy, cache), &server.address);
        for i in 0..TASKS {
            let body = format!(r#"{{"title":"task {i}","description":"benchmark"}}"#);
            let auth = format!("Bearer {token}");
            let (status, _) = request(
                &server.address,
                "POST",
                "/tasks",
                &[("Authorization", &auth)],
                &body,
            );
            assert_eq!(status, 201);
        }
        (server, token)
    }

    /// Tasks the benchmark user owns, on TaskFlow and on the peer alike.
    const TASKS: u32 = 10;

    /// The peer is the stack TaskFlow replaces (`benches/peer/app.py`:
    /// FastAPI, `OAuth2PasswordBearer`, PyJWT, SQLite) under uvicorn, in the
    /// virtualenv `TASKFLOW_BENCH_PEER` names (`just bench` makes it). Bearer
    /// `GET /tasks` of the same 10 tasks, the same wrk command, one after the
    /// other: TaskFlow, the peer on one worker, on one worker per core,
    /// TaskFlow again.
    fn against_peer(address: &str, token: &str) {
        let Some(venv) = std::env::var_os("TASKFLOW_BENCH_PEER") else {
            return common::report(
                "### Against the peer (FastAPI)\n\nNot measured: no peer virtualenv (run `just bench`, which makes one).\n",
            );
        };
        let venv = PathBuf::from(venv);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let url = format!("http://{address}/tasks");
        let mut rows: Vec<(String, u32, Load)> = Vec::new();
        for connections in [1, 64] {
            let first = wrk(&url, connections, Some(token));
            for workers in [1, cores] {
                let peer = Peer::start(&venv, workers);
                let load = wrk(
                    &format!("http://{}/tasks", peer.address),
                    connections,
                    Some(&peer.token),
                );
                assert_eq!(load.non_2xx, 0, "the peer failed requests under load");
                rows.push((
                    format!("FastAPI peer, {workers} uvicorn worker(s)"),
                    connections,
                    load,
                ));
            }
            let second = wrk(&url, connections, Some(token));
            let taskflow = Load::mean(&first, &second);
            assert_eq!(taskflow.non_2xx, 0, "requests failed under load");
            rows.push((
                "TaskFlow (Bearer via component)".into(),
                connections,
                taskflow,
            ));
        }
        let mut table = format!(
            "### Against the peer: FastAPI + PyJWT + SQLite (wrk, {} s per run, Bearer `GET /tasks`, {TASKS} tasks listed)\n\n| concurrency | server | req/s | p50 | p99 | TaskFlow vs this |\n|---|---|---|---|---|---|\n",
            seconds()
        );
        for connections in [1, 64] {
            let of_this: Vec<&(String, u32, Load)> =
                rows.iter().filter(|(_, c, _)| *c == connections).collect();
            let taskflow = &of_this.last().unwrap().2;
            for (name, _, load) in &of_this {
                let versus = if std::ptr::eq(load, taskflow) {
                    String::new()
                } else {
                    format!(
                        "{:.1}× the throughput, {:.2}× the p99",
                        taskflow.requests_per_second / load.requests_per_second,
                        taskflow.p99_ms / load.p99_ms
                    )
                };
                table.push_str(&format!(
                    "| {connections} | {name} | {:.0} | {:.2} ms | {:.2} ms | {versus} |\n",
                    load.requests_per_second, load.p50_ms, load.p99_ms
                ));
            }
        }
        common::report(&table);
    }

    /// The peer under uvicorn on a port of its own, with a fresh SQLite file
    /// holding the benchmark user and its tasks, and a token of theirs.
    struct Peer {
        child: Child,
        address: String,
        token: String,
        _data: tempfile::TempDir,
    }

    impl Peer {
        fn start(venv: &Path, workers: usize) -> Peer {
            let data = tempfile::tempdir().unwrap();
            let app = workspace().join("host/benches/peer");
            let database = data.path().join("peer.db");
            let python = |program: &str| {
                let mut command = Command::new(venv.join("bin").join(program));
                command
                    .current_dir(&app)
                    .env("PEER_DATABASE", &database)
                    .env("PEER_SECRET", SECRET);
                command
            };
            let seeded = python("python")
                .args(["app.py", "seed", "bench", PASSWORD, &TASKS.to_string()])
                .status()
                .expect("seed the peer's database");
            assert!(seeded.success());
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = python("uvicorn")
                .args([
                    "app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                ])
                .args(["--workers", &workers.to_string(), "--log-level", "warning"])
                .spawn()
                .expect("start uvicorn");
            let address = format!("127.0.0.1:{port}");
            let started = Instant::now();
            let token = loop {
                let form = format!(
                    "grant_type=password&username=bench&password={}",
                    PASSWORD.replace(' ', "+")
                );
                let (status, body) = request(
                    &address,
                    "POST",
                    "/token",
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                    &form,
                );
                if status == 200 {
                    let grant: serde_json::Value = serde_json::from_str(&body).unwrap();
                    break grant["access_token"].as_str().unwrap().to_owned();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the peer never answered"
                );
                std::thread::sleep(Duration::from_millis(100));
            };
            let (status, body) = get(&address, "/tasks", Some(&token));
            assert_eq!(status, 200, "{body}");
            Peer {
                child,
                address,
                token,
                _data: data,
            }
        }
    }

    impl Drop for Peer {
        fn drop(&mut self) {
            // uvicorn's supervisor stops its workers on SIGTERM; SIGKILL
            // would leave them serving.
            // SAFETY: kill(2) on our own child's pid, which we have not reaped.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }

    fn token_for(address: &str, user: &str) -> String {
        let form = format!(
            "grant_type=password&username={user}&password={}",
            PASSWORD.replace(' ', "+")
        );
        let (status, body) = request(
            address,
            "POST",
            "/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &form,
        );
        assert_eq!(status, 200, "{body}");
        let grant: serde_json::Value = serde_json::from_str(&body).unwrap();
        grant["access_token"].as_str().unwrap().to_owned()
    }

    /// Valid Bearer traffic (wrk, 16 connections) alone, then while 4
    /// clients send requests whose token makes the hostile policy spin in
    /// its Bearer check, back to back, and 2 more send panic and memory-bomb
    /// triggers.
    fn hostile_neighbours(cache: &Path) {
        let data = tempfile::tempdir().unwrap();
        let policy = data.path().join("policy.wasm");
        std::fs::copy(component("hostile_policy"), &policy).unwrap();
        let server = start(data.path(), &policy, cache);
        let token = login_with(taskflow(data.path(), &policy, cache), &server.address);
        let url = format!("http://{}/tasks", server.address);
        let alone = wrk(&url, 16, Some(&token));

        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let triggers = ["loop", "loop", "loop", "loop", "panic", "bomb"];
        let clients: Vec<_> = triggers
            .iter()
            .map(|trigger| {
                let (address, stop) = (server.address.clone(), stop.clone());
                let trigger = trigger.to_string();
                std::thread::spawn(move || {
                    let mut answers: Vec<(u16, f64)> = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let started = Instant::now();
                        let (status, _) = get(&address, "/tasks", Some(&trigger));
                        answers.push((status, started.elapsed().as_secs_f64() * 1000.0));
                    }
                    (trigger, answers)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let neighbours = wrk(&url, 16, Some(&token));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut by_trigger: std::collections::BTreeMap<String, Vec<(u16, f64)>> =
            std::collections::BTreeMap::new();
        for client in clients {
            let (trigger, answers) = client.join().unwrap();
            by_trigger.entry(trigger).or_default().extend(answers);
        }
        assert_eq!(alone.non_2xx, 0, "valid requests failed alone");
        let mut table = format!(
            "### Hostile neighbours (hostile-policy; valid Bearer `GET /tasks`, wrk 16 connections, {} s each)\n\n| valid traffic | req/s | p50 | p99 | failed | vs alone |\n|---|---|---|---|---|---|\n",
            seconds()
        );
        for (label, load) in [
            ("alone", &alone),
            (
                "with 4 spinning + 1 panicking + 1 bombing client",
                &neighbours,
            ),
        ] {
            table.push_str(&format!(
                "| {label} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.1}% |\n",
                load.requests_per_second,
                load.p50_ms,
                load.p99_ms,
                load.non_2xx,
                100.0 * load.requests_per_second / alone.requests_per_second
            ));
        }
        table.push_str(
            "\n| hostile trigger | requests | answers | p50 | p99 | slowest |\n|---|---|---|---|---|---|\n",
        );
        for (trigger, answers) in by_trigger {
            let mut statuses: std::collections::BTreeMap<u16, usize> =
                std::collections::BTreeMap::new();
            for (status, _) in &answers {
                *statuses.entry(*status).or_default() += 1;
            }
            let mut times: Vec<f64> = answers.iter().map(|(_, ms)| *ms).collect();
            times.sort_by(f64::total_cmp);
            let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
            let statuses: Vec<String> = statuses
                .iter()
                .map(|(status, n)| format!("{n} × {status}"))
                .collect();
            table.push_str(&format!(
                "| `{trigger}` | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms |\n",
                times.len(),
                statuses.join(", "),
                at(0.5),
                at(0.99),
                times[times.len() - 1]
            ));
        }
        common::report(&table);
    }

    /// Starts a replica on `database`; returns once it listens.
    fn start_replica(data: &Path, policy: &Path, cache: &Path, database: &str) -> Server {
        let mut command = taskflow(data, policy, cache);
        command.env("TASKFLOW_DATABASE_URL", database);
        let started = Instant::now();
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start taskflow");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("taskflow listening on http://")
            .expect("the server's announcement")
            .to_owned();
        Server {
            child,
            address,
            started,
            ready_after: Duration::ZERO,
        }
    }

    /// The active revision `/health` of the replica at `address` reports.
    fn revision_at(address: &str) -> Option<i64> {
        let (status, body) = get(address, "/health", None);
        if status != 200 {
            return None;
        }
        let health: serde_json::Value = serde_json::from_str(&body).ok()?;
        health["auth_component"]["revision"].as_i64()
    }

    /// Two replicas on one fresh PostgreSQL database: for each of several
    /// deployments (policies A and B in turn), the time from starting
    /// `taskflow auth deploy` to both replicas serving the new revision.
    fn rollout(postgres: &str, policy: &Path, cache: &Path) {
        let database = fresh_database(postgres, "rollout");
        let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = start_replica(data_a.path(), policy, cache, &database);
        let b = start_replica(data_b.path(), policy, cache, &database);
        let deploys = 7;
        let mut times = Vec::with_capacity(deploys);
        for i in 0..deploys {
            let file = if i % 2 == 0 {
                component("guest_admin_delete")
            } else {
                component("guest_auth")
            };
            let before = revision_at(&a.address);
            let started = Instant::now();
            let out = taskflow(data_a.path(), policy, cache)
                .env("TASKFLOW_DATABASE_URL", &database)
                .args(["auth", "deploy", file.to_str().unwrap(), "--note", "bench"])
                .output()
                .expect("run taskflow auth deploy");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let revision: i64 = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .expect("the deployed revision");
            assert_ne!(before, Some(revision));
            while revision_at(&a.address) != Some(revision)
                || revision_at(&b.address) != Some(revision)
            {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "revision {revision} never served by both replicas"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let first = times[0];
        let median = median(times.clone());
        let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
        let slowest = times.iter().copied().fold(0.0, f64::max);
        common::report(&format!(
            "### Fleet rollout (PostgreSQL, two replicas, {deploys} deployments)\n\nFrom starting `taskflow auth deploy` (a process: settings, database connection, storing the component) to both replicas answering `/health` with the new revision (woken by `NOTIFY`, signature-free, compiled or taken from the compiled-component cache, self-checked, swapped): median {median:.0} ms, fastest {fastest:.0} ms, slowest {slowest:.0} ms (the first, {first:.0} ms, may compile the component).\n"
        ));
    }

    /// Two replicas on one fresh PostgreSQL database: for each of many
    /// tokens, checked once at replica B (which then remembers its user),
    /// the time from the 200 of its revocation at replica A to B's 401.
    fn propagation(postgres: &str, policy: &Path, cache: &Path) {
        let database = fresh_database(postgres, "propagation");
        let start_replica = |data: &Path| start_replica(data, policy, cache, &database);
        let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = start_replica(data_a.path());
        let b = start_replica(data_b.path());
        let mut add = taskflow(data_a.path(), policy, cache);
        add.env("TASKFLOW_DATABASE_URL", &database);
        let _ = login_with(add, &a.address);
        let tries = 200;
        let mut times = Vec::with_capacity(tries);
        for _ in 0..tries {
            let token = token_for(&a.address, "bench");
            assert_eq!(get(&b.address, "/users/me", Some(&token)).0, 200);
            let (status, _) = request(
                &a.address,
                "POST",
                "/revoke",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                &format!("token={token}"),
            );
            assert_eq!(status, 200);
            let revoked = Instant::now();
            loop {
                let status = get(&b.address, "/users/me", Some(&token)).0;
                if status == 401 {
                    break;
                }
                assert_eq!(status, 200);
                assert!(revoked.elapsed() < Duration::from_secs(5), "never refused");
            }
            times.push(revoked.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        common::report(&format!(
            "### Propagation between replicas (PostgreSQL, {tries} revocations)\n\nFrom the 200 of `POST /revoke` at one replica to the first 401 for that token at the other (which had checked it before, so answered from memory): median {:.1} ms, p99 {:.1} ms, slowest {:.1} ms.\n",
            at(0.5),
            at(0.99),
            times[times.len() - 1]
        ));
    }

    /// Adds the user `bench` with the CLI `command` (which carries the
    /// database) and returns a token from `address`.
    fn login_with(mut command: Command, address: &str) -> String {
        let add = command
            .args(["user", "add", "bench", "--scopes", "tasks:read tasks:write"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .and_then(|mut child| {
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{PASSWORD}\n").as_bytes())?;
                child.wait()
            })
            .unwrap();
        assert!(add.success());
        token_for(address, "bench")
    }

    /// Creates an empty database for `purpose` on the PostgreSQL server at `server_url`.
    fn fresh_database(server_url: &str, purpose: &str) -> String {
        use sqlx::{Connection, Executor};
        let name = format!("taskflow_bench_{purpose}_{}", std::process::id());
        let statement = format!("CREATE DATABASE {name}");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut connection = sqlx::PgConnection::connect(server_url).await.unwrap();
                connection.execute(statement.as_str()).await.unwrap();
            });
        let (base, _) = server_url.rsplit_once('/').expect("a URL with a database");
        format!("{base}/{name}")
    }
}
