//! The replayed media as files that plain `gst-launch-1.0` reads (Matroska, the encoded frames
//! of the dumps looped end to end), for the raw-pipeline baseline (`crate::raw`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use gst::prelude::*;

use super::build_err;
use super::dump::{LOOP, PreparedMedia, RtpDump};

/// The media files: the talking head's VP8, a talker's and a quiet microphone's Opus.
pub struct MediaFiles {
    pub video: PathBuf,
    pub audio: PathBuf,
    pub quiet: PathBuf,
}

/// Writes (once) files of `loops` loops of each dump into `cache_dir`.
pub fn media_files(cache_dir: &Path, media: &PreparedMedia, loops: u32) -> Result<MediaFiles> {
    gst::init().map_err(|e| build_err("initialising GStreamer", e))?;
    let file = |name: &str| cache_dir.join(format!("{name}-{loops}loops.mkv"));
    let files = MediaFiles {
        video: file("video"),
        audio: file("audio"),
        quiet: file("quiet"),
    };
    let video_caps = "application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000";
    let audio_caps =
        "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111";
    for (path, dump, caps, depay) in [
        (&files.video, &media.video, video_caps, "rtpvp8depay"),
        (&files.audio, &media.audio, audio_caps, "rtpopusdepay"),
        (&files.quiet, &media.quiet, audio_caps, "rtpopusdepay"),
    ] {
        if !path.exists() {
            write_file(path, dump, caps, depay, loops)?;
        }
    }
    Ok(files)
}

/// Depayloads `loops` loops of `dump` into a Matroska file at `path`, each packet at its send
/// offset, with sequence numbers and RTP timestamps running on across loops (a jump back would
/// read as a restart or as late packets).
fn write_file(path: &Path, dump: &RtpDump, caps: &str, depay: &str, loops: u32) -> Result<()> {
    let context = || format!("writing {}", path.display());
    let partial = path.with_extension("partial");
    let desc = format!(
        "appsrc name=src format=time caps=\"{caps}\" ! {depay} ! matroskamux \
         ! filesink location=\"{}\"",
        partial.display()
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| build_err(context(), e))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| build_err(context(), "not a pipeline"))?;
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| build_err(context(), "no appsrc"))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| build_err(context(), e))?;
    let per_loop_ts = (LOOP.as_secs_f64() * f64::from(dump.clock_rate)) as u32;
    let mut seq: u16 = 0;
    let result = (|| {
        for l in 0..loops {
            for p in &dump.packets {
                let mut rtp = p.rtp.to_vec();
                if rtp.len() < 12 {
                    continue;
                }
                rtp[2..4].copy_from_slice(&seq.to_be_bytes());
                seq = seq.wrapping_add(1);
                let ts = u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]])
                    .wrapping_add(l * per_loop_ts);
                rtp[4..8].copy_from_slice(&ts.to_be_bytes());
                let mut buffer = gst::Buffer::from_mut_slice(rtp);
                let at = LOOP * l + p.at;
                buffer
                    .get_mut()
                    .expect("a new buffer is writable")
                    .set_pts(gst::ClockTime::from_nseconds(at.as_nanos() as u64));
                src.push_buffer(buffer)
                    .map_err(|e| build_err(context(), e))?;
            }
        }
        let _ = src.end_of_stream();
        let bus = pipeline
            .bus()
            .ok_or_else(|| build_err(context(), "no bus"))?;
        match bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            Some(m) if m.type_() == gst::MessageType::Eos => Ok(()),
            Some(m) => Err(build_err(context(), format!("{m:?}"))),
            None => Err(build_err(context(), "no end of stream within 60 s")),
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    std::fs::rename(&partial, path).map_err(|e| build_err(context(), e))?;
    Ok(())
}
