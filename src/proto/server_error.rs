//! Classification of the server's plain-text error replies (docs/protocol.md §10).
//!
//! The released server sends errors as UTF-8 text in an ErrorResponse (0xFF) frame: no
//! JSON, no numeric code, no batch id. The client classifies them by prefix and keeps
//! the raw text.

use std::fmt;

/// What an ErrorResponse text means.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerErrorKind {
    /// `FORWARD_FAILED: …` (a follower could not reach the leader, a quorum was not
    /// reached, metadata is converging). Retryable; for a quorum failure the write's
    /// outcome is unknown.
    ForwardFailed,
    /// `FORWARD_FAILED: Leader not ready …`: an elected leader is catching up. Retryable.
    LeaderNotReady,
    /// `NOT_LEADER: redirect to <addr>` (`redirect` set) or `NOT_LEADER: leader unknown`.
    NotLeader {
        /// The leader's address as the server wrote it (`ip:port` or `host:port`).
        redirect: Option<String>,
    },
    /// `Unknown topic` (ingest), `Topic not found`, `Topic <id> not found`,
    /// `Configuration error: Topic <id> not found`.
    TopicNotFound,
    /// `Topic '<name>' already exists` (standalone servers only).
    TopicExists,
    /// `Invalid data: Topic name …` or `Topic name required`.
    InvalidTopicName,
    /// `Rate limit exceeded` (consumer fetch limiter). Retryable after a back-off.
    RateLimited,
    /// `Authentication required`: ingest on an unauthenticated connection.
    AuthenticationRequired,
    /// `Invalid … payload`, `Invalid payload length`, `Fetch request payload …`,
    /// `Invalid client command`, `Authentication handled at connection level`: the
    /// request was malformed (a client bug).
    InvalidRequest,
    /// `I/O error: …`: a storage failure on the server.
    Io,
    /// `Failed to replicate …`: a cluster metadata replication failure. Retryable.
    Replication,
    /// Anything else.
    Other,
}

/// An ErrorResponse from the server: its classification and the exact text.
///
/// ```
/// use lnc_uring::proto::{ServerError, ServerErrorKind};
///
/// let e = ServerError::classify("NOT_LEADER: redirect to 10.0.0.2:1992");
/// assert_eq!(e.kind, ServerErrorKind::NotLeader { redirect: Some("10.0.0.2:1992".into()) });
/// assert!(e.is_retryable());
/// assert!(ServerError::classify("FORWARD_FAILED: Forward operation timed out").is_retryable());
/// assert!(!ServerError::classify("Unknown topic").is_retryable());
/// assert_eq!(ServerError::classify("Topic 7 not found").kind, ServerErrorKind::TopicNotFound);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerError {
    /// The classification.
    pub kind: ServerErrorKind,
    /// The server's text, unchanged.
    pub message: String,
}

impl ServerError {
    /// Classifies an ErrorResponse text.
    pub fn classify(message: impl Into<String>) -> ServerError {
        let message = message.into();
        let kind = classify(&message);
        ServerError { kind, message }
    }

    /// Whether trying again (after a back-off, perhaps on another node) can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ServerErrorKind::ForwardFailed
                | ServerErrorKind::LeaderNotReady
                | ServerErrorKind::NotLeader { .. }
                | ServerErrorKind::RateLimited
                | ServerErrorKind::Replication
        )
    }

    /// Whether the write this error answers may nevertheless have been stored: a quorum
    /// failure reports after the leader wrote locally (docs/protocol.md §4.7).
    pub fn outcome_unknown(&self) -> bool {
        self.kind == ServerErrorKind::ForwardFailed && self.message.contains("Quorum not reached")
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn classify(m: &str) -> ServerErrorKind {
    let t = m.trim();
    if let Some(rest) = t.strip_prefix("NOT_LEADER:") {
        let rest = rest.trim();
        let redirect = rest
            .strip_prefix("redirect to")
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned);
        return ServerErrorKind::NotLeader { redirect };
    }
    if let Some(rest) = t.strip_prefix("FORWARD_FAILED:") {
        return if rest.trim_start().starts_with("Leader not ready") {
            ServerErrorKind::LeaderNotReady
        } else {
            ServerErrorKind::ForwardFailed
        };
    }
    if t.starts_with("Leader not ready") {
        return ServerErrorKind::LeaderNotReady;
    }
    if t == "Unknown topic" || t == "Topic not found" || is_topic_id_not_found(t) {
        return ServerErrorKind::TopicNotFound;
    }
    if t.starts_with("Topic '") && t.ends_with("' already exists") {
        return ServerErrorKind::TopicExists;
    }
    if t == "Topic name required"
        || (t.starts_with("Invalid data: Topic name") && !t.contains("not found"))
    {
        return ServerErrorKind::InvalidTopicName;
    }
    if t.starts_with("Rate limit exceeded") {
        return ServerErrorKind::RateLimited;
    }
    if t.starts_with("Authentication required") {
        return ServerErrorKind::AuthenticationRequired;
    }
    if (t.starts_with("Invalid ") && (t.ends_with("payload") || t.ends_with("payload length")))
        || t.starts_with("Fetch request payload")
        || t.starts_with("Protocol error:")
        || t == "Invalid client command"
        || t == "Authentication handled at connection level"
    {
        return ServerErrorKind::InvalidRequest;
    }
    if t.starts_with("I/O error:") {
        return ServerErrorKind::Io;
    }
    if t.starts_with("Failed to replicate") {
        return ServerErrorKind::Replication;
    }
    ServerErrorKind::Other
}

/// `Topic <digits> not found`, optionally after `Configuration error: `.
fn is_topic_id_not_found(t: &str) -> bool {
    let t = t.strip_prefix("Configuration error: ").unwrap_or(t);
    t.strip_prefix("Topic ")
        .and_then(|r| r.strip_suffix(" not found"))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServerErrorKind as K;

    #[test]
    fn catalogue() {
        let cases: &[(&str, ServerErrorKind, bool)] = &[
            ("Authentication required", K::AuthenticationRequired, false),
            ("Unknown topic", K::TopicNotFound, false),
            ("FORWARD_FAILED: Unknown topic (metadata convergence)", K::ForwardFailed, true),
            ("FORWARD_FAILED: Leader address unknown", K::ForwardFailed, true),
            ("FORWARD_FAILED: Failed to connect to leader: refused", K::ForwardFailed, true),
            ("FORWARD_FAILED: Forward operation timed out", K::ForwardFailed, true),
            ("FORWARD_FAILED: Connection pool exhausted", K::ForwardFailed, true),
            ("FORWARD_FAILED: Quorum not reached - required 2 ACKs, got 1", K::ForwardFailed, true),
            ("FORWARD_FAILED: Leader not ready (apply/metadata catch-up)", K::LeaderNotReady, true),
            ("NOT_LEADER: leader unknown", K::NotLeader { redirect: None }, true),
            ("NOT_LEADER: redirect to [::1]:1992", K::NotLeader { redirect: Some("[::1]:1992".into()) }, true),
            ("Topic name required", K::InvalidTopicName, false),
            ("Topic 'events' already exists", K::TopicExists, false),
            ("Invalid data: Topic name 'a b' contains invalid characters. Only alphanumeric characters (a-z, A-Z, 0-9) and dashes (-) are allowed", K::InvalidTopicName, false),
            ("Invalid data: Topic name must not be empty", K::InvalidTopicName, false),
            ("Failed to replicate topic creation: lost leadership", K::Replication, true),
            ("Invalid create topic payload", K::InvalidRequest, false),
            ("Invalid payload length", K::InvalidRequest, false),
            ("Topic not found", K::TopicNotFound, false),
            ("Configuration error: Topic 9 not found", K::TopicNotFound, false),
            ("Invalid set retention payload", K::InvalidRequest, false),
            ("Invalid subscribe payload", K::InvalidRequest, false),
            ("Invalid unsubscribe payload", K::InvalidRequest, false),
            ("Invalid commit offset payload", K::InvalidRequest, false),
            ("Fetch request payload required", K::InvalidRequest, false),
            ("Protocol error: Fetch request payload too small", K::InvalidRequest, false),
            ("Rate limit exceeded", K::RateLimited, true),
            ("Topic 0 not found", K::TopicNotFound, false),
            ("Invalid client command", K::InvalidRequest, false),
            ("Authentication handled at connection level", K::InvalidRequest, false),
            ("I/O error: disk full", K::Io, false),
            ("something new", K::Other, false),
        ];
        for (text, kind, retry) in cases {
            let e = ServerError::classify(*text);
            assert_eq!(&e.kind, kind, "{text}");
            assert_eq!(e.is_retryable(), *retry, "{text}");
            assert_eq!(e.message, *text, "raw text kept");
        }
        assert!(ServerError::classify(
            "FORWARD_FAILED: Quorum not reached - required 2 ACKs, got 1"
        )
        .outcome_unknown());
        assert!(!ServerError::classify("FORWARD_FAILED: Leader address unknown").outcome_unknown());
    }
}
