//! The HTTP listener: a task per connection, with the limits that keep slow
//! or greedy clients from holding the server.
//!
//! `axum::serve` gives hyper no timer, so hyper's header-read timeout never
//! arms there; this loop serves each connection through hyper directly with
//! a Tokio timer, a cap on header size, a cap on open connections, and a
//! smaller cap on those from any one client address, so that one address
//! (slow clients holding bodies open, say) cannot take every connection.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::Service;

/// How clients may use connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest a request's head (request line and headers) may take to
    /// arrive; past it the connection is closed.
    pub header_timeout: Duration,
    /// Largest request head; past it, 431.
    pub max_header_bytes: usize,
    /// Most connections open at once; past it, new ones get 503 and are closed.
    pub max_connections: usize,
    /// Most connections open at once from one client address (an IPv6
    /// client's /64 counts as one address); past it, that address's new
    /// ones get 503 and are closed. `None`: no cap but `max_connections`.
    pub max_connections_per_address: Option<usize>,
}

/// What a connection over the cap is told before it is closed.
const BUSY_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 94\r\n\
\r\n\
{\"error\":\"temporarily_unavailable\",\"error_description\":\"too many open connections; try again\"}";

/// What a connection over its address's cap is told before it is closed.
const ADDRESS_BUSY_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 112\r\n\
\r\n\
{\"error\":\"temporarily_unavailable\",\"error_description\":\"too many open connections from your address; try again\"}";

/// The address a connection counts under: an IPv4 address (also when
/// mapped into IPv6), or an IPv6 address's /64, the least a site or host
/// is usually given.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Open connections by client address.
#[derive(Clone, Default)]
struct PerAddress {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection counted under its address; uncounted when dropped.
struct AddressSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    key: IpAddr,
}

impl PerAddress {
    /// Counts a connection from `ip`, unless `cap` are open from its address.
    fn take(&self, ip: IpAddr, cap: usize) -> Option<AddressSlot> {
        let key = address_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            open: Arc::clone(&self.open),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting and waits for every open connection's requests to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = PerAddress::default();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or the like: back off rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // The address's cap first: a connection it refuses takes no place
        // under the overall cap, even for the moment of the refusal.
        let address_slot = match limits.max_connections_per_address {
            Some(cap) => match per_address.take(remote.ip(), cap.max(1)) {
                Some(slot) => Some(slot),
                None => {
                    tracing::warn!(
                        %remote,
                        "connection refused: too many open connections from its address"
                    );
                    tokio::spawn(refuse(stream, ADDRESS_BUSY_ANSWER));
                    continue;
                }
            },
            None => None,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%remote, "connection refused: too many open connections");
            tokio::spawn(refuse(stream, BUSY_ANSWER));
            continue;
        };
        let Ok(service) = make_service.call(remote).await;
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_header_size(limits.max_header_bytes)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
            drop(slot);
            drop(address_slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Tells a connection over a cap to come back later, and closes it.
async fn refuse(mut stream: TcpStream, answer: &'static [u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer).await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_answers_declare_their_body_length() {
        for answer in [BUSY_ANSWER, ADDRESS_BUSY_ANSWER] {
            let text = std::str::from_utf8(answer).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(
                head.contains(&format!("content-length: {}", body.len())),
                "{}",
                body.len()
            );
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["error"], "temporarily_unavailable");
        }
    }

    #[test]
    fn addresses_are_counted_apart_and_released() {
        let per_address = PerAddress::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = per_address.take(a, 2).unwrap();
        let _second = per_address.take(a, 2).unwrap();
        assert!(per_address.take(a, 2).is_none(), "a third from one address");
        assert!(per_address.take(b, 2).is_some(), "another address");
        drop(first);
        assert!(per_address.take(a, 2).is_some(), "a closed one's place");
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        let key = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(key("2001:db8::1"), key("2001:db8::ffff:1"));
        assert_ne!(key("2001:db8::1"), key("2001:db8:0:1::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
    }
}
