//! The OpenAPI document is valid OpenAPI 3.1, and the live server keeps to
//! it: schemathesis sends what the document allows (and what it does not),
//! and no answer is a 5xx or off the document.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::TestServer;

/// A tool that `just test-tools` installs into the workspace's virtualenv.
fn python_tool(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-tools/venv/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `just test-tools`",
        path.display()
    );
    path
}

async fn fetch_document(server: &TestServer) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    let document = server
        .call("GET", "/openapi.json", None, None)
        .await
        .bytes()
        .await
        .unwrap();
    std::fs::write(&path, &document).unwrap();
    (dir, path)
}

#[tokio::test]
async fn document_is_valid_openapi() {
    let server = TestServer::start().await;
    let (_dir, document) = fetch_document(&server).await;
    let out = Command::new(python_tool("openapi-spec-validator"))
        .arg(&document)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // And a broken document is caught, so the check above means something.
    let mut broken: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&document).unwrap()).unwrap();
    broken["paths"]["/tasks"]["get"]["responses"] = serde_json::json!("none");
    std::fs::write(&document, broken.to_string()).unwrap();
    let out = Command::new(python_tool("openapi-spec-validator"))
        .arg(&document)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Every schemathesis check, over every phase (coverage, fuzzing, stateful
/// sequences that follow created tasks), with a token holding every scope.
#[tokio::test]
async fn api_keeps_to_its_document_under_generated_requests() {
    let server = TestServer::start().await;
    server.add_user(
        "fuzz",
        "tasks:read tasks:write metrics:read tokens:introspect",
    );
    let token = server.token("fuzz", None).await;
    let reports = tempfile::tempdir().unwrap();
    let out = Command::new(python_tool("schemathesis"))
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all"])
        .args(["--max-examples", "60"])
        .args(["--seed", "20261126"])
        .args(["--generation-database", "none"])
        .args(["--workers", "2"])
        .arg("--no-color")
        .args(["--report", "junit"])
        .arg("--report-dir")
        .arg(reports.path())
        // Its cache (`.schemathesis/`) goes where the reports go, not into the source tree.
        .current_dir(reports.path())
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}"
    );
    // It really ran: every operation of the document, and many cases.
    let document: serde_json::Value = server
        .call("GET", "/openapi.json", None, None)
        .await
        .json()
        .await
        .unwrap();
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert!(
        report.contains(&format!("Tested: {operations}")),
        "not all {operations} operations were tested:\n{report}"
    );
    let generated: u64 = report
        .lines()
        .find_map(|l| l.trim().split_once(" generated")?.0.trim().parse().ok())
        .unwrap_or(0);
    assert!(generated >= 200, "only {generated} cases ran:\n{report}");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
