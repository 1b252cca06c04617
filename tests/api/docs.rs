//! The OpenAPI document and the docs page.

use serde_json::Value;

use crate::harness::TestServer;

/// The document is OpenAPI 3.1 with the password flow through `/token`, and
/// what it says of each operation's security is what the server does: a
/// protected operation answers 401 without a token and 403 naming its scope
/// to a token without it; a public one never asks for a token.
#[tokio::test]
async fn openapi_security_matches_the_server() {
    let server = TestServer::start().await;
    server.add_user("nobody", "");
    let token = server.token("nobody", None).await;
    let doc: Value = server
        .call("GET", "/openapi.json", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let scheme = &doc["components"]["securitySchemes"]["oauth2"];
    assert_eq!(scheme["type"], "oauth2");
    assert_eq!(scheme["flows"]["password"]["tokenUrl"], "/token");
    assert_eq!(scheme["flows"]["password"]["refreshUrl"], "/token");
    for scope in ["tasks:read", "tasks:write", "tokens:introspect"] {
        assert!(
            scheme["flows"]["password"]["scopes"][scope].is_string(),
            "{scope}"
        );
    }
    assert!(
        scheme["description"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );

    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let concrete = path.replace("{id}", "1");
            let method = method.to_uppercase();
            let anonymous = server.call(&method, &concrete, None, None).await.status();
            match operation["security"].as_array() {
                Some(requirements) => {
                    let scopes: Vec<&str> = requirements[0]["oauth2"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap())
                        .collect();
                    assert_eq!(anonymous, 401, "{method} {path}");
                    let response = server.call(&method, &concrete, Some(&token), None).await;
                    if scopes.is_empty() {
                        assert_eq!(response.status(), 200, "{method} {path}");
                    } else {
                        assert_eq!(response.status(), 403, "{method} {path}");
                        let challenge = response.headers()["www-authenticate"]
                            .to_str()
                            .unwrap()
                            .to_owned();
                        assert!(
                            challenge.ends_with(&format!("scope=\"{}\"", scopes.join(" "))),
                            "{method} {path}: {challenge}"
                        );
                    }
                }
                None => assert!(
                    ![401, 403, 404].contains(&anonymous.as_u16()),
                    "{method} {path}: {anonymous}"
                ),
            }
        }
    }
    assert_eq!(operations, 13, "every route is documented");
}

/// `/docs` is served by the binary itself, wired to `/openapi.json`, with
/// no script or style from another host.
#[tokio::test]
async fn docs_page_is_self_contained() {
    let server = TestServer::start().await;
    let page = server
        .client
        .get(server.url("/docs/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !html.contains(external),
            "the page loads something from elsewhere: {html}"
        );
    }
    let bundle = server
        .client
        .get(server.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
    let init = server
        .client
        .get(server.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    assert!(init.text().await.unwrap().contains("/openapi.json"));
}

/// The docs page (it holds a password form) and every file of it may not
/// be framed, sniffed, or made to run script from anywhere else; the API's
/// own answers carry the strictest policy.
#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let server = TestServer::start().await;
    for path in [
        "/docs/",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
        "/docs/swagger-ui.css",
    ] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-eval"), "{csp}");
        assert!(!csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
    for path in ["/health", "/openapi.json", "/no-such-route"] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
            "{path}"
        );
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
}
