//! What operators use: `/metrics`, the config file with `taskflow config
//! show|check`, and the command line's help.

use std::collections::HashMap;

use crate::harness::{Options, PASSWORD, SECRET, TestServer, built_component, urlencode};

/// Samples of an OpenMetrics text, by series (`name{labels}`), checking
/// each line's shape on the way.
fn samples(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "no EOF marker: {text}");
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(series.starts_with("taskflow_"), "unprefixed series: {line}");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
        samples.insert(series.to_owned(), value);
    }
    samples
}

fn sample(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no series {series} in {samples:#?}"))
}

/// Each kind of traffic shows in its counter: requests by route template
/// and status, decisions by outcome and reason, token answers by outcome,
/// brute-force refusals, call latency, the active component.
#[tokio::test]
async fn metrics_count_what_happened() {
    let server = TestServer::start_with(Options {
        extra_env: vec![("TASKFLOW_LOGIN_MAX_FAILURES_PER_USER".into(), "1".into())],
        ..Options::default()
    })
    .await;
    server.add_user("ops", "metrics:read tasks:read");
    server.add_user("victim", "tasks:read");
    let token = server.token("ops", None).await;
    let narrow = server.token("ops", Some("tasks:read")).await;

    let wrong = "grant_type=password&username=victim&password=wrong";
    assert_eq!(server.token_request(wrong).await.status(), 400);
    assert_eq!(server.token_request(wrong).await.status(), 429);
    assert_eq!(server.call("GET", "/tasks", None, None).await.status(), 401);
    assert_eq!(
        server
            .call("GET", "/tasks", Some(&token), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        server
            .call("GET", "/tasks/77", Some(&token), None)
            .await
            .status(),
        404
    );
    assert_eq!(
        server
            .call("GET", "/tasks/78", Some(&token), None)
            .await
            .status(),
        404
    );
    assert_eq!(
        server
            .call("GET", "/no/such/path", None, None)
            .await
            .status(),
        404
    );
    assert_eq!(
        server
            .call("GET", "/metrics", Some(&narrow), None)
            .await
            .status(),
        403
    );
    assert_eq!(
        server
            .call("GET", "/metrics", Some("junk"), None)
            .await
            .status(),
        401
    );

    let response = server.call("GET", "/metrics", Some(&token), None).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let text = response.text().await.unwrap();
    let samples = samples(&text);

    let requests = |method: &str, route: &str, status: u16| {
        sample(
            &samples,
            &format!(
                "taskflow_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(requests("POST", "/token", 200), 2.0);
    assert_eq!(requests("POST", "/token", 400), 1.0);
    assert_eq!(requests("POST", "/token", 429), 1.0);
    assert_eq!(requests("GET", "/tasks", 401), 1.0);
    assert_eq!(requests("GET", "/tasks", 200), 1.0);
    // Two ids, one series: the route template, not the path.
    assert_eq!(requests("GET", "/tasks/{id}", 404), 2.0);
    assert_eq!(requests("GET", "unmatched", 404), 1.0);
    assert_eq!(requests("GET", "/metrics", 403), 1.0);
    assert!(!text.contains("/no/such/path"));

    let decisions = |outcome: &str, reason: &str| {
        sample(
            &samples,
            &format!("taskflow_auth_decisions_total{{outcome=\"{outcome}\",reason=\"{reason}\"}}"),
        )
    };
    // /tasks, /tasks/77, /tasks/78 and this scrape (counted before it renders).
    assert_eq!(decisions("allowed", "granted"), 4.0);
    assert_eq!(decisions("denied", "no_credentials"), 1.0);
    assert_eq!(decisions("denied", "insufficient_scope"), 1.0);
    assert_eq!(decisions("denied", "invalid_token"), 1.0);

    let tokens = |outcome: &str| {
        sample(
            &samples,
            &format!("taskflow_token_requests_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(tokens("issued"), 2.0);
    assert_eq!(tokens("invalid_grant"), 1.0);
    assert_eq!(tokens("too_many_attempts"), 1.0);
    assert_eq!(sample(&samples, "taskflow_login_throttled_total"), 1.0);

    // Password work is timed for the three grants that reached the component.
    assert_eq!(
        sample(
            &samples,
            "taskflow_auth_component_call_duration_seconds_count{call=\"issue_token\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(
            &samples,
            "taskflow_auth_component_call_duration_seconds_count{call=\"decide_access\"}"
        ),
        7.0
    );
    assert_eq!(
        sample(
            &samples,
            "taskflow_auth_component_call_duration_seconds_bucket{le=\"+Inf\",call=\"decide_access\"}"
        ),
        7.0
    );

    let health = server.health().await;
    let info = format!(
        "taskflow_auth_component_info{{name=\"{}\",version=\"{}\",sha256=\"{}\"}}",
        health["auth_component"]["name"].as_str().unwrap(),
        health["auth_component"]["version"].as_str().unwrap(),
        health["auth_component"]["sha256"].as_str().unwrap(),
    );
    assert_eq!(sample(&samples, &info), 1.0);
    assert_eq!(sample(&samples, "taskflow_auth_component_swaps_total"), 0.0);
    assert_eq!(
        sample(&samples, "taskflow_auth_component_refused_candidates_total"),
        0.0
    );
    assert_eq!(sample(&samples, "taskflow_auth_component_degraded"), 0.0);
}

/// A client's `x-request-id` is echoed and logged when it is short and
/// plain; one that could forge log fields, an overlong one, or two of them
/// are replaced by an id of the server's own, and never reach the log.
#[tokio::test]
async fn only_plain_request_ids_reach_the_log() {
    let server = TestServer::start().await;
    let forged = "x} method=DELETE path=/tasks/1 status=204";
    let overlong = "a".repeat(200);
    let send = |ids: Vec<&str>| {
        let mut request = server.client.get(server.url("/health"));
        for id in ids {
            request = request.header("x-request-id", id);
        }
        request.send()
    };
    let echoed = send(vec!["trace-42.a_B"]).await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-42.a_B");
    for ids in [vec![forged], vec![overlong.as_str()], vec!["one", "two"]] {
        let response = send(ids.clone()).await.unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(id.len(), 24, "{ids:?} got {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    let log = server.log();
    assert!(log.contains("request_id=trace-42.a_B"), "{log}");
    assert!(!log.contains("method=DELETE"), "{log}");
    assert!(!log.contains(&overlong), "{log}");
    assert!(!log.contains("request_id=one"), "{log}");
}

/// A swap shows in the component series at the next scrape.
#[tokio::test]
async fn metrics_follow_a_swap() {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("policy.wasm");
    std::fs::copy(built_component("guest_auth"), &component).unwrap();
    let server = TestServer::start_with(Options {
        component: component.clone(),
        extra_env: vec![("TASKFLOW_COMPONENT_WATCH_MS".into(), "0".into())],
        ..Options::default()
    })
    .await;
    server.add_user("ops", "metrics:read");
    let token = server.token("ops", None).await;
    crate::harness::replace_file(
        &component,
        &std::fs::read(built_component("guest_admin_delete")).unwrap(),
    );
    let out = server.cli(&["auth", "reload"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = server
        .call("GET", "/metrics", Some(&token), None)
        .await
        .text()
        .await
        .unwrap();
    let samples = samples(&text);
    assert_eq!(sample(&samples, "taskflow_auth_component_swaps_total"), 1.0);
    assert!(
        text.contains("taskflow_auth_component_info{name=\"guest-admin-delete\""),
        "{text}"
    );
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Settings come from the flag, then the variable, then the file, then the
/// default; `config show` says which, masks the database password and
/// never prints the secret; `serve` honours the file.
#[tokio::test]
async fn config_file_layers_under_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taskflow.toml");
    std::fs::write(
        &file,
        "token_ttl = 600\nissuer = \"from-file\"\naudience = \"from-file\"\nleeway = 5\n",
    )
    .unwrap();
    let options = Options {
        extra_env: vec![
            ("TASKFLOW_CONFIG".into(), file.display().to_string()),
            ("TASKFLOW_ISSUER".into(), "taskflow".into()),
        ],
        ..Options::default()
    };
    let server = TestServer::start_with(options.clone()).await;
    let out = server.cli(&["config", "show", "--leeway", "7"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    for line in [
        "token_ttl = 600  # config file",
        "issuer = \"taskflow\"  # environment, TASKFLOW_ISSUER",
        "audience = \"from-file\"  # config file",
        "leeway = 7  # flag",
        "body_timeout = 30  # default",
        "# signing secret: from the TASKFLOW_JWT_SECRET variable",
    ] {
        assert!(
            shown.lines().any(|l| l == line),
            "no line {line:?} in\n{shown}"
        );
    }
    assert!(!shown.contains(SECRET));
    // What `config show` prints is itself a valid config file.
    let _: toml::Table = shown.parse().expect("config show prints TOML");

    // The server took its TTL and audience from the file, its issuer from the environment.
    server.add_user("alice", "tasks:read");
    let response = server
        .token_request(&format!(
            "grant_type=password&username=alice&password={}",
            urlencode(PASSWORD)
        ))
        .await;
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 600);
    let token = body["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], "taskflow");
    assert_eq!(claims["aud"], "from-file");

    let masked = server.cli(
        &[
            "config",
            "show",
            "--database-url",
            "postgres://tf:hunter2hunter2@db.internal/tf",
        ],
        "",
    );
    assert!(masked.status.success(), "{}", stderr(&masked));
    assert!(
        stdout(&masked).contains("database_url = \"postgres://tf:****@db.internal/tf\"  # flag"),
        "{}",
        stdout(&masked)
    );
    assert!(!stdout(&masked).contains("hunter2"));
}

/// A bad file stops every command before it does anything, naming the file
/// and the setting.
#[tokio::test]
async fn a_bad_config_file_is_refused() {
    let server = TestServer::start().await;
    let file = server.data.path().join("bad.toml");
    for (contents, expected) in [
        ("token_tll = 600\n", "unknown setting `token_tll`"),
        ("token_ttl = \"soon\"\n", "`token_ttl`"),
        ("jwt_secret = \"abc\"\n", "never read from the config file"),
    ] {
        std::fs::write(&file, contents).unwrap();
        let out = server.cli(&["--config", file.to_str().unwrap(), "user", "list"], "");
        assert_eq!(out.status.code(), Some(2), "{contents}");
        let message = stderr(&out);
        assert!(message.contains("bad.toml"), "{message}");
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains("abc"), "{message}");
    }
}

/// Every command checks the whole configuration the same way before it
/// does anything: a value of the wrong type in the file, or one out of
/// range (from the file, a variable or a flag), is refused naming where it
/// came from.
#[tokio::test]
async fn every_command_refuses_a_bad_setting_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    let commands: [&[&str]; 7] = [
        &["config", "show"],
        &["config", "check"],
        &["user", "list"],
        &["user", "remove", "nobody"],
        &["keys", "list"],
        &["auth", "status"],
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-socket",
            "/nonexistent/a.sock",
        ],
    ];
    for (contents, expected) in [
        (
            "token_ttl = \"900\"\n",
            "`token_ttl` must be a whole number",
        ),
        ("leeway = 61\n", "`leeway` = 61: must be at most 60 seconds"),
        ("token_ttl = 0\n", "`token_ttl` = 0: must be between 1 and"),
        ("issuer = \" \"\n", "`issuer` = \" \": must not be empty"),
        ("log_format = 1\n", "`log_format` must be a string"),
    ] {
        std::fs::write(&file, contents).unwrap();
        let options = Options::default();
        for command in commands {
            let mut args = vec!["--config", file.to_str().unwrap()];
            args.extend_from_slice(command);
            let data = dir.path().join("data");
            let out = crate::harness::run_cli(&data, &options, &args, "");
            assert_eq!(
                out.status.code(),
                Some(2),
                "{contents} {command:?}: {}",
                stderr(&out)
            );
            let message = stderr(&out);
            assert!(message.contains("bad.toml"), "{command:?}: {message}");
            assert!(message.contains(expected), "{command:?}: {message}");
            assert!(!data.exists(), "{command:?} made the data directory");
        }
    }
    // From a variable, or a flag: named as such.
    let options = Options {
        extra_env: vec![("TASKFLOW_LEEWAY".into(), "61".into())],
        ..Options::default()
    };
    let out = crate::harness::run_cli(dir.path(), &options, &["user", "list"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("TASKFLOW_LEEWAY=61: must be at most 60 seconds"),
        "{}",
        stderr(&out)
    );
    let out = crate::harness::run_cli(
        dir.path(),
        &Options::default(),
        &[
            "config",
            "show",
            "--token-ttl",
            "0",
            "--decision-deadline-ms",
            "0",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    for expected in [
        "--token-ttl 0: ",
        "--decision-deadline-ms 0: must be positive",
    ] {
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    }
}

/// `config check` writes nothing: no data directory, no compiled
/// component in the cache, no generated secret.
#[tokio::test]
async fn config_check_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cache = dir.path().join("cache");
    let options = Options {
        secret: None,
        extra_env: vec![(
            "TASKFLOW_COMPONENT_CACHE_DIR".into(),
            cache.display().to_string(),
        )],
        ..Options::default()
    };
    let out = crate::harness::run_cli(&data, &options, &["config", "check"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("compiled and self-checked"),
        "{}",
        stdout(&out)
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "config check wrote {left:?}");
}

/// `config check` loads what `serve` would, without serving, and fails
/// with the reason when something is wrong.
#[tokio::test]
async fn config_check_validates_without_serving() {
    let data = tempfile::tempdir().unwrap();
    let options = Options::default();
    let ok = crate::harness::run_cli(data.path(), &options, &["config", "check"], "");
    assert!(ok.status.success(), "{}", stderr(&ok));
    let report = stdout(&ok);
    assert!(
        report.contains("ok: signing secret from the TASKFLOW_JWT_SECRET variable"),
        "{report}"
    );
    assert!(report.contains("ok: database"), "{report}");
    assert!(report.contains("compiled and self-checked"), "{report}");
    assert!(!report.contains(SECRET));

    let lax = Options {
        component: built_component("lax_policy"),
        ..options.clone()
    };
    let refused = crate::harness::run_cli(data.path(), &lax, &["config", "check"], "");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("self-check"),
        "{}",
        stderr(&refused)
    );

    let short = Options {
        secret: Some("too-short".into()),
        ..options.clone()
    };
    let refused = crate::harness::run_cli(data.path(), &short, &["config", "check"], "");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("at least 32"),
        "{}",
        stderr(&refused)
    );
    assert!(!stderr(&refused).contains("too-short"));

    // Nothing was served, and no secret was generated for a check.
    let generated = Options {
        secret: None,
        ..options
    };
    let fresh = tempfile::tempdir().unwrap();
    let out = crate::harness::run_cli(fresh.path(), &generated, &["config", "check"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("will be generated"),
        "{}",
        stdout(&out)
    );
    assert!(!fresh.path().join("jwt-secret").exists());
}

/// What `taskflow ARGS` prints, which must succeed (`--help`, `--version`).
fn help_text(data: &std::path::Path, options: &Options, args: &[&str]) -> String {
    let out = crate::harness::run_cli(data, options, args, "");
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Every command and option has help text, and each subcommand lists its own.
#[tokio::test]
async fn help_is_complete() {
    let data = tempfile::tempdir().unwrap();
    let options = Options::default();
    let help = |args: &[&str]| help_text(data.path(), &options, args);
    let top = help(&["--help"]);
    for command in ["serve", "user", "auth", "keys", "config"] {
        assert!(
            top.lines()
                .any(|l| l.trim_start().starts_with(command) && l.len() > command.len() + 4),
            "{command} is not described in\n{top}"
        );
    }
    assert!(top.contains("TASKFLOW_JWT_SECRET"));
    for (args, expected) in [
        (vec!["serve", "--help"], vec!["--listen", "TASKFLOW_LISTEN"]),
        (
            vec!["user", "--help"],
            vec!["add", "list", "passwd", "remove"],
        ),
        (vec!["user", "passwd", "--help"], vec!["<USERNAME>"]),
        (vec!["keys", "--help"], vec!["rotate", "list", "retire"]),
        (vec!["keys", "retire", "--help"], vec!["<KID>"]),
        (
            vec!["user", "add", "--help"],
            vec!["--scopes", "<USERNAME>"],
        ),
        (vec!["user", "remove", "--help"], vec!["<USERNAME>"]),
        (
            vec!["auth", "--help"],
            vec![
                "deploy",
                "status",
                "history",
                "rollback",
                "reload",
                "signature",
            ],
        ),
        (
            vec!["auth", "deploy", "--help"],
            vec!["<FILE>", "--signature", "--note", "minisig"],
        ),
        (vec!["auth", "rollback", "--help"], vec!["[REVISION]"]),
        (vec!["auth", "status", "--help"], vec!["--json", "stale"]),
        (
            vec!["serve", "--help"],
            vec!["--component-trust", "TASKFLOW_COMPONENT_TRUST"],
        ),
        (vec!["config", "--help"], vec!["show", "check"]),
        (vec!["config", "check", "--help"], vec!["--config"]),
    ] {
        let text = help(&args);
        for word in expected {
            assert!(text.contains(word), "{args:?} lacks {word}:\n{text}");
        }
        // Every option and argument line is followed by a description.
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let item = line.trim_start();
            if item.starts_with("--") || item.starts_with("-h,") || item.starts_with('<') {
                let described = item
                    .split_once("  ")
                    .is_some_and(|(_, d)| !d.trim().is_empty())
                    || lines.get(i + 1).is_some_and(|next| {
                        next.starts_with("          ") && !next.trim().is_empty()
                    });
                assert!(described, "{args:?}: {item} has no description");
            }
        }
    }
    let version = help(&["--version"]);
    assert!(version.starts_with("taskflow "), "{version}");
}

/// Each command's help lists the options it uses and not `serve`'s: the
/// command a platform team runs most, `auth reload`, shows its socket,
/// not the listener, token, database or sandbox options.
#[tokio::test]
async fn help_lists_only_what_each_command_uses() {
    let data = tempfile::tempdir().unwrap();
    let options = Options::default();
    let help = |args: &[&str]| help_text(data.path(), &options, args);
    let http = [
        "--listen",
        "--public-url",
        "--max-connections",
        "--body-timeout",
    ];
    let tokens = ["--issuer", "--token-ttl", "--leeway", "--jwt-secret-file"];
    let database = ["--database-url", "--database-max-connections"];
    let sandbox = ["--auth-component", "--component-memory-mib"];
    for (args, present, absent) in [
        (
            vec!["auth", "reload", "--help"],
            vec!["--admin-socket", "--data-dir", "--config"],
            [&http[..], &tokens, &database, &sandbox].concat(),
        ),
        (
            vec!["user", "list", "--help"],
            vec!["--database-url"],
            [&http[..], &tokens, &sandbox, &["--admin-socket"]].concat(),
        ),
        (
            vec!["user", "add", "--help"],
            vec!["--database-url", "--issuer", "--auth-component"],
            [&http[..], &["--admin-socket"]].concat(),
        ),
        (
            vec!["keys", "rotate", "--help"],
            vec!["--database-url", "--key-activation-delay"],
            [&http[..], &sandbox, &["--admin-socket"]].concat(),
        ),
        (
            vec!["auth", "deploy", "--help"],
            vec!["--database-url", "--component-trust"],
            [&http[..], &tokens, &sandbox, &["--admin-socket"]].concat(),
        ),
    ] {
        let text = help(&args);
        for option in present {
            assert!(text.contains(option), "{args:?} lacks {option}:\n{text}");
        }
        for option in absent {
            assert!(!text.contains(option), "{args:?} lists {option}:\n{text}");
        }
    }
    // `serve` lists them all, under a heading per subsystem.
    let serve = help(&["serve", "--help"]);
    for heading in [
        "Listener:",
        "Storage:",
        "Tokens:",
        "Sandbox:",
        "Limits:",
        "Admin:",
    ] {
        assert!(
            serve.contains(heading),
            "serve --help lacks {heading}:\n{serve}"
        );
    }
}
