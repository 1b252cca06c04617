//! Task CRUD, ownership, validation and body limits.

use serde_json::{Value, json};

use crate::harness::{TestServer, assert_error};

async fn server_with_users() -> (TestServer, String, String) {
    let server = TestServer::start().await;
    server.add_user("alice", "tasks:read tasks:write");
    server.add_user("bob", "tasks:read tasks:write");
    let alice = server.token("alice", None).await;
    let bob = server.token("bob", None).await;
    (server, alice, bob)
}

/// Create, read, update (only the given fields), list and delete.
#[tokio::test]
async fn crud_round_trip() {
    let (server, alice, _) = server_with_users().await;
    let response = server
        .call(
            "POST",
            "/tasks",
            Some(&alice),
            Some(json!({"title": "write tests", "description": "all of them", "id": 99})),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let task: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/tasks/{}", task["id"]));
    assert_ne!(task["id"], 99);
    assert_eq!(task["title"], "write tests");
    assert_eq!(task["description"], "all of them");
    assert_eq!(task["status"], "todo");
    assert!(time_is_rfc3339(&task["created_at"]) && time_is_rfc3339(&task["updated_at"]));

    let fetched: Value = server
        .call("GET", &location, Some(&alice), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, task);

    let response = server
        .call(
            "PATCH",
            &location,
            Some(&alice),
            Some(json!({"status": "in_progress"})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let patched: Value = response.json().await.unwrap();
    assert_eq!(patched["status"], "in_progress");
    assert_eq!(patched["title"], "write tests");
    assert_eq!(patched["description"], "all of them");
    assert_eq!(patched["created_at"], task["created_at"]);

    let cleared: Value = server
        .call(
            "PATCH",
            &location,
            Some(&alice),
            Some(json!({"description": null, "title": "renamed"})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["title"], "renamed");
    assert_eq!(cleared["status"], "in_progress");

    let list: Value = server
        .call("GET", "/tasks", Some(&alice), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0], cleared);

    assert_eq!(
        server
            .call("DELETE", &location, Some(&alice), None)
            .await
            .status(),
        204
    );
    let gone = server.call("GET", &location, Some(&alice), None).await;
    assert_error(gone, 404, "not_found", None).await;
    let again = server.call("DELETE", &location, Some(&alice), None).await;
    assert_error(again, 404, "not_found", None).await;
}

fn time_is_rfc3339(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
    })
}

/// Another user's task is 404 for every operation and absent from lists.
#[tokio::test]
async fn tasks_belong_to_their_owner() {
    let (server, alice, bob) = server_with_users().await;
    let task: Value = server
        .call(
            "POST",
            "/tasks",
            Some(&alice),
            Some(json!({"title": "private"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/tasks/{}", task["id"]);
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"title": "mine now"}))),
        ("DELETE", None),
    ] {
        let response = server.call(method, &path, Some(&bob), body).await;
        assert_error(response, 404, "not_found", None).await;
    }
    let list: Value = server
        .call("GET", "/tasks", Some(&bob), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!({"items": [], "total": 0}));
    let still: Value = server
        .call("GET", &path, Some(&alice), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still["title"], "private");
}

/// `limit` and `offset` page through the caller's tasks; bad values are 400.
#[tokio::test]
async fn listing_pages() {
    let (server, alice, _) = server_with_users().await;
    for i in 0..5 {
        server
            .call(
                "POST",
                "/tasks",
                Some(&alice),
                Some(json!({"title": format!("t{i}")})),
            )
            .await;
    }
    let page: Value = server
        .call("GET", "/tasks?limit=2&offset=1", Some(&alice), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 5);
    let titles: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].clone())
        .collect();
    assert_eq!(titles, vec![json!("t1"), json!("t2")]);
    // A page past the end is empty and still tells the total.
    let past: Value = server
        .call("GET", "/tasks?limit=2&offset=9", Some(&alice), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(past, json!({"items": [], "total": 5}));
    for bad in ["limit=0", "limit=abc", "offset=-3"] {
        let response = server
            .call("GET", &format!("/tasks?{bad}"), Some(&alice), None)
            .await;
        assert_error(response, 400, "invalid_request", None).await;
    }
}

/// Bodies that are not JSON or not of the task's shape get 422 naming the field.
#[tokio::test]
async fn invalid_bodies_are_422() {
    let (server, alice, _) = server_with_users().await;
    let created: Value = server
        .call("POST", "/tasks", Some(&alice), Some(json!({"title": "ok"})))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/tasks/{}", created["id"]);
    let cases: [(&str, &str, &str, &str); 9] = [
        ("POST", "/tasks", "{not json", "JSON"),
        ("POST", "/tasks", "[1,2]", "object"),
        ("POST", "/tasks", "{}", "title"),
        ("POST", "/tasks", r#"{"title":""}"#, "title"),
        ("POST", "/tasks", r#"{"title":7}"#, "title"),
        (
            "POST",
            "/tasks",
            r#"{"title":"t","status":"someday"}"#,
            "status",
        ),
        (
            "POST",
            "/tasks",
            r#"{"title":"t","description":5}"#,
            "description",
        ),
        ("PATCH", &path, r#"{"title":null}"#, "title"),
        ("PATCH", &path, r#"{"status":"DONE"}"#, "status"),
    ];
    for (method, path, body, field) in cases {
        let response = server
            .client
            .request(method.parse().unwrap(), server.url(path))
            .bearer_auth(&alice)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let error = assert_error(response, 422, "invalid_body", None).await;
        let description = error["error_description"].as_str().unwrap();
        assert!(description.contains(field), "{body}: {description}");
    }
    let long_title = json!({"title": "x".repeat(201)});
    let response = server
        .call("POST", "/tasks", Some(&alice), Some(long_title))
        .await;
    assert_error(response, 422, "invalid_body", None).await;
    let untouched: Value = server
        .call("GET", &path, Some(&alice), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(untouched, created);
}

/// A body over 64 KiB is a 413, with or without a Content-Length.
#[tokio::test]
async fn oversized_task_body_is_413() {
    let (server, alice, _) = server_with_users().await;
    let big = json!({"title": "t", "description": "x".repeat(65 * 1024)});
    let response = server
        .call("POST", "/tasks", Some(&alice), Some(big.clone()))
        .await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(body["error_description"].is_string());
    let chunks = futures_stream(big.to_string().into_bytes());
    let response = server
        .client
        .post(server.url("/tasks"))
        .bearer_auth(&alice)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let list: Value = server
        .call("GET", "/tasks", Some(&alice), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 0);
}

/// A chunked body (no Content-Length), 8 KiB a chunk.
fn futures_stream(
    bytes: Vec<u8>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunks: Vec<_> = bytes.chunks(8192).map(|c| Ok(c.to_vec())).collect();
    futures_util::stream::iter(chunks)
}

/// Unknown routes and ids that are not numbers are JSON 404s.
#[tokio::test]
async fn unknown_things_are_404() {
    let (server, alice, _) = server_with_users().await;
    assert_error(
        server.call("GET", "/nope", None, None).await,
        404,
        "not_found",
        None,
    )
    .await;
    assert_error(
        server.call("GET", "/tasks/abc", Some(&alice), None).await,
        404,
        "not_found",
        None,
    )
    .await;
    assert_error(
        server
            .call("GET", "/tasks/99999999999999999999", Some(&alice), None)
            .await,
        404,
        "not_found",
        None,
    )
    .await;
}

/// A client that stops sending its body gets 408 once the body timeout
/// passes, rather than holding the request open.
#[tokio::test]
async fn a_stalled_body_times_out() {
    use std::io::{Read, Write};
    let server = TestServer::start_with(crate::harness::Options {
        extra_env: vec![("TASKFLOW_BODY_TIMEOUT".into(), "1".into())],
        ..Default::default()
    })
    .await;
    server.add_user("alice", "tasks:write");
    let token = server.token("alice", None).await;
    let mut stream = std::net::TcpStream::connect(server.address()).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /tasks HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"title\""
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("request_timeout"), "{response}");
}
