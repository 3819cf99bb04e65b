//! A minimal blocking LWP client for the testkit's tests: plain `std::net` sockets and
//! the crate's sans-IO `proto` module, nothing of the crate's own client.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lnc_uring::proto::{
    encode_frame, ingest_header, Checksum, Flags, Frame, FrameError, FrameKind, Header, Request,
    Response, HEADER_LEN, MAX_PAYLOAD_LEN,
};

/// Parses the hex dumps of docs/protocol.md §12 (whitespace ignored).
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// An ingest frame (flags 0x04).
pub fn ingest(batch: u64, topic: u32, payload: &[u8]) -> Vec<u8> {
    ingest_with(Checksum::Ieee, batch, topic, payload)
}

/// An ingest frame with a given checksum.
pub fn ingest_with(cs: Checksum, batch: u64, topic: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(cs, ingest_header(batch, 0, 1, topic), payload, &mut out);
    out
}

/// A control request frame.
pub fn control(req: Request<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    req.encode(Checksum::Ieee, &mut out).unwrap();
    out
}

/// A control frame with an arbitrary code and payload (for malformed requests).
pub fn raw_control(code: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let h = Header {
        flags: Flags::CONTROL,
        batch_id: code,
        ..Header::default()
    };
    encode_frame(Checksum::Ieee, h, payload, &mut out);
    out
}

/// A frame with arbitrary flags.
pub fn with_flags(flags: u8, batch: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let h = Header {
        flags: Flags::from_bits(flags),
        batch_id: batch,
        ..Header::default()
    };
    encode_frame(Checksum::Ieee, h, payload, &mut out);
    out
}

/// The 44-byte keepalive.
pub fn keepalive() -> Vec<u8> {
    lnc_uring::proto::keepalive_frame(Checksum::Ieee).to_vec()
}

/// A received frame, owned, with its exact wire bytes.
#[derive(Debug, Clone)]
pub struct Owned {
    pub header: Header,
    pub payload: Vec<u8>,
    pub bytes: Vec<u8>,
}

impl Owned {
    pub fn kind(&self) -> FrameKind {
        FrameKind::of(&self.header)
    }

    pub fn response(&self) -> Response<'_> {
        let frame = Frame {
            header: self.header,
            payload: &self.payload,
        };
        Response::parse(&frame).unwrap()
    }

    /// The text of an ErrorResponse; panics on anything else.
    pub fn error_text(&self) -> String {
        match self.response() {
            Response::Error(t) => t.into_owned(),
            other => panic!("expected an ErrorResponse, got {other:?}"),
        }
    }

    /// The JSON of a TopicResponse as text.
    pub fn json(&self) -> String {
        match self.response() {
            Response::Topic(j) | Response::ClusterStatus(j) => {
                String::from_utf8(j.to_vec()).unwrap()
            }
            other => panic!("expected JSON, got {other:?}"),
        }
    }

    pub fn is_ack(&self, batch: u64) -> bool {
        self.kind() == FrameKind::Ack && self.header.batch_id == batch
    }
}

/// A blocking connection with a reassembly buffer.
pub struct Client {
    pub sock: TcpStream,
    pub checksum: Checksum,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::connect_with(addr, Checksum::Ieee)
    }

    pub fn connect_with(addr: SocketAddr, checksum: Checksum) -> Client {
        let sock = TcpStream::connect(addr).expect("connect to testkit");
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.set_nodelay(true).unwrap();
        Client {
            sock,
            checksum,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("write to testkit");
    }

    /// Reads more bytes; panics on EOF or timeout.
    fn fill(&mut self) {
        let mut chunk = [0u8; 64 * 1024];
        match self.sock.read(&mut chunk) {
            Ok(0) => panic!("connection closed, {} bytes buffered", self.buf.len()),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Exactly `n` raw bytes.
    pub fn read_raw(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill();
        }
        self.buf.drain(..n).collect()
    }

    /// The next frame, validated by the proto decoder.
    pub fn recv(&mut self) -> Owned {
        self.try_recv().expect("a valid frame")
    }

    /// The next frame, or the decoder's verdict on it.
    pub fn try_recv(&mut self) -> Result<Owned, FrameError> {
        loop {
            if self.buf.len() >= HEADER_LEN {
                let len = u32::from_le_bytes(self.buf[32..36].try_into().unwrap()) as usize;
                if self.buf.len() >= HEADER_LEN + len {
                    let bytes: Vec<u8> = self.buf.drain(..HEADER_LEN + len).collect();
                    let (frame, used) = Frame::decode(&bytes, self.checksum, MAX_PAYLOAD_LEN)?;
                    assert_eq!(used, bytes.len());
                    return Ok(Owned {
                        header: frame.header,
                        payload: frame.payload.to_vec(),
                        bytes: bytes.clone(),
                    });
                }
            }
            self.fill();
        }
    }

    /// Sends a request and returns the next frame.
    pub fn request(&mut self, req: Request<'_>) -> Owned {
        self.send(&control(req));
        self.recv()
    }

    /// Sends raw bytes and returns the next frame.
    pub fn roundtrip(&mut self, bytes: &[u8]) -> Owned {
        self.send(bytes);
        self.recv()
    }

    /// Asserts that nothing is pending: a keepalive sent now is the next frame back
    /// (replies are written in order, and a chunk's ACKs before the next chunk is read).
    pub fn assert_nothing_pending(&mut self) {
        self.send(&keepalive());
        let f = self.recv();
        assert_eq!(f.kind(), FrameKind::Keepalive, "unexpected frame {f:?}");
    }

    /// Waits for the server to close the connection; returns the bytes received before
    /// the close (EOF or reset).
    pub fn wait_closed(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut chunk = [0u8; 4096];
        loop {
            assert!(Instant::now() < deadline, "connection not closed");
            match self.sock.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("connection not closed within the read timeout")
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break, // reset
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// Asserts the server closes the connection without sending anything.
    pub fn assert_closed_silently(&mut self) {
        let got = self.wait_closed();
        assert!(
            got.is_empty(),
            "expected no reply, got {} bytes: {got:02x?}",
            got.len()
        );
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "lnc-testkit-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
