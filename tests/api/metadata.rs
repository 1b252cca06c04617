//! `GET /.well-known/oauth-authorization-server` (RFC 8414) and the
//! settings behind it.

use serde_json::{Value, json};

use crate::harness::{Options, TestServer, run_cli};

async fn metadata(server: &TestServer) -> (reqwest::header::HeaderMap, Value) {
    let response = server
        .call("GET", "/.well-known/oauth-authorization-server", None, None)
        .await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    (headers, response.json().await.unwrap())
}

/// Without `--public-url`, the URLs are under `http://` and the address
/// the server listens on, and every field the contract names is there.
#[tokio::test]
async fn metadata_names_every_endpoint_under_the_listen_address() {
    let server = TestServer::start().await;
    let (headers, body) = metadata(&server).await;
    let cache = headers["cache-control"].to_str().unwrap();
    assert!(
        cache.starts_with("public") && cache.contains("max-age="),
        "{cache}"
    );
    let base = &server.base;
    assert_eq!(
        body,
        json!({
            "issuer": "taskflow",
            "token_endpoint": format!("{base}/token"),
            "revocation_endpoint": format!("{base}/revoke"),
            "introspection_endpoint": format!("{base}/introspect"),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "grant_types_supported": ["password", "refresh_token"],
            "scopes_supported": ["tasks:read", "tasks:write", "metrics:read", "tokens:introspect"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
        })
    );
    // Each URL it names answers (the JWKS publicly, the others as forms).
    let jwks = server
        .client
        .get(body["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
    // No field lists `none` as a signing algorithm.
    for (field, value) in body.as_object().unwrap() {
        if field.ends_with("signing_alg_values_supported") {
            assert!(
                !value.as_array().unwrap().contains(&json!("none")),
                "{field}"
            );
        }
    }
}

/// `TASKFLOW_PUBLIC_URL` (as a deployment behind a proxy sets it) and the
/// issuer are what the document says.
#[tokio::test]
async fn metadata_follows_the_public_url_and_issuer() {
    let server = TestServer::start_with(Options {
        extra_env: vec![
            (
                "TASKFLOW_PUBLIC_URL".into(),
                "https://tasks.example.com/api/".into(),
            ),
            ("TASKFLOW_ISSUER".into(), "https://tasks.example.com".into()),
        ],
        ..Options::default()
    })
    .await;
    let (_, body) = metadata(&server).await;
    assert_eq!(body["issuer"], "https://tasks.example.com");
    assert_eq!(
        body["token_endpoint"],
        "https://tasks.example.com/api/token"
    );
    assert_eq!(
        body["introspection_endpoint"],
        "https://tasks.example.com/api/introspect"
    );
    assert_eq!(
        body["jwks_uri"],
        "https://tasks.example.com/api/.well-known/jwks.json"
    );
}

/// `config check` warns about an issuer that is not an https URL (RFC 8414
/// §2), not about one that is, and refuses a public URL that is not one.
#[tokio::test]
async fn config_check_warns_about_a_non_https_issuer() {
    let data = tempfile::tempdir().unwrap();
    let check = |env: Vec<(&str, &str)>| {
        let options = Options {
            extra_env: env
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ..Options::default()
        };
        run_cli(data.path(), &options, &["config", "check"], "")
    };
    let default = check(vec![]);
    assert!(default.status.success());
    let report = String::from_utf8_lossy(&default.stdout);
    assert!(
        report.contains("warning: the issuer \"taskflow\" is not an https URL"),
        "{report}"
    );
    assert!(
        report.contains("ok: public URL http://127.0.0.1:8080"),
        "{report}"
    );

    let https = check(vec![
        ("TASKFLOW_ISSUER", "https://tasks.example.com"),
        ("TASKFLOW_PUBLIC_URL", "https://tasks.example.com"),
    ]);
    assert!(https.status.success());
    let report = String::from_utf8_lossy(&https.stdout);
    assert!(!report.contains("warning"), "{report}");
    assert!(
        report.contains("ok: public URL https://tasks.example.com"),
        "{report}"
    );

    // From the config file, as every setting.
    let file = data.path().join("taskflow.toml");
    std::fs::write(
        &file,
        "public_url = \"https://from-file.example\"\nrefresh_token_reuse_grace = 5\n",
    )
    .unwrap();
    let from_file = check(vec![("TASKFLOW_CONFIG", file.to_str().unwrap())]);
    assert!(from_file.status.success());
    let report = String::from_utf8_lossy(&from_file.stdout);
    assert!(
        report.contains("ok: public URL https://from-file.example"),
        "{report}"
    );

    let bad = check(vec![("TASKFLOW_PUBLIC_URL", "tasks.example.com")]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("public URL"), "{stderr}");
}
