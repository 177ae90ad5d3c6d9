//! Pure measurements on what a test client received: colours in decoded frames and the level of
//! a tone in decoded audio.
//!
//! Nothing here touches GStreamer, webrtc-rs or the clock, so the numbers can be checked against
//! synthesised input (the unit tests at the bottom). Tests compare colours with a tolerance
//! because every picture has been through RGB -> I420 -> VP8 -> I420 -> RGB, which moves each
//! channel by a few levels; and they measure tones with a windowed Goertzel filter because the
//! mix-minus tests need to tell "440 Hz is present" from "440 Hz leaked from a loud 660 Hz".

use std::f32::consts::PI;
use std::time::{Duration, Instant};

/// An RGB colour, one byte per channel.
pub type Rgb = (u8, u8, u8);

/// Named colours the tests send. A solid `videotestsrc` colour survives the VP8 round trip to
/// within a few levels per channel, so these are what the receiver sees too.
pub mod colours {
    use super::Rgb;

    pub const RED: Rgb = (255, 0, 0);
    pub const GREEN: Rgb = (0, 255, 0);
    pub const BLUE: Rgb = (0, 0, 255);
    pub const YELLOW: Rgb = (255, 255, 0);
    pub const CYAN: Rgb = (0, 255, 255);
    pub const MAGENTA: Rgb = (255, 0, 255);
    pub const WHITE: Rgb = (255, 255, 255);
    pub const BLACK: Rgb = (0, 0, 0);

    /// Every named colour, for [`super::classify_colour`].
    pub const PALETTE: &[(&str, Rgb)] = &[
        ("red", RED),
        ("green", GREEN),
        ("blue", BLUE),
        ("yellow", YELLOW),
        ("cyan", CYAN),
        ("magenta", MAGENTA),
        ("white", WHITE),
        ("black", BLACK),
    ];
}

/// Default per-channel tolerance for [`is_close`]: generous enough for the codec round trip
/// (a few levels, more at tile edges), tight enough that no two [`colours::PALETTE`] entries
/// can be confused.
pub const COLOUR_TOLERANCE: u8 = 48;

/// One decoded picture, tightly packed RGB (no row padding), row-major from the top left.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    // The pixel data would bury any assertion message; the size and centre colour say enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("centre", &pixel_at(self, self.width / 2, self.height / 2))
            .finish()
    }
}

impl Frame {
    /// A frame filled with one colour (for tests of the analysis itself).
    pub fn solid(width: u32, height: u32, colour: Rgb) -> Frame {
        let mut data = Vec::with_capacity((width * height * 3) as usize);
        for _ in 0..width * height {
            data.extend_from_slice(&[colour.0, colour.1, colour.2]);
        }
        Frame {
            width,
            height,
            data,
        }
    }

    /// The whole frame as a rectangle.
    pub fn full(&self) -> Rect {
        Rect::new(0, 0, self.width, self.height)
    }

    /// The centre pixel's colour.
    pub fn centre(&self) -> Rgb {
        pixel_at(self, self.width / 2, self.height / 2)
    }
}

/// A rectangle in pixel coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub const fn new(x: u32, y: u32, width: u32, height: u32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    /// The middle half of this rectangle in each dimension: a tile's colour measured there is
    /// not disturbed by borders, scaling or the codec's smearing across tile edges.
    pub fn inner(self) -> Rect {
        Rect::new(
            self.x + self.width / 4,
            self.y + self.height / 4,
            (self.width / 2).max(1),
            (self.height / 2).max(1),
        )
    }
}

/// The colour of the pixel at (`x`, `y`).
///
/// # Panics
/// If the point is outside the frame: that is a bug in the test, not a measurement.
pub fn pixel_at(frame: &Frame, x: u32, y: u32) -> Rgb {
    assert!(
        x < frame.width && y < frame.height,
        "pixel ({x}, {y}) is outside the {}x{} frame",
        frame.width,
        frame.height
    );
    let i = ((y * frame.width + x) * 3) as usize;
    (frame.data[i], frame.data[i + 1], frame.data[i + 2])
}

/// The mean colour over `rect`, clipped to the frame. An empty intersection is black.
pub fn average_colour(frame: &Frame, rect: Rect) -> Rgb {
    let x_end = (rect.x.saturating_add(rect.width)).min(frame.width);
    let y_end = (rect.y.saturating_add(rect.height)).min(frame.height);
    let (mut r, mut g, mut b, mut n) = (0u64, 0u64, 0u64, 0u64);
    for y in rect.y..y_end {
        let row = (y * frame.width * 3) as usize;
        for x in rect.x..x_end {
            let i = row + (x * 3) as usize;
            r += u64::from(frame.data[i]);
            g += u64::from(frame.data[i + 1]);
            b += u64::from(frame.data[i + 2]);
            n += 1;
        }
    }
    if n == 0 {
        return (0, 0, 0);
    }
    // Rounded mean; each channel mean is at most 255 so the casts cannot truncate.
    (
        ((r + n / 2) / n) as u8,
        ((g + n / 2) / n) as u8,
        ((b + n / 2) / n) as u8,
    )
}

/// Whether every channel of `colour` is within `tolerance` of `expected`.
pub fn is_close(colour: Rgb, expected: Rgb, tolerance: u8) -> bool {
    colour.0.abs_diff(expected.0) <= tolerance
        && colour.1.abs_diff(expected.1) <= tolerance
        && colour.2.abs_diff(expected.2) <= tolerance
}

/// The name of the [`colours::PALETTE`] entry `colour` is close to (within
/// [`COLOUR_TOLERANCE`]), or `None` if it is close to none of them.
pub fn classify_colour(colour: Rgb) -> Option<&'static str> {
    colours::PALETTE
        .iter()
        .find(|(_, reference)| is_close(colour, *reference, COLOUR_TOLERANCE))
        .map(|(name, _)| *name)
}

/// The floor the level functions report instead of minus infinity for digital silence.
pub const SILENCE_DB: f32 = -200.0;

fn to_db(amplitude: f32) -> f32 {
    if amplitude <= 0.0 {
        SILENCE_DB
    } else {
        (20.0 * amplitude.log10()).max(SILENCE_DB)
    }
}

/// The amplitude of the `hz` component of `samples`, in dB relative to full scale: a sine of
/// peak amplitude 1.0 at exactly `hz` reads 0 dB, one of amplitude 0.5 reads -6 dB.
///
/// A Goertzel filter over a Hann-windowed block. The window costs frequency resolution (about
/// 4 * rate / len Hz of main lobe) but pushes the leakage from a tone two hundred Hz away below
/// -80 dB for a 100 ms block, which is what lets a test say a tone is absent while another is
/// loud. Give it at least 50 ms of samples.
pub fn tone_level_db(samples: &[f32], rate: u32, hz: f32) -> f32 {
    let n = samples.len();
    if n < 2 {
        return SILENCE_DB;
    }
    let omega = 2.0 * PI * hz / rate as f32;
    let coeff = 2.0 * omega.cos();
    // f64 accumulators: a few seconds of samples would otherwise lose the small tones to
    // rounding in the recurrence.
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut window_sum = 0.0f64;
    for (i, &x) in samples.iter().enumerate() {
        let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
        window_sum += w;
        let s0 = f64::from(x) * w + f64::from(coeff) * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - f64::from(coeff) * s1 * s2;
    // |X| = A * sum(w) / 2 for a sine of amplitude A, so A = 2 |X| / sum(w).
    let amplitude = 2.0 * power.max(0.0).sqrt() / window_sum;
    to_db(amplitude as f32)
}

/// The RMS level of `samples` in dB relative to full scale (a full-scale sine reads -3 dB).
pub fn rms_db(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return SILENCE_DB;
    }
    let sum: f64 = samples.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    to_db((sum / samples.len() as f64).sqrt() as f32)
}

/// A sine of `amplitude` at `hz`, `len` samples at `rate` (for tests).
pub fn sine(hz: f32, amplitude: f32, rate: u32, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| amplitude * (2.0 * PI * hz * i as f32 / rate as f32).sin())
        .collect()
}

/// The fewest frames decoded in any one-second window (sliding by 100 ms) between `from`
/// and `to`, given the decode instants.
pub fn min_fps(decoded: &[Instant], from: Instant, to: Instant) -> f64 {
    let mut min = f64::MAX;
    let mut start = from;
    while start + Duration::from_secs(1) <= to {
        let end = start + Duration::from_secs(1);
        let n = decoded.iter().filter(|t| **t >= start && **t < end).count();
        min = min.min(n as f64);
        start += Duration::from_millis(100);
    }
    min
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;

    #[test]
    fn pixel_and_average_colour() {
        let mut frame = Frame::solid(8, 4, colours::BLUE);
        // Paint the right half red.
        for y in 0..4 {
            for x in 4..8 {
                let i = ((y * 8 + x) * 3) as usize;
                frame.data[i..i + 3].copy_from_slice(&[255, 0, 0]);
            }
        }
        assert_eq!(pixel_at(&frame, 0, 0), colours::BLUE);
        assert_eq!(pixel_at(&frame, 7, 3), colours::RED);
        assert_eq!(average_colour(&frame, Rect::new(4, 0, 4, 4)), colours::RED);
        assert_eq!(average_colour(&frame, frame.full()), (128, 0, 128));
        // Clipped to the frame, and an empty intersection is black rather than a panic.
        assert_eq!(
            average_colour(&frame, Rect::new(6, 2, 100, 100)),
            colours::RED
        );
        assert_eq!(average_colour(&frame, Rect::new(20, 20, 4, 4)), (0, 0, 0));
        assert_eq!(Rect::new(0, 0, 8, 4).inner(), Rect::new(2, 1, 4, 2));
    }

    #[test]
    fn colour_classification() {
        assert!(is_close((250, 10, 3), colours::RED, 16));
        assert!(!is_close((200, 10, 3), colours::RED, 16));
        assert_eq!(classify_colour((240, 12, 20)), Some("red"));
        assert_eq!(classify_colour((20, 230, 30)), Some("green"));
        assert_eq!(classify_colour((128, 128, 128)), None);
        // No two palette entries are within tolerance of each other.
        for (i, (a, ca)) in colours::PALETTE.iter().enumerate() {
            for (b, cb) in &colours::PALETTE[i + 1..] {
                assert!(!is_close(*ca, *cb, COLOUR_TOLERANCE), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn goertzel_reads_tone_amplitude() {
        let half = sine(440.0, 0.5, RATE, RATE as usize / 10);
        let level = tone_level_db(&half, RATE, 440.0);
        assert!(
            (level - (-6.02)).abs() < 0.2,
            "0.5 amplitude read {level} dB"
        );

        let full = sine(1000.0, 1.0, RATE, RATE as usize / 5);
        let level = tone_level_db(&full, RATE, 1000.0);
        assert!(level.abs() < 0.2, "full scale read {level} dB");
    }

    #[test]
    fn goertzel_rejects_other_tones_and_silence() {
        // A loud 660 Hz tone must not read as 440 Hz: this is the mix-minus measurement.
        let other = sine(660.0, 0.9, RATE, RATE as usize / 10);
        let leak = tone_level_db(&other, RATE, 440.0);
        assert!(leak < -70.0, "660 Hz leaked into 440 Hz at {leak} dB");

        // Two tones mixed: each reads at its own level.
        let a = sine(440.0, 0.25, RATE, RATE as usize / 10);
        let b = sine(660.0, 0.5, RATE, RATE as usize / 10);
        let mix: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert!((tone_level_db(&mix, RATE, 440.0) - (-12.04)).abs() < 0.3);
        assert!((tone_level_db(&mix, RATE, 660.0) - (-6.02)).abs() < 0.3);

        assert_eq!(tone_level_db(&vec![0.0; 4800], RATE, 440.0), SILENCE_DB);
        assert_eq!(tone_level_db(&[], RATE, 440.0), SILENCE_DB);
    }

    #[test]
    fn rms() {
        let full = sine(440.0, 1.0, RATE, RATE as usize);
        assert!((rms_db(&full) - (-3.01)).abs() < 0.05);
        assert_eq!(rms_db(&[0.0; 10]), SILENCE_DB);
    }
}
