//! # lnc-uring
//!
//! A Rust client for the **Lance Wire Protocol (LWP)**, the binary protocol of the
//! [Lance](https://github.com/nitecon/lance) streaming server, built for latency-critical
//! Linux processes, load tests and programs that want a client without an async runtime.
//!
//! ```text
//!  application threads          one driver thread per handle        the server
//! ┌─────────────────────┐      ┌──────────────────────────────┐
//! │ Producer (Sync)     │ cmd  │ Session (sans-IO): ACK        │
//! │  batches, CRC,      │─────▶│  correlation, fences,         │   TCP   ┌────────┐
//! │  tickets            │ chan │  keepalive, auth, reconnect   │◀──────▶│ Lance  │
//! │ StandaloneConsumer  │◀─────│ backend: io_uring (multishot  │         └────────┘
//! │ LanceClient (admin) │ wake │  recv, SEND_ZC, eventfd) or   │
//! └─────────────────────┘      │  poll(2) where io_uring is    │
//!                              │  unavailable                  │
//!                              └──────────────────────────────┘
//! ```
//!
//! * [`Producer`], [`StandaloneConsumer`], [`LanceClient`] — blocking handles. Each owns a
//!   driver thread (optionally pinned, optionally busy-polling) that owns the socket.
//! * [`proto`] — the sans-IO protocol core: no sockets, no threads, no `unsafe`. It
//!   encodes and decodes exactly what the released server speaks, which differs from the
//!   published LWP specification (IEEE CRC-32, plain-text errors, raw-byte fetches…).
//! * `testkit` (cargo feature `testkit`) — an embedded Lance-compatible server with
//!   scripted faults, for tests.
//!
//! ## Example
//!
//! ```
//! use std::time::Duration;
//! use lnc_uring::testkit::TestServer;
//! use lnc_uring::{ConnectionConfig, ConsumerConfig, LanceClient, Producer, ProducerConfig, StandaloneConsumer};
//!
//! let server = TestServer::start()?; // or a real server's address
//! let addr = server.addr().to_string();
//! let topic = LanceClient::connect(&addr)?.ensure_topic("events")?.id;
//!
//! let producer = Producer::connect(&addr, ProducerConfig::default())?;
//! producer.send(topic, b"hello")?; // returns once the server acknowledged it
//! producer.close(Duration::from_secs(5))?;
//!
//! let cfg = ConsumerConfig::new("reader", topic).with_connection(ConnectionConfig::new(addr));
//! let mut consumer = StandaloneConsumer::connect(cfg)?;
//! let mut batch = consumer.poll_timeout(Duration::from_secs(5))?.unwrap();
//! assert_eq!(batch.records().next().unwrap()?.value, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The protocol core on its own
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
//! assert_eq!(frame.len(), 53); // docs/protocol.md §12.3
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
mod buffers;
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
pub use driver::{Backend, DriverStats, IdleStrategy, Ring, RingConfig, ZeroCopy};
pub use error::{BufferLimit, Error, Result};
pub use producer::{
    FullBufferPolicy, LatencySummary, ProduceRecord, Producer, ProducerConfig, ProducerStats,
    TopicWriter,
};
pub use proto::{Checksum, ServerError, ServerErrorKind};
mod offset;
pub use offset::{consumer_id, FileOffsetStore, MemoryOffsetStore, OffsetStore};

/// The README's Rust examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
