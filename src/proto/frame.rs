//! Frames: classification, encoding, and a streaming zero-copy decoder.

use super::checksum::Checksum;
use super::control::ControlCode;
use super::header::{Flags, Header, HEADER_LEN, MAX_PAYLOAD_LEN};
use super::FrameError;

/// What a frame is, decided exactly as the server decides (docs/protocol.md §3.2): the first
/// matching rule wins, so flag combinations are legal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Control bit set; the command is the **low byte** of `batch_id`.
    Control(ControlCode),
    /// Keepalive bit set.
    Keepalive,
    /// Ack bit set: an ingest ACK, or the reply to Unsubscribe (batch id = consumer id).
    Ack,
    /// Backpressure bit set (never sent by the released server).
    Backpressure,
    /// Batch bit set, or any payload without another classifying bit.
    Ingest,
    /// Nothing matched; the server ignores such frames.
    Unknown,
}

impl FrameKind {
    /// Classifies a header.
    pub fn of(header: &Header) -> FrameKind {
        let f = header.flags;
        if f.is_control() {
            FrameKind::Control(ControlCode(header.batch_id as u8))
        } else if f.is_keepalive() {
            FrameKind::Keepalive
        } else if f.is_ack() {
            FrameKind::Ack
        } else if f.is_backpressure() {
            FrameKind::Backpressure
        } else if f.is_batch() || header.payload_length > 0 {
            FrameKind::Ingest
        } else {
            FrameKind::Unknown
        }
    }
}

/// A decoded frame: the header and a view of its payload (no copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The validated header.
    pub header: Header,
    /// The payload, `header.payload_length` bytes, CRC already checked.
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        FrameKind::of(&self.header)
    }

    /// Header plus payload length.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Decodes one complete frame from the start of `buf` (no limit on the payload
    /// length other than `max_payload`). Returns the frame and its length on the wire.
    ///
    /// ```
    /// use lnc_uring::proto::{keepalive_frame, Checksum, Frame, FrameKind, MAX_PAYLOAD_LEN};
    ///
    /// let bytes = keepalive_frame(Checksum::Ieee);
    /// let (frame, used) = Frame::decode(&bytes, Checksum::Ieee, MAX_PAYLOAD_LEN).unwrap();
    /// assert_eq!((frame.kind(), used), (FrameKind::Keepalive, 44));
    /// ```
    pub fn decode(
        buf: &'a [u8],
        checksum: Checksum,
        max_payload: u32,
    ) -> Result<(Frame<'a>, usize), FrameError> {
        let header = check_header(buf, checksum, max_payload)?;
        let total = HEADER_LEN + header.payload_length as usize;
        if buf.len() < total {
            return Err(FrameError::Truncated {
                needed: total,
                available: buf.len(),
            });
        }
        let payload = &buf[HEADER_LEN..total];
        check_payload(&header, payload, checksum)?;
        Ok((Frame { header, payload }, total))
    }
}

/// The server's checks up to the payload (docs/protocol.md §2.4 rows 1–5): oversize first,
/// then magic, version, header CRC.
fn check_header(buf: &[u8], checksum: Checksum, max_payload: u32) -> Result<Header, FrameError> {
    if let Some(b) = buf.first_chunk::<HEADER_LEN>() {
        let length = Header::peek_payload_length(b);
        if length > max_payload {
            return Err(FrameError::PayloadTooLarge {
                length,
                max: max_payload,
            });
        }
    }
    Header::decode(buf, checksum)
}

/// Row 7: the payload CRC, checked only when there is a payload.
fn check_payload(header: &Header, payload: &[u8], checksum: Checksum) -> Result<(), FrameError> {
    if payload.is_empty() {
        return Ok(());
    }
    let computed = checksum.compute(payload);
    if computed != header.payload_crc {
        return Err(FrameError::PayloadCrc {
            stored: header.payload_crc,
            computed,
        });
    }
    Ok(())
}

/// Appends a frame to `out`: `header` with `payload_length` and `payload_crc` filled in
/// from `payload` (the CRC is 0 for an empty payload, as the server writes it).
///
/// ```
/// use lnc_uring::proto::{encode_frame, Checksum, Flags, Header};
///
/// let mut out = Vec::new();
/// let h = Header { flags: Flags::BATCH, batch_id: 1, record_count: 1, ..Header::default() };
/// encode_frame(Checksum::Ieee, h, b"test", &mut out);
/// assert_eq!(out.len(), 48);
/// assert_eq!(&out[36..40], &[0x0C, 0x7E, 0x7F, 0xD8]); // CRC-32("test")
/// ```
pub fn encode_frame(checksum: Checksum, mut header: Header, payload: &[u8], out: &mut Vec<u8>) {
    header.payload_length = payload.len() as u32;
    header.payload_crc = if payload.is_empty() {
        0
    } else {
        checksum.compute(payload)
    };
    out.extend_from_slice(&header.to_bytes(checksum));
    out.extend_from_slice(payload);
}

/// Fills the header of a frame whose payload is already in place at `frame[44..]`, so
/// a producer can build the payload directly in its send buffer and never copy it.
/// `payload_length` and `payload_crc` are computed from `frame[44..]`.
///
/// ```
/// use lnc_uring::proto::{seal_frame, Checksum, Flags, Header};
///
/// let mut frame = vec![0u8; 44];
/// frame.extend_from_slice(b"test");
/// let h = Header { flags: Flags::BATCH, batch_id: 1, record_count: 1, ..Header::default() };
/// seal_frame(Checksum::Ieee, h, &mut frame);
/// assert_eq!(&frame[32..40], &[4, 0, 0, 0, 0x0C, 0x7E, 0x7F, 0xD8]);
/// ```
///
/// # Panics
///
/// If `frame` is shorter than 44 bytes or its payload is over `u32::MAX` bytes: both are
/// programming errors of the caller, never reachable from network input.
pub fn seal_frame(checksum: Checksum, mut header: Header, frame: &mut [u8]) {
    let (head, payload) = frame.split_at_mut(HEADER_LEN);
    header.payload_length = u32::try_from(payload.len()).expect("payload over 4 GiB");
    header.payload_crc = if payload.is_empty() {
        0
    } else {
        checksum.compute(payload)
    };
    let head: &mut [u8; HEADER_LEN] = head.try_into().expect("44-byte header");
    header.encode(checksum, head);
}

/// The 44-byte keepalive frame (docs/protocol.md §12.1). The server echoes it unchanged.
pub fn keepalive_frame(checksum: Checksum) -> [u8; HEADER_LEN] {
    Header {
        flags: Flags::KEEPALIVE,
        ..Header::default()
    }
    .to_bytes(checksum)
}

/// The 44-byte ACK frame for `batch_id` (docs/protocol.md §12.4), as the server sends it.
pub fn ack_frame(checksum: Checksum, batch_id: u64) -> [u8; HEADER_LEN] {
    Header {
        flags: Flags::ACK,
        batch_id,
        ..Header::default()
    }
    .to_bytes(checksum)
}

/// Header of an ingest frame: flags 0x04 only (never the ignored 0x01, docs/protocol.md §4.5).
pub fn ingest_header(batch_id: u64, timestamp_ns: u64, record_count: u32, topic_id: u32) -> Header {
    Header {
        flags: Flags::BATCH,
        batch_id,
        timestamp_ns,
        record_count,
        topic_id,
        ..Header::default()
    }
}

/// Streaming frame decoder: feed it the byte chunks a socket returns, in any split; it
/// yields complete, validated frames.
///
/// Frames that lie wholly inside a chunk are returned as views into that chunk (no
/// copy). Only a frame split across chunks is assembled in the decoder's own buffer,
/// which grows to at most one frame (`44 + max_payload` bytes, and only as bytes arrive:
/// an oversize length is rejected from the header alone, before anything is allocated).
///
/// After an error the decoder is poisoned: the stream has lost its framing, the
/// connection must be closed (the server does the same, docs/protocol.md §2.4), and every
/// later call yields nothing.
///
/// ```
/// use lnc_uring::proto::{ack_frame, keepalive_frame, Checksum, FrameDecoder, FrameKind};
///
/// let mut stream = Vec::new();
/// stream.extend_from_slice(&ack_frame(Checksum::Ieee, 7));
/// stream.extend_from_slice(&keepalive_frame(Checksum::Ieee));
///
/// let mut dec = FrameDecoder::new(Checksum::Ieee);
/// let mut kinds = Vec::new();
/// for chunk in stream.chunks(5) {
///     let mut frames = dec.feed(chunk);
///     while let Some(frame) = frames.next_frame() {
///         let frame = frame.unwrap();
///         kinds.push((frame.kind(), frame.header.batch_id));
///     }
/// }
/// assert_eq!(kinds, [(FrameKind::Ack, 7), (FrameKind::Keepalive, 0)]);
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    checksum: Checksum,
    max_payload: u32,
    /// Bytes of a frame split across chunks.
    carry: Vec<u8>,
    /// Bytes at the front of `carry` that were yielded as a frame and are dropped on the
    /// next call (the frame borrowed them until then).
    carry_yielded: usize,
    poisoned: bool,
    /// FetchResponse payloads at least this long are detached (see [`Detached`]).
    detach_min: Option<u32>,
}

/// The start of a frame whose payload the decoder will not assemble: a FetchResponse
/// of at least [`FrameDecoder::detach_fetch_payloads`] bytes that was not complete in the
/// bytes fed so far. Its header is validated; `payload` holds the first payload bytes
/// (all the rest of the chunk). The caller takes the remaining
/// `header.payload_length - payload.len()` bytes of the stream itself — into the
/// buffer the data is destined for, with no copy through the decoder — verifies the
/// payload CRC, and feeds the decoder only what follows.
#[derive(Debug)]
pub struct Detached<'a> {
    /// The frame's header.
    pub header: Header,
    /// The payload bytes fed so far.
    pub payload: &'a [u8],
}

/// What [`Frames::next_item`] yields.
#[derive(Debug)]
pub enum Item<'a> {
    /// A complete, validated frame.
    Frame(Frame<'a>),
    /// The start of a detached FetchResponse.
    Detached(Detached<'a>),
}

impl FrameDecoder {
    /// A decoder with the server's 16 MiB payload limit.
    pub fn new(checksum: Checksum) -> FrameDecoder {
        FrameDecoder::with_max_payload(checksum, MAX_PAYLOAD_LEN)
    }

    /// A decoder with a custom payload limit.
    pub fn with_max_payload(checksum: Checksum, max_payload: u32) -> FrameDecoder {
        FrameDecoder {
            checksum,
            max_payload,
            carry: Vec::new(),
            carry_yielded: 0,
            poisoned: false,
            detach_min: None,
        }
    }

    /// From now on, [`Frames::next_item`] detaches FetchResponse frames with a payload of
    /// at least `min` bytes that are not complete in the bytes fed so far (`None`: never).
    pub fn detach_fetch_payloads(&mut self, min: Option<u32>) {
        self.detach_min = min;
    }

    /// Starts decoding `chunk`, continuing any frame left incomplete by earlier chunks.
    /// Bytes not consumed when the returned [`Frames`] is dropped are kept for the next
    /// call, so stopping early loses nothing.
    pub fn feed<'a>(&'a mut self, chunk: &'a [u8]) -> Frames<'a> {
        self.drop_yielded();
        Frames {
            dec: self,
            chunk,
            pos: 0,
        }
    }

    /// Bytes held for an incomplete frame.
    pub fn buffered(&self) -> usize {
        self.carry.len() - self.carry_yielded
    }

    fn drop_yielded(&mut self) {
        if self.carry_yielded > 0 {
            self.carry.drain(..self.carry_yielded);
            self.carry_yielded = 0;
        }
    }

    /// Whether an error has made this decoder unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Forgets buffered bytes and any error, for a new connection.
    pub fn reset(&mut self) {
        self.carry.clear();
        self.carry_yielded = 0;
        self.poisoned = false;
    }

    /// The checksum in use.
    pub fn checksum(&self) -> Checksum {
        self.checksum
    }
}

/// The frames of one chunk; see [`FrameDecoder::feed`].
#[derive(Debug)]
pub struct Frames<'a> {
    dec: &'a mut FrameDecoder,
    chunk: &'a [u8],
    pos: usize,
}

impl Frames<'_> {
    /// The next complete frame, `None` when the chunk is used up (its incomplete tail is
    /// kept), or the error that poisoned the decoder (returned once). Never detaches.
    #[allow(clippy::should_implement_trait)]
    pub fn next_frame(&mut self) -> Option<Result<Frame<'_>, FrameError>> {
        match self.next(false)? {
            Ok(Item::Frame(f)) => Some(Ok(f)),
            Ok(Item::Detached(_)) => unreachable!("detaching is off"),
            Err(e) => Some(Err(e)),
        }
    }

    /// Like [`Frames::next_frame`], but yields [`Item::Detached`] for a large
    /// FetchResponse when [`FrameDecoder::detach_fetch_payloads`] asks for it. After one,
    /// the chunk is used up.
    ///
    /// ```
    /// use lnc_uring::proto::{Checksum, FetchResponse, FrameDecoder, Item, Response};
    ///
    /// let data = vec![7u8; 100_000];
    /// let mut wire = Vec::new();
    /// Response::Fetch(FetchResponse { next_offset: 100_000, record_count: 1, data: &data })
    ///     .encode(Checksum::Ieee, &mut wire);
    /// let mut dec = FrameDecoder::new(Checksum::Ieee);
    /// dec.detach_fetch_payloads(Some(16 * 1024));
    /// let mut frames = dec.feed(&wire[..1000]);
    /// match frames.next_item() {
    ///     Some(Ok(Item::Detached(d))) => {
    ///         assert_eq!(d.header.payload_length, 100_016);
    ///         assert_eq!(d.payload.len(), 1000 - 44); // the rest is the caller's to read
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn next_item(&mut self) -> Option<Result<Item<'_>, FrameError>> {
        let detach = self.dec.detach_min.is_some();
        self.next(detach)
    }

    fn next(&mut self, detach: bool) -> Option<Result<Item<'_>, FrameError>> {
        let dec = &mut *self.dec;
        if dec.poisoned {
            return None;
        }
        dec.drop_yielded();
        let rest = &self.chunk[self.pos..];

        if !dec.carry.is_empty() {
            // Complete the frame begun in an earlier chunk: first its header…
            if dec.carry.len() < HEADER_LEN {
                let take = (HEADER_LEN - dec.carry.len()).min(rest.len());
                dec.carry.extend_from_slice(&rest[..take]);
                self.pos += take;
                if dec.carry.len() < HEADER_LEN {
                    return None;
                }
            }
            let header = match check_header(&dec.carry, dec.checksum, dec.max_payload) {
                Ok(h) => h,
                Err(e) => return Some(Err(poison(dec, e))),
            };
            // …then its payload, never more than the header declared. (The carry can
            // hold more than one frame when a caller stopped iterating early.)
            let total = HEADER_LEN + header.payload_length as usize;
            let rest = &self.chunk[self.pos..];
            if detach
                && dec.carry.len() == HEADER_LEN
                && detachable(&header, dec.detach_min)
                && rest.len() < total - HEADER_LEN
            {
                dec.carry.clear();
                self.pos = self.chunk.len();
                return Some(Ok(Item::Detached(Detached {
                    header,
                    payload: rest,
                })));
            }
            let take = total.saturating_sub(dec.carry.len()).min(rest.len());
            dec.carry.extend_from_slice(&rest[..take]);
            self.pos += take;
            if dec.carry.len() < total {
                return None;
            }
            let payload = &dec.carry[HEADER_LEN..total];
            if let Err(e) = check_payload(&header, payload, dec.checksum) {
                return Some(Err(poison(dec, e)));
            }
            dec.carry_yielded = total;
            return Some(Ok(Item::Frame(Frame {
                header,
                payload: &dec.carry[HEADER_LEN..total],
            })));
        }

        if rest.is_empty() {
            return None;
        }
        if rest.len() < HEADER_LEN {
            dec.carry.extend_from_slice(rest);
            self.pos = self.chunk.len();
            return None;
        }
        let header = match check_header(rest, dec.checksum, dec.max_payload) {
            Ok(h) => h,
            Err(e) => return Some(Err(poison(dec, e))),
        };
        let total = HEADER_LEN + header.payload_length as usize;
        if rest.len() < total && detach && detachable(&header, dec.detach_min) {
            self.pos = self.chunk.len();
            return Some(Ok(Item::Detached(Detached {
                header,
                payload: &rest[HEADER_LEN..],
            })));
        }
        if rest.len() < total {
            dec.carry.reserve(total.min(rest.len() * 2));
            dec.carry.extend_from_slice(rest);
            self.pos = self.chunk.len();
            return None;
        }
        let payload = &rest[HEADER_LEN..total];
        if let Err(e) = check_payload(&header, payload, dec.checksum) {
            return Some(Err(poison(dec, e)));
        }
        self.pos += total;
        Some(Ok(Item::Frame(Frame { header, payload })))
    }

    /// Bytes of the chunk not yet consumed.
    pub fn remaining(&self) -> usize {
        self.chunk.len() - self.pos
    }
}

/// A FetchResponse (control frame, response code 0x11) of at least `min` payload bytes.
fn detachable(header: &Header, min: Option<u32>) -> bool {
    min.is_some_and(|m| header.payload_length >= m)
        && header.flags.is_control()
        && header.batch_id == u64::from(super::control::ControlCode::FETCH_RESPONSE.0)
}

fn poison(dec: &mut FrameDecoder, e: FrameError) -> FrameError {
    dec.poisoned = true;
    dec.carry.clear();
    dec.carry_yielded = 0;
    e
}

impl Drop for Frames<'_> {
    fn drop(&mut self) {
        if self.dec.poisoned {
            return;
        }
        self.dec.drop_yielded();
        let rest = &self.chunk[self.pos..];
        if !rest.is_empty() {
            self.dec.carry.extend_from_slice(rest);
        }
    }
}
