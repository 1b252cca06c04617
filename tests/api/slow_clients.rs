//! Slow clients: a body sent a byte at a time is cut at the body deadline,
//! one client address cannot take every connection, and a request needs
//! one `Host` (RFC 9112 §3.2).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
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

/// A blocking connection to `server` from the loopback address `from`
/// (any 127.x.y.z is this machine; the server sees it as the client's).
async fn connect_from(server: &TestServer, from: &str) -> TcpStream {
    let target: SocketAddr = server.address().parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let stream = socket.connect(target).await.unwrap().into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// One `GET /health` on `stream`; the status line, or what went wrong.
fn health_on(stream: &mut TcpStream) -> String {
    if let Err(e) =
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    {
        return format!("write failed: {e}");
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// The head of a `POST path` with a 100-byte body, and the body's first
/// byte. Fails if the server closed the connection (refused it) already.
fn slow_post(stream: &mut TcpStream, path: &str, token: Option<&str>) -> std::io::Result<()> {
    let (content_type, auth) = match token {
        Some(token) => (
            "application/json",
            format!("Authorization: Bearer {token}\r\n"),
        ),
        None => ("application/x-www-form-urlencoded", String::new()),
    };
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: {content_type}\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{"
    )
}

/// What the server says on a connection before any request: a refused
/// connection is answered at once; `None` if nothing came within a second.
fn unasked_answer(stream: &mut TcpStream) -> Option<String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(e) if !answer.is_empty() => panic!("{e} after {answer:?}"),
        Err(_) => None,
    }
}

/// One byte every 300 ms: the body never stops arriving, and is never
/// complete. Whatever the server answers, and when, is returned.
fn trickle(mut stream: TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut reader = stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..99 {
            std::thread::sleep(Duration::from_millis(300));
            if stream.write_all(b"a").is_err() {
                break;
            }
        }
    });
    reader
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = reader.read_to_end(&mut answer);
    let took = started.elapsed();
    let _ = reader.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    (String::from_utf8_lossy(&answer).into_owned(), took)
}

/// `--body-timeout` is a deadline for the whole body: a byte every 300 ms
/// keeps none of `/token`, `/revoke` or `POST /tasks` open past it.
#[tokio::test]
async fn a_trickled_body_is_cut_at_the_deadline() {
    let server = TestServer::start_with(with_env(&[("TASKFLOW_BODY_TIMEOUT", "2")])).await;
    server.add_user("alice", "tasks:write");
    let token = server.token("alice", None).await;
    let mut runs = Vec::new();
    for (path, token) in [
        ("/token", None),
        ("/revoke", None),
        ("/tasks", Some(&token)),
    ] {
        let mut stream = connect_from(&server, "127.0.0.1").await;
        slow_post(&mut stream, path, token.map(String::as_str)).unwrap();
        runs.push(std::thread::spawn(move || (path, trickle(stream))));
    }
    for run in runs {
        let (path, (answer, took)) = run.join().unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "{path}: {answer:?} after {took:?}"
        );
        assert!(answer.contains("request_timeout"), "{path}: {answer}");
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
            "{path}: answered after {took:?}, the deadline is 2 s"
        );
    }
    // The server is as it was.
    assert_eq!(server.health().await["status"], "ok");
}

/// Slow connections from one address take at most its share (a quarter of
/// `--max-connections` by default): the next from that address is refused
/// with 503, while other clients are served.
#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let server = TestServer::start_with(with_env(&[("TASKFLOW_MAX_CONNECTIONS", "16")])).await;
    // Each connection is refused on arrival or held: the refused ones are
    // answered before they send anything (and their request may meet a
    // closed socket), the held ones wait for their bodies.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..16 {
        let mut stream = connect_from(&server, "127.0.0.1").await;
        match unasked_answer(&mut stream) {
            Some(answer) => {
                assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
                assert!(answer.contains("from your address"), "{answer}");
                assert!(answer.contains("retry-after: 1"), "{answer}");
                refused += 1;
            }
            None => {
                slow_post(&mut stream, "/token", None).unwrap();
                held.push(stream);
            }
        }
    }
    // Other addresses are served all the while, each up to its own share.
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let answer = health_on(&mut connect_from(&server, from).await);
        assert!(answer.starts_with("HTTP/1.1 200"), "{from}: {answer}");
    }
    assert_eq!(refused, 12, "4 of 16 connections held, a quarter of 16");
    let answer = unasked_answer(&mut connect_from(&server, "127.0.0.1").await);
    assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 503")));
    // One closes: its address may open one again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !health_on(&mut connect_from(&server, "127.0.0.1").await).starts_with("HTTP/1.1 200") {
        assert!(
            Instant::now() < deadline,
            "the address's places never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `--max-connections-per-address 0` lifts the share (behind a proxy,
/// every client has the proxy's address); then only the overall cap holds.
#[tokio::test]
async fn the_share_of_an_address_can_be_lifted() {
    let server = TestServer::start_with(with_env(&[
        ("TASKFLOW_MAX_CONNECTIONS", "4"),
        ("TASKFLOW_MAX_CONNECTIONS_PER_ADDRESS", "0"),
    ]))
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from(&server, "127.0.0.1").await;
        slow_post(&mut stream, "/token", None).unwrap();
        held.push(stream);
    }
    let answer = unasked_answer(&mut connect_from(&server, "127.0.0.2").await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many open connections;"), "{answer}");
}

/// RFC 9112 §3.2: no `Host`, or two, is a 400 with the API's error body;
/// HTTP/1.0 never required one, and is served without.
#[tokio::test]
async fn a_request_needs_exactly_one_host() {
    let server = TestServer::start().await;
    let send = |request: &str| {
        let mut stream = TcpStream::connect(server.address()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    for request in [
        "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: t\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: user@t\r\nConnection: close\r\n\r\n",
        "POST /token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ] {
        let answer = send(request);
        assert!(
            answer.starts_with("HTTP/1.") && answer[9..].starts_with("400"),
            "{request:?}: {answer}"
        );
        assert!(answer.contains("\"error\":\"invalid_request\""), "{answer}");
        assert!(answer.contains("Host"), "{answer}");
    }
    for request in [
        "GET /health HTTP/1.0\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n",
    ] {
        let answer = send(request);
        assert!(answer[9..].starts_with("200"), "{request:?}: {answer}");
    }
}
