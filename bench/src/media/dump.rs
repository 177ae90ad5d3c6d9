//! The media every simulated participant replays, encoded once and cached as RTP packet dumps
//! with send offsets, so replaying costs the load generator almost nothing: 10 s of 360p30 VP8
//! at ~500 kbit/s (a still textured background with a textured "head" moving across it) whose
//! frames carry their index as blocks in the top-left corner, and 10 s of Opus with a click at
//! every whole second.
//!
//! The stamp: 10 blocks of 40x40 px along the top edge of the 640x360 source, block k white when
//! bit k of the frame index is set, then an always-white marker block; the background is dark.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use gst::prelude::*;

use super::build_err;

/// Source picture of the replayed video.
pub const SOURCE_WIDTH: u32 = 640;
/// See [`SOURCE_WIDTH`].
pub const SOURCE_HEIGHT: u32 = 360;
/// Frames per second of the replayed video.
pub const SOURCE_FPS: u32 = 30;
/// Length of one loop of the replayed media.
pub const LOOP: Duration = Duration::from_secs(10);
pub(crate) const FRAMES: u32 = SOURCE_FPS * 10;
const STAMP_BITS: u32 = 10;
const BLOCK: u32 = 40;
const VIDEO_KBPS: u32 = 500;
/// The id under which the replayed audio packets state their level (RFC 6464, a one-byte
/// extension); a client moves it to the id its connection negotiated.
pub const LEVEL_EXTENSION_ID: u8 = 1;

/// One RTP packet of a dump and when to send it, relative to the start of the loop.
#[derive(Debug, Clone)]
pub struct DumpPacket {
    /// Send offset within the loop.
    pub at: Duration,
    /// For video, the stamped index of the frame the packet belongs to; for audio, whether the
    /// packet starts a click (index 1) or not (0).
    pub mark: u16,
    /// The marshalled RTP packet as the encoder's payloader made it.
    pub rtp: Bytes,
}

/// A loop of RTP packets.
#[derive(Debug, Clone)]
pub struct RtpDump {
    /// Packets in send order.
    pub packets: Vec<DumpPacket>,
    /// RTP clock rate (90000 video, 48000 audio).
    pub clock_rate: u32,
}

/// The cached dumps, generated on first use.
#[derive(Debug, Clone)]
pub struct PreparedMedia {
    /// The stamped VP8 video.
    pub video: RtpDump,
    /// The clicking Opus audio (over a hum loud enough to count as speech).
    pub audio: RtpDump,
    /// A quiet microphone: Opus frames of a hum at -70 dBov, below any speech.
    pub quiet: RtpDump,
}

/// Loads the dumps from `cache_dir`, encoding them first if they are not there yet.
pub fn prepare(cache_dir: &Path) -> Result<PreparedMedia> {
    gst::init().map_err(|e| build_err("initialising GStreamer", e))?;
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| build_err(format!("creating {}", cache_dir.display()), e))?;
    let video_path = cache_dir.join(format!(
        "video-{SOURCE_WIDTH}x{SOURCE_HEIGHT}-{VIDEO_KBPS}k.rtpdump"
    ));
    let audio_path = cache_dir.join("audio-clicks.rtpdump");
    let quiet_path = cache_dir.join("audio-quiet.rtpdump");
    if !video_path.exists() {
        write_dump(&video_path, &encode_video()?)?;
    }
    if !audio_path.exists() {
        write_dump(&audio_path, &encode_audio(true)?)?;
    }
    if !quiet_path.exists() {
        write_dump(&quiet_path, &encode_audio(false)?)?;
    }
    Ok(PreparedMedia {
        video: read_dump(&video_path)?,
        audio: stating_levels(read_dump(&audio_path)?)?,
        quiet: stating_levels(read_dump(&quiet_path)?)?,
    })
}

/// Puts each Opus packet's level into its header (RFC 6464), as a browser does: measured on
/// the packet's own decoded audio, as the server would measure it without the extension.
fn stating_levels(mut dump: RtpDump) -> Result<RtpDump> {
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono)
        .map_err(|e| build_err("an Opus decoder for the levels", e))?;
    let mut pcm = vec![0i16; 5760];
    for p in &mut dump.packets {
        let rtp = &p.rtp[..];
        // The payloader's packets: a plain 12-byte header, no CSRC, no extension yet.
        if rtp.len() < 12 || rtp[0] & 0x1f != 0 {
            continue;
        }
        let payload = tessera::rtp::packet::payload(rtp).unwrap_or_default();
        let n = decoder
            .decode(payload, &mut pcm, false)
            .map_err(|e| build_err("decoding a replayed Opus packet", e))?;
        let level = tessera::speaking::dbov(&pcm[..n]);
        let mut with = Vec::with_capacity(rtp.len() + 8);
        with.push(rtp[0] | 0x10);
        with.extend_from_slice(&rtp[1..12]);
        // One word of one-byte elements: the level (length 1), then padding.
        with.extend_from_slice(&[0xbe, 0xde, 0, 1, LEVEL_EXTENSION_ID << 4, level, 0, 0]);
        with.extend_from_slice(&rtp[12..]);
        p.rtp = Bytes::from(with);
    }
    Ok(dump)
}

/// Where the stamp's block `k` is in a tile showing the source at `tile` (x, y, w, h), keeping
/// the aspect ratio as the compositor does.
fn block_centre(tile: (i32, i32, i32, i32), k: u32) -> (i32, i32) {
    let (x, y, w, h) = tile;
    let scale = (w as f64 / SOURCE_WIDTH as f64).min(h as f64 / SOURCE_HEIGHT as f64);
    let ox = x as f64 + (w as f64 - SOURCE_WIDTH as f64 * scale) / 2.0;
    let oy = y as f64 + (h as f64 - SOURCE_HEIGHT as f64 * scale) / 2.0;
    let cx = ox + ((k * BLOCK + BLOCK / 2) as f64) * scale;
    let cy = oy + (BLOCK / 2) as f64 * scale;
    (cx as i32, cy as i32)
}

/// Reads the stamp from a luma plane, or None if the marker is missing (no stamped tile there).
pub fn read_stamp(luma: &[u8], stride: usize, tile: (i32, i32, i32, i32)) -> Option<u16> {
    let at = |k: u32| {
        let (cx, cy) = block_centre(tile, k);
        luma.get(cy.max(0) as usize * stride + cx.max(0) as usize)
            .copied()
    };
    if at(STAMP_BITS)? < 160 {
        return None;
    }
    let mut value = 0u16;
    for k in 0..STAMP_BITS {
        if at(k)? >= 128 {
            value |= 1 << k;
        }
    }
    Some(value)
}

fn draw_frame(index: u32, texture: &[u8], texture_width: usize) -> Vec<u8> {
    let (w, h) = (SOURCE_WIDTH as usize, SOURCE_HEIGHT as usize);
    let mut frame = vec![128u8; w * h * 3 / 2];
    // A talking head, roughly: a still textured background (a room behind the speaker) and a
    // textured 192x192 "head" moving across it, so about a sixth of the picture changes every
    // frame, with real texture to encode, as from a webcam.
    for y in 0..h {
        frame[y * w..y * w + w].copy_from_slice(&texture[y * texture_width..y * texture_width + w]);
    }
    let size = 192usize;
    let t = index as f64 / FRAMES as f64 * std::f64::consts::TAU;
    let hx = ((w - size) as f64 * (0.5 + 0.45 * t.sin())) as usize;
    let hy = 60 + ((h - size - 70) as f64 * (0.5 + 0.5 * (2.0 * t).cos())) as usize;
    for y in 0..size {
        let src = (y + index as usize) % h * texture_width + w; // the other half of the texture
        frame[(hy + y) * w + hx..(hy + y) * w + hx + size]
            .copy_from_slice(&texture[src..src + size]);
    }
    for k in 0..=STAMP_BITS {
        let on = k == STAMP_BITS || index & (1 << k) != 0;
        let value = if on { 235 } else { 16 };
        for y in 0..BLOCK as usize {
            let start = y * w + (k * BLOCK) as usize;
            frame[start..start + BLOCK as usize].fill(value);
        }
    }
    frame
}

fn encode_video() -> Result<RtpDump> {
    let desc = format!(
        "appsrc name=src format=time caps=video/x-raw,format=I420,width={SOURCE_WIDTH},height={SOURCE_HEIGHT},framerate={SOURCE_FPS}/1 \
         ! vp8enc deadline=1 cpu-used=-6 threads=1 lag-in-frames=0 end-usage=cbr target-bitrate={} keyframe-max-dist=60 error-resilient=default \
         ! rtpvp8pay mtu=1200 picture-id-mode=15-bit ! appsink name=out sync=false",
        VIDEO_KBPS * 1000
    );
    let frame_ns = 1_000_000_000u64 / SOURCE_FPS as u64;
    let texture_width = (SOURCE_WIDTH * 2) as usize;
    // A fixed pseudo-random texture (xorshift), so every cache is the same media.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let texture: Vec<u8> = (0..texture_width * SOURCE_HEIGHT as usize)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Smooth-ish noise: mostly a gradient, some grain.
            (((i % texture_width) / 8) as u64 % 96 + 64 + seed % 32) as u8
        })
        .collect();
    run_encoder(
        &desc,
        90_000,
        FRAMES as usize,
        |i| {
            let mut buffer =
                gst::Buffer::from_mut_slice(draw_frame(i as u32, &texture, texture_width));
            let b = buffer.get_mut().expect("a new buffer is writable");
            b.set_pts(gst::ClockTime::from_nseconds(i as u64 * frame_ns));
            b.set_duration(gst::ClockTime::from_nseconds(frame_ns));
            buffer
        },
        |pts| (pts / frame_ns) as u16,
    )
}

/// 10 s of Opus: a talker's (`talking`: a hum at -37 dBov, speech to the server's detector,
/// with a loud click every second) or a quiet microphone's (the hum at -70 dBov, no clicks).
fn encode_audio(talking: bool) -> Result<RtpDump> {
    let hum = if talking { 0.02 } else { 0.0003 };
    let desc = "appsrc name=src format=time caps=audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved \
                ! opusenc frame-size=20 bitrate=48000 ! rtpopuspay pt=111 ! appsink name=out sync=false";
    const CHUNK: usize = 960; // 20 ms
    let chunks = (LOOP.as_millis() / 20) as usize;
    let chunk_ns = 20_000_000u64;
    run_encoder(
        desc,
        48_000,
        chunks,
        |i| {
            let mut data = Vec::with_capacity(CHUNK * 4);
            for n in 0..CHUNK {
                let t = (i * CHUNK + n) as f64 / 48_000.0;
                let in_click = talking && t.fract() < 0.02;
                // A quiet hum, and a loud 2 kHz click for the first 20 ms of every second.
                let v = if in_click {
                    0.6 * (2.0 * std::f64::consts::PI * 2000.0 * t).sin()
                } else {
                    hum * (2.0 * std::f64::consts::PI * 150.0 * t).sin()
                };
                let s = (v * i16::MAX as f64) as i16;
                data.extend_from_slice(&s.to_le_bytes());
                data.extend_from_slice(&s.to_le_bytes());
            }
            let mut buffer = gst::Buffer::from_mut_slice(data);
            let b = buffer.get_mut().expect("a new buffer is writable");
            b.set_pts(gst::ClockTime::from_nseconds(i as u64 * chunk_ns));
            b.set_duration(gst::ClockTime::from_nseconds(chunk_ns));
            buffer
        },
        |pts| {
            // The packet that holds a second's boundary holds that second's click (the encoder may
            // shift packets by its look-ahead, so boundaries need not fall on packet starts).
            let second = 1_000_000_000u64;
            let next = pts.div_ceil(second) * second;
            u16::from(talking && next - pts < chunk_ns && next < LOOP.as_nanos() as u64)
        },
    )
}

/// Pushes `count` buffers from `make` through `desc` (appsrc `src` → ... → appsink `out`) as
/// fast as it goes, and collects the RTP packets with their pts as send offsets.
fn run_encoder(
    desc: &str,
    clock_rate: u32,
    count: usize,
    make: impl Fn(usize) -> gst::Buffer,
    mark: impl Fn(u64) -> u16,
) -> Result<RtpDump> {
    let pipeline = gst::parse::launch(desc)
        .map_err(|e| build_err("building the bench encoder", e))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| build_err("bench encoder", "not a pipeline"))?;
    let _guard = NullOnDrop(pipeline.clone());
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| build_err("bench encoder", "no appsrc"))?;
    let sink = pipeline
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| build_err("bench encoder", "no appsink"))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| build_err("starting the bench encoder", e))?;
    for i in 0..count {
        src.push_buffer(make(i))
            .map_err(|e| build_err("feeding the bench encoder", e))?;
    }
    let _ = src.end_of_stream();
    let mut packets = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        let Some(buffer) = sample.buffer() else {
            continue;
        };
        let pts = buffer.pts().map_or(0, |t| t.nseconds());
        if Duration::from_nanos(pts) >= LOOP {
            // An encoder's final flush can spill past the loop; the next loop starts there.
            continue;
        }
        let map = buffer
            .map_readable()
            .map_err(|e| build_err("reading an encoded packet", e))?;
        packets.push(DumpPacket {
            at: Duration::from_nanos(pts),
            mark: mark(pts),
            rtp: Bytes::copy_from_slice(map.as_slice()),
        });
    }
    if packets.is_empty() {
        return Err(build_err("bench encoder", "produced no packets"));
    }
    Ok(RtpDump {
        packets,
        clock_rate,
    })
}

struct NullOnDrop(gst::Pipeline);

impl Drop for NullOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

fn write_dump(path: &Path, dump: &RtpDump) -> Result<()> {
    let io = |e: std::io::Error| build_err(format!("writing {}", path.display()), e);
    let tmp: PathBuf = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    f.write_all(&dump.clock_rate.to_le_bytes()).map_err(io)?;
    for p in &dump.packets {
        f.write_all(&(p.at.as_micros() as u64).to_le_bytes())
            .map_err(io)?;
        f.write_all(&p.mark.to_le_bytes()).map_err(io)?;
        f.write_all(&(p.rtp.len() as u16).to_le_bytes())
            .map_err(io)?;
        f.write_all(&p.rtp).map_err(io)?;
    }
    f.flush().map_err(io)?;
    drop(f);
    // Renamed into place only when complete, so an interrupted run never leaves half a dump.
    std::fs::rename(&tmp, path).map_err(io)
}

fn read_dump(path: &Path) -> Result<RtpDump> {
    let io = |e: std::io::Error| build_err(format!("reading {}", path.display()), e);
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io)?;
    fn take<'a>(data: &'a [u8], at: usize, n: usize, path: &Path) -> Result<&'a [u8]> {
        data.get(at..at + n)
            .ok_or_else(|| build_err(format!("reading {}", path.display()), "truncated dump"))
    }
    let clock_rate = u32::from_le_bytes(take(&data, 0, 4, path)?.try_into().expect("4 bytes"));
    let mut at = 4;
    let mut packets = Vec::new();
    while at < data.len() {
        let us = u64::from_le_bytes(take(&data, at, 8, path)?.try_into().expect("8 bytes"));
        let mark = u16::from_le_bytes(take(&data, at + 8, 2, path)?.try_into().expect("2 bytes"));
        let len = u16::from_le_bytes(take(&data, at + 10, 2, path)?.try_into().expect("2 bytes"))
            as usize;
        let rtp = Bytes::copy_from_slice(take(&data, at + 12, len, path)?);
        packets.push(DumpPacket {
            at: Duration::from_micros(us),
            mark,
            rtp,
        });
        at += 12 + len;
    }
    Ok(RtpDump {
        packets,
        clock_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_read_back_at_full_and_reduced_scale() {
        let texture = vec![100u8; (SOURCE_WIDTH * 2 * SOURCE_HEIGHT) as usize];
        let frame = draw_frame(677, &texture, (SOURCE_WIDTH * 2) as usize);
        let tile = (0, 0, SOURCE_WIDTH as i32, SOURCE_HEIGHT as i32);
        assert_eq!(read_stamp(&frame, SOURCE_WIDTH as usize, tile), Some(677));
        // No marker: no stamp.
        let plain = vec![16u8; frame.len()];
        assert_eq!(read_stamp(&plain, SOURCE_WIDTH as usize, tile), None);
    }

    #[test]
    fn prepared_media_round_trips_through_the_cache() {
        let dir = std::env::temp_dir().join(format!("tessera-bench-{}", std::process::id()));
        let media = prepare(&dir).expect("encodes the dumps");
        assert_eq!(media.video.clock_rate, 90_000);
        assert!(
            media.video.packets.len() > 300,
            "at least one packet per frame"
        );
        let marks: std::collections::HashSet<u16> =
            media.video.packets.iter().map(|p| p.mark).collect();
        assert_eq!(marks.len(), FRAMES as usize, "every frame index is there");
        let clicks = media.audio.packets.iter().filter(|p| p.mark == 1).count();
        assert_eq!(clicks, 10, "one click a second");
        // The stated levels: a talker's over the server's start threshold, a quiet
        // microphone's under its stop threshold, as the server would measure them.
        let level = |p: &DumpPacket| tessera::rtp::packet::audio_level(&p.rtp, LEVEL_EXTENSION_ID);
        let talking: Vec<u8> = media.audio.packets.iter().filter_map(level).collect();
        assert_eq!(talking.len(), media.audio.packets.len());
        let loud = talking
            .iter()
            .filter(|&&l| l <= tessera::speaking::START_DBOV)
            .count();
        assert!(
            loud * 10 >= talking.len() * 9,
            "talker's levels: {talking:?}"
        );
        let quiet: Vec<u8> = media.quiet.packets.iter().filter_map(level).collect();
        assert_eq!(quiet.len(), media.quiet.packets.len());
        assert!(
            quiet.iter().all(|&l| l > tessera::speaking::STOP_DBOV),
            "quiet levels: {quiet:?}"
        );
        let again = prepare(&dir).expect("reads the cache");
        assert_eq!(again.video.packets.len(), media.video.packets.len());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
