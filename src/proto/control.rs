//! Control commands: request builders and response parsers (docs/protocol.md §6, §6.13, §6.16).
//!
//! A control frame has flags `0x40` and carries its command code in `batch_id`. Every
//! request gets exactly one reply frame; Unsubscribe's reply is an **Ack** frame whose
//! batch id is the consumer id (docs/protocol.md §6.14).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::checksum::Checksum;
use super::frame::{encode_frame, Frame, FrameKind};
use super::header::{get_u16, get_u32, get_u64, Flags, Header};
use super::PayloadError;

/// A control command or response code: an open newtype, so an unknown value is kept and
/// printed in hex rather than rejected (docs/protocol.md §6.2).
///
/// ```
/// use lnc_uring::proto::ControlCode;
///
/// assert_eq!(format!("{:?}", ControlCode::FETCH), "Fetch(0x10)");
/// assert_eq!(format!("{:?}", ControlCode(0x30)), "ControlCode(0x30)");
/// assert!(ControlCode::GET_CLUSTER_STATUS.is_request());
/// assert!(ControlCode::CATCHING_UP.is_response());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ControlCode(pub u8);

macro_rules! control_codes {
    ($($(#[$doc:meta])* $konst:ident = $val:literal, $name:literal, $dir:ident;)*) => {
        impl ControlCode {
            $($(#[$doc])* pub const $konst: ControlCode = ControlCode($val);)*

            /// The command's name, `None` for a code the server does not define.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some($name),)*
                    _ => None,
                }
            }

            /// Whether a client sends this code.
            pub fn is_request(self) -> bool {
                match self.0 {
                    $($val => control_codes!(@req $dir),)*
                    _ => false,
                }
            }
        }
    };
    (@req C2S) => { true };
    (@req S2C) => { false };
}

control_codes! {
    /// 0x01 CreateTopic: payload is the name, no length prefix.
    CREATE_TOPIC = 0x01, "CreateTopic", C2S;
    /// 0x02 DeleteTopic: u32 topic id.
    DELETE_TOPIC = 0x02, "DeleteTopic", C2S;
    /// 0x03 ListTopics: no payload.
    LIST_TOPICS = 0x03, "ListTopics", C2S;
    /// 0x04 GetTopic: u32 topic id.
    GET_TOPIC = 0x04, "GetTopic", C2S;
    /// 0x05 SetRetention: u32 topic, u64 max age (s), u64 max bytes.
    SET_RETENTION = 0x05, "SetRetention", C2S;
    /// 0x06 CreateTopicWithRetention: **u16** name length, name, u64 age, u64 bytes.
    CREATE_TOPIC_WITH_RETENTION = 0x06, "CreateTopicWithRetention", C2S;
    /// 0x07 GetClusterStatus (the spec's "0x30" is wrong).
    GET_CLUSTER_STATUS = 0x07, "GetClusterStatus", C2S;
    /// 0x08 Authenticate: the token as UTF-8.
    AUTHENTICATE = 0x08, "Authenticate", C2S;
    /// 0x09 AuthenticateResponse: u8 success, ASCII message.
    AUTHENTICATE_RESPONSE = 0x09, "AuthenticateResponse", S2C;
    /// 0x10 Fetch: u32 topic, u64 offset, u32 max bytes.
    FETCH = 0x10, "Fetch", C2S;
    /// 0x11 FetchResponse: u64 next offset, u32 bytes, u32 "record count" (0/1), data.
    FETCH_RESPONSE = 0x11, "FetchResponse", S2C;
    /// 0x12 CatchingUp: u64 current size of the topic.
    CATCHING_UP = 0x12, "CatchingUp", S2C;
    /// 0x20 Subscribe: u32 topic, u64 offset, u32 max batch bytes, u64 consumer id.
    SUBSCRIBE = 0x20, "Subscribe", C2S;
    /// 0x21 Unsubscribe: u32 topic, u64 consumer id. Answered by an Ack frame.
    UNSUBSCRIBE = 0x21, "Unsubscribe", C2S;
    /// 0x22 CommitOffset: u32 topic, u64 consumer id, u64 offset.
    COMMIT_OFFSET = 0x22, "CommitOffset", C2S;
    /// 0x23 SubscribeAck: u64 consumer id, u64 start offset.
    SUBSCRIBE_ACK = 0x23, "SubscribeAck", S2C;
    /// 0x24 CommitAck: u64 consumer id, u64 committed offset.
    COMMIT_ACK = 0x24, "CommitAck", S2C;
    /// 0x80 TopicResponse: JSON.
    TOPIC_RESPONSE = 0x80, "TopicResponse", S2C;
    /// 0x81 ClusterStatusResponse: JSON.
    CLUSTER_STATUS_RESPONSE = 0x81, "ClusterStatusResponse", S2C;
    /// 0xFF ErrorResponse: plain UTF-8 text, no code, no batch id.
    ERROR_RESPONSE = 0xFF, "ErrorResponse", S2C;
}

impl ControlCode {
    /// Whether the server sends this code.
    pub fn is_response(self) -> bool {
        self.name().is_some() && !self.is_request()
    }
}

impl fmt::Debug for ControlCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}({:#04x})", self.0),
            None => write!(f, "ControlCode({:#04x})", self.0),
        }
    }
}

impl fmt::Display for ControlCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{:#04x}", self.0),
        }
    }
}

/// A retention policy. **0 is not "unlimited" on the wire**: the server stores it and
/// deletes every closed segment on its next cycle (docs/protocol.md §7.8). There is no way to
/// clear a policy; "no limit" is expressed with the largest safe values
/// ([`Retention::UNLIMITED`]).
///
/// ```
/// use std::time::Duration;
/// use lnc_uring::proto::Retention;
///
/// let r = Retention::UNLIMITED.with_max_age(Duration::from_secs(86_400));
/// assert_eq!((r.max_age_secs, r.max_bytes), (86_400, u64::MAX));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Retention {
    /// Closed segments older than this many seconds are deleted.
    pub max_age_secs: u64,
    /// Oldest closed segments are deleted while the topic is larger than this.
    pub max_bytes: u64,
}

impl Retention {
    /// The largest age the server can hold without overflowing `secs × 10⁹` in u64.
    pub const MAX_AGE_SECS: u64 = u64::MAX / 1_000_000_000;
    /// No practical limit on either axis.
    pub const UNLIMITED: Retention = Retention {
        max_age_secs: Retention::MAX_AGE_SECS,
        max_bytes: u64::MAX,
    };

    /// This policy with a maximum age (clamped to [`Retention::MAX_AGE_SECS`]).
    pub fn with_max_age(self, age: std::time::Duration) -> Retention {
        Retention {
            max_age_secs: age.as_secs().min(Retention::MAX_AGE_SECS),
            ..self
        }
    }

    /// This policy with a maximum size in bytes.
    pub fn with_max_bytes(self, bytes: u64) -> Retention {
        Retention {
            max_bytes: bytes,
            ..self
        }
    }

    /// Whether either value is 0, which the server reads as "delete every closed segment".
    pub fn deletes_everything(&self) -> bool {
        self.max_age_secs == 0 || self.max_bytes == 0
    }
}

/// Fetch (0x10) request fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FetchRequest {
    /// Topic to read.
    pub topic_id: u32,
    /// Byte offset to read from; [`FetchRequest::TAIL`] asks for the end of the log.
    pub start_offset: u64,
    /// Most bytes to return. The server cuts at exactly this many bytes, mid-record.
    pub max_bytes: u32,
}

impl FetchRequest {
    /// The tail sentinel: the reply is empty and its `next_offset` is the end of the log.
    pub const TAIL: u64 = u64::MAX;
}

/// Subscribe (0x20) request fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscribeRequest {
    /// Topic.
    pub topic_id: u32,
    /// Start offset. 0 means "the last committed offset on this node, else 0";
    /// `u64::MAX` is echoed unresolved (docs/protocol.md §6.13).
    pub start_offset: u64,
    /// Ignored by the server.
    pub max_batch_bytes: u32,
    /// The consumer's id.
    pub consumer_id: u64,
}

/// A control request. Build one, then [`Request::encode`] it.
///
/// ```
/// use lnc_uring::proto::{Checksum, Request};
///
/// let mut frame = Vec::new();
/// Request::CreateTopic { name: "events" }.encode(Checksum::Ieee, &mut frame).unwrap();
/// assert_eq!(frame.len(), 50); // docs/protocol.md §12.5
/// assert_eq!(&frame[44..], b"events");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Create a topic (0x01).
    CreateTopic {
        /// `[A-Za-z0-9-]+`.
        name: &'a str,
    },
    /// Create a topic with a retention policy (0x06).
    CreateTopicWithRetention {
        /// `[A-Za-z0-9-]+`, at most 65 535 bytes (u16 length).
        name: &'a str,
        /// The policy.
        retention: Retention,
    },
    /// List topics (0x03).
    ListTopics,
    /// Get one topic (0x04).
    GetTopic {
        /// Topic id.
        topic_id: u32,
    },
    /// Delete a topic and all its data (0x02).
    DeleteTopic {
        /// Topic id.
        topic_id: u32,
    },
    /// Set a topic's retention (0x05).
    SetRetention {
        /// Topic id.
        topic_id: u32,
        /// The policy.
        retention: Retention,
    },
    /// Cluster status (0x07).
    GetClusterStatus,
    /// Token authentication (0x08).
    Authenticate {
        /// The token.
        token: &'a str,
    },
    /// Read a byte range (0x10).
    Fetch(FetchRequest),
    /// Register a consumer position (0x20); the server pushes nothing.
    Subscribe(SubscribeRequest),
    /// Drop a registration (0x21).
    Unsubscribe {
        /// Topic id.
        topic_id: u32,
        /// Consumer id.
        consumer_id: u64,
    },
    /// Record a consumer's offset, in the server's memory only (0x22).
    CommitOffset {
        /// Topic id.
        topic_id: u32,
        /// Consumer id.
        consumer_id: u64,
        /// Offset.
        offset: u64,
    },
}

impl<'a> Request<'a> {
    /// The command code carried in `batch_id`.
    pub fn code(&self) -> ControlCode {
        match self {
            Request::CreateTopic { .. } => ControlCode::CREATE_TOPIC,
            Request::CreateTopicWithRetention { .. } => ControlCode::CREATE_TOPIC_WITH_RETENTION,
            Request::ListTopics => ControlCode::LIST_TOPICS,
            Request::GetTopic { .. } => ControlCode::GET_TOPIC,
            Request::DeleteTopic { .. } => ControlCode::DELETE_TOPIC,
            Request::SetRetention { .. } => ControlCode::SET_RETENTION,
            Request::GetClusterStatus => ControlCode::GET_CLUSTER_STATUS,
            Request::Authenticate { .. } => ControlCode::AUTHENTICATE,
            Request::Fetch(_) => ControlCode::FETCH,
            Request::Subscribe(_) => ControlCode::SUBSCRIBE,
            Request::Unsubscribe { .. } => ControlCode::UNSUBSCRIBE,
            Request::CommitOffset { .. } => ControlCode::COMMIT_OFFSET,
        }
    }

    /// Appends the payload (without header) to `out`.
    pub fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), PayloadError> {
        match *self {
            Request::CreateTopic { name } => out.extend_from_slice(name.as_bytes()),
            Request::CreateTopicWithRetention { name, retention } => {
                let len = u16::try_from(name.len()).map_err(|_| PayloadError::Invalid {
                    what: "CreateTopicWithRetention",
                    reason: format!("topic name is {} bytes, over 65535", name.len()),
                })?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(&retention.max_age_secs.to_le_bytes());
                out.extend_from_slice(&retention.max_bytes.to_le_bytes());
            }
            Request::ListTopics | Request::GetClusterStatus => {}
            Request::GetTopic { topic_id } | Request::DeleteTopic { topic_id } => {
                out.extend_from_slice(&topic_id.to_le_bytes())
            }
            Request::SetRetention {
                topic_id,
                retention,
            } => {
                out.extend_from_slice(&topic_id.to_le_bytes());
                out.extend_from_slice(&retention.max_age_secs.to_le_bytes());
                out.extend_from_slice(&retention.max_bytes.to_le_bytes());
            }
            Request::Authenticate { token } => out.extend_from_slice(token.as_bytes()),
            Request::Fetch(f) => {
                out.extend_from_slice(&f.topic_id.to_le_bytes());
                out.extend_from_slice(&f.start_offset.to_le_bytes());
                out.extend_from_slice(&f.max_bytes.to_le_bytes());
            }
            Request::Subscribe(s) => {
                out.extend_from_slice(&s.topic_id.to_le_bytes());
                out.extend_from_slice(&s.start_offset.to_le_bytes());
                out.extend_from_slice(&s.max_batch_bytes.to_le_bytes());
                out.extend_from_slice(&s.consumer_id.to_le_bytes());
            }
            Request::Unsubscribe {
                topic_id,
                consumer_id,
            } => {
                out.extend_from_slice(&topic_id.to_le_bytes());
                out.extend_from_slice(&consumer_id.to_le_bytes());
            }
            Request::CommitOffset {
                topic_id,
                consumer_id,
                offset,
            } => {
                // Note the order: topic, consumer, offset (docs/protocol.md §6.15).
                out.extend_from_slice(&topic_id.to_le_bytes());
                out.extend_from_slice(&consumer_id.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
            }
        }
        Ok(())
    }

    /// Appends the whole frame (header and payload) to `out`.
    pub fn encode(&self, checksum: Checksum, out: &mut Vec<u8>) -> Result<(), PayloadError> {
        let start = out.len();
        out.resize(start + super::HEADER_LEN, 0);
        if let Err(e) = self.encode_payload(out) {
            out.truncate(start);
            return Err(e);
        }
        super::seal_frame(checksum, control_header(self.code()), &mut out[start..]);
        Ok(())
    }

    /// Parses a request payload strictly: every field must be present (extra trailing
    /// bytes are ignored, as the server ignores them).
    pub fn parse(code: ControlCode, payload: &'a [u8]) -> Result<Request<'a>, PayloadError> {
        let name = code.name().unwrap_or("unknown command");
        let need = |n: usize| -> Result<(), PayloadError> {
            if payload.len() < n {
                Err(PayloadError::TooShort {
                    what: name,
                    needed: n,
                    actual: payload.len(),
                })
            } else {
                Ok(())
            }
        };
        let utf8 = |b: &'a [u8]| -> Result<&'a str, PayloadError> {
            std::str::from_utf8(b).map_err(|e| PayloadError::Invalid {
                what: name,
                reason: e.to_string(),
            })
        };
        Ok(match code {
            ControlCode::CREATE_TOPIC => Request::CreateTopic {
                name: utf8(payload)?,
            },
            ControlCode::CREATE_TOPIC_WITH_RETENTION => {
                need(2)?;
                let n = get_u16(payload, 0) as usize;
                need(2 + n + 16)?;
                Request::CreateTopicWithRetention {
                    name: utf8(&payload[2..2 + n])?,
                    retention: Retention {
                        max_age_secs: get_u64(payload, 2 + n),
                        max_bytes: get_u64(payload, 10 + n),
                    },
                }
            }
            ControlCode::LIST_TOPICS => Request::ListTopics,
            ControlCode::GET_CLUSTER_STATUS => Request::GetClusterStatus,
            ControlCode::GET_TOPIC | ControlCode::DELETE_TOPIC => {
                need(4)?;
                let topic_id = get_u32(payload, 0);
                if code == ControlCode::GET_TOPIC {
                    Request::GetTopic { topic_id }
                } else {
                    Request::DeleteTopic { topic_id }
                }
            }
            ControlCode::SET_RETENTION => {
                need(20)?;
                Request::SetRetention {
                    topic_id: get_u32(payload, 0),
                    retention: Retention {
                        max_age_secs: get_u64(payload, 4),
                        max_bytes: get_u64(payload, 12),
                    },
                }
            }
            ControlCode::AUTHENTICATE => Request::Authenticate {
                token: utf8(payload)?,
            },
            ControlCode::FETCH => {
                need(16)?;
                Request::Fetch(FetchRequest {
                    topic_id: get_u32(payload, 0),
                    start_offset: get_u64(payload, 4),
                    max_bytes: get_u32(payload, 12),
                })
            }
            ControlCode::SUBSCRIBE => {
                need(24)?;
                Request::Subscribe(SubscribeRequest {
                    topic_id: get_u32(payload, 0),
                    start_offset: get_u64(payload, 4),
                    max_batch_bytes: get_u32(payload, 12),
                    consumer_id: get_u64(payload, 16),
                })
            }
            ControlCode::UNSUBSCRIBE => {
                need(12)?;
                Request::Unsubscribe {
                    topic_id: get_u32(payload, 0),
                    consumer_id: get_u64(payload, 4),
                }
            }
            ControlCode::COMMIT_OFFSET => {
                need(20)?;
                Request::CommitOffset {
                    topic_id: get_u32(payload, 0),
                    consumer_id: get_u64(payload, 4),
                    offset: get_u64(payload, 12),
                }
            }
            other => {
                return Err(PayloadError::Invalid {
                    what: "control request",
                    reason: format!("{other:?} is not a client command"),
                })
            }
        })
    }
}

/// The header of a control frame carrying `code`.
pub fn control_header(code: ControlCode) -> Header {
    Header {
        flags: Flags::CONTROL,
        batch_id: u64::from(code.0),
        ..Header::default()
    }
}

/// FetchResponse (0x11) payload: a 16-byte prefix, then raw stored bytes that may begin
/// and end in the middle of a record (docs/protocol.md §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchResponse<'a> {
    /// `start_offset + bytes_returned`.
    pub next_offset: u64,
    /// Always 0 or 1 on the released server; not a record count.
    pub record_count: u32,
    /// The bytes read.
    pub data: &'a [u8],
}

/// SubscribeAck (0x23) payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscribeAck {
    /// Echo of the consumer id.
    pub consumer_id: u64,
    /// The start offset the server recorded (`u64::MAX` is returned unresolved).
    pub start_offset: u64,
}

/// CommitAck (0x24) payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CommitAck {
    /// Echo of the consumer id.
    pub consumer_id: u64,
    /// The offset the server recorded.
    pub committed_offset: u64,
}

/// A control reply, borrowed from its frame. JSON replies are kept as bytes; parse them
/// with [`TopicInfo::from_json`] and friends, which read by key, never by position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    /// TopicResponse (0x80), JSON.
    Topic(&'a [u8]),
    /// ClusterStatusResponse (0x81), JSON.
    ClusterStatus(&'a [u8]),
    /// FetchResponse (0x11).
    Fetch(FetchResponse<'a>),
    /// CatchingUp (0x12): the requested offset is past the end; the topic's current size.
    CatchingUp {
        /// The server's current size of the topic (0 for an unknown topic in a cluster).
        server_offset: u64,
    },
    /// SubscribeAck (0x23).
    SubscribeAck(SubscribeAck),
    /// CommitAck (0x24).
    CommitAck(CommitAck),
    /// AuthenticateResponse (0x09).
    Authenticate {
        /// Byte 0 was 1.
        success: bool,
        /// `Authenticated`, `Invalid token`, …
        message: Cow<'a, str>,
    },
    /// An Ack frame answering Unsubscribe: its batch id is the consumer id.
    Unsubscribed {
        /// The consumer id.
        consumer_id: u64,
    },
    /// ErrorResponse (0xFF): plain text, see [`crate::ServerError`].
    Error(Cow<'a, str>),
    /// A control code the client does not know, kept as is.
    Other {
        /// The code.
        code: ControlCode,
        /// Its payload.
        payload: &'a [u8],
    },
}

impl<'a> Response<'a> {
    /// Parses a reply frame. Ack frames are read as Unsubscribe replies, which is right
    /// only when the caller knows no ingest is outstanding; a pipelining client dispatches
    /// Ack frames itself.
    pub fn parse(frame: &Frame<'a>) -> Result<Response<'a>, PayloadError> {
        let p = frame.payload;
        let code = match frame.kind() {
            FrameKind::Control(code) => code,
            FrameKind::Ack => {
                return Ok(Response::Unsubscribed {
                    consumer_id: frame.header.batch_id,
                })
            }
            other => {
                return Err(PayloadError::Unexpected {
                    request: "control request",
                    got: format!("{other:?} frame"),
                })
            }
        };
        let need = |n: usize, what: &'static str| -> Result<(), PayloadError> {
            if p.len() < n {
                Err(PayloadError::TooShort {
                    what,
                    needed: n,
                    actual: p.len(),
                })
            } else {
                Ok(())
            }
        };
        Ok(match code {
            ControlCode::TOPIC_RESPONSE => Response::Topic(p),
            ControlCode::CLUSTER_STATUS_RESPONSE => Response::ClusterStatus(p),
            ControlCode::FETCH_RESPONSE => {
                need(16, "FetchResponse")?;
                let bytes = get_u32(p, 8) as usize;
                let data = &p[16..];
                if bytes != data.len() {
                    return Err(PayloadError::Invalid {
                        what: "FetchResponse",
                        reason: format!(
                            "bytes_returned is {bytes} but {} data bytes follow",
                            data.len()
                        ),
                    });
                }
                Response::Fetch(FetchResponse {
                    next_offset: get_u64(p, 0),
                    record_count: get_u32(p, 12),
                    data,
                })
            }
            ControlCode::CATCHING_UP => {
                need(8, "CatchingUp")?;
                Response::CatchingUp {
                    server_offset: get_u64(p, 0),
                }
            }
            ControlCode::SUBSCRIBE_ACK => {
                need(16, "SubscribeAck")?;
                Response::SubscribeAck(SubscribeAck {
                    consumer_id: get_u64(p, 0),
                    start_offset: get_u64(p, 8),
                })
            }
            ControlCode::COMMIT_ACK => {
                need(16, "CommitAck")?;
                Response::CommitAck(CommitAck {
                    consumer_id: get_u64(p, 0),
                    committed_offset: get_u64(p, 8),
                })
            }
            ControlCode::AUTHENTICATE_RESPONSE => {
                need(1, "AuthenticateResponse")?;
                Response::Authenticate {
                    success: p[0] == 1,
                    message: String::from_utf8_lossy(&p[1..]),
                }
            }
            ControlCode::ERROR_RESPONSE => Response::Error(String::from_utf8_lossy(p)),
            code => Response::Other { code, payload: p },
        })
    }

    /// Appends this reply as a frame, as the server encodes it (control replies with
    /// flags 0x40 and the code in `batch_id`; the Unsubscribe reply as an Ack frame).
    pub fn encode(&self, checksum: Checksum, out: &mut Vec<u8>) {
        let mut payload = Vec::new();
        let code = match self {
            Response::Topic(json) => {
                payload.extend_from_slice(json);
                ControlCode::TOPIC_RESPONSE
            }
            Response::ClusterStatus(json) => {
                payload.extend_from_slice(json);
                ControlCode::CLUSTER_STATUS_RESPONSE
            }
            Response::Fetch(f) => {
                payload.reserve(16 + f.data.len());
                payload.extend_from_slice(&f.next_offset.to_le_bytes());
                payload.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
                payload.extend_from_slice(&f.record_count.to_le_bytes());
                payload.extend_from_slice(f.data);
                ControlCode::FETCH_RESPONSE
            }
            Response::CatchingUp { server_offset } => {
                payload.extend_from_slice(&server_offset.to_le_bytes());
                ControlCode::CATCHING_UP
            }
            Response::SubscribeAck(a) => {
                payload.extend_from_slice(&a.consumer_id.to_le_bytes());
                payload.extend_from_slice(&a.start_offset.to_le_bytes());
                ControlCode::SUBSCRIBE_ACK
            }
            Response::CommitAck(a) => {
                payload.extend_from_slice(&a.consumer_id.to_le_bytes());
                payload.extend_from_slice(&a.committed_offset.to_le_bytes());
                ControlCode::COMMIT_ACK
            }
            Response::Authenticate { success, message } => {
                payload.push(u8::from(*success));
                payload.extend_from_slice(message.as_bytes());
                ControlCode::AUTHENTICATE_RESPONSE
            }
            Response::Unsubscribed { consumer_id } => {
                out.extend_from_slice(&super::ack_frame(checksum, *consumer_id));
                return;
            }
            Response::Error(text) => {
                payload.extend_from_slice(text.as_bytes());
                ControlCode::ERROR_RESPONSE
            }
            Response::Other { code, payload: p } => {
                payload.extend_from_slice(p);
                *code
            }
        };
        encode_frame(checksum, control_header(code), &payload, out);
    }
}

fn json<'de, T: Deserialize<'de>>(what: &'static str, bytes: &'de [u8]) -> Result<T, PayloadError> {
    serde_json::from_slice(bytes).map_err(|e| PayloadError::Json {
        what,
        reason: e.to_string(),
    })
}

/// A topic as the server describes it (create, create-with-retention, get, list).
/// Missing keys take defaults; unknown keys are ignored.
///
/// ```
/// use lnc_uring::proto::TopicInfo;
///
/// let t = TopicInfo::from_json(
///     br#"{"created_at":1700000000,"id":1,"name":"events","topic_epoch":1}"#,
/// ).unwrap();
/// assert_eq!((t.id, t.name.as_str(), t.created_at), (1, "events", 1_700_000_000));
/// assert_eq!(t.retention(), None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopicInfo {
    /// Server-assigned id (from 1; not stable across server restarts on old servers).
    pub id: u32,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Unix seconds at creation (server time).
    #[serde(default)]
    pub created_at: u64,
    /// Always 1 today.
    #[serde(default)]
    pub topic_epoch: u64,
    /// Present only in the reply to CreateTopicWithRetention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    /// Present only in the reply to CreateTopicWithRetention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

impl TopicInfo {
    /// A topic description.
    pub fn new(id: u32, name: impl Into<String>, created_at: u64) -> TopicInfo {
        TopicInfo {
            id,
            name: name.into(),
            created_at,
            topic_epoch: 1,
            max_age_secs: None,
            max_bytes: None,
        }
    }

    /// Parses a TopicResponse for create / get.
    pub fn from_json(bytes: &[u8]) -> Result<TopicInfo, PayloadError> {
        json("TopicResponse", bytes)
    }

    /// The retention the reply carried, if any.
    pub fn retention(&self) -> Option<Retention> {
        Some(Retention {
            max_age_secs: self.max_age_secs?,
            max_bytes: self.max_bytes?,
        })
    }
}

/// Parses the ListTopics reply `{"topics":[…]}`.
///
/// ```
/// let topics = lnc_uring::proto::parse_topic_list(br#"{"topics":[{"id":2,"name":"b","created_at":5,"topic_epoch":1}]}"#).unwrap();
/// assert_eq!(topics[0].name, "b");
/// ```
pub fn parse_topic_list(bytes: &[u8]) -> Result<Vec<TopicInfo>, PayloadError> {
    #[derive(Deserialize)]
    struct List {
        topics: Vec<TopicInfo>,
    }
    Ok(json::<List>("TopicResponse (list)", bytes)?.topics)
}

/// Parses the DeleteTopic reply `{"deleted":<id>}`.
pub fn parse_deleted(bytes: &[u8]) -> Result<u32, PayloadError> {
    #[derive(Deserialize)]
    struct Deleted {
        deleted: u32,
    }
    Ok(json::<Deleted>("TopicResponse (delete)", bytes)?.deleted)
}

/// The SetRetention reply `{"max_age_secs":…,"max_bytes":…,"topic_id":…}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionSet {
    /// Stored maximum age.
    pub max_age_secs: u64,
    /// Stored maximum size.
    pub max_bytes: u64,
    /// The topic.
    pub topic_id: u32,
}

impl RetentionSet {
    /// Parses the reply.
    pub fn from_json(bytes: &[u8]) -> Result<RetentionSet, PayloadError> {
        json("TopicResponse (set retention)", bytes)
    }
}

/// The GetClusterStatus reply (docs/protocol.md §6.10). `mode` is present only on a
/// standalone server; `peer_states` maps node ids to state names, not addresses.
///
/// ```
/// use lnc_uring::proto::ClusterStatus;
///
/// let s = ClusterStatus::from_json(br#"{"current_term":0,"healthy_nodes":1,"is_leader":true,"leader_id":0,"mode":"standalone","node_count":1,"node_id":0,"peer_states":{},"quorum_available":true}"#).unwrap();
/// assert!(s.is_leader && s.is_standalone());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterStatus {
    /// Raft term.
    #[serde(default)]
    pub current_term: u64,
    /// Healthy node count.
    #[serde(default)]
    pub healthy_nodes: u64,
    /// Whether the answering node leads.
    #[serde(default)]
    pub is_leader: bool,
    /// The leader's node id, `None` when unknown.
    #[serde(default)]
    pub leader_id: Option<u64>,
    /// `"standalone"` on a single server; absent in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Nodes in the cluster.
    #[serde(default)]
    pub node_count: u64,
    /// The answering node's id.
    #[serde(default)]
    pub node_id: u64,
    /// Node id → `Disconnected` / `Connecting` / `Connected` / `Failed`.
    #[serde(default)]
    pub peer_states: BTreeMap<String, String>,
    /// Whether a quorum is reachable.
    #[serde(default)]
    pub quorum_available: bool,
}

impl ClusterStatus {
    /// Parses the reply.
    pub fn from_json(bytes: &[u8]) -> Result<ClusterStatus, PayloadError> {
        json("ClusterStatusResponse", bytes)
    }

    /// Whether the server runs without a cluster.
    pub fn is_standalone(&self) -> bool {
        self.mode.as_deref() == Some("standalone")
    }
}
