//! Memory the kernel writes into or reads from: receive buffers (a provided-buffer ring,
//! or one plain buffer for single-shot receives) and the table of registered send
//! buffers.
//!
//! Receive memory is a raw allocation, never a Rust reference while the kernel may write
//! to it: a slice is made only over a buffer the kernel has completed and not yet been
//! given back.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types;

/// Page-aligned memory shared with the kernel.
pub(super) struct RawBuf {
    ptr: NonNull<u8>,
    layout: Layout,
    /// Never free (the kernel may still use it after a failed shutdown).
    leak: bool,
}

impl RawBuf {
    pub(super) fn new(len: usize) -> io::Result<RawBuf> {
        let layout = Layout::from_size_align(len.max(1), 4096)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(p).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(RawBuf {
            ptr,
            layout,
            leak: false,
        })
    }

    pub(super) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(super) fn len(&self) -> usize {
        self.layout.size()
    }

    /// `len` bytes at `offset`.
    ///
    /// # Safety
    ///
    /// Nothing (the kernel included) may write those bytes while the slice lives: the
    /// operation that filled them has completed and they are not handed back yet.
    pub(super) unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
        let end = offset.saturating_add(len).min(self.len());
        let start = offset.min(end);
        // SAFETY: `start..end` lies inside the allocation; the caller guarantees no
        // concurrent writer.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), end - start) }
    }

    /// Keeps the memory allocated for ever.
    pub(super) fn leak(&mut self) {
        self.leak = true;
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        if !self.leak {
            // SAFETY: allocated in `new` with this layout and not freed since.
            unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
        }
    }
}

/// A provided-buffer ring: a page-aligned array of `io_uring_buf` entries and the
/// buffers they point to. Both outlive their registration (the ring is destroyed
/// before this is dropped; `Uring` declares `ring` first).
pub(super) struct BufRing {
    entries: RawBuf,
    bufs: RawBuf,
    count: u16,
    size: usize,
    /// Local copy of the tail, published with a release store.
    tail: u16,
}

impl BufRing {
    /// `count` (a power of two) buffers of `size` bytes.
    pub(super) fn new(count: u16, size: usize) -> io::Result<BufRing> {
        let count = count.max(1).next_power_of_two();
        let entries =
            RawBuf::new((count as usize * std::mem::size_of::<types::BufRingEntry>()).max(4096))?;
        let bufs = RawBuf::new(count as usize * size)?;
        Ok(BufRing {
            entries,
            bufs,
            count,
            size,
            tail: 0,
        })
    }

    pub(super) fn count(&self) -> u16 {
        self.count
    }

    /// Address of the entry array, for registration.
    pub(super) fn entries_addr(&self) -> u64 {
        self.entries.as_ptr() as u64
    }

    /// Puts buffer `bid` back at the tail (not yet visible to the kernel).
    pub(super) fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.count - 1)) as usize;
        let addr = self.bufs.as_ptr() as u64 + bid as u64 * self.size as u64;
        let base: *mut types::BufRingEntry = self.entries.as_ptr().cast();
        // SAFETY: `idx < count` and the array holds `count` entries; the kernel reads
        // only entries before the published tail, and this one is at or after it, so
        // nothing else accesses it now.
        let e = unsafe { &mut *base.add(idx) };
        e.set_addr(addr);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes pushed buffers visible to the kernel.
    pub(super) fn publish(&self) {
        let base: *const types::BufRingEntry = self.entries.as_ptr().cast();
        // SAFETY: `base` is the ring's page-aligned entry array; its tail field (the
        // `resv` of entry 0) is read by the kernel with acquire semantics, so an atomic
        // release store orders the entry writes before the new tail.
        unsafe {
            let tail = types::BufRingEntry::tail(base) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The first `len` bytes of buffer `bid`.
    ///
    /// # Safety
    ///
    /// The kernel completed a receive into `bid` and the buffer has not been pushed back
    /// since (so the kernel cannot pick it while the slice lives).
    pub(super) unsafe fn data(&self, bid: u16, len: usize) -> &[u8] {
        // SAFETY: forwarded from the caller's guarantee.
        unsafe {
            self.bufs
                .slice(bid as usize * self.size, len.min(self.size))
        }
    }

    /// Keeps the memory for ever (the kernel may still use it).
    pub(super) fn leak(&mut self) {
        self.entries.leak();
        self.bufs.leak();
    }
}

/// The ring's table of registered send buffers (SEND_ZC with a fixed buffer), filled as
/// frame buffers are first sent: index → (address, length) of the registered memory.
#[derive(Debug, Default)]
pub(super) struct RegTable {
    slots: Vec<Option<(usize, usize)>>,
}

impl RegTable {
    pub(super) fn with_slots(n: usize) -> RegTable {
        RegTable {
            slots: vec![None; n],
        }
    }

    /// A free index, if any.
    pub(super) fn free_slot(&self) -> Option<u16> {
        self.slots
            .iter()
            .position(Option::is_none)
            .map(|i| i as u16)
    }

    pub(super) fn set(&mut self, idx: u16, addr: usize, len: usize) {
        if let Some(s) = self.slots.get_mut(idx as usize) {
            *s = Some((addr, len));
        }
    }

    /// Whether `ptr..ptr+len` lies inside registered buffer `idx`.
    pub(super) fn covers(&self, idx: u16, ptr: *const u8, len: usize) -> bool {
        self.slots
            .get(idx as usize)
            .copied()
            .flatten()
            .is_some_and(|(base, blen)| {
                let a = ptr as usize;
                a >= base && a + len <= base + blen
            })
    }
}
