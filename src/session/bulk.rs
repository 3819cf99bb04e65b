//! A large fetch reply received straight into the buffer the consumer will hand to the
//! application: the frame decoder detaches it after its header
//! ([`crate::proto::Item::Detached`]), and the rest of its payload is written by the
//! kernel into this buffer ([`Bulk::target`]) or, for bytes that arrived with the header,
//! copied once. The payload CRC is computed once, over the final buffer.
//!
//! A FetchResponse payload is a 16-byte prefix (next offset u64, bytes u32, "record
//! count" u32) and the data (docs/protocol.md §7.4).

use crate::buffers::BufPool;
use crate::proto::{Checksum, FrameError, Header, PayloadError};
use crate::Error;

/// Bytes before the data in a FetchResponse payload.
const PREFIX: usize = 16;

/// A FetchResponse payload being received.
#[derive(Debug)]
pub(crate) struct Bulk {
    header: Header,
    prefix: [u8; PREFIX],
    prefix_len: usize,
    /// Exactly the data length; `data[..filled]` is received.
    data: Vec<u8>,
    filled: usize,
}

impl Bulk {
    /// Starts a payload of `header.payload_length` bytes (at least the prefix), with its
    /// first bytes. The data buffer comes from `pool` when there is one.
    pub(crate) fn start(header: Header, first: &[u8], pool: Option<&BufPool>) -> Bulk {
        let data_len = (header.payload_length as usize).saturating_sub(PREFIX);
        let data = match pool {
            Some(p) => p.take_filled(data_len),
            None => vec![0; data_len],
        };
        let mut b = Bulk {
            header,
            prefix: [0; PREFIX],
            prefix_len: 0,
            data,
            filled: 0,
        };
        b.absorb(first);
        b
    }

    /// Payload bytes still to come.
    pub(crate) fn remaining(&self) -> usize {
        (PREFIX - self.prefix_len) + (self.data.len() - self.filled)
    }

    /// Takes payload bytes from the front of `bytes`; returns how many it took.
    pub(crate) fn absorb(&mut self, bytes: &[u8]) -> usize {
        let p = (PREFIX - self.prefix_len).min(bytes.len());
        self.prefix[self.prefix_len..self.prefix_len + p].copy_from_slice(&bytes[..p]);
        self.prefix_len += p;
        let rest = &bytes[p..];
        let d = (self.data.len() - self.filled).min(rest.len());
        self.data[self.filled..self.filled + d].copy_from_slice(&rest[..d]);
        self.filled += d;
        p + d
    }

    /// Where the next data bytes go, for a receive straight into the buffer: pointer and
    /// length of the unfilled part. `None` until the prefix is in (or when full). The
    /// memory stays valid and unmoved while this `Bulk` lives.
    pub(crate) fn target(&mut self) -> Option<(*mut u8, usize)> {
        if self.prefix_len < PREFIX || self.filled == self.data.len() {
            return None;
        }
        let rest = &mut self.data[self.filled..];
        Some((rest.as_mut_ptr(), rest.len()))
    }

    /// `n` bytes were received at [`Bulk::target`].
    pub(crate) fn received(&mut self, n: usize) {
        self.filled = (self.filled + n).min(self.data.len());
    }

    /// The complete payload: checks its CRC and prefix; returns the next offset and the
    /// data.
    pub(crate) fn finish(self, checksum: Checksum) -> Result<(u64, Vec<u8>), Error> {
        debug_assert_eq!(self.remaining(), 0);
        let computed = checksum.append(checksum.compute(&self.prefix), &self.data);
        if computed != self.header.payload_crc {
            return Err(Error::InvalidFrame(FrameError::PayloadCrc {
                stored: self.header.payload_crc,
                computed,
            }));
        }
        let next_offset = u64::from_le_bytes(self.prefix[..8].try_into().expect("8 bytes"));
        let bytes = u32::from_le_bytes(self.prefix[8..12].try_into().expect("4 bytes"));
        if bytes as usize != self.data.len() {
            return Err(Error::InvalidResponse(PayloadError::Invalid {
                what: "FetchResponse",
                reason: "bytes_returned does not match the payload length".into(),
            }));
        }
        Ok((next_offset, self.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{FetchResponse, FrameDecoder, Item, Response};

    fn reply(data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        Response::Fetch(FetchResponse {
            next_offset: 1234,
            record_count: 1,
            data,
        })
        .encode(Checksum::Ieee, &mut v);
        v
    }

    #[test]
    fn a_detached_reply_is_received_in_place_and_checked() {
        let data: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        let wire = reply(&data);
        let mut dec = FrameDecoder::new(Checksum::Ieee);
        dec.detach_fetch_payloads(Some(1024));
        let mut frames = dec.feed(&wire[..100]);
        let Some(Ok(Item::Detached(d))) = frames.next_item() else {
            panic!("detached")
        };
        let mut b = Bulk::start(d.header, d.payload, None);
        drop(frames);
        // The rest arrives partly as bytes, partly straight into the buffer.
        let mut at = 100;
        at += b.absorb(&wire[at..200]);
        let (ptr, len) = b.target().expect("prefix complete");
        assert_eq!(len, data.len() - (200 - 44 - 16));
        assert_eq!(ptr, b.data[b.filled..].as_mut_ptr());
        let n = wire.len() - at;
        b.data[b.filled..].copy_from_slice(&wire[at..]); // what the kernel would do
        b.received(n);
        assert_eq!(b.remaining(), 0);
        let (next, got) = b.finish(Checksum::Ieee).unwrap();
        assert_eq!((next, got), (1234, data));
    }

    #[test]
    fn a_damaged_payload_is_refused() {
        let data = vec![1u8; 20_000];
        let mut wire = reply(&data);
        let last = wire.len() - 1;
        wire[last] ^= 0xFF;
        let mut dec = FrameDecoder::new(Checksum::Ieee);
        dec.detach_fetch_payloads(Some(1024));
        let mut frames = dec.feed(&wire[..60]);
        let Some(Ok(Item::Detached(d))) = frames.next_item() else {
            panic!("detached")
        };
        let mut b = Bulk::start(d.header, d.payload, None);
        drop(frames);
        b.absorb(&wire[60..]);
        assert!(matches!(
            b.finish(Checksum::Ieee),
            Err(Error::InvalidFrame(FrameError::PayloadCrc { .. }))
        ));
    }
}
