//! Limits on how a client uses a connection: each refusal is prompt and
//! clean, never a hang.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{Options, TestServer};

fn with_env(pairs: &[(&str, &str)]) -> Options {
    Options {
        extra_env: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Options::default()
    }
}

/// Reads until the server closes the connection (bounded).
fn read_to_close(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("the server should close the connection, not leave it hanging");
    String::from_utf8_lossy(&answer).into_owned()
}

/// One request on a kept-alive connection; returns the status line.
fn request_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    let n = stream.read(&mut buffer).unwrap();
    let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_client_sending_its_headers_slowly_is_cut_off() {
    let server = TestServer::start_with(with_env(&[("TASKFLOW_HEADER_TIMEOUT", "1")])).await;
    let mut stream = TcpStream::connect(server.address()).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut stream);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
    assert!(!answer.contains("200 OK"), "{answer}");
    assert_eq!(server.health().await["status"], "ok");
}

#[tokio::test]
async fn an_oversized_request_head_gets_431() {
    let server = TestServer::start_with(with_env(&[("TASKFLOW_MAX_HEADER_BYTES", "4096")])).await;
    let mut stream = TcpStream::connect(server.address()).unwrap();
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(8 * 1024)
    );
    stream.write_all(request.as_bytes()).unwrap();
    let answer = read_to_close(&mut stream);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        answer.lines().next().unwrap_or_default()
    );
    // A head under the limit is served.
    let ok = server
        .client
        .get(server.url("/health"))
        .header("x-padding", "a".repeat(2048))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn connections_over_the_cap_get_503_until_one_closes() {
    let server = TestServer::start_with(with_env(&[
        ("TASKFLOW_MAX_CONNECTIONS", "2"),
        // All from 127.0.0.1: no smaller share for one address.
        ("TASKFLOW_MAX_CONNECTIONS_PER_ADDRESS", "0"),
    ]))
    .await;
    let mut first = TcpStream::connect(server.address()).unwrap();
    let mut second = TcpStream::connect(server.address()).unwrap();
    assert_eq!(request_on(&mut first), "HTTP/1.1 200 OK");
    assert_eq!(request_on(&mut second), "HTTP/1.1 200 OK");

    let mut third = TcpStream::connect(server.address()).unwrap();
    let answer = read_to_close(&mut third);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(
        answer.contains("\"error\":\"temporarily_unavailable\""),
        "{answer}"
    );

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = TcpStream::connect(server.address()).unwrap();
        if request_on(&mut again) == "HTTP/1.1 200 OK" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connection's slot never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(request_on(&mut second), "HTTP/1.1 200 OK");
}
