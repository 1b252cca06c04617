//! A policy's stdout and stderr, sent to the host's log: one log line per
//! line written, marked with the component's name and the stream, with
//! control characters escaped (a policy cannot forge log lines) and a budget
//! per component (a chatty policy cannot flood the log).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line logged; the rest of a longer line is cut.
const MAX_LINE_BYTES: usize = 1024;
/// Lines one component may log per [`BUDGET_WINDOW`]; past it, lines are
/// dropped and the drop is logged once per window.
const LINES_PER_WINDOW: u32 = 200;
const BUDGET_WINDOW: Duration = Duration::from_secs(1);

/// Where one loaded component's output goes.
#[derive(Clone)]
pub(super) struct GuestOutput {
    shared: Arc<Shared>,
}

struct Shared {
    /// The policy's own name, once `info` has told it; the file name till then.
    name: OnceLock<String>,
    fallback_name: String,
    budget: Mutex<Budget>,
}

struct Budget {
    window_start: Instant,
    lines: u32,
    dropped: u64,
}

impl GuestOutput {
    pub(super) fn new(fallback_name: String) -> Self {
        Self {
            shared: Arc::new(Shared {
                name: OnceLock::new(),
                fallback_name,
                budget: Mutex::new(Budget {
                    window_start: Instant::now(),
                    lines: 0,
                    dropped: 0,
                }),
            }),
        }
    }

    /// Names the component in its log lines from now on.
    pub(super) fn set_name(&self, name: &str) {
        let _ = self.shared.name.set(name.to_owned());
    }

    /// A stream for one instance's `stdout` or `stderr`.
    pub(super) fn stream(&self, stream: &'static str) -> LogStream {
        LogStream {
            line: Arc::new(Mutex::new(LineBuffer {
                shared: Arc::clone(&self.shared),
                stream,
                pending: Vec::new(),
                cut: false,
            })),
        }
    }
}

impl Shared {
    fn name(&self) -> &str {
        self.name.get().unwrap_or(&self.fallback_name)
    }

    fn log(&self, stream: &str, line: &[u8]) {
        {
            let mut budget = self.budget.lock().unwrap_or_else(|p| p.into_inner());
            if budget.window_start.elapsed() >= BUDGET_WINDOW {
                if budget.dropped > 0 {
                    tracing::warn!(component = %self.name(), dropped = budget.dropped, "auth component output over its budget; lines dropped");
                }
                budget.window_start = Instant::now();
                budget.lines = 0;
                budget.dropped = 0;
            }
            if budget.lines >= LINES_PER_WINDOW {
                budget.dropped += 1;
                return;
            }
            budget.lines += 1;
        }
        let text: String = String::from_utf8_lossy(line)
            .chars()
            .flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect();
        tracing::info!(target: "taskflow::policy_output", component = %self.name(), stream, "{text}");
    }
}

/// One instance's output stream; clones share the line being written.
#[derive(Clone)]
pub(super) struct LogStream {
    line: Arc<Mutex<LineBuffer>>,
}

struct LineBuffer {
    shared: Arc<Shared>,
    stream: &'static str,
    pending: Vec<u8>,
    /// The line went past [`MAX_LINE_BYTES`]; its rest is dropped.
    cut: bool,
}

impl LineBuffer {
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.append(&bytes[..end]);
            self.emit();
            bytes = &bytes[end + 1..];
        }
        self.append(bytes);
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.pending.len());
        if bytes.len() > room {
            self.cut = true;
        }
        self.pending
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn emit(&mut self) {
        if self.cut {
            self.pending.extend_from_slice("…".as_bytes());
        }
        self.shared.log(self.stream, &self.pending);
        self.pending.clear();
        self.cut = false;
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

impl LogStream {
    fn write_bytes(&self, bytes: &[u8]) {
        self.line
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(bytes);
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
