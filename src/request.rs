//! Control requests from blocking handles: submit to the driver, wait for the reply.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use crate::driver::{Command, Driver, IdleStrategy, Step};
use crate::proto::{Checksum, ControlCode, Request};
use crate::session::{after, Call, Reply};
use crate::Error;

/// A control request on its way; its reply arrives on the channel.
#[derive(Debug)]
pub(crate) struct PendingReply {
    rx: Receiver<Result<Reply, Error>>,
    code: ControlCode,
    idle: IdleStrategy,
    /// The driver answers by the request deadline; this adds a margin for a busy thread.
    give_up: Instant,
}

impl PendingReply {
    /// Submits `request`; the driver fails it with a timeout after `timeout`.
    pub(crate) fn start(
        driver: &Driver,
        checksum: Checksum,
        timeout: Duration,
        request: &Request<'_>,
    ) -> Result<PendingReply, Error> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let now = Instant::now();
        let call = Call::new(request, checksum, after(now, timeout), tx)?;
        driver.submit(Command::Call(call))?;
        Ok(PendingReply {
            rx,
            code: request.code(),
            idle: driver.idle(),
            give_up: after(now, timeout + Duration::from_secs(5)),
        })
    }

    /// Waits for the reply, as the connection's idle strategy says.
    pub(crate) fn wait(self) -> Result<Reply, Error> {
        let mut idle = 0u32;
        loop {
            let left = self.give_up.saturating_duration_since(Instant::now());
            let step = self.idle.step(idle);
            idle = idle.saturating_add(1);
            let got = match step {
                Step::Spin | Step::Yield => match self.rx.try_recv() {
                    Ok(r) => Ok(r),
                    Err(TryRecvError::Empty) if !left.is_zero() => {
                        if step == Step::Yield {
                            std::thread::yield_now();
                        } else {
                            std::hint::spin_loop();
                        }
                        continue;
                    }
                    Err(TryRecvError::Empty) => Err(RecvTimeoutError::Timeout),
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                },
                Step::Park(t) => match self.rx.recv_timeout(t.min(left)) {
                    Err(RecvTimeoutError::Timeout) if !left.is_zero() => continue,
                    other => other,
                },
                Step::Block => self.rx.recv_timeout(left),
            };
            return match got {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    Err(Error::Timeout(format!("{} request", self.code)))
                }
                Err(RecvTimeoutError::Disconnected) => Err(Error::Closed),
            };
        }
    }
}

/// Turns a reply that is not the expected one into an error.
pub(crate) fn unexpected(code: ControlCode, reply: Reply) -> Error {
    match reply {
        Reply::Error(e) => Error::from(e),
        other => Error::Protocol(format!("unexpected reply to {code}: {other:?}")),
    }
}
