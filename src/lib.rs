//! # lnc-uring
//!
//! A Rust client for the **Lance Wire Protocol (LWP)**, the binary protocol of the
//! [Lance](https://github.com/nitecon/lance) streaming server, built for latency-critical
//! Linux processes, load tests and programs that want a client without an async runtime.
//!
//! The crate is layered:
//!
//! ```text
//!   application threads            lnc-uring
//!  ┌──────────────────┐   ┌──────────────────────────────────────────────┐
//!  │ Producer / ...   │──▶│ proto: sans-IO core (headers, frames, control │
//!  │ blocking handles │   │ requests/replies, TLV records, checksums)     │
//!  └──────────────────┘   └──────────────────────────────────────────────┘
//! ```
//!
//! * [`proto`] — the sans-IO protocol core: no sockets, no threads, no `unsafe`. It
//!   encodes and decodes exactly what the released server speaks, which differs from the
//!   published LWP specification (IEEE CRC-32, plain-text errors, raw-byte fetches…).
//! * `testkit` (cargo feature `testkit`) — an embedded LWP server for tests.
//!
//! ## Example: build an ingest frame and decode the server's ACK
//!
//! ```
//! use lnc_uring::proto::{
//!     ack_frame, encode_raw, ingest_header, seal_frame, Checksum, FrameDecoder, FrameKind,
//!     HEADER_LEN,
//! };
//!
//! // Payload built in place after a 44-byte header slot: no copy.
//! let mut frame = vec![0u8; HEADER_LEN];
//! encode_raw(&mut frame, b"test").unwrap();
//! seal_frame(Checksum::Ieee, ingest_header(1, 0, 1, 1), &mut frame);
//! assert_eq!(frame.len(), 53); // wire-truth §17.3
//!
//! // What the server answers, fed to the streaming decoder in two pieces.
//! let ack = ack_frame(Checksum::Ieee, 1);
//! let mut dec = FrameDecoder::new(Checksum::Ieee);
//! assert!(dec.feed(&ack[..20]).next_frame().is_none());
//! let mut frames = dec.feed(&ack[20..]);
//! let f = frames.next_frame().unwrap().unwrap();
//! assert_eq!((f.kind(), f.header.batch_id), (FrameKind::Ack, 1));
//! ```
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod admin;
mod config;
mod consumer;
mod delivery;
mod driver;
mod error;
mod producer;
pub mod proto;
mod request;
mod session;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use admin::{FetchOutcome, LanceClient};
pub use config::ConnectionConfig;
pub use consumer::{ConsumerConfig, PollResult, SeekPosition, StandaloneConsumer, TopicRef};
pub use delivery::{DeliveryTicket, RecordMetadata};
pub use driver::{Backend, DriverStats, ZeroCopy};
pub use error::{BufferLimit, Error, Result};
pub use producer::{
    FullBufferPolicy, LatencySummary, ProduceRecord, Producer, ProducerConfig, ProducerStats,
};
pub use proto::{Checksum, ServerError, ServerErrorKind};
mod offset;
pub use offset::{consumer_id, FileOffsetStore, MemoryOffsetStore, OffsetStore};
