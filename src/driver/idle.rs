//! What a thread does when it has nothing to do: the ring thread between events, and a
//! caller waiting for an outcome or a reply.

use std::time::{Duration, Instant};

/// How a waiting thread waits, from the lowest latency to the lowest CPU cost. One
/// setting (on [`crate::RingConfig`] for a ring's thread, on
/// [`crate::ConnectionConfig::idle`] for a handle's own ring and for callers waiting on
/// its tickets and replies).
///
/// | strategy | ring thread | waiting caller | for |
/// |---|---|---|---|
/// | `BusySpin` | polls the kernel without ever sleeping | checks in a tight loop | a core per thread to spare; the lowest latency |
/// | `Yield` | polls, yielding the CPU between polls | checks, yielding between checks | low latency when threads outnumber cores |
/// | `Backoff` | spins, then yields, then sleeps `min_park` doubling to `max_park` between polls (nobody has to wake it) | the same, and is woken early by the outcome | bursty traffic: low latency in a burst, little CPU between |
/// | `Block` (default) | sleeps in the kernel until an event or a handle wakes it | parks until woken | the lowest CPU; each wake-up costs a few µs (tens on a VM) |
///
/// ```
/// use std::time::Duration;
/// use lnc_uring::{ConnectionConfig, IdleStrategy};
///
/// let c = ConnectionConfig::new("127.0.0.1:1992").with_idle(IdleStrategy::Backoff {
///     spins: 1_000,
///     yields: 100,
///     min_park: Duration::from_micros(50),
///     max_park: Duration::from_millis(1),
/// });
/// assert!(matches!(c.idle, IdleStrategy::Backoff { .. }));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdleStrategy {
    /// Never sleep.
    BusySpin,
    /// Yield the CPU between checks, never sleep.
    Yield,
    /// Spin `spins` times, yield `yields` times, then sleep from `min_park`, doubling up
    /// to `max_park`; starts over when there is work.
    Backoff {
        /// Checks in a tight loop first.
        spins: u32,
        /// Then checks with a yield between each.
        yields: u32,
        /// First sleep.
        min_park: Duration,
        /// Longest sleep (the worst added latency once idle).
        max_park: Duration,
    },
    /// Sleep until woken.
    #[default]
    Block,
}

impl IdleStrategy {
    /// A back-off that spins for about `spin` after the last work, then blocks: what
    /// "busy-poll for this long" meant.
    pub fn spin_then_block(spin: Duration) -> IdleStrategy {
        // ~50 ns per check of an atomic or a non-blocking poll.
        let spins = (spin.as_nanos() / 50).min(u128::from(u32::MAX)) as u32;
        IdleStrategy::Backoff {
            spins,
            yields: 0,
            min_park: Duration::MAX,
            max_park: Duration::MAX,
        }
    }

    /// `"busy-spin"`, `"yield"`, `"backoff"` or `"block"`.
    pub fn name(self) -> &'static str {
        match self {
            IdleStrategy::BusySpin => "busy-spin",
            IdleStrategy::Yield => "yield",
            IdleStrategy::Backoff { .. } => "backoff",
            IdleStrategy::Block => "block",
        }
    }
}

impl std::str::FromStr for IdleStrategy {
    type Err = String;
    /// `busy-spin`, `yield`, `block`, or `backoff` (1000 spins, 100 yields, 50 µs to 1 ms).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "busy-spin" | "spin" | "busy" => Ok(IdleStrategy::BusySpin),
            "yield" => Ok(IdleStrategy::Yield),
            "block" => Ok(IdleStrategy::Block),
            "backoff" => Ok(IdleStrategy::Backoff {
                spins: 1_000,
                yields: 100,
                min_park: Duration::from_micros(50),
                max_park: Duration::from_millis(1),
            }),
            o => Err(format!(
                "unknown idle strategy {o:?} (busy-spin, yield, backoff, block)"
            )),
        }
    }
}

/// What to do now, for a thread that found nothing to do `idle` times in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Look again at once.
    Spin,
    /// Yield the CPU, then look again.
    Yield,
    /// Sleep at most this long (woken early by nobody: the caller polls again after).
    Park(Duration),
    /// Sleep until woken.
    Block,
}

impl IdleStrategy {
    /// The step after `idle` idle rounds.
    pub(crate) fn step(self, idle: u32) -> Step {
        match self {
            IdleStrategy::BusySpin => Step::Spin,
            IdleStrategy::Yield => Step::Yield,
            IdleStrategy::Block => Step::Block,
            IdleStrategy::Backoff {
                spins,
                yields,
                min_park,
                max_park,
            } => {
                if idle < spins {
                    Step::Spin
                } else if idle - spins < yields {
                    Step::Yield
                } else if min_park == Duration::MAX {
                    Step::Block
                } else {
                    let doublings = (idle - spins - yields).min(30);
                    Step::Park(min_park.saturating_mul(1 << doublings).min(max_park))
                }
            }
        }
    }

    /// Waits in this caller's way until `done()` or `deadline` (`None`: no deadline);
    /// `park(timeout)` sleeps until woken or `timeout` (`None`: until woken). Returns
    /// `done()`.
    pub(crate) fn wait(
        self,
        deadline: Option<Instant>,
        mut done: impl FnMut() -> bool,
        mut park: impl FnMut(Option<Duration>),
    ) -> bool {
        let mut idle = 0u32;
        loop {
            if done() {
                return true;
            }
            let left = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return done();
                    }
                    Some(d - now)
                }
                None => None,
            };
            match self.step(idle) {
                Step::Spin => std::hint::spin_loop(),
                Step::Yield => std::thread::yield_now(),
                Step::Park(t) => park(Some(left.map_or(t, |l| l.min(t)))),
                Step::Block => park(left),
            }
            idle = idle.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_spins_yields_then_parks_longer() {
        let b = IdleStrategy::Backoff {
            spins: 2,
            yields: 1,
            min_park: Duration::from_micros(10),
            max_park: Duration::from_micros(35),
        };
        let steps: Vec<Step> = (0..7).map(|i| b.step(i)).collect();
        assert_eq!(
            steps,
            [
                Step::Spin,
                Step::Spin,
                Step::Yield,
                Step::Park(Duration::from_micros(10)),
                Step::Park(Duration::from_micros(20)),
                Step::Park(Duration::from_micros(35)),
                Step::Park(Duration::from_micros(35)),
            ]
        );
        assert_eq!(
            IdleStrategy::spin_then_block(Duration::from_micros(1)).step(100),
            Step::Block
        );
        assert_eq!("yield".parse::<IdleStrategy>(), Ok(IdleStrategy::Yield));
    }

    #[test]
    fn waiting_honours_the_deadline_and_the_condition() {
        let t0 = Instant::now();
        let ok = IdleStrategy::Block.wait(
            Some(t0 + Duration::from_millis(20)),
            || false,
            |t| std::thread::sleep(t.unwrap_or(Duration::from_millis(1))),
        );
        assert!(!ok && t0.elapsed() >= Duration::from_millis(20));
        let mut n = 0;
        assert!(IdleStrategy::BusySpin.wait(
            None,
            || {
                n += 1;
                n > 100
            },
            |_| {}
        ));
    }
}
