//! The layout a room is given (`PUT /rooms/{room}/layout`, `--default-layout`): its JSON, the
//! presets as region lists, and the checks that turn bad input into one clear `bad_layout`
//! message before anything changes.
//!
//! A layout is either a preset name or a list of regions; both come down to regions
//! ([`LayoutSpec::regions`]), which `compose.rs` fills with the room's sessions.

use serde::{Deserialize, Serialize};

use crate::room::floor::SpeakerSettings;
use crate::types::Fit;

/// The most regions a layout may have.
pub const MAX_REGIONS: usize = 32;
/// The most tiles one region may hold.
pub const MAX_REGION_TILES: u32 = 16;

/// The named layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Everyone with video in a grid, in join order.
    Grid,
    /// The active speaker large (a screen share or a pinned session before them), the others
    /// in a column on the right.
    Speaker,
    /// Only the active speaker (or a pinned session): for kiosks.
    Single,
    /// The active speaker on the whole canvas, the previous speaker small in a corner.
    Pip,
    /// A screen share large, the cameras in a column on the right.
    Presentation,
}

impl Preset {
    /// Its name in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Grid => "grid",
            Preset::Speaker => "speaker",
            Preset::Single => "single",
            Preset::Pip => "pip",
            Preset::Presentation => "presentation",
        }
    }

    /// The regions it stands for.
    pub fn regions(self) -> Vec<Region> {
        use Selector::*;
        let region = |id: &str, x, y, width, height, sources: Vec<Selector>, max_tiles| Region {
            id: id.into(),
            x,
            y,
            width,
            height,
            z: 0,
            sources,
            max_tiles,
            fit: Fit::Contain,
            arrange: Arrange::Grid,
        };
        // The right-hand column is a quarter of the canvas wide; on 16:9 its four tiles are
        // 16:9 too, so cameras fill them.
        let column = |sources| Region {
            arrange: Arrange::Column,
            z: 1,
            ..region("strip", 0.75, 0.0, 0.25, 1.0, sources, 4)
        };
        match self {
            Preset::Grid => vec![region(
                "grid",
                0.0,
                0.0,
                1.0,
                1.0,
                vec![Others],
                MAX_REGION_TILES,
            )],
            Preset::Speaker => vec![
                region(
                    "main",
                    0.0,
                    0.0,
                    0.75,
                    1.0,
                    vec![Pinned, Speaker, Others],
                    1,
                ),
                column(vec![Others]),
            ],
            Preset::Single => vec![region(
                "main",
                0.0,
                0.0,
                1.0,
                1.0,
                vec![Pinned, Speaker, Others],
                1,
            )],
            Preset::Pip => vec![
                region("main", 0.0, 0.0, 1.0, 1.0, vec![Pinned, Speaker, Others], 1),
                Region {
                    z: 1,
                    ..region(
                        "corner",
                        0.73,
                        0.71,
                        0.25,
                        0.25,
                        vec![PreviousSpeaker, Others],
                        1,
                    )
                },
            ],
            Preset::Presentation => vec![
                region(
                    "main",
                    0.0,
                    0.0,
                    0.75,
                    1.0,
                    vec![Screen, Pinned, Speaker, Others],
                    1,
                ),
                column(vec![Others]),
            ],
        }
    }
}

/// Who a region shows, in priority order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Screen shares (`?source=screen`), newest first.
    Screen,
    /// The active speaker.
    Speaker,
    /// The one who had the floor before the active speaker.
    PreviousSpeaker,
    /// Pinned sessions, in join order.
    Pinned,
    /// The session of this token identity, or of this public session id.
    Identity(String),
    /// Whoever is not placed yet, in join order.
    Others,
}

impl Selector {
    fn parse(s: &str) -> Result<Selector, String> {
        Ok(match s {
            "screen" => Selector::Screen,
            "speaker" => Selector::Speaker,
            "previous_speaker" => Selector::PreviousSpeaker,
            "pinned" => Selector::Pinned,
            "others" => Selector::Others,
            _ => match s.strip_prefix("identity:") {
                Some(id) if !id.is_empty() && id.len() <= 256 => Selector::Identity(id.into()),
                _ => {
                    return Err(format!(
                        "unknown source {s:?} (screen, speaker, previous_speaker, pinned, \
                         identity:<id>, others)"
                    ));
                }
            },
        })
    }

    fn text(&self) -> String {
        match self {
            Selector::Screen => "screen".into(),
            Selector::Speaker => "speaker".into(),
            Selector::PreviousSpeaker => "previous_speaker".into(),
            Selector::Pinned => "pinned".into(),
            Selector::Identity(id) => format!("identity:{id}"),
            Selector::Others => "others".into(),
        }
    }
}

impl Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Selector, D::Error> {
        let s = String::deserialize(d)?;
        Selector::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How a region's tiles sit inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrange {
    /// As square a grid as fits the count (the room grid's steps).
    #[default]
    Grid,
    /// Side by side.
    Row,
    /// One above the other.
    Column,
}

/// A part of the canvas and who it shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Its name (unique in the layout).
    pub id: String,
    /// Left edge, as a fraction of the canvas width.
    pub x: f64,
    /// Top edge, as a fraction of the canvas height.
    pub y: f64,
    /// Width, as a fraction of the canvas width.
    pub width: f64,
    /// Height, as a fraction of the canvas height.
    pub height: f64,
    /// Stacking order: higher is drawn above lower (0-100).
    #[serde(default)]
    pub z: u32,
    /// Who it shows, in priority order.
    pub sources: Vec<Selector>,
    /// How many tiles it holds at most (1-16).
    #[serde(default = "one")]
    pub max_tiles: u32,
    /// How a picture fills its tile.
    #[serde(default)]
    pub fit: Fit,
    /// How the tiles are arranged.
    #[serde(default)]
    pub arrange: Arrange,
}

fn one() -> u32 {
    1
}

/// A layout as `PUT /rooms/{room}/layout` takes it and `GET` gives it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutSpec {
    /// A named layout (either this or `regions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// Regions of the canvas (either this or `preset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<Region>>,
    /// Names (and a muted-microphone mark) drawn on the tiles.
    #[serde(default = "yes")]
    pub labels: bool,
    /// A coloured border around the active speaker's tile.
    #[serde(default = "yes")]
    pub speaker_highlight: bool,
    /// The canvas colour where no tile is, `#rrggbb`.
    #[serde(default = "black")]
    pub background: String,
    /// While a screen is shared, show `presentation` instead; back after.
    #[serde(default = "yes")]
    pub auto_presentation: bool,
    /// The active-speaker detection.
    #[serde(default)]
    pub speaker: SpeakerSettings,
}

fn yes() -> bool {
    true
}

fn black() -> String {
    "#000000".into()
}

impl Default for LayoutSpec {
    fn default() -> Self {
        LayoutSpec::preset(Preset::Grid)
    }
}

impl LayoutSpec {
    /// `preset` with every other key at its default.
    pub fn preset(preset: Preset) -> LayoutSpec {
        LayoutSpec {
            preset: Some(preset),
            regions: None,
            labels: true,
            speaker_highlight: true,
            background: black(),
            auto_presentation: true,
            speaker: SpeakerSettings::default(),
        }
    }

    /// Reads and checks a layout from JSON; the error names the fault.
    pub fn parse(json: &[u8]) -> Result<LayoutSpec, String> {
        let spec: LayoutSpec = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads a layout from a preset name or from JSON.
    pub fn from_arg(arg: &str) -> Result<LayoutSpec, String> {
        match serde_json::from_value::<Preset>(serde_json::Value::from(arg)) {
            Ok(preset) => Ok(LayoutSpec::preset(preset)),
            Err(_) => LayoutSpec::parse(arg.as_bytes()),
        }
    }

    /// Whether it is whole and in range.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.preset, &self.regions) {
            (Some(_), Some(_)) => return Err("give either a preset or regions, not both".into()),
            (None, None) => return Err("give a preset or regions".into()),
            _ => {}
        }
        if let Some(regions) = &self.regions {
            if regions.is_empty() {
                return Err("regions is empty".into());
            }
            if regions.len() > MAX_REGIONS {
                return Err(format!("{} regions: at most {MAX_REGIONS}", regions.len()));
            }
            for (i, r) in regions.iter().enumerate() {
                r.validate()
                    .map_err(|e| format!("region {:?}: {e}", r.id))?;
                if regions[..i].iter().any(|o| o.id == r.id) {
                    return Err(format!("two regions are named {:?}", r.id));
                }
            }
        }
        parse_color(&self.background)?;
        self.speaker.validate()
    }

    /// The regions to fill: the preset's, or the given ones.
    pub fn regions(&self) -> Vec<Region> {
        match (&self.regions, self.preset) {
            (Some(regions), _) => regions.clone(),
            (None, Some(preset)) => preset.regions(),
            (None, None) => Preset::Grid.regions(),
        }
    }

    /// The background as 0xRRGGBB.
    pub fn background_rgb(&self) -> u32 {
        parse_color(&self.background).unwrap_or(0)
    }
}

impl Region {
    fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() || self.id.len() > 64 {
            return Err("id must have 1-64 characters".into());
        }
        let fraction = |name: &str, v: f64| {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} {v} is outside [0, 1]"))
            }
        };
        fraction("x", self.x)?;
        fraction("y", self.y)?;
        fraction("width", self.width)?;
        fraction("height", self.height)?;
        if self.width <= 0.0 || self.height <= 0.0 {
            return Err("width and height must be above 0".into());
        }
        // A little slack for fractions like 1/3 + 2/3 written as decimals.
        if self.x + self.width > 1.0 + 1e-6 || self.y + self.height > 1.0 + 1e-6 {
            return Err("it reaches past the canvas (x + width or y + height over 1)".into());
        }
        if self.z > 100 {
            return Err(format!("z {} is over 100", self.z));
        }
        if self.sources.is_empty() {
            return Err("sources is empty".into());
        }
        if self.sources.len() > 16 {
            return Err("more than 16 sources".into());
        }
        if !(1..=MAX_REGION_TILES).contains(&self.max_tiles) {
            return Err(format!(
                "max_tiles {} is outside 1..={MAX_REGION_TILES}",
                self.max_tiles
            ));
        }
        Ok(())
    }
}

fn parse_color(s: &str) -> Result<u32, String> {
    s.strip_prefix('#')
        .filter(|h| h.len() == 6 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| format!("background {s:?} is not #rrggbb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"regions": [
        {"id": "main", "x": 0, "y": 0, "width": 0.75, "height": 1, "z": 0,
         "sources": ["screen", "speaker"], "max_tiles": 1, "fit": "contain"},
        {"id": "strip", "x": 0.75, "y": 0, "width": 0.25, "height": 1, "z": 1,
         "sources": ["others"], "max_tiles": 4, "arrange": "column"}]}"#;

    #[test]
    fn the_issue_example_parses_and_round_trips() {
        let spec = LayoutSpec::parse(EXAMPLE.as_bytes()).expect("valid");
        let regions = spec.regions();
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[0].sources, [Selector::Screen, Selector::Speaker]);
        assert_eq!(regions[1].arrange, Arrange::Column);
        assert!(spec.labels && spec.auto_presentation);
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(LayoutSpec::parse(text.as_bytes()).unwrap(), spec);
    }

    #[test]
    fn presets_by_name_and_every_preset_is_valid() {
        for p in [
            Preset::Grid,
            Preset::Speaker,
            Preset::Single,
            Preset::Pip,
            Preset::Presentation,
        ] {
            let spec = LayoutSpec::from_arg(p.name()).expect("a preset name");
            assert_eq!(spec.preset, Some(p));
            let regions = LayoutSpec {
                preset: None,
                regions: Some(p.regions()),
                ..spec
            };
            regions.validate().expect("a preset's regions are valid");
        }
        let spec = LayoutSpec::from_arg(r#"{"preset": "pip", "labels": false}"#).unwrap();
        assert_eq!((spec.preset, spec.labels), (Some(Preset::Pip), false));
        assert!(LayoutSpec::from_arg("mosaic").is_err());
    }

    #[test]
    fn bad_layouts_name_their_fault() {
        let region = |extra: &str| {
            format!(
                r#"{{"regions": [{{"id": "a", "x": 0, "y": 0, "width": 1, "height": 1, "sources": ["others"]{extra}}}]}}"#
            )
        };
        let many: Vec<String> = (0..33)
            .map(|i| {
                format!(
                    r#"{{"id": "r{i}", "x": 0, "y": 0, "width": 1, "height": 1, "sources": ["others"]}}"#
                )
            })
            .collect();
        let cases = [
            ("{", "EOF"),
            (
                r#"{"preset": "grid", "colour": 1}"#,
                "unknown field `colour`",
            ),
            (r#"{"preset": "mosaic"}"#, "unknown variant"),
            (r#"{}"#, "give a preset or regions"),
            (
                r#"{"preset": "grid", "regions": []}"#,
                "either a preset or regions",
            ),
            (&region(r#", "x": 1.5"#), "duplicate field"),
            (
                r#"{"regions": [{"id": "a", "x": -0.1, "y": 0, "width": 1, "height": 1, "sources": ["others"]}]}"#,
                "x -0.1 is outside [0, 1]",
            ),
            (
                r#"{"regions": [{"id": "a", "x": 0.5, "y": 0, "width": 0.6, "height": 1, "sources": ["others"]}]}"#,
                "reaches past the canvas",
            ),
            (&region(r#", "max_tiles": 17"#), "max_tiles 17"),
            (
                &region(r#", "fit": "stretch""#),
                "unknown variant `stretch`",
            ),
            (&region(r#", "shape": "round""#), "unknown field `shape`"),
            (
                r#"{"regions": [{"id": "a", "x": 0, "y": 0, "width": 1, "height": 1, "sources": ["everyone"]}]}"#,
                "unknown source \"everyone\"",
            ),
            (
                &format!(r#"{{"regions": [{}]}}"#, many.join(",")),
                "33 regions: at most 32",
            ),
            (
                r#"{"preset": "grid", "background": "red"}"#,
                "is not #rrggbb",
            ),
            (
                r#"{"preset": "grid", "speaker": {"hold_ms": 10, "loudness": 3}}"#,
                "unknown field `loudness`",
            ),
        ];
        for (json, fault) in cases {
            let err = LayoutSpec::parse(json.as_bytes()).expect_err(json);
            assert!(
                err.contains(fault),
                "{json}: {err:?} does not say {fault:?}"
            );
        }
    }
}
