//! H.264 levels and `profile-level-id`, as SDP uses them (pure).
//!
//! RFC 6184 §8.1: `profile-level-id` is three bytes in hex, `profile_idc`, `profile-iop`
//! (the constraint flags) and `level_idc`. In an offer it says what the offerer can receive; with
//! `level-asymmetry-allowed=1` on both sides each direction has its own level, and a sender must
//! stay within the level its receiver declared. H.264 Annex A, Table A-1, says what a level
//! allows: a largest frame (in 16x16 macroblocks) and a largest macroblock rate.
//!
//! tessera sends constrained baseline (what every hardware decoder takes), so the profile is
//! fixed; what varies is the level, which follows from the size and rate of what is sent.

use std::fmt;
use std::str::FromStr;

/// A level, as ten times its number (level 3.1 is 31). Level 1b is kept as level 1: their
/// frame limits are the same, only the bitrate differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level(pub u8);

/// Table A-1: (level, MaxMBPS in macroblocks per second, MaxFS in macroblocks).
const LIMITS: [(u8, u32, u32); 16] = [
    (10, 1_485, 99),
    (11, 3_000, 396),
    (12, 6_000, 396),
    (13, 11_880, 396),
    (20, 11_880, 396),
    (21, 19_800, 792),
    (22, 20_250, 1_620),
    (30, 40_500, 1_620),
    (31, 108_000, 3_600),
    (32, 216_000, 5_120),
    (40, 245_760, 8_192),
    (41, 245_760, 8_192),
    (42, 522_240, 8_704),
    (50, 589_824, 22_080),
    (51, 983_040, 36_864),
    (52, 2_073_600, 36_864),
];

impl Default for Level {
    /// What the default canvas (1280x720 at 30 fps) needs.
    fn default() -> Level {
        Level::L3_1
    }
}

impl Level {
    /// Level 3.1: 1280x720 at 30 frames a second.
    pub const L3_1: Level = Level(31);

    /// The lowest level that allows `width` x `height` at `fps` frames a second, if any does.
    pub fn for_video(width: u32, height: u32, fps: u32) -> Option<Level> {
        LIMITS
            .iter()
            .find(|(level, _, _)| Level(*level).allows(width, height, fps))
            .map(|(level, _, _)| Level(*level))
    }

    /// Whether this level allows `width` x `height` at `fps`: the frame fits MaxFS, the rate
    /// fits MaxMBPS, and neither side exceeds sqrt(8 * MaxFS) macroblocks (A.3.1 item h).
    pub fn allows(self, width: u32, height: u32, fps: u32) -> bool {
        let Some(&(_, max_mbps, max_fs)) = LIMITS.iter().rev().find(|(l, _, _)| *l <= self.0)
        else {
            return false;
        };
        let (w, h) = (width.div_ceil(16), height.div_ceil(16));
        let frame = w * h;
        let side = f64::from(8 * max_fs).sqrt();
        frame <= max_fs && frame * fps <= max_mbps && f64::from(w) <= side && f64::from(h) <= side
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

/// A parsed `profile-level-id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileLevelId {
    /// `profile_idc`: 0x42 baseline, 0x4d main, 0x64 high, ...
    pub profile_idc: u8,
    /// The constraint flags (`constraint_set0_flag` is the top bit).
    pub profile_iop: u8,
    /// The level it declares.
    pub level: Level,
}

impl ProfileLevelId {
    /// Constrained baseline at `level` (`42e0xx`), what tessera sends.
    pub fn constrained_baseline(level: Level) -> ProfileLevelId {
        ProfileLevelId {
            profile_idc: 0x42,
            profile_iop: 0xe0,
            level,
        }
    }

    /// The same profile at another level.
    pub fn with_level(self, level: Level) -> ProfileLevelId {
        ProfileLevelId { level, ..self }
    }

    /// Whether a decoder of this profile decodes constrained baseline: baseline with
    /// constraint_set1 (which constrained baseline is), or main / high-family profiles, whose
    /// decoders take any constrained-baseline stream.
    pub fn decodes_constrained_baseline(self) -> bool {
        match self.profile_idc {
            0x42 => true, // baseline, constrained or not: CB is its subset
            0x4d | 0x58 | 0x64 | 0x6e | 0x7a | 0xf4 => true,
            _ => false,
        }
    }
}

impl FromStr for ProfileLevelId {
    type Err = String;

    fn from_str(s: &str) -> Result<ProfileLevelId, String> {
        let s = s.trim();
        if s.len() != 6 || !s.is_ascii() {
            return Err(format!("profile-level-id {s:?} is not three hex bytes"));
        }
        let byte = |i: usize| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| format!("profile-level-id {s:?} is not hex"))
        };
        let (profile_idc, profile_iop, level_idc) = (byte(0)?, byte(2)?, byte(4)?);
        // Level 1b is written as level_idc 11 with constraint_set3 in baseline/main/extended,
        // or as level_idc 9; both are level 1 for frame limits.
        let level = match level_idc {
            9 => Level(10),
            11 if matches!(profile_idc, 0x42 | 0x4d | 0x58) && profile_iop & 0x10 != 0 => Level(10),
            idc if LIMITS.iter().any(|(l, _, _)| *l == idc) => Level(idc),
            other => return Err(format!("profile-level-id {s:?}: unknown level_idc {other}")),
        };
        Ok(ProfileLevelId {
            profile_idc,
            profile_iop,
            level,
        })
    }
}

impl fmt::Display for ProfileLevelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}{:02x}{:02x}",
            self.profile_idc, self.profile_iop, self.level.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue9_levels_follow_table_a1() {
        assert_eq!(Level::for_video(1280, 720, 30), Some(Level(31)));
        // 640x360 is 920 macroblocks: 30 fps needs 27,600 MB/s, above level 2.2's 20,250.
        assert_eq!(Level::for_video(640, 360, 30), Some(Level(30)));
        assert_eq!(Level::for_video(640, 360, 15), Some(Level(22)));
        assert_eq!(Level::for_video(320, 240, 30), Some(Level(13)));
        assert_eq!(Level::for_video(1920, 1080, 30), Some(Level(40)));
        assert_eq!(Level::for_video(176, 144, 15), Some(Level(10)));
        assert_eq!(Level::for_video(8192, 8192, 60), None);
        assert!(Level(31).allows(1280, 720, 30));
        assert!(!Level(30).allows(1280, 720, 30));
        assert!(!Level(22).allows(640, 360, 30));
        assert_eq!(Level(31).to_string(), "3.1");
    }

    #[test]
    fn issue9_profile_level_ids_parse_and_print() {
        let webrtcbin: ProfileLevelId = "42c016".parse().unwrap();
        assert_eq!(webrtcbin.level, Level(22));
        assert!(webrtcbin.decodes_constrained_baseline());
        assert_eq!(webrtcbin.with_level(Level(31)).to_string(), "42c01f");
        assert_eq!(
            ProfileLevelId::constrained_baseline(Level::L3_1).to_string(),
            "42e01f"
        );
        let high: ProfileLevelId = "640c1f".parse().unwrap();
        assert!(high.decodes_constrained_baseline());
        // Level 1b, both spellings.
        assert_eq!("42f00b".parse::<ProfileLevelId>().unwrap().level, Level(10));
        assert_eq!("4d0009".parse::<ProfileLevelId>().unwrap().level, Level(10));
        assert_eq!("42e00b".parse::<ProfileLevelId>().unwrap().level, Level(11));
        assert!("42e0".parse::<ProfileLevelId>().is_err());
        assert!("zz0000".parse::<ProfileLevelId>().is_err());
        assert!("42e0ff".parse::<ProfileLevelId>().is_err());
        assert!(
            !"530028"
                .parse::<ProfileLevelId>()
                .unwrap()
                .decodes_constrained_baseline()
        );
    }
}
