//! Filling a layout's regions with the room's sessions: a pure function of the regions, the
//! sessions (in join order, with what the selectors ask of them), who has the floor and the
//! canvas, giving each shown session its tile and stacking order. The same function answers
//! `dry_run` and places the compositor pads, so what a dry run says is what is applied.

use super::grid;
use super::spec::{Arrange, Region, Selector};
use crate::types::{Fit, Placement, Rect, SessionId};

/// What the selectors know of a session that sends video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// It.
    pub id: SessionId,
    /// Its token's identity (`None` on an open server).
    pub identity: Option<String>,
    /// A screen share (`?source=screen`).
    pub screen: bool,
    /// Pinned by `PUT .../pin`.
    pub pinned: bool,
}

/// Who has the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stage {
    /// The active speaker.
    pub speaker: Option<SessionId>,
    /// The one before them.
    pub previous: Option<SessionId>,
}

/// A shown session's tile, and the region it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    /// The region's id.
    pub region: String,
    /// Where and how.
    pub placement: Placement,
}

/// The tiles of `sources` (join order) in `regions` on a `width` x `height` canvas. Regions are
/// filled in the order given, each taking up to `max_tiles` sessions not placed yet, by its
/// selectors in priority order; sessions that fit nowhere are not shown (they are still heard).
pub fn compose(
    regions: &[Region],
    sources: &[Source],
    stage: Stage,
    width: u32,
    height: u32,
) -> Vec<Tile> {
    let mut placed: Vec<SessionId> = Vec::new();
    let mut tiles = Vec::new();
    for region in regions {
        let mut chosen: Vec<&Source> = Vec::new();
        let room = region.max_tiles as usize;
        for selector in &region.sources {
            for s in select(selector, sources, stage) {
                if chosen.len() == room {
                    break;
                }
                if !placed.contains(&s.id) && !chosen.iter().any(|c| c.id == s.id) {
                    chosen.push(s);
                }
            }
        }
        let area = region_rect(region, width, height);
        let cells = cells(region, chosen.len(), area);
        for (s, rect) in chosen.iter().zip(cells) {
            placed.push(s.id);
            tiles.push(Tile {
                region: region.id.clone(),
                placement: Placement {
                    session: s.id,
                    rect,
                    z: region.z,
                    // A screen is read, not watched: all of it, never blown up.
                    fit: if s.screen { Fit::Contain } else { region.fit },
                    upscale: !s.screen,
                },
            });
        }
    }
    tiles
}

/// The sessions one selector picks, best first.
fn select<'a>(selector: &Selector, sources: &'a [Source], stage: Stage) -> Vec<&'a Source> {
    let by_id = |id: Option<SessionId>| sources.iter().filter(move |s| Some(s.id) == id);
    match selector {
        Selector::Screen => sources.iter().rev().filter(|s| s.screen).collect(),
        Selector::Speaker => by_id(stage.speaker).collect(),
        Selector::PreviousSpeaker => by_id(stage.previous).collect(),
        Selector::Pinned => sources.iter().filter(|s| s.pinned).collect(),
        Selector::Identity(id) => sources
            .iter()
            .filter(|s| s.identity.as_deref() == Some(id.as_str()) || s.id.to_string() == *id)
            .collect(),
        Selector::Others => sources.iter().collect(),
    }
}

/// A region in pixels, its edges on even pixels (I420 chroma) so that regions that meet on
/// paper meet on the canvas.
fn region_rect(region: &Region, width: u32, height: u32) -> Rect {
    let edge = |f: f64, total: u32| -> i32 { (((f * total as f64).round() as i64) & !1) as i32 };
    let x = edge(region.x, width);
    let y = edge(region.y, height);
    let x2 = edge(region.x + region.width, width).min(width as i32);
    let y2 = edge(region.y + region.height, height).min(height as i32);
    Rect {
        x,
        y,
        width: (x2 - x).max(2),
        height: (y2 - y).max(2),
    }
}

/// The cells of `count` tiles in `area`. A grid is sized by the count (the room grid's steps);
/// a row or a column by `max_tiles`, so its tiles keep their size as people come and go, from
/// the left or the top.
fn cells(region: &Region, count: usize, area: Rect) -> Vec<Rect> {
    if count == 0 {
        return Vec::new();
    }
    let slots = region.max_tiles.max(1);
    let (cols, rows) = match region.arrange {
        Arrange::Grid => grid::grid(count),
        Arrange::Row => (slots, 1),
        Arrange::Column => (1, slots),
    };
    grid::cells(cols, rows, area.width as u32, area.height as u32)
        .into_iter()
        .take(count)
        .map(|r| Rect {
            x: r.x + area.x,
            y: r.y + area.y,
            ..r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::spec::{LayoutSpec, Preset};
    use super::*;

    fn camera(id: u64) -> Source {
        Source {
            id: SessionId(id),
            identity: None,
            screen: false,
            pinned: false,
        }
    }

    fn rects(tiles: &[Tile]) -> Vec<(u64, &str, Rect)> {
        tiles
            .iter()
            .map(|t| (t.placement.session.0, t.region.as_str(), t.placement.rect))
            .collect()
    }

    fn rect(x: i32, y: i32, width: i32, height: i32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn grid_is_the_room_grid_in_join_order() {
        let sources: Vec<Source> = (1..=3).map(camera).collect();
        let tiles = compose(
            &Preset::Grid.regions(),
            &sources,
            Stage::default(),
            1280,
            720,
        );
        assert_eq!(
            tiles.iter().map(|t| t.placement.rect).collect::<Vec<_>>(),
            grid::tiles(3, 1280, 720)
        );
    }

    #[test]
    fn speaker_puts_the_floor_large_and_the_others_in_a_column() {
        let sources: Vec<Source> = (1..=3).map(camera).collect();
        let stage = Stage {
            speaker: Some(SessionId(2)),
            previous: None,
        };
        let tiles = compose(&Preset::Speaker.regions(), &sources, stage, 1280, 720);
        assert_eq!(
            rects(&tiles),
            [
                (2, "main", rect(0, 0, 960, 720)),
                (1, "strip", rect(960, 0, 320, 180)),
                (3, "strip", rect(960, 180, 320, 180)),
            ]
        );
        assert!(tiles[1].placement.z > tiles[0].placement.z);
        // Nobody spoke yet: the first to join is large. A pinned session beats the speaker.
        let tiles = compose(
            &Preset::Speaker.regions(),
            &sources,
            Stage::default(),
            1280,
            720,
        );
        assert_eq!(tiles[0].placement.session, SessionId(1));
        let mut pinned = sources.clone();
        pinned[2].pinned = true;
        let tiles = compose(&Preset::Speaker.regions(), &pinned, stage, 1280, 720);
        assert_eq!(tiles[0].placement.session, SessionId(3));
    }

    #[test]
    fn single_shows_one_and_pip_the_previous_speaker_in_a_corner() {
        let sources: Vec<Source> = (1..=3).map(camera).collect();
        let stage = Stage {
            speaker: Some(SessionId(3)),
            previous: Some(SessionId(2)),
        };
        let single = compose(&Preset::Single.regions(), &sources, stage, 1280, 720);
        assert_eq!(rects(&single), [(3, "main", rect(0, 0, 1280, 720))]);
        let pip = compose(&Preset::Pip.regions(), &sources, stage, 1280, 720);
        assert_eq!(pip.len(), 2);
        assert_eq!(pip[1].placement.session, SessionId(2));
        let corner = pip[1].placement.rect;
        assert!(corner.x > 640 && corner.y > 360 && corner.x + corner.width <= 1280);
        assert!(pip[1].placement.z > pip[0].placement.z);
    }

    #[test]
    fn a_screen_goes_large_in_presentation_contained_and_never_scaled_up() {
        let mut sources: Vec<Source> = (1..=3).map(camera).collect();
        sources[1].screen = true;
        let stage = Stage {
            speaker: Some(SessionId(3)),
            previous: None,
        };
        let tiles = compose(&Preset::Presentation.regions(), &sources, stage, 1280, 720);
        assert_eq!(tiles[0].placement.session, SessionId(2));
        assert_eq!(tiles[0].placement.fit, Fit::Contain);
        assert!(!tiles[0].placement.upscale);
        assert!(tiles[1].placement.upscale);
        // The speaker comes first among the cameras only in `main`; in the strip, join order.
        assert_eq!(
            tiles[1..]
                .iter()
                .map(|t| t.placement.session.0)
                .collect::<Vec<_>>(),
            [1, 3]
        );
    }

    #[test]
    fn custom_regions_by_identity_with_overflow_unshown() {
        let json = r#"{"regions": [
            {"id": "left", "x": 0, "y": 0, "width": 0.5, "height": 1, "sources": ["identity:blue"], "fit": "cover"},
            {"id": "right", "x": 0.5, "y": 0, "width": 0.5, "height": 0.5, "sources": ["others"], "max_tiles": 2, "arrange": "row"}]}"#;
        let spec = LayoutSpec::parse(json.as_bytes()).unwrap();
        let mut sources: Vec<Source> = (1..=4).map(camera).collect();
        sources[2].identity = Some("blue".into());
        let tiles = compose(&spec.regions(), &sources, Stage::default(), 1280, 720);
        assert_eq!(
            rects(&tiles),
            [
                (3, "left", rect(0, 0, 640, 720)),
                (1, "right", rect(640, 0, 320, 360)),
                (2, "right", rect(960, 0, 320, 360)),
            ]
        );
        assert_eq!(tiles[0].placement.fit, Fit::Cover);
        // A public session id works as an identity too (open servers have no identities).
        let by_id = format!(
            r#"{{"regions": [{{"id": "a", "x": 0, "y": 0, "width": 1, "height": 1, "sources": ["identity:{}"]}}]}}"#,
            SessionId(4)
        );
        let spec = LayoutSpec::parse(by_id.as_bytes()).unwrap();
        let tiles = compose(&spec.regions(), &sources, Stage::default(), 1280, 720);
        assert_eq!(rects(&tiles), [(4, "a", rect(0, 0, 1280, 720))]);
    }
}
