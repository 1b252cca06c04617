//! Starts the real application with the real policy component on a fresh
//! data directory and a free loopback port, and talks to it over HTTP.
//!
//! Most tests run the application in this process ([`Application`], on a
//! runtime of its own, as the binary runs it), and wait on what it reports
//! ([`TestServer::wait_until`]) rather than on time. Tests of what only a
//! process has (signals, exit status, its log, `kill -9`) set
//! [`Options::process`] and get the real `taskflow` binary. Either way the
//! CLI the tests run is the binary.
//!
//! The database is a SQLite file in the data directory, or, when
//! `TASKFLOW_TEST_POSTGRES_URL` names a PostgreSQL server (as
//! `scripts/with-postgres` sets it), a fresh database of its own on it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use taskflow::application::{Application, Observer};

/// The secret most tests run with, so they can mint their own tokens.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const PASSWORD: &str = "correct horse battery staple";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The component `just build` makes, unless `TASKFLOW_TEST_COMPONENT` names another.
pub fn component_path() -> PathBuf {
    std::env::var_os("TASKFLOW_TEST_COMPONENT")
        .map_or_else(|| built_component("guest_auth"), PathBuf::from)
}

/// A component built by `just build` (policies) or `just test-components`.
pub fn built_component(name: &str) -> PathBuf {
    let path = workspace().join(format!("target/wasm32-wasip2/component/{name}.wasm"));
    assert!(
        path.exists(),
        "component {} is missing: run `just components test-components` first",
        path.display()
    );
    path
}

/// Replaces `path` with `bytes` atomically, as a deployment would.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let temp = path.with_extension("partial");
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One compiled-component cache for the whole test run, so each server
/// start does not recompile the component.
fn cache_dir() -> PathBuf {
    workspace().join("target/test-component-cache")
}

/// Whether a server of the component at a path has started in this run
/// (so the cache holds it compiled), behind a lock its first start holds.
fn compile_gate(component: &Path) -> Arc<Mutex<bool>> {
    static GATES: Mutex<BTreeMap<PathBuf, Arc<Mutex<bool>>>> = Mutex::new(BTreeMap::new());
    let mut gates = GATES.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(gates.entry(component.to_owned()).or_default())
}

/// How a test server is started.
#[derive(Clone)]
pub struct Options {
    /// `None`: no TASKFLOW_JWT_SECRET, so the server generates one.
    pub secret: Option<String>,
    pub component: PathBuf,
    /// `None`: the server's default, a SQLite file in its data directory.
    pub database_url: Option<String>,
    pub extra_env: Vec<(String, String)>,
    /// Run the `taskflow` binary rather than the application in this
    /// process: for signals, exit statuses and the server's log.
    pub process: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            secret: Some(SECRET.into()),
            component: component_path(),
            database_url: test_postgres().map(|server| fresh_postgres_database(&server)),
            extra_env: Vec::new(),
            process: false,
        }
    }
}

impl Options {
    /// These options, run as the `taskflow` binary.
    pub fn process() -> Self {
        Self {
            process: true,
            ..Self::default()
        }
    }
}

/// The PostgreSQL server the suite runs against, if any.
pub fn test_postgres() -> Option<String> {
    std::env::var("TASKFLOW_TEST_POSTGRES_URL").ok()
}

/// Creates an empty database on the server at `server_url` and returns its URL.
pub fn fresh_postgres_database(server_url: &str) -> String {
    use sqlx::{Connection, Executor};
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "taskflow_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let server = server_url.to_owned();
    let statement = format!("CREATE DATABASE {name}");
    on_own_runtime(async move {
        let mut connection = sqlx::PgConnection::connect(&server).await.unwrap();
        connection.execute(statement.as_str()).await.unwrap();
    });
    let (base, _) = server_url.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}

/// Whether the PostgreSQL database at `url` has any table.
pub fn postgres_has_tables(url: &str) -> bool {
    use sqlx::Connection;
    let url = url.to_owned();
    on_own_runtime(async move {
        let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_one(&mut connection)
        .await
        .unwrap();
        tables > 0
    })
}

/// Runs `work` to completion on a thread and runtime of its own: the
/// callers run outside any runtime and inside a test's, where blocking on
/// one is not allowed.
fn on_own_runtime<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join()
    .unwrap()
}

/// A running server; stopped when dropped.
pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub data: tempfile::TempDir,
    pub options: Options,
    running: Running,
}

enum Running {
    Process(Child),
    InProcess(InProcess),
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), options)
    }

    /// Starts a server on `data`, a data directory prepared by the test.
    pub fn start_in(data: tempfile::TempDir, options: Options) -> Self {
        // The first start of a component compiles it into the shared cache,
        // and starts of the same component wait for it: tests starting at
        // once would otherwise each compile it (CPython's 18 MB on 2 cores,
        // four at a time, ran past the start's time-out).
        let gate = compile_gate(&options.component);
        let mut compiled = gate.lock().unwrap_or_else(PoisonError::into_inner);
        if *compiled {
            drop(compiled);
            return Self::launch(data, options);
        }
        let server = Self::launch(data, options);
        *compiled = true;
        server
    }

    fn launch(data: tempfile::TempDir, options: Options) -> Self {
        let (base, running) = if options.process {
            let mut child = taskflow(data.path(), &options)
                .args(["serve", "--listen", "127.0.0.1:0"])
                .stdout(Stdio::piped())
                .stderr(log_file(data.path()))
                .spawn()
                .expect("start taskflow");
            let base = wait_for_address(&mut child, data.path());
            (base, Running::Process(child))
        } else {
            let running = InProcess::start(data.path(), &options);
            (
                format!("http://{}", running.address),
                Running::InProcess(running),
            )
        };
        TestServer {
            base,
            client: client(),
            data,
            options,
            running,
        }
    }

    /// Stops the server (SIGTERM for the binary), waits for it to finish,
    /// and starts it again on the same data.
    pub async fn restart(mut self) -> Self {
        match &mut self.running {
            Running::Process(_) => {
                self.terminate();
            }
            Running::InProcess(running) => running.stop(),
        }
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().unwrap());
        Self::start_in(data, self.options.clone())
    }

    /// Stops the server as SIGTERM does, and waits until it has.
    pub fn stop(&mut self) {
        match &mut self.running {
            Running::Process(_) => assert!(self.terminate().success()),
            Running::InProcess(running) => running.stop(),
        }
    }

    fn child(&mut self) -> &mut Child {
        match &mut self.running {
            Running::Process(child) => child,
            Running::InProcess(_) => {
                panic!("this test needs the taskflow binary: start it with Options::process()")
            }
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child().id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child().wait().unwrap()
    }

    /// Waits for the server process to exit by itself.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child().wait().unwrap()
    }

    /// What the in-process application reports (swaps, keys, changes).
    pub fn observer(&self) -> &Observer {
        match &self.running {
            Running::InProcess(running) => &running.observer,
            Running::Process(_) => panic!("only an in-process server is observed"),
        }
    }

    /// Waits (up to 20 s) until `done` holds of the in-process application,
    /// checked at each swap or refusal and every few milliseconds; panics
    /// naming `what` otherwise.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&Observer) -> bool) {
        let observer = self.observer();
        assert!(
            observer.wait_until(Duration::from_secs(20), done).await,
            "timed out waiting for {what}"
        );
    }

    /// Waits (up to 20 s) until the active component is `name`, and
    /// returns `/health`. In process, at the swap itself; the binary's is
    /// seen only over HTTP, so it is asked every 50 ms.
    pub async fn wait_for_component(&self, name: &str) -> Value {
        match &self.running {
            Running::InProcess(_) => {
                self.wait_until(&format!("{name} to serve"), |o| {
                    o.policy_status().active.name == name
                })
                .await;
            }
            Running::Process(_) => {
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while self.health().await["auth_component"]["name"] != name {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{name} never took over"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        self.health().await
    }

    /// Host and port, for raw connections.
    pub fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    /// `GET /health` as JSON.
    pub async fn health(&self) -> Value {
        self.call("GET", "/health", None, None)
            .await
            .json()
            .await
            .unwrap()
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, signal: &str) {
        let Running::Process(child) = &self.running else {
            panic!("this test signals the server: start it with Options::process()")
        };
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Runs `taskflow ARGS` against this server's data, with `stdin`.
    pub fn cli(&self, args: &[&str], stdin: &str) -> Output {
        run_cli(self.data.path(), &self.options, args, stdin)
    }

    /// Adds a user through the CLI, as an operator would.
    pub fn add_user(&self, name: &str, scopes: &str) {
        let out = self.cli(
            &["user", "add", name, "--scopes", scopes],
            &format!("{PASSWORD}\n"),
        );
        assert!(
            out.status.success(),
            "user add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// POSTs a raw form body to `path`.
    pub async fn post_form(&self, path: &str, form: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// POSTs a raw form body to `/token`.
    pub async fn token_request(&self, form: &str) -> reqwest::Response {
        self.post_form("/token", form).await
    }

    /// Revokes `token` through `POST /revoke`.
    pub async fn revoke(&self, token: &str) -> reqwest::Response {
        self.post_form("/revoke", &format!("token={}", urlencode(token)))
            .await
    }

    /// A token for `user` (password [`PASSWORD`]), optionally narrowed to `scope`.
    pub async fn token(&self, user: &str, scope: Option<&str>) -> String {
        let mut form = format!(
            "grant_type=password&username={user}&password={}",
            urlencode(PASSWORD)
        );
        if let Some(scope) = scope {
            form.push_str(&format!("&scope={}", urlencode(scope)));
        }
        let response = self.token_request(&form).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        assert_eq!(status, 200, "token for {user}: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Sends `method path` with an optional Bearer token and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Running::Process(child) = &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The application running in this process, on a runtime of its own (two
/// worker threads, as on the machines it is measured on), so that a test's
/// own runtime, and a test blocking its thread, do not stand in its way;
/// its threads log to the data directory's `server.log`.
struct InProcess {
    address: std::net::SocketAddr,
    observer: Observer,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    /// Holds the signing secret the application reads, 0600.
    _secret: Option<tempfile::NamedTempFile>,
}

impl InProcess {
    fn start(data: &Path, options: &Options) -> Self {
        let secret = options.secret.as_ref().map(|secret| {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), secret).unwrap();
            file
        });
        let args = serve_arguments(data, options, secret.as_ref().map(|f| f.path()));
        let loaded = taskflow::config::file::load_from(&args)
            .unwrap_or_else(|e| panic!("settings {args:?}: {e}"));
        let taskflow::config::Command::Serve(settings) = loaded.cli.command else {
            unreachable!("the arguments name serve")
        };
        let data_dir = loaded.cli.global.data_dir;
        // What its threads log goes to its own `server.log`, as the binary's
        // stderr does.
        let logs = taskflow::telemetry::to_file(loaded.cli.global.log_format, log_file(data));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .on_thread_start(move || {
                std::mem::forget(tracing::dispatcher::set_default(&logs));
            })
            .enable_all()
            .build()
            .unwrap();
        let (built, built_here) = std::sync::mpsc::channel();
        let (stop, stop_here) = tokio::sync::oneshot::channel::<()>();
        let (stopped_here, stopped) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            match Application::build(&data_dir, &settings).await {
                Ok(application) => {
                    let _ = built.send(Ok((application.address(), application.observer())));
                    let _ = application
                        .run(async {
                            let _ = stop_here.await;
                        })
                        .await;
                }
                Err(e) => {
                    let _ = built.send(Err(taskflow::report::one_line(&e)));
                }
            }
            let _ = stopped_here.send(());
        });
        let (address, observer) = match built_here.recv_timeout(START_TIMEOUT) {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => panic!("taskflow did not start: {e}"),
            Err(_) => panic!("taskflow did not start within {START_TIMEOUT:?}"),
        };
        Self {
            address,
            observer,
            runtime: Some(runtime),
            stop: Some(stop),
            stopped: std::sync::Mutex::new(stopped),
            _secret: secret,
        }
    }

    /// Shuts down as on SIGTERM and waits until it has.
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            let stopped = self.stopped.lock().unwrap();
            let _ = stopped.recv_timeout(Duration::from_secs(30));
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // Not waited for: a request of the test's still open would hold
        // the shutdown for its grace. Dropping a runtime blocks, which a
        // test's runtime does not allow, so it is shut down in the background.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `taskflow serve` as the binary would be started with `options`: the
/// `TASKFLOW_*` variables become the flags they stand for.
fn serve_arguments(data: &Path, options: &Options, secret_file: Option<&Path>) -> Vec<String> {
    let mut variables: Vec<(String, String)> = vec![
        ("TASKFLOW_DATA_DIR".into(), path_text(data)),
        (
            "TASKFLOW_AUTH_COMPONENT".into(),
            path_text(&options.component),
        ),
        (
            "TASKFLOW_COMPONENT_CACHE_DIR".into(),
            path_text(&cache_dir()),
        ),
    ];
    if let Some(file) = secret_file {
        variables.push(("TASKFLOW_JWT_SECRET_FILE".into(), path_text(file)));
    }
    if let Some(url) = &options.database_url {
        variables.push(("TASKFLOW_DATABASE_URL".into(), url.clone()));
    }
    for (name, value) in &options.extra_env {
        variables.retain(|(known, _)| known != name);
        variables.push((name.clone(), value.clone()));
    }
    let command = <taskflow::config::Cli as clap::CommandFactory>::command();
    let serve = command.find_subcommand("serve").unwrap();
    let mut args = vec!["taskflow".to_owned(), "serve".to_owned()];
    args.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
    for (name, value) in variables {
        let flag = serve
            .get_arguments()
            .chain(command.get_arguments())
            .find(|arg| arg.get_env().is_some_and(|env| env == name.as_str()))
            .and_then(|arg| arg.get_long())
            .unwrap_or_else(|| {
                panic!("{name} is no setting's variable: run this test with Options::process()")
            });
        args.push(format!("--{flag}={value}"));
    }
    args
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

fn taskflow(data: &Path, options: &Options) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskflow"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TASKFLOW_") {
            command.env_remove(name);
        }
    }
    command
        .env("TASKFLOW_DATA_DIR", data)
        .env("TASKFLOW_AUTH_COMPONENT", &options.component)
        .env("TASKFLOW_COMPONENT_CACHE_DIR", cache_dir())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    if let Some(secret) = &options.secret {
        command.env("TASKFLOW_JWT_SECRET", secret);
    }
    if let Some(url) = &options.database_url {
        command.env("TASKFLOW_DATABASE_URL", url);
    }
    for (name, value) in &options.extra_env {
        command.env(name, value);
    }
    command
}

/// Runs the CLI to completion.
pub fn run_cli(data: &Path, options: &Options, args: &[&str], stdin: &str) -> Output {
    let mut child = taskflow(data, options)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run taskflow");
    // A command refused before it reads its input closes it: not a failure.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn log_file(data: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("server.log"))
        .unwrap()
}

/// Reads stdout until the server says where it listens.
fn wait_for_address(child: &mut Child, data: &Path) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(address) = line.strip_prefix("taskflow listening on ") {
                let _ = tx.send(address.to_owned());
            }
        }
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(address) => address,
        Err(_) => {
            let _ = child.kill();
            let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
            panic!("taskflow did not start; its log:\n{log}");
        }
    }
}

/// An HTTP client that never reuses a connection the server may be closing:
/// the server closes a kept-alive connection after `--header-timeout` (10 s)
/// idle, so the client lets idle ones go well before that, as any client of
/// a server with an idle timeout should.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(4))
        .build()
        .unwrap()
}

/// Waits (up to 20 s) until `counter`, kept by the test's own clients,
/// reaches `at_least`: for them to have done some work, however fast or
/// slow the machine is.
pub async fn wait_for_count(counter: &std::sync::atomic::AtomicUsize, at_least: usize, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while counter.load(std::sync::atomic::Ordering::Acquire) < at_least {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {} of {at_least}",
            counter.load(std::sync::atomic::Ordering::Acquire)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims as the server issues them, for `user`, valid for ten minutes.
pub fn claims(user: &str, scope: &str) -> Value {
    let now = now();
    json!({
        "iss": "taskflow", "aud": "taskflow-api", "sub": user,
        "iat": now, "nbf": now, "exp": now + 600,
        "jti": format!("test-{now}"), "scope": scope,
    })
}

/// Mints an HS256 access token with an independent JWT library.
pub fn mint(claims: &Value, secret: &[u8], kid: &str) -> String {
    let header = Header {
        typ: Some("at+jwt".into()),
        kid: Some(kid.into()),
        ..Header::new(Algorithm::HS256)
    };
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// The `kid` the server puts in its tokens.
pub fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// Asserts a JSON error answer: status, `error` and (if given) the challenge.
pub async fn assert_error(
    response: reqwest::Response,
    status: u16,
    error: &str,
    challenge: Option<&str>,
) -> Value {
    assert_eq!(response.status(), status, "status for expected {error}");
    let header = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    match challenge {
        Some(prefix) => {
            let header = header.unwrap_or_else(|| panic!("no WWW-Authenticate for {error}"));
            assert!(
                header.starts_with(prefix),
                "{header:?} should start with {prefix:?}"
            );
        }
        None => assert_eq!(header, None),
    }
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    body
}

/// A minisign key pair, as `minisign -G` makes one, signing as `minisign -S` does.
pub struct Signer {
    keys: minisign::KeyPair,
}

impl Signer {
    pub fn new() -> Self {
        Self {
            keys: minisign::KeyPair::generate_unencrypted_keypair().unwrap(),
        }
    }

    /// The public key as a `minisign.pub` file holds it.
    pub fn public_key(&self) -> String {
        self.keys.pk.to_box().unwrap().into_string()
    }

    /// The detached signature of `bytes`, as a `.minisig` file holds it.
    pub fn sign(&self, bytes: &[u8]) -> String {
        minisign::sign(Some(&self.keys.pk), &self.keys.sk, bytes, None, None)
            .unwrap()
            .into_string()
    }

    /// Writes a trust file naming `signers` into `dir`; returns its path.
    pub fn trust_file(dir: &Path, signers: &[&Signer]) -> PathBuf {
        let path = dir.join("trusted.pub");
        let text: String = signers.iter().map(|s| s.public_key()).collect();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes `bytes` to `path` and their signature to `path.minisig`
    /// (signature first, so a watcher never sees the new component with the
    /// old signature settle).
    pub fn install(&self, path: &Path, bytes: &[u8]) {
        replace_file(&minisig(path), self.sign(bytes).as_bytes());
        replace_file(path, bytes);
    }
}

/// Where the signature of the component at `path` goes.
pub fn minisig(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

/// A policy under test: the shared policy tests run against each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `guest-auth`, in Rust on `policy-kit`.
    Rust,
    /// `guest-python`, in Python (componentize-py), on the host's primitives.
    Python,
}

impl Policy {
    /// The component file (`just components` / `just python-policy` build them).
    pub fn component(self) -> PathBuf {
        match self {
            Policy::Rust => component_path(),
            Policy::Python => python_component(),
        }
    }

    /// Server options that load this policy.
    pub fn options(self) -> Options {
        Options {
            component: self.component(),
            ..Options::default()
        }
    }
}

/// The Python policy `just python-policy` builds.
pub fn python_component() -> PathBuf {
    let path = workspace().join("target/python-policy/guest_python.wasm");
    assert!(
        path.exists(),
        "component {} is missing: run `just python-policy` first",
        path.display()
    );
    path
}

impl TestServer {
    /// A server loading `policy`, otherwise with the defaults.
    pub async fn start_policy(policy: Policy) -> Self {
        Self::start_with(policy.options()).await
    }
}

/// Runs each named `async fn(Policy)` as a test per policy under test:
/// `NAME::rust` and `NAME::python`.
#[macro_export]
macro_rules! policy_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn rust() {
                super::$name($crate::harness::Policy::Rust).await
            }

            #[tokio::test]
            async fn python() {
                super::$name($crate::harness::Policy::Python).await
            }
        }
    )+};
}
