//! Received bytes, decoded into what each frame asks the session to do. Large fetch
//! replies on a consumer's connection are detached after their header and received
//! straight into their own buffer ([`Bulk`]).

use super::bulk::Bulk;
use super::types::{Fatal, Reply};
use super::{BufPool, SessionConfig};
use crate::proto::{Checksum, Frame, FrameDecoder, FrameKind, Item, Response, ServerError};
use crate::Error;

/// Fetch replies at least this large are received straight into their buffers.
const DETACH_MIN: u32 = 16 * 1024;

/// What one received frame asks the session to do.
#[derive(Debug)]
pub(super) enum Action {
    Keepalive,
    Ack(u64),
    Backpressure,
    Reply(Reply),
    Ignore,
    Malformed(Error),
}

impl Action {
    fn from_frame(frame: &Frame<'_>, pool: Option<&BufPool>) -> Action {
        match frame.kind() {
            FrameKind::Keepalive => Action::Keepalive,
            FrameKind::Ack => Action::Ack(frame.header.batch_id),
            FrameKind::Backpressure => Action::Backpressure,
            FrameKind::Control(_) => match Response::parse(frame) {
                Ok(r) => Action::Reply(owned(r, pool)),
                Err(e) => Action::Malformed(Error::InvalidResponse(e)),
            },
            FrameKind::Ingest | FrameKind::Unknown => Action::Ignore,
        }
    }
}

/// The receive side of a connection.
#[derive(Debug)]
pub(super) struct Rx {
    checksum: Checksum,
    decoder: FrameDecoder,
    /// A large fetch reply being received into its own buffer (kept until the
    /// connection is closed: the kernel may be writing into it).
    bulk: Option<Bulk>,
}

impl Rx {
    pub(super) fn new(cfg: &SessionConfig) -> Rx {
        let mut decoder = FrameDecoder::with_max_payload(cfg.checksum, cfg.max_payload);
        if cfg.fetch_pool.is_some() {
            // A consumer: large fetch replies are received straight into their buffers.
            decoder.detach_fetch_payloads(Some(DETACH_MIN));
        }
        Rx {
            checksum: cfg.checksum,
            decoder,
            bulk: None,
        }
    }

    /// A new connection: a fresh stream.
    pub(super) fn on_connected(&mut self) {
        self.decoder.reset();
        self.bulk = None;
    }

    /// The connection is closed: no operation references the detached buffer any more.
    pub(super) fn on_disconnected(&mut self) {
        self.bulk = None;
    }

    /// Decodes `chunk`, appending what its frames ask, in order, to `out` (fetch data is
    /// copied into buffers from `pool`). Bytes that are not LWP stop the decoding: the
    /// error is returned after the actions of the frames before them.
    pub(super) fn decode(
        &mut self,
        mut chunk: &[u8],
        pool: Option<&BufPool>,
        out: &mut Vec<Action>,
    ) -> Option<Fatal> {
        if let Some(b) = self.bulk.as_mut() {
            // The rest of a detached fetch reply comes first.
            let n = b.absorb(chunk);
            chunk = &chunk[n..];
            if b.remaining() == 0 {
                out.extend(self.finish_bulk());
            }
            if chunk.is_empty() {
                return None;
            }
        }
        let mut frames = self.decoder.feed(chunk);
        let mut fatal = None;
        let mut bulk = None;
        while let Some(item) = frames.next_item() {
            match item {
                Ok(Item::Frame(frame)) => out.push(Action::from_frame(&frame, pool)),
                // A large fetch reply: the rest of it goes straight to its buffer.
                Ok(Item::Detached(d)) => bulk = Some(Bulk::start(d.header, d.payload, pool)),
                Err(e) => {
                    fatal = Some(Fatal::Protocol(Error::InvalidFrame(e)));
                    break;
                }
            }
        }
        drop(frames);
        self.bulk = bulk;
        fatal
    }

    /// Where the next received bytes can go without a copy: the unfilled part of a
    /// detached fetch reply's buffer (pointer, length). The memory stays valid and
    /// unmoved until [`Rx::received_direct`] or the end of the connection.
    pub(super) fn recv_target(&mut self) -> Option<(*mut u8, usize)> {
        self.bulk.as_mut()?.target()
    }

    /// `n` bytes were received at [`Rx::recv_target`]; the reply, once complete.
    pub(super) fn received_direct(&mut self, n: usize) -> Option<Action> {
        let b = self.bulk.as_mut()?;
        b.received(n);
        if b.remaining() == 0 {
            self.finish_bulk()
        } else {
            None
        }
    }

    /// The detached reply is complete: the fetch reply, or why its bytes are not valid.
    fn finish_bulk(&mut self) -> Option<Action> {
        let b = self.bulk.take()?;
        Some(match b.finish(self.checksum) {
            Ok((next_offset, data)) => Action::Reply(Reply::Fetch { next_offset, data }),
            Err(e) => Action::Malformed(e),
        })
    }
}

fn owned(r: Response<'_>, pool: Option<&BufPool>) -> Reply {
    match r {
        Response::Topic(j) | Response::ClusterStatus(j) => Reply::Json(j.to_vec()),
        Response::Fetch(f) => Reply::Fetch {
            next_offset: f.next_offset,
            data: match pool {
                Some(p) => {
                    let mut v = p.take(f.data.len());
                    v.extend_from_slice(f.data);
                    v
                }
                None => f.data.to_vec(),
            },
        },
        Response::CatchingUp { server_offset } => Reply::CatchingUp { server_offset },
        Response::SubscribeAck(a) => Reply::SubscribeAck {
            consumer_id: a.consumer_id,
            start_offset: a.start_offset,
        },
        Response::CommitAck(a) => Reply::CommitAck {
            consumer_id: a.consumer_id,
            committed_offset: a.committed_offset,
        },
        Response::Authenticate { success, message } => Reply::Authenticate {
            success,
            message: message.into_owned(),
        },
        Response::Unsubscribed { consumer_id } => Reply::Unsubscribed { consumer_id },
        Response::Error(text) => Reply::Error(ServerError::classify(text.into_owned())),
        Response::Other { code, payload } => Reply::Other {
            code: code.0,
            payload: payload.to_vec(),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::{encode_frame, ControlCode};
    use crate::session::testutil::*;

    #[test]
    fn garbage_is_fatal() {
        let now = t0();
        let mut s = session(now);
        s.handle_bytes(&[0u8; 44], now);
        assert!(matches!(
            s.take_fatal(),
            Some(Fatal::Protocol(Error::InvalidFrame(_)))
        ));
        let mut s = session(now);
        let mut v = Vec::new();
        encode_frame(
            C,
            crate::proto::control_header(ControlCode::FETCH_RESPONSE),
            b"short",
            &mut v,
        );
        s.handle_bytes(&v, now);
        assert!(matches!(s.take_fatal(), Some(Fatal::Protocol(_))));
    }
}
