//! Frame buffers and the pool that bounds their memory.
//!
//! A producer fills batches in [`FrameBuf`]s taken from a [`BufferPool`]. Pooled buffers
//! all have one fixed capacity (a 44-byte header, `batch_size` bytes of records and room
//! for the record that crosses `batch_size`), so encoding into one never reallocates.
//! They are allocated on demand until the pool's memory budget is used, and reused for
//! ever after: steady-state sending allocates nothing. A record too large for a pooled
//! buffer gets an *oversized* buffer of its own, counted against the same budget while it
//! lives.
//!
//! A buffer goes back to its pool when it is dropped, wherever that happens (the driver
//! after the ACK, a producer whose driver is gone, a failed batch), so the budget can
//! never leak. The free list is a stack: the most recently used buffer is reused first,
//! so only as many buffers are ever touched (resident) as are in use at once.
//!
//! A pool allocates at most `budget / capacity` buffers in its life; once it has, it
//! never allocates again.
//!
//! A consumer receives fetched data into buffers from a [`BufPool`], which it refills as
//! the application drops its poll results.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// A registered (io_uring fixed) buffer: which ring, its index there, and the address
/// and capacity of the allocation that was registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Registration {
    pub(crate) ring: u32,
    pub(crate) index: u16,
    pub(crate) addr: usize,
    pub(crate) cap: usize,
}

/// A frame buffer: heap memory, perhaps from a pool, perhaps registered with io_uring
/// (usable by SEND_ZC with `IORING_RECVSEND_FIXED_BUF`).
pub(crate) struct FrameBuf {
    pub(crate) data: Vec<u8>,
    /// The registration this allocation came with.
    pub(crate) reg: Option<Registration>,
    home: Option<Arc<PoolInner>>,
}

impl fmt::Debug for FrameBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameBuf")
            .field("len", &self.data.len())
            .field("capacity", &self.data.capacity())
            .field("reg", &self.reg)
            .field("pooled", &self.home.is_some())
            .finish()
    }
}

impl FrameBuf {
    /// Plain heap memory that belongs to no pool.
    pub(crate) fn heap(data: Vec<u8>) -> FrameBuf {
        FrameBuf {
            data,
            reg: None,
            home: None,
        }
    }

    /// The registration, if `data` is still exactly the registered allocation. A `Vec`
    /// that grew was reallocated (its capacity changed for good), and one that was dropped
    /// took its registration with it, so this never names other memory.
    pub(crate) fn registration(&self) -> Option<Registration> {
        self.reg
            .filter(|r| self.data.as_ptr() as usize == r.addr && self.data.capacity() == r.cap)
    }

    /// Takes the contents, leaving an empty buffer that owns nothing.
    pub(crate) fn take(&mut self) -> FrameBuf {
        std::mem::replace(self, FrameBuf::heap(Vec::new()))
    }
}

impl Drop for FrameBuf {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            home.give(std::mem::take(&mut self.data), self.reg.take());
        }
    }
}

/// Free pooled buffers, most recently returned last.
type FreeList = Vec<(Vec<u8>, Option<Registration>)>;

struct PoolInner {
    free: Mutex<FreeList>,
    /// Signalled when a buffer comes back or oversized memory is freed.
    returned: Condvar,
    /// Capacity of every pooled buffer.
    cap: usize,
    /// Bytes that buffers may hold in all.
    budget: usize,
    /// Bytes held by live buffers (pooled ones, free or in use, and oversized ones).
    used: AtomicUsize,
}

impl PoolInner {
    fn lock(&self) -> MutexGuard<'_, FreeList> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn give(&self, mut data: Vec<u8>, reg: Option<Registration>) {
        if data.capacity() == self.cap {
            data.clear();
            self.lock().push((data, reg));
        } else {
            // Oversized (or a buffer that grew, which pooled ones never do): free it.
            let cap = data.capacity();
            drop(data);
            let _g = self.lock();
            self.used.fetch_sub(cap, Ordering::AcqRel);
        }
        self.returned.notify_one();
    }

    /// Counts `n` more bytes if they fit the budget. Something larger than the whole
    /// budget is allowed when nothing else is held.
    fn reserve(&self, n: usize) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if cur != 0 && cur.saturating_add(n) > self.budget {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(cur, cur + n, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// Fixed-capacity frame buffers within a memory budget. Cheap to clone (shared).
#[derive(Clone)]
pub(crate) struct BufferPool {
    inner: Arc<PoolInner>,
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("capacity", &self.inner.cap)
            .field("budget", &self.inner.budget)
            .field("used", &self.used())
            .finish()
    }
}

impl BufferPool {
    /// A pool of buffers of `capacity` bytes holding at most `budget` bytes in all, with
    /// `prealloc` of them allocated now (the working set: they are not touched, so they
    /// cost address space, not memory, until used).
    pub(crate) fn new(capacity: usize, budget: usize, prealloc: usize) -> BufferPool {
        let slots = (budget / capacity.max(1)).saturating_add(1).min(1 << 20);
        let mut free = Vec::with_capacity(slots);
        let prealloc = prealloc.min(budget / capacity.max(1));
        free.extend((0..prealloc).map(|_| (Vec::with_capacity(capacity), None)));
        BufferPool {
            inner: Arc::new(PoolInner {
                free: Mutex::new(free),
                returned: Condvar::new(),
                cap: capacity,
                budget,
                used: AtomicUsize::new(prealloc * capacity),
            }),
        }
    }

    /// The capacity of a pooled buffer.
    pub(crate) fn capacity(&self) -> usize {
        self.inner.cap
    }

    /// Bytes held by live buffers.
    pub(crate) fn used(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    fn wrap(&self, data: Vec<u8>, reg: Option<Registration>) -> FrameBuf {
        FrameBuf {
            data,
            reg,
            home: Some(self.inner.clone()),
        }
    }

    /// A free pooled buffer, or a new one while the budget allows; never waits.
    pub(crate) fn try_take(&self) -> Option<FrameBuf> {
        self.take_until(None)
    }

    /// Like [`BufferPool::try_take`], waiting until `deadline` (`None`: not at all) for a
    /// buffer to come back.
    pub(crate) fn take_until(&self, deadline: Option<Instant>) -> Option<FrameBuf> {
        let inner = &*self.inner;
        let mut free = inner.lock();
        loop {
            if let Some((data, reg)) = free.pop() {
                return Some(self.wrap(data, reg));
            }
            if inner.reserve(inner.cap) {
                drop(free);
                return Some(self.wrap(Vec::with_capacity(inner.cap), None));
            }
            free = wait(inner, free, deadline)?;
        }
    }

    /// A buffer of exactly `len` bytes' capacity for a record too large for a pooled one,
    /// freeing idle pooled buffers to make room; waits until `deadline` (`None`: not at
    /// all).
    pub(crate) fn take_oversized(&self, len: usize, deadline: Option<Instant>) -> Option<FrameBuf> {
        let inner = &*self.inner;
        let mut free = inner.lock();
        loop {
            if inner.reserve(len) {
                drop(free);
                return Some(self.wrap(Vec::with_capacity(len), None));
            }
            if let Some((data, _)) = free.pop() {
                // An idle pooled buffer: release its memory for the large one.
                drop(data);
                inner.used.fetch_sub(inner.cap, Ordering::AcqRel);
                continue;
            }
            free = wait(inner, free, deadline)?;
        }
    }
}

/// Waits for a return until `deadline`; `None` when it passed (or there is none).
fn wait<'a>(
    inner: &'a PoolInner,
    guard: MutexGuard<'a, FreeList>,
    deadline: Option<Instant>,
) -> Option<MutexGuard<'a, FreeList>> {
    let now = Instant::now();
    let d = deadline.filter(|d| *d > now)?;
    let (g, _) = inner
        .returned
        .wait_timeout(guard, d - now)
        .unwrap_or_else(|e| e.into_inner());
    Some(g)
}

/// Reusable byte buffers for fetched data, shared by a consumer (which returns them when
/// a poll result is dropped) and its driver (which fills them): no allocation, and no
/// page faults on fresh memory, per fetch.
#[derive(Debug, Default)]
pub(crate) struct BufPool {
    bufs: Mutex<Vec<Vec<u8>>>,
}

impl BufPool {
    /// A cleared buffer with room for `len` bytes, reused when one is free.
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        let mut v = self.pop();
        v.clear();
        v.reserve(len);
        v
    }

    /// A buffer of exactly `len` bytes, reused when one is free; its contents are
    /// whatever it held before (it is about to be overwritten), so a reused buffer costs
    /// no zeroing.
    pub(crate) fn take_filled(&self, len: usize) -> Vec<u8> {
        let mut v = self.pop();
        v.resize(len, 0);
        v
    }

    /// A free buffer as it was given back, or an empty one.
    fn pop(&self) -> Vec<u8> {
        self.bufs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Gives a buffer back (a few are kept).
    pub(crate) fn give(&self, v: Vec<u8>) {
        let mut bufs = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        if bufs.len() < 8 && v.capacity() > 0 {
            bufs.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buffers_are_reused_within_the_budget() {
        let pool = BufferPool::new(1000, 2500, 0);
        let a = pool.try_take().unwrap();
        let b = pool.try_take().unwrap();
        assert!(pool.try_take().is_none(), "a third would exceed the budget");
        assert_eq!(pool.used(), 2000);
        let a_ptr = a.data.as_ptr();
        drop(a);
        let c = pool.try_take().unwrap();
        assert_eq!(c.data.as_ptr(), a_ptr, "the same allocation comes back");
        assert!(c.data.is_empty());
        assert_eq!(c.data.capacity(), 1000);
        drop((b, c));
        assert_eq!(pool.used(), 2000, "pooled memory stays allocated");
    }

    #[test]
    fn waiting_for_a_buffer_and_timing_out() {
        let pool = BufferPool::new(1000, 1000, 1);
        let a = pool.try_take().unwrap();
        let t0 = Instant::now();
        assert!(pool
            .take_until(Some(t0 + Duration::from_millis(20)))
            .is_none());
        let p2 = pool.clone();
        let h = std::thread::spawn(move || {
            p2.take_until(Some(Instant::now() + Duration::from_secs(5)))
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(a);
        assert!(h.join().unwrap().is_some());
    }

    #[test]
    fn oversized_buffers_free_idle_pooled_memory_and_are_freed() {
        let pool = BufferPool::new(1000, 3000, 0);
        let (a, b) = (pool.try_take().unwrap(), pool.try_take().unwrap());
        drop((a, b)); // idle, still counted
        let big = pool.take_oversized(2500, None).unwrap();
        assert_eq!(big.data.capacity(), 2500);
        assert!(pool.used() <= 3000);
        drop(big);
        assert!(pool.used() <= 1000, "oversized memory is freed, not pooled");
        // Larger than the whole budget: allowed when nothing else is held.
        let pool = BufferPool::new(1000, 3000, 0);
        assert!(pool.take_oversized(10_000, None).is_some());
    }
}
