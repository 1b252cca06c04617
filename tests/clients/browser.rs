//! `/docs` in a real browser: log in with the Authorize button (the password
//! flow through `/token`), then run `GET /tasks` from the page.

use serde_json::json;

use crate::chromium::Browser;
use crate::harness::{PASSWORD, TestServer};

#[tokio::test]
async fn docs_page_authorizes_and_lists_tasks() {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read tasks:write");
    let token = server.token("alice", None).await;
    let created = server
        .call(
            "POST",
            "/tasks",
            Some(&token),
            Some(json!({"title": "water the ficus"})),
        )
        .await;
    assert_eq!(created.status(), 201);

    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::start(profile.path()).await;
    browser.client.goto(&server.url("/docs/")).await.unwrap();

    // Authorize: the password flow's form, filled in as a user would.
    browser.click("button.authorize").await;
    browser.type_into("#oauth_username", "alice").await;
    browser.type_into("#oauth_password", PASSWORD).await;
    browser.click(".auth-btn-wrapper button.authorize").await;
    // The modal offers to log out, and says so, only once `/token` granted a token.
    browser
        .find(r#".modal-ux button[aria-label="Remove authorization"]"#)
        .await;
    let modal = browser.text(".modal-ux").await;
    assert!(modal.contains("Authorized"), "{modal}");
    browser.click("button.btn-done").await;

    // GET /tasks, from the page.
    let operation = "#operations-tasks-list";
    browser
        .click(&format!("{operation} .opblock-summary"))
        .await;
    browser.click(&format!("{operation} .try-out__btn")).await;
    browser.click(&format!("{operation} .execute")).await;
    // The live response table appears once the response is in.
    let status = browser
        .text(&format!(
            "{operation} .live-responses-table .response .response-col_status"
        ))
        .await;
    assert_eq!(status.trim(), "200", "the page's request failed");
    let body = browser
        .text(&format!(
            "{operation} .live-responses-table .response-col_description pre"
        ))
        .await;
    assert!(body.contains("water the ficus"), "{body}");
    let curl = browser.text(&format!("{operation} .curl-command")).await;
    assert!(curl.contains("Authorization: Bearer "), "{curl}");
}
