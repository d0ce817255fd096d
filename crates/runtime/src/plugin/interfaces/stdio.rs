//! stdout and stderr: what a plugin writes is captured, capped, and turned into log lines
//! after each call; the last line (a panic's message) goes into the dead letter's reason.

use std::sync::{Arc, Mutex};

use super::PluginState;
use crate::plugin::bindings::weir::transform::log::Level;

impl PluginState {
    /// Turns what the plugin wrote to stdout and stderr into log lines; returns the last
    /// line, which for a panic holds its message.
    pub(crate) fn flush_captured(&mut self) -> String {
        let (text, dropped) = match self.captured.lock() {
            Ok(mut c) => (
                std::mem::take(&mut c.bytes),
                std::mem::take(&mut c.dropped_lines),
            ),
            Err(_) => return String::new(),
        };
        let text = String::from_utf8_lossy(&text);
        let mut last = "";
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            self.log.emit(Level::Info, line);
            if !line.starts_with("note: run with `RUST_BACKTRACE") {
                last = line;
            }
        }
        self.log.finish(dropped);
        // A Rust panic prints "panicked at FILE:LINE:COL:\nMESSAGE"; keep both parts.
        match text.rfind("panicked at ") {
            Some(i) => one_line(
                text[i..]
                    .split("\nnote: run with `RUST_BACKTRACE")
                    .next()
                    .unwrap_or_default(),
            ),
            None => last.to_owned(),
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Bytes a plugin wrote to stdout or stderr during one call, capped.
#[derive(Default)]
pub(crate) struct Captured {
    bytes: Vec<u8>,
    /// Lines written after the cap was reached.
    dropped_lines: usize,
}

/// Most a plugin may write to stdout and stderr in one call before writes are dropped.
const CAPTURE_CAP: usize = 64 << 10;

#[derive(Clone)]
pub(crate) struct CapturedPipe(pub(crate) Arc<Mutex<Captured>>);

impl CapturedPipe {
    fn append(&self, buf: &[u8]) {
        if let Ok(mut c) = self.0.lock() {
            let room = CAPTURE_CAP.saturating_sub(c.bytes.len());
            // Past the cap, keep whole lines only, so every dropped line is counted once.
            let take = if buf.len() <= room {
                buf.len()
            } else {
                buf[..room]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1)
            };
            c.bytes.extend_from_slice(&buf[..take]);
            c.dropped_lines += buf[take..].iter().filter(|&&b| b == b'\n').count();
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for CapturedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for CapturedPipe {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::OutputStream for CapturedPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for CapturedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
