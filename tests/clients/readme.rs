//! The README's "Using it" section, run as written: every shell line of it,
//! in order, with `bash`, `curl` and the real binary, against a server
//! started the way `just run` starts it (`./target/release/taskflow serve`
//! in a directory holding the built component where `just build` puts it).
//!
//! Only what a reader must fill in is filled in: the address (the server
//! listens on a free port, not 8080, so that a developer's own server does
//! not fail the test), and the `eyJ...` and `mF_9...` a reader pastes from
//! an earlier answer. A `# {...}` line under a command is the answer the
//! README shows: the real answer must have its shape, and every value the
//! README spells out (a string without `...`, a number).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness;

/// The fenced `sh` blocks of the README section `heading`, as commands:
/// continuation lines joined, each with the answer shown under it.
fn section_commands(readme: &str, heading: &str) -> Vec<(String, Option<String>)> {
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("the README has no section {heading:?}"));
    let section = &readme[start + 1..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3)];
    let mut commands: Vec<(String, Option<String>)> = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(answer) = line.strip_prefix("# ") {
            let last = commands.last_mut().expect("an answer follows a command");
            last.1 = Some(answer.to_owned());
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line);
                commands.push((std::mem::take(&mut pending), None));
            }
        }
    }
    assert!(pending.is_empty(), "a command ends in a line continuation");
    commands
}

/// Whether `actual` has the shape of the README's `shown` answer.
fn matches_shown(shown: &Value, actual: &Value) -> Result<(), String> {
    match (shown, actual) {
        (Value::Object(shown), Value::Object(actual)) => {
            let mut want: Vec<&String> = shown.keys().collect();
            let mut got: Vec<&String> = actual.keys().collect();
            want.sort();
            got.sort();
            if want != got {
                return Err(format!("fields {got:?}, the README shows {want:?}"));
            }
            for (key, value) in shown {
                matches_shown(value, &actual[key]).map_err(|e| format!("{key}: {e}"))?;
            }
            Ok(())
        }
        (Value::Array(shown), Value::Array(actual)) if shown.len() == actual.len() => shown
            .iter()
            .zip(actual)
            .try_for_each(|(shown, actual)| matches_shown(shown, actual)),
        (Value::String(shown), Value::String(_)) if shown.contains("...") => Ok(()),
        _ if shown == actual => Ok(()),
        _ => Err(format!("{actual}, the README shows {shown}")),
    }
}

/// A directory laid out as a checkout after `just build`: the binary and
/// the component where the README's commands and `serve`'s default expect
/// them.
fn checkout_like() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("target/release");
    let components = dir.path().join("target/wasm32-wasip2/component");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::create_dir_all(&components).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_taskflow"), release.join("taskflow")).unwrap();
    std::os::unix::fs::symlink(
        harness::component_path().canonicalize().unwrap(),
        components.join("guest_auth.wasm"),
    )
    .unwrap();
    dir
}

/// A command of the README's shell, in `dir`, with none of the test
/// run's own settings: what a reader's shell has.
fn shell(dir: &Path, line: &str, variables: &HashMap<String, String>) -> Command {
    let mut command = Command::new("bash");
    command
        .args(["-o", "pipefail", "-c", line])
        .current_dir(dir)
        .envs(variables);
    for (name, _) in std::env::vars() {
        if name.starts_with("TASKFLOW_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
}

/// `./target/release/taskflow serve` as `just run` runs it, but on a free
/// port; its address once it listens.
fn serve(dir: &Path) -> (Child, String) {
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut child = shell(dir, "exec ./target/release/taskflow serve", &HashMap::new())
        .env("TASKFLOW_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(address) = line.strip_prefix("taskflow listening on http://") {
                let _ = tx.send(address.to_owned());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(address) => (child, address),
        Err(_) => {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("taskflow serve did not start; its log:\n{log}");
        }
    }
}

#[test]
fn the_readme_usage_runs_as_written() {
    let readme = std::fs::read_to_string(harness::workspace().join("README.md")).unwrap();
    let commands = section_commands(&readme, "Using it");
    assert!(
        commands.len() >= 8,
        "the section lost its commands: {commands:?}"
    );
    let dir = checkout_like();
    let (mut server, address) = serve(dir.path());
    let mut variables: HashMap<String, String> = HashMap::new();
    let (mut access, mut refresh) = (None::<String>, None::<String>);
    for (written, shown) in &commands {
        let mut line = written.replace("127.0.0.1:8080", &address);
        if line.contains("eyJ...") {
            let token = access.as_deref().expect("an access token before `eyJ...`");
            line = line.replace("eyJ...", token);
        }
        if line.contains("mF_9...") {
            let token = refresh
                .as_deref()
                .expect("a refresh token before `mF_9...`");
            line = line.replace("mF_9...", token);
        }
        // `NAME=value` on a line of its own sets a variable for the lines after it.
        if let Some((name, value)) = line.split_once('=')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            && !value.contains(char::is_whitespace)
        {
            variables.insert(name.to_owned(), value.to_owned());
            continue;
        }
        let out = shell(dir.path(), &line, &variables)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "README line failed ({}): {written}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: Option<Value> = serde_json::from_str(&stdout).ok();
        if let Some(answer) = &answer {
            if let Some(token) = answer["access_token"].as_str() {
                access = Some(token.to_owned());
            }
            if let Some(token) = answer["refresh_token"].as_str() {
                refresh = Some(token.to_owned());
            }
        }
        if let Some(shown) = shown {
            let shown: Value = serde_json::from_str(shown)
                .unwrap_or_else(|e| panic!("the README's answer to {written} is not JSON: {e}"));
            let answer = answer.unwrap_or_else(|| panic!("{written} answered no JSON: {stdout}"));
            if let Err(difference) = matches_shown(&shown, &answer) {
                panic!("{written}\nanswered {answer}\n{difference}");
            }
        }
    }
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn shown_answers_are_compared_by_shape_and_spelled_out_values() {
    let shown: Value = serde_json::from_str(r#"{"a":"x...","b":1,"c":[{"d":"todo"}]}"#).unwrap();
    let same: Value = serde_json::from_str(r#"{"a":"xyz","b":1,"c":[{"d":"todo"}]}"#).unwrap();
    assert!(matches_shown(&shown, &same).is_ok());
    for different in [
        r#"{"a":"xyz","b":2,"c":[{"d":"todo"}]}"#,
        r#"{"a":"xyz","b":1,"c":[{"d":"done"}]}"#,
        r#"{"a":"xyz","b":1,"c":[]}"#,
        r#"{"a":"xyz","b":1,"c":[{"d":"todo"}],"e":0}"#,
        r#"{"error":"invalid_grant"}"#,
    ] {
        let different: Value = serde_json::from_str(different).unwrap();
        assert!(matches_shown(&shown, &different).is_err(), "{different}");
    }
}
