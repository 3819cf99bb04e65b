//! Subscribe, Unsubscribe and CommitOffset as plain control requests, for the seed API's
//! `LanceClient.subscribe / unsubscribe / commit_offset`.
//!
//! The crate's `LanceClient` does not expose these three requests (its consumer sends
//! them itself when `server_tracking` is on), so this module sends them on a connection
//! of its own, encoded and decoded entirely by the crate's sans-IO `proto` module: one
//! request at a time, reconnecting after any failure. No protocol logic lives here.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lnc_uring::proto::{Checksum, FrameDecoder, FrameKind, Request, Response, SubscribeRequest};
use lnc_uring::{Error, ServerError};

/// A lazily opened connection for the three requests.
#[derive(Debug)]
pub(crate) struct RawControl {
    addr: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    conn: Mutex<Option<TcpStream>>,
}

impl RawControl {
    pub(crate) fn new(addr: String, connect_timeout: Duration, request_timeout: Duration) -> Self {
        RawControl {
            addr,
            connect_timeout,
            request_timeout,
            conn: Mutex::new(None),
        }
    }

    pub(crate) fn close(&self) {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn connect(&self) -> Result<TcpStream, Error> {
        let mut last = None;
        let addrs = self.addr.to_socket_addrs().map_err(|e| Error::Connect {
            addr: self.addr.clone(),
            source: e.into(),
        })?;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.connect_timeout) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(Error::Connect {
            addr: self.addr.clone(),
            source: last
                .unwrap_or_else(|| std::io::Error::other("no address resolved"))
                .into(),
        })
    }

    /// Sends `req` and hands its reply to `read`; the connection is dropped on failure.
    fn request<T>(
        &self,
        req: &Request<'_>,
        read: impl FnOnce(Response<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stream = match guard.take() {
            Some(s) => s,
            None => self.connect()?,
        };
        let mut out = Vec::new();
        req.encode(Checksum::Ieee, &mut out)?;
        stream.write_all(&out)?;
        let deadline = Instant::now() + self.request_timeout;
        let mut dec = FrameDecoder::new(Checksum::Ieee);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(format!("{:?} request", req.code())));
            }
            stream.set_read_timeout(Some(left))?;
            let n = match stream.read(&mut buf) {
                Ok(0) => return Err(Error::ConnectionClosed),
                Ok(n) => n,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Err(Error::Timeout(format!("{:?} request", req.code())))
                }
                Err(e) => return Err(e.into()),
            };
            let mut frames = dec.feed(&buf[..n]);
            while let Some(frame) = frames.next_frame() {
                let frame = frame?;
                if matches!(frame.kind(), FrameKind::Keepalive) {
                    continue;
                }
                let reply = Response::parse(&frame)?;
                let result = match reply {
                    Response::Error(text) => {
                        Err(Error::from(ServerError::classify(text.into_owned())))
                    }
                    other => read(other),
                };
                drop(frames);
                *guard = Some(stream);
                return result;
            }
        }
    }

    /// Subscribe: `(consumer_id, start_offset)` as the server acknowledged them.
    pub(crate) fn subscribe(
        &self,
        topic_id: u32,
        start_offset: u64,
        max_batch_bytes: u32,
        consumer_id: u64,
    ) -> Result<(u64, u64), Error> {
        let req = Request::Subscribe(SubscribeRequest {
            topic_id,
            start_offset,
            max_batch_bytes,
            consumer_id,
        });
        self.request(&req, |r| match r {
            Response::SubscribeAck(a) => Ok((a.consumer_id, a.start_offset)),
            other => Err(Error::Protocol(format!(
                "unexpected reply to Subscribe: {other:?}"
            ))),
        })
    }

    /// Unsubscribe (the server answers with an Ack frame).
    pub(crate) fn unsubscribe(&self, topic_id: u32, consumer_id: u64) -> Result<(), Error> {
        let req = Request::Unsubscribe {
            topic_id,
            consumer_id,
        };
        self.request(&req, |r| match r {
            Response::Unsubscribed { .. } => Ok(()),
            other => Err(Error::Protocol(format!(
                "unexpected reply to Unsubscribe: {other:?}"
            ))),
        })
    }

    /// CommitOffset: `(consumer_id, committed_offset)` as acknowledged.
    pub(crate) fn commit_offset(
        &self,
        topic_id: u32,
        consumer_id: u64,
        offset: u64,
    ) -> Result<(u64, u64), Error> {
        let req = Request::CommitOffset {
            topic_id,
            consumer_id,
            offset,
        };
        self.request(&req, |r| match r {
            Response::CommitAck(a) => Ok((a.consumer_id, a.committed_offset)),
            other => Err(Error::Protocol(format!(
                "unexpected reply to CommitOffset: {other:?}"
            ))),
        })
    }
}
