//! The second baseline: the same media work done by plain `gst-launch-1.0` pipelines, with no
//! tessera code at all, so the table shows how close the server is to the cost of the media
//! itself. Each run is one `gst-launch-1.0` process reading the replayed media from files
//! (`crate::media::files`), paced in real time by its sinks (`sync=true`), whose CPU is
//! measured over the window after a short warm-up.
//!
//! What a room is here, per row:
//! - a video room of N: N VP8 decodes of the 360p clip into a compositor (the server's tiles,
//!   1280x720 at 30 fps), one VP8 encode with the server's settings, and audio mix-minus for
//!   everyone (N Opus decodes, N mixers of the other N-1, N Opus encodes), each payloaded;
//! - an audio-only room of N where T talk: the T talkers decoded, a mix-minus for each talker
//!   and one mix of all talkers for the listeners (T+1 Opus encodes); the quiet microphones cost
//!   nothing. This is the least work that gives every listener both voices and no talker its
//!   own (everyone talking: the naive mix-minus for N).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use tessera::config::Config;
use tessera::metrics::cpu_seconds;

use crate::media::files::MediaFiles;

/// What the raw pipelines do for each room.
#[derive(Clone, Copy)]
pub enum RawRoom {
    /// A video room of this many participants (everyone talks, as in the server's video rooms).
    Video(usize),
    /// An audio-only room of `size` where `talkers` talk.
    Audio { size: usize, talkers: usize },
}

/// Seconds of media the files hold: the longest window plus warm-up, with room to spare.
pub const FILE_LOOPS: u32 = 8;

/// CPU (in cores) of `rooms` rooms through raw gst-launch pipelines over `window`.
pub fn raw_cores(files: &MediaFiles, rooms: usize, room: RawRoom, window: Duration) -> Result<f64> {
    let description: Vec<String> = (0..rooms)
        .flat_map(|r| room_description(files, r, room))
        .collect();
    let mut child = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(description.iter().flat_map(|part| part.split_whitespace()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting gst-launch-1.0")?;
    let result = measure(&mut child, window);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn measure(child: &mut Child, window: Duration) -> Result<f64> {
    std::thread::sleep(Duration::from_secs(3)); // warm-up: files opened, first keyframes
    let pid = child.id();
    let (c0, t0) = (cpu_seconds(Some(pid)), std::time::Instant::now());
    std::thread::sleep(window);
    let cores = (cpu_seconds(Some(pid)) - c0) / t0.elapsed().as_secs_f64();
    if let Some(status) = child.try_wait()? {
        anyhow::bail!("gst-launch-1.0 ended early ({status}): its pipeline failed");
    }
    Ok(cores)
}

/// The gst-launch description of room `r`, as parts (each a chain).
fn room_description(files: &MediaFiles, r: usize, room: RawRoom) -> Vec<String> {
    let config = Config::default();
    let audio_bps = config.mix.audio_kbps * 1000;
    let mut parts = Vec::new();
    let (size, talkers) = match room {
        RawRoom::Video(size) => (size, size),
        RawRoom::Audio { size, talkers } => (size, talkers.min(size)),
    };
    if let RawRoom::Video(_) = room {
        let (w, h) = (config.mix.width, config.mix.height);
        let tiles = tessera::room::layout::tiles(size, w, h);
        let pads: String = tiles
            .iter()
            .enumerate()
            .map(|(i, t)| {
                format!(
                    " sink_{i}::xpos={} sink_{i}::ypos={} sink_{i}::width={} sink_{i}::height={}",
                    t.x, t.y, t.width, t.height
                )
            })
            .collect();
        parts.push(format!(
            "compositor name=c{r} background=black{pads} \
             ! video/x-raw,format=I420,width={w},height={h},framerate=30/1 \
             ! vp8enc deadline=1 cpu-used=-6 threads=1 lag-in-frames=0 end-usage=cbr \
               target-bitrate=1900000 keyframe-max-dist=300 error-resilient=default \
               buffer-size=1000 buffer-initial-size=500 buffer-optimal-size=600 \
               max-quantizer=63 dropframe-threshold=30 max-intra-bitrate=300 \
             ! rtpvp8pay mtu=1200 ! fakesink sync=true"
        ));
        for i in 0..size {
            parts.push(format!(
                "filesrc location={} ! matroskademux ! vp8dec threads=1 ! c{r}.sink_{i}",
                files.video.display()
            ));
        }
    }
    // Each talker's voice, decoded once and shared by the mixes that carry it.
    for i in 0..talkers {
        parts.push(format!(
            "filesrc location={} ! matroskademux ! opusdec ! audioconvert ! audioresample \
             ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! tee name=v{r}x{i}",
            files.audio.display()
        ));
    }
    let encode = format!(
        "! audio/x-raw,format=S16LE,rate=48000,channels=1 \
         ! opusenc bitrate={audio_bps} frame-size=20 audio-type=voice complexity=5 \
         ! rtpopuspay ! fakesink sync=true"
    );
    // A mix-minus for each talker (the others' voices), and one of all of them for listeners.
    let mut mixes: Vec<Vec<usize>> = (0..talkers)
        .map(|j| (0..talkers).filter(|&i| i != j).collect())
        .collect();
    if talkers < size {
        mixes.push((0..talkers).collect());
    }
    for (m, voices) in mixes.iter().enumerate() {
        if voices.is_empty() {
            continue; // a lone talker hears nobody: no mix to make
        }
        parts.push(format!("audiomixer name=m{r}x{m} {encode}"));
        for i in voices {
            parts.push(format!("v{r}x{i}. ! queue ! m{r}x{m}."));
        }
    }
    parts
}
