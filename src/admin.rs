//! `LanceClient`: blocking topic administration, cluster status, ping and raw fetch.

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::ConnectionConfig;
use crate::driver::{Command, Driver, DriverStats};
use crate::proto::{
    parse_deleted, parse_topic_list, validate_topic_name, ClusterStatus, FetchRequest, Request,
    Retention, RetentionSet, ServerErrorKind, SubscribeRequest, TopicInfo,
};
use crate::request::PendingReply;
use crate::session::Reply;
use crate::Error;

/// The result of a raw [`LanceClient::fetch`]: bytes as stored, which may begin and end
/// in the middle of a record (use [`crate::proto::complete_prefix`] or a consumer).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchOutcome {
    /// Data (possibly empty at the end of the log).
    Data {
        /// Offset after the returned bytes.
        next_offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The offset is past the end of the log; the server's current size.
    CatchingUp {
        /// The topic's size on the server.
        server_offset: u64,
    },
}

/// A blocking admin client: one driver thread and connection, control requests one at a
/// time. Thread-safe; requests from several threads are queued.
///
/// ```
/// use lnc_uring::{testkit::TestServer, LanceClient};
/// use lnc_uring::proto::Retention;
///
/// let server = TestServer::start()?;
/// let admin = LanceClient::connect(&server.addr().to_string())?;
/// let t = admin.create_topic("orders")?;
/// assert_eq!(admin.ensure_topic("orders")?.id, t.id); // get-or-create
/// admin.set_retention(t.id, Retention::UNLIMITED.with_max_bytes(1 << 30))?;
/// assert_eq!(admin.list_topics()?.len(), 1);
/// assert!(admin.cluster_status()?.is_standalone());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LanceClient {
    driver: Driver,
    cfg: ConnectionConfig,
}

impl fmt::Debug for LanceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LanceClient")
            .field("addrs", &self.cfg.addrs)
            .finish()
    }
}

impl LanceClient {
    /// Connects to one address with default settings.
    pub fn connect(addr: &str) -> Result<LanceClient, Error> {
        LanceClient::with_config(ConnectionConfig::new(addr))
    }

    /// Connects with `cfg`.
    pub fn with_config(cfg: ConnectionConfig) -> Result<LanceClient, Error> {
        cfg.validate()?;
        let mut dcfg = cfg.driver_config("lnc-admin");
        // Control replies, and the odd raw fetch.
        dcfg.recv_buffers = (16, 64 * 1024);
        let driver = Driver::spawn(dcfg)?;
        Ok(LanceClient { driver, cfg })
    }

    /// Sends `request`; retryable failures (a lost connection, `FORWARD_FAILED`,
    /// `NOT_LEADER` — the driver then reconnects to the leader —, `Leader not ready`, a
    /// rate limit) are retried with back-off until the request timeout.
    fn call(&self, request: &Request<'_>) -> Result<Reply, Error> {
        self.call_counted(request).0
    }

    /// Like [`LanceClient::call`]; also says whether an earlier attempt may have reached
    /// the server (its reply was lost with the connection), which makes a later
    /// "already exists" or "not found" the echo of our own success.
    fn call_counted(&self, request: &Request<'_>) -> (Result<Reply, Error>, bool) {
        let give_up = crate::session::after(Instant::now(), self.cfg.request_timeout);
        let mut delay = Duration::from_millis(25);
        let mut maybe_done = false;
        loop {
            let r = PendingReply::start(
                &self.driver,
                self.cfg.checksum,
                self.cfg.request_timeout,
                request,
            )
            .and_then(PendingReply::wait);
            let failure = match &r {
                Ok(Reply::Error(e)) if e.is_retryable() => Error::from(e.clone()),
                Err(e) if e.is_retryable() && !matches!(e, Error::Timeout(_)) => e.clone(),
                _ => return (r, maybe_done),
            };
            // A reply that did not arrive (the connection went) may still have been acted on.
            maybe_done |= r.is_err();
            if Instant::now() + delay >= give_up {
                return (Err(failure), maybe_done);
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// A create whose retry says "already exists" after a lost reply: the topic as it is.
    fn created(&self, name: &str, request: &Request<'_>) -> Result<TopicInfo, Error> {
        match self.call_counted(request) {
            (Ok(Reply::Json(j)), _) => Ok(TopicInfo::from_json(&j)?),
            (Ok(Reply::Error(e)), true) if e.kind == ServerErrorKind::TopicExists => {
                log::info!("topic {name:?} was created by an attempt whose reply was lost");
                self.find(name)
            }
            (Ok(other), _) => Err(unexpected(request, other)),
            (Err(e), _) => Err(e),
        }
    }

    fn find(&self, name: &str) -> Result<TopicInfo, Error> {
        self.list_topics()?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::TopicNotFound {
                message: format!("topic {name:?} exists but is not listed"),
            })
    }

    /// A call whose reply is JSON (or an error).
    fn json(&self, request: &Request<'_>) -> Result<Vec<u8>, Error> {
        match self.call(request)? {
            Reply::Json(j) => Ok(j),
            other => Err(unexpected(request, other)),
        }
    }

    /// Creates a topic (`[A-Za-z0-9-]+`). A standalone server refuses an existing name
    /// (`Error::Server` with [`ServerErrorKind::TopicExists`]); see [`LanceClient::ensure_topic`].
    /// When the connection is lost before the reply and the retry finds the topic, the
    /// create is reported as the success it was.
    pub fn create_topic(&self, name: &str) -> Result<TopicInfo, Error> {
        check_name(name)?;
        self.created(name, &Request::CreateTopic { name })
    }

    /// Gets or creates a topic by name.
    pub fn ensure_topic(&self, name: &str) -> Result<TopicInfo, Error> {
        match self.create_topic(name) {
            Err(Error::Server(e)) if e.kind == ServerErrorKind::TopicExists => self.find(name),
            other => other,
        }
    }

    /// Creates a topic with a retention policy. A value of 0 is refused: the server
    /// reads it as "delete every closed segment", not "unlimited" (docs/protocol.md §7.8);
    /// use [`Retention::UNLIMITED`] for no limit.
    pub fn create_topic_with_retention(
        &self,
        name: &str,
        retention: Retention,
    ) -> Result<TopicInfo, Error> {
        check_name(name)?;
        check_retention(&retention)?;
        self.created(name, &Request::CreateTopicWithRetention { name, retention })
    }

    /// All topics (order unspecified by the server).
    pub fn list_topics(&self) -> Result<Vec<TopicInfo>, Error> {
        Ok(parse_topic_list(&self.json(&Request::ListTopics)?)?)
    }

    /// One topic.
    pub fn get_topic(&self, topic_id: u32) -> Result<TopicInfo, Error> {
        Ok(TopicInfo::from_json(
            &self.json(&Request::GetTopic { topic_id })?,
        )?)
    }

    /// Deletes a topic and all its data; returns the deleted id. When the connection is
    /// lost before the reply and the retry finds no such topic, the delete is reported
    /// as the success it was.
    pub fn delete_topic(&self, topic_id: u32) -> Result<u32, Error> {
        let req = Request::DeleteTopic { topic_id };
        match self.call_counted(&req) {
            (Ok(Reply::Json(j)), _) => Ok(parse_deleted(&j)?),
            (Ok(Reply::Error(e)), true) if e.kind == ServerErrorKind::TopicNotFound => {
                log::info!("topic {topic_id} was deleted by an attempt whose reply was lost");
                Ok(topic_id)
            }
            (Ok(Reply::Error(e)), _) => Err(Error::from(e)),
            (Ok(other), _) => Err(unexpected(&req, other)),
            (Err(e), _) => Err(e),
        }
    }

    /// Sets a topic's retention. 0 is refused as in
    /// [`LanceClient::create_topic_with_retention`].
    pub fn set_retention(
        &self,
        topic_id: u32,
        retention: Retention,
    ) -> Result<RetentionSet, Error> {
        check_retention(&retention)?;
        let req = Request::SetRetention {
            topic_id,
            retention,
        };
        Ok(RetentionSet::from_json(&self.json(&req)?)?)
    }

    /// Registers consumer `consumer_id` on `topic_id` at `start_offset` (Subscribe,
    /// 0x20). The server only records it, in memory, on this node; it pushes nothing
    /// (data is fetched). Returns the offset it recorded: for a start of 0, the last
    /// offset committed there, if any; `u64::MAX` comes back unresolved.
    pub fn subscribe(
        &self,
        topic_id: u32,
        consumer_id: u64,
        start_offset: u64,
        max_batch_bytes: u32,
    ) -> Result<u64, Error> {
        let req = Request::Subscribe(SubscribeRequest {
            topic_id,
            start_offset,
            max_batch_bytes,
            consumer_id,
        });
        match self.call(&req)? {
            Reply::SubscribeAck { start_offset, .. } => Ok(start_offset),
            other => Err(unexpected(&req, other)),
        }
    }

    /// Removes the server's record of consumer `consumer_id` on `topic_id` (Unsubscribe,
    /// 0x21; answered even when it was not subscribed).
    pub fn unsubscribe(&self, topic_id: u32, consumer_id: u64) -> Result<(), Error> {
        let req = Request::Unsubscribe {
            topic_id,
            consumer_id,
        };
        match self.call(&req)? {
            Reply::Unsubscribed { .. } => Ok(()),
            other => Err(unexpected(&req, other)),
        }
    }

    /// Records `offset` as consumer `consumer_id`'s position on `topic_id` (CommitOffset,
    /// 0x22; advisory, in the node's memory only). Returns the offset the server stored.
    pub fn commit_offset(
        &self,
        topic_id: u32,
        consumer_id: u64,
        offset: u64,
    ) -> Result<u64, Error> {
        let req = Request::CommitOffset {
            topic_id,
            consumer_id,
            offset,
        };
        match self.call(&req)? {
            Reply::CommitAck {
                committed_offset, ..
            } => Ok(committed_offset),
            other => Err(unexpected(&req, other)),
        }
    }

    /// The answering node's view of the cluster.
    pub fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        Ok(ClusterStatus::from_json(
            &self.json(&Request::GetClusterStatus)?,
        )?)
    }

    /// Round trip of a keepalive.
    pub fn ping(&self) -> Result<Duration, Error> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.driver.submit(Command::Ping(tx))?;
        match rx.recv_timeout(self.cfg.request_timeout) {
            Ok(Ok(Reply::Pong(d))) => Ok(d),
            Ok(Ok(other)) => Err(Error::Protocol(format!(
                "unexpected reply to ping: {other:?}"
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout("ping".into())),
        }
    }

    /// Reads raw bytes of a topic from `offset` (at most `max_bytes`).
    pub fn fetch(&self, topic_id: u32, offset: u64, max_bytes: u32) -> Result<FetchOutcome, Error> {
        let req = Request::Fetch(FetchRequest {
            topic_id,
            start_offset: offset,
            max_bytes,
        });
        match self.call(&req)? {
            Reply::Fetch { next_offset, data } => Ok(FetchOutcome::Data { next_offset, data }),
            Reply::CatchingUp { server_offset } => Ok(FetchOutcome::CatchingUp { server_offset }),
            other => Err(unexpected(&req, other)),
        }
    }

    /// The end of a topic's log (a fetch with the `u64::MAX` tail sentinel).
    pub fn end_offset(&self, topic_id: u32) -> Result<u64, Error> {
        match self.fetch(topic_id, FetchRequest::TAIL, 0)? {
            FetchOutcome::Data { next_offset, .. } => Ok(next_offset),
            FetchOutcome::CatchingUp { server_offset } => Ok(server_offset),
        }
    }

    /// The driver thread's counters.
    pub fn stats(&self) -> DriverStats {
        self.driver.stats()
    }

    /// Stops the driver thread.
    pub fn close(self) {
        self.driver
            .shutdown(Instant::now() + Duration::from_secs(1));
    }
}

fn unexpected(request: &Request<'_>, reply: Reply) -> Error {
    crate::request::unexpected(request.code(), reply)
}

fn check_name(name: &str) -> Result<(), Error> {
    validate_topic_name(name).map_err(|reason| Error::InvalidTopicName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    })
}

fn check_retention(r: &Retention) -> Result<(), Error> {
    if r.deletes_everything() {
        return Err(Error::Config(
            "a retention value of 0 makes the server delete every closed segment; \
             use Retention::UNLIMITED (or a large value) for no limit"
                .into(),
        ));
    }
    Ok(())
}
