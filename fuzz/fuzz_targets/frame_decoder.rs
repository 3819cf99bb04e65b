//! Feeds arbitrary bytes to the streaming frame decoder in fuzzer-chosen chunks and
//! parses every frame it yields as a control reply and as a control request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lnc_uring::proto::{Checksum, FrameDecoder, FrameKind, Request, Response};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the checksum and the chunk size, the rest is the stream.
    let Some((&ctl, stream)) = data.split_first() else { return };
    let checksum = if ctl & 1 == 0 { Checksum::Ieee } else { Checksum::Castagnoli };
    let chunk = usize::from(ctl >> 1) + 1;
    let mut dec = FrameDecoder::with_max_payload(checksum, 1 << 16);
    for piece in stream.chunks(chunk) {
        let mut frames = dec.feed(piece);
        while let Some(frame) = frames.next_frame() {
            let Ok(frame) = frame else { break };
            let _ = Response::parse(&frame);
            if let FrameKind::Control(code) = frame.kind() {
                let _ = Request::parse(code, frame.payload);
            }
        }
    }
    assert!(dec.buffered() <= 44 + (1 << 16) + stream.len());
});
