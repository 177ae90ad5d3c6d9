//! What a layout draws besides the videos, as pure code: each shown tile's label (its name, and
//! a mark when its microphone is off; the mixer draws it along the picture's bottom-left edge),
//! the border around the active speaker's tile, and the canvas colour.

use super::compose::Tile;
use super::spec::LayoutSpec;
use crate::types::{Decorations, Highlight, Label, SessionId};

/// What a tile's label says of its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// Its display name (none: no label).
    pub name: Option<String>,
    /// Its microphone is off (its own mute or an administrator's).
    pub muted: bool,
}

/// The decorations of `tiles` under `spec`: `named` says what each session's label says,
/// `speaker` who has the floor, on a canvas `height` pixels high.
pub fn decorate(
    spec: &LayoutSpec,
    tiles: &[Tile],
    named: impl Fn(SessionId) -> Named,
    speaker: Option<SessionId>,
    height: u32,
) -> Decorations {
    let labels = if spec.labels {
        tiles
            .iter()
            .filter_map(|t| {
                let n = named(t.placement.session);
                let name = n.name?;
                Some(Label {
                    session: t.placement.session,
                    text: if n.muted {
                        format!("{name} (muted)")
                    } else {
                        name
                    },
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let highlight = spec
        .speaker_highlight
        .then(|| tiles.iter().find(|t| Some(t.placement.session) == speaker))
        .flatten()
        .map(|t| Highlight {
            rect: t.placement.rect,
            // 4 pixels on 720p: seen on a phone, not a frame around a painting.
            thickness: ((height / 180) as i32 & !1).max(2),
        });
    Decorations {
        labels,
        highlight,
        background: spec.background_rgb(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::compose::{Source, Stage, compose};
    use super::super::spec::Preset;
    use super::*;

    #[test]
    fn labels_sit_on_each_tile_and_the_border_on_the_speaker() {
        let sources: Vec<Source> = (1..=3)
            .map(|i| Source {
                id: SessionId(i),
                identity: None,
                screen: false,
                pinned: false,
            })
            .collect();
        let stage = Stage {
            speaker: Some(SessionId(2)),
            previous: None,
        };
        let spec = LayoutSpec::preset(Preset::Speaker);
        let tiles = compose(&spec.regions(), &sources, stage, 1280, 720);
        let named = |id: SessionId| Named {
            name: (id != SessionId(3)).then(|| format!("p{}", id.0)),
            muted: id == SessionId(1),
        };
        let d = decorate(&spec, &tiles, named, stage.speaker, 720);
        // Named tiles only, with the mark of a microphone off.
        assert_eq!(
            d.labels,
            [
                Label {
                    session: SessionId(2),
                    text: "p2".into(),
                },
                Label {
                    session: SessionId(1),
                    text: "p1 (muted)".into(),
                },
            ]
        );
        let h = d.highlight.expect("the speaker is shown");
        assert_eq!((h.rect, h.thickness), (tiles[0].placement.rect, 4));
        let off = LayoutSpec {
            labels: false,
            speaker_highlight: false,
            background: "#336699".into(),
            ..spec
        };
        let d = decorate(&off, &tiles, named, stage.speaker, 720);
        assert_eq!(
            (d.labels.len(), d.highlight, d.background),
            (0, None, 0x336699)
        );
    }
}
