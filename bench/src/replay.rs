//! Replaying the pre-encoded media in real time, as a participant's encoder would send it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::sync::broadcast;

use crate::media::dump::{LOOP, RtpDump};

/// Send instants of marked packets, for latency: (mark, instant), newest last.
pub type SendLog = Arc<Mutex<Vec<(u16, Instant)>>>;

/// Plays `dump` in a loop into `out` in real time, rewriting sequence numbers and timestamps
/// so the stream stays continuous across loops. Logs marked packets' send instants if asked.
pub async fn replay(
    dump: Arc<RtpDump>,
    out: broadcast::Sender<Bytes>,
    log: Option<SendLog>,
    video: bool,
) {
    let start = tokio::time::Instant::now();
    let loop_ts = (LOOP.as_secs_f64() * dump.clock_rate as f64) as u32;
    let mut seq: u16 = rand::random();
    let ts_base: u32 = rand::random();
    let mut last_mark = u16::MAX;
    for n in 0u32.. {
        for p in &dump.packets {
            let at = start + LOOP * n + p.at;
            tokio::time::sleep_until(at).await;
            let mut b = BytesMut::from(&p.rtp[..]);
            b[2..4].copy_from_slice(&seq.to_be_bytes());
            let ts = u32::from_be_bytes([b[4], b[5], b[6], b[7]])
                .wrapping_add(ts_base)
                .wrapping_add(loop_ts.wrapping_mul(n));
            b[4..8].copy_from_slice(&ts.to_be_bytes());
            seq = seq.wrapping_add(1);
            if let Some(log) = &log {
                // Video: the first packet of each frame; audio: the packets that start a click.
                let first_of_frame = video && p.mark != last_mark;
                if first_of_frame || (!video && p.mark == 1) {
                    log.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((p.mark, Instant::now()));
                }
            }
            last_mark = p.mark;
            if out.send(b.freeze()).is_err() {
                return; // the participant is gone
            }
        }
    }
}
