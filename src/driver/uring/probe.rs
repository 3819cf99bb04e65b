//! What this kernel's io_uring can do, found by trying each feature once per process on a
//! throwaway ring and a loopback TCP pair. The opcode probe is not enough: multishot
//! receive shares its opcode with plain receive (5.19 accepts the opcode and refuses the
//! flag), and SEND_ZC's usage report (6.2) is a flag of an opcode that exists since 6.0.
//!
//! The backend uses a feature only if it is here and not masked by configuration (the
//! test hook that runs every fallback path on a kernel that has everything).

use std::fmt;
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types, IoUring, Probe};

use super::bufs::BufRing;

/// A set of io_uring features.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct Features(pub(crate) u32);

/// The ring runs completions only when its thread enters the kernel
/// (SINGLE_ISSUER | DEFER_TASKRUN, 6.1).
pub(crate) const DEFER_TASKRUN: u32 = 1 << 0;
/// Registered (fixed) files (sparse table, 5.19).
pub(crate) const FIXED_FILES: u32 = 1 << 1;
/// Provided-buffer rings (5.19).
pub(crate) const BUF_RING: u32 = 1 << 2;
/// Multishot receive (6.0).
pub(crate) const RECV_MULTISHOT: u32 = 1 << 3;
/// SEND_ZC (6.0).
pub(crate) const SEND_ZC: u32 = 1 << 4;
/// SEND_ZC reports whether the kernel copied anyway (6.2).
pub(crate) const ZC_REPORT_USAGE: u32 = 1 << 5;
/// A sparse table of registered buffers, filled later (5.19).
pub(crate) const SPARSE_BUFFERS: u32 = 1 << 6;
/// Cancel every operation on a file at once (5.19).
pub(crate) const CANCEL_FD: u32 = 1 << 7;
/// Waits with a timeout argument (5.11).
pub(crate) const EXT_ARG: u32 = 1 << 8;

const NAMES: [(u32, &str); 9] = [
    (DEFER_TASKRUN, "defer-taskrun"),
    (FIXED_FILES, "fixed-files"),
    (BUF_RING, "buffer-ring"),
    (RECV_MULTISHOT, "multishot-recv"),
    (SEND_ZC, "send-zc"),
    (ZC_REPORT_USAGE, "zc-report-usage"),
    (SPARSE_BUFFERS, "sparse-buffers"),
    (CANCEL_FD, "cancel-fd"),
    (EXT_ARG, "ext-arg"),
];

impl Features {
    pub(crate) fn has(self, f: u32) -> bool {
        self.0 & f == f
    }

    pub(crate) fn without(self, mask: u32) -> Features {
        Features(self.0 & !mask)
    }

    /// Parses a comma-separated list of feature names (for the test hook).
    pub(crate) fn parse_mask(list: &str) -> Result<u32, String> {
        let mut m = 0;
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            m |= NAMES
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(b, _)| *b)
                .ok_or_else(|| format!("unknown io_uring feature {name:?}"))?;
        }
        Ok(m)
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = NAMES
            .iter()
            .filter(|(b, _)| self.has(*b))
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("basic")
        } else {
            f.write_str(&names.join(" "))
        }
    }
}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Features({self})")
    }
}

/// The features of this kernel (probed once), or why io_uring cannot be used at all.
pub(crate) fn features() -> io::Result<Features> {
    static CACHE: OnceLock<Result<Features, (io::ErrorKind, String)>> = OnceLock::new();
    CACHE
        .get_or_init(|| run().map_err(|e| (e.kind(), e.to_string())))
        .clone()
        .map_err(|(k, m)| io::Error::new(k, m))
}

/// Builds a ring with the best flags this kernel accepts.
pub(crate) fn build_ring(entries: u32, cq: u32, defer: bool) -> io::Result<IoUring> {
    if defer {
        let full = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_cqsize(cq)
            .build(entries);
        match full {
            Ok(r) => return Ok(r),
            Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
            Err(_) => {}
        }
    }
    // Kernels before 6.1 reject DEFER_TASKRUN; before 5.19 COOP_TASKRUN.
    IoUring::builder().setup_cqsize(cq).build(entries)
}

const UD_RECV: u64 = 1;
const UD_ZC: u64 = 2;
const UD_ZC_USAGE: u64 = 3;
const UD_CANCEL: u64 = 4;
/// Marks a logged completion already returned by `wait_for`.
const TAKEN: u64 = 1 << 63;

fn run() -> io::Result<Features> {
    // Memory the probe operations use is declared before the ring, so it outlives it.
    let payload: Box<[u8; 1]> = Box::new([0x5A]);
    let mut bufring = BufRing::new(4, 4096).ok();
    let mut f = 0;
    let ring = match build_ring(16, 32, true) {
        Ok(r) => {
            f |= DEFER_TASKRUN;
            r
        }
        Err(_) => build_ring(16, 32, false)?,
    };
    if !ring.params().is_setup_single_issuer() {
        f &= !DEFER_TASKRUN;
    }
    if ring.params().is_feature_ext_arg() {
        f |= EXT_ARG;
    }
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for code in [
        opcode::SendMsg::CODE,
        opcode::Recv::CODE,
        opcode::Connect::CODE,
        opcode::LinkTimeout::CODE,
        opcode::AsyncCancel::CODE,
        opcode::Read::CODE,
        opcode::Timeout::CODE,
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring lacks opcode {code}"),
            ));
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    client.set_nodelay(true)?;

    if ring.submitter().register_files_sparse(1).is_ok()
        && ring
            .submitter()
            .register_files_update(0, &[server.as_raw_fd()])
            .is_ok()
    {
        f |= FIXED_FILES;
    }
    if let Some(br) = bufring.as_mut() {
        for bid in 0..br.count() {
            br.push(bid);
        }
        br.publish();
        // SAFETY: the entry array is a live page-aligned allocation of `count` entries
        // that outlives the ring (declared before it).
        let ok = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(br.entries_addr(), br.count(), 0, 0)
        }
        .is_ok();
        if ok {
            f |= BUF_RING;
        }
    }
    let mut ring = ring;
    let mut log = Vec::new();
    let mut recv_armed = false;
    let mut zc_lost = false;
    if f & BUF_RING != 0 {
        let e = opcode::RecvMulti::new(types::Fd(server.as_raw_fd()), 0)
            .build()
            .user_data(UD_RECV);
        // SAFETY: the receive writes only into the registered buffer ring, which outlives
        // the ring; the socket stays open until after the ring is dropped.
        if unsafe { ring.submission().push(&e) }.is_ok() {
            recv_armed = true;
            client.write_all(b"x")?;
            if let Some((res, flags)) = wait_for(&mut ring, &mut log, UD_RECV, false) {
                if res == 1 && cqueue::more(flags) && cqueue::buffer_select(flags).is_some() {
                    f |= RECV_MULTISHOT;
                }
            }
        }
    }
    if probe.is_supported(opcode::SendZc::CODE) {
        for (ud, usage) in [(UD_ZC, false), (UD_ZC_USAGE, true)] {
            let mut b = opcode::SendZc::new(types::Fd(client.as_raw_fd()), payload.as_ptr(), 1);
            if usage {
                b = b.zc_flags(super::IORING_SEND_ZC_REPORT_USAGE);
            }
            // SAFETY: `payload` is boxed, declared before the ring and never written;
            // the socket stays open until after the ring is dropped.
            if unsafe { ring.submission().push(&b.build().user_data(ud)) }.is_err() {
                break;
            }
            let Some((res, flags)) = wait_for(&mut ring, &mut log, ud, false) else {
                zc_lost = true;
                break;
            };
            if res == 1 {
                f |= if usage { ZC_REPORT_USAGE } else { SEND_ZC };
            }
            if cqueue::more(flags) && wait_for(&mut ring, &mut log, ud, true).is_none() {
                zc_lost = true;
                break;
            }
        }
        if f & ZC_REPORT_USAGE != 0 && f & SEND_ZC == 0 {
            f &= !ZC_REPORT_USAGE;
        }
    }
    if ring.submitter().register_buffers_sparse(1).is_ok() {
        f |= SPARSE_BUFFERS;
        let _ = ring.submitter().unregister_buffers();
    }
    let cancel =
        opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(server.as_raw_fd())).all())
            .build()
            .user_data(UD_CANCEL);
    // SAFETY: a cancel request references no memory.
    if unsafe { ring.submission().push(&cancel) }.is_ok() {
        if let Some((res, _)) = wait_for(&mut ring, &mut log, UD_CANCEL, false) {
            // Supported: it cancelled the multishot receive (a count), or found nothing.
            if res >= 0 || res == -libc::ENOENT {
                f |= CANCEL_FD;
            }
        }
    }
    // Let the receive end: a closed peer completes it if the cancel did not.
    let recv_ended = |log: &[(u64, i32, u32)]| {
        log.iter()
            .any(|&(ud, _, flags)| ud & !TAKEN == UD_RECV && !cqueue::more(flags))
    };
    if recv_armed && !recv_ended(&log) {
        drop(client);
        while wait_for(&mut ring, &mut log, UD_RECV, false).is_some() {
            if recv_ended(&log) {
                break;
            }
        }
    }
    let leak = zc_lost || (recv_armed && !recv_ended(&log));
    drop(ring);
    if leak {
        // An operation may not have completed: keep its memory for ever.
        if let Some(br) = bufring.as_mut() {
            br.leak();
        }
        std::mem::forget(payload);
    }
    Ok(Features(f))
}

/// Waits up to a second for a completion of `ud` (or, with `notif`, its notification)
/// not taken yet; every completion seen is kept in `log` (taken ones are marked).
fn wait_for(
    ring: &mut IoUring,
    log: &mut Vec<(u64, i32, u32)>,
    ud: u64,
    notif: bool,
) -> Option<(i32, u32)> {
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        if let Some(e) = log
            .iter_mut()
            .find(|e| e.0 == ud && cqueue::notif(e.2) == notif)
        {
            e.0 |= TAKEN;
            return Some((e.1, e.2));
        }
        let to_submit = ring.submission().len() as u32;
        // SAFETY: no argument struct is passed, so the kernel reads nothing; GETEVENTS
        // with no minimum runs deferred completions without waiting.
        let _ = unsafe {
            ring.submitter().enter::<libc::sigset_t>(
                to_submit,
                0,
                super::IORING_ENTER_GETEVENTS,
                None,
            )
        };
        log.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        if log.iter().any(|e| e.0 == ud && cqueue::notif(e.2) == notif) {
            continue;
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_parse_and_print() {
        let m = Features::parse_mask("multishot-recv, send-zc").unwrap();
        assert_eq!(m, RECV_MULTISHOT | SEND_ZC);
        assert!(Features::parse_mask("warp-drive").is_err());
        let f = Features(DEFER_TASKRUN | SEND_ZC).without(SEND_ZC);
        assert_eq!(f.to_string(), "defer-taskrun");
    }

    #[test]
    fn this_kernel_is_probed_once_and_consistently() {
        // Whatever the kernel, the answer is stable (cached) and self-consistent.
        if let Ok(f) = features() {
            assert_eq!(features().unwrap(), f);
            assert!(!f.has(RECV_MULTISHOT) || f.has(BUF_RING));
            assert!(!f.has(ZC_REPORT_USAGE) || f.has(SEND_ZC));
        }
    }
}
