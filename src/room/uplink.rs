//! Tile-sized uplinks: the bitrate each video sender is told (REMB) it may send, from the size
//! of its tile in the composite. A pure function; the room applies it after every reflow and
//! the peer repeats it to the sender every second (see `peer::uplink`).
//!
//! The server scales every input into its tile and re-encodes the composite, so detail beyond
//! what the tile shows is decoded here and thrown away: a 3x3 tile on a 720p canvas is 426x240,
//! and a camera sending it 2.5 Mbit/s of 720p costs its own encoder, its uplink and this
//! server's decoder for nothing. Told the tile's bitrate, a browser lowers its resolution
//! itself (libwebrtc adapts the resolution to the bitrate it may send).

use crate::types::Rect;

/// Bits per pixel per frame a tile is given: about what the server's own outputs spend
/// (2 Mbit/s for 1280x720 at 30 fps is 0.072; 600 kbit/s for 640x360 is 0.087).
const BITS_PER_PIXEL: f64 = 0.08;

/// Never less than this for the video, however small the tile: below it a browser's encoder
/// stops before it scales down (libwebrtc's VP8 floor is 30 kbit/s).
const MIN_VIDEO_BPS: u64 = 64_000;

/// Added for the sender's audio: REMB caps everything the sender sends, and Opus voice at the
/// browsers' default rate takes ~32 kbit/s (a sender without audio just has that much slack).
const AUDIO_BPS: u64 = 32_000;

/// What a sender whose picture fills `tile` at `fps` may send in all, in bits per second.
pub fn tile_bitrate(tile: Rect, fps: u32) -> u64 {
    let pixels = f64::from(tile.width.max(0)) * f64::from(tile.height.max(0));
    let video = (pixels * f64::from(fps) * BITS_PER_PIXEL) as u64;
    video.max(MIN_VIDEO_BPS) + AUDIO_BPS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::layout;

    /// The bitrate of the first tile of a grid of `count` on a 720p canvas at 30 fps.
    fn first_tile(count: usize) -> u64 {
        tile_bitrate(layout::tiles(count, 1280, 720)[0], 30)
    }

    #[test]
    fn a_tile_gets_what_its_pixels_need() {
        // Alone: the whole canvas, about the high tier's bitrate.
        assert_eq!(first_tile(1), 2_211_840 + 32_000);
        // 2x2: a 640x360 tile, about the low tier's.
        assert_eq!(first_tile(4), 552_960 + 32_000);
        // 3x3: 426x240 (edges rounded to even pixels), under 300 kbit/s in all.
        assert!(
            (250_000..300_000).contains(&first_tile(9)),
            "{}",
            first_tile(9)
        );
        // Each step down the grid asks for less.
        let steps: Vec<u64> = [1, 2, 4, 6, 9, 16].map(first_tile).to_vec();
        assert!(steps.windows(2).all(|w| w[0] > w[1]), "{steps:?}");
    }

    #[test]
    fn a_tiny_tile_still_gets_the_floor() {
        let tiny = Rect {
            x: 0,
            y: 0,
            width: 16,
            height: 16,
        };
        assert_eq!(tile_bitrate(tiny, 30), MIN_VIDEO_BPS + AUDIO_BPS);
    }
}
