//! The room's picture: its layout (`PUT /rooms/{room}/layout`), who has the floor, and the
//! placements the pure [`layout::compose`] gives for them, carried to the mixer whenever one of
//! them changes (a join or leave, a new layout, a pin, a new active speaker).

use super::actor::RoomActor;
use super::api::{Canvas, LayoutView};
use super::events::{RoomEvent, TileInfo};
use super::layout::decor::{Named, decorate};
use super::layout::{self, LayoutSpec, Preset, Region, Source, Stage, Tile};
use super::session::Session;
use super::uplink;
use crate::types::{AudioLevel, Rect, SessionId};

impl RoomActor {
    /// The video-sending sessions as the selectors see them, in join order.
    fn sources(&self) -> Vec<Source> {
        self.sessions
            .iter()
            .filter(|s| s.sends_video)
            .map(|s| Source {
                id: s.id,
                identity: s.identity.clone(),
                screen: s.screen,
                pinned: s.pinned,
            })
            .collect()
    }

    /// The regions `spec` gives now: with `auto_presentation`, presentation's while a screen is
    /// shared.
    fn regions(&self, spec: &LayoutSpec) -> Vec<Region> {
        let sharing = self.sessions.iter().any(|s| s.screen && s.sends_video);
        if spec.auto_presentation && sharing && spec.preset != Some(Preset::Presentation) {
            return Preset::Presentation.regions();
        }
        spec.regions()
    }

    /// The tiles `spec` gives for the room as it is now.
    pub(super) fn tiles_for(&self, spec: &LayoutSpec) -> Vec<Tile> {
        let mix = &self.ctx.config.mix;
        let stage = Stage {
            speaker: self.floor.speaker(),
            previous: self.floor.previous(),
        };
        layout::compose(
            &self.regions(spec),
            &self.sources(),
            stage,
            mix.width,
            mix.height,
        )
    }

    /// The tiles of the room's layout now.
    pub(super) fn tiles(&self) -> Vec<Tile> {
        self.tiles_for(&self.layout)
    }

    /// The layout, the floor and the tiles, as `GET /rooms/{room}/layout` shows them (for
    /// `spec` instead of the room's own in a dry run).
    pub(super) fn layout_view(&self, spec: &LayoutSpec) -> LayoutView {
        let mix = &self.ctx.config.mix;
        LayoutView {
            layout: spec.clone(),
            active_speaker: self.floor.speaker().map(|id| id.to_string()),
            canvas: Canvas {
                width: mix.width,
                height: mix.height,
                fps: mix.fps,
            },
            tiles: tile_infos(&self.tiles_for(spec)),
        }
    }

    /// Gives the room a new layout (already checked) and applies it.
    pub(super) async fn set_layout(&mut self, spec: LayoutSpec) {
        self.floor.set_settings(spec.speaker);
        self.layout = spec;
        self.reflow().await;
    }

    /// Moves the tiles to the current layout if they changed: the mixer places the pads, each
    /// sender is told the bitrate its tile needs (see [`uplink`]; an unshown one the least),
    /// and the event streams are told.
    pub(super) async fn reflow(&mut self) {
        let tiles = self.tiles();
        if tiles == self.placed {
            self.redecorate().await;
            return;
        }
        self.mixer
            .set_placements(tiles.iter().map(|t| t.placement).collect())
            .await;
        let mix = &self.ctx.config.mix;
        for s in self.sessions.iter().filter(|s| s.sends_video) {
            let rect = tiles
                .iter()
                .find(|t| t.placement.session == s.id)
                .map_or(UNSHOWN, |t| t.placement.rect);
            s.peer.limit_uplink(uplink::tile_bitrate(rect, mix.fps));
        }
        self.ctx.publish(RoomEvent::LayoutChanged {
            canvas: Canvas {
                width: mix.width,
                height: mix.height,
                fps: mix.fps,
            },
            tiles: tile_infos(&tiles),
        });
        self.placed = tiles;
        self.redecorate().await;
    }

    /// Redraws the labels, the speaker's border and the background if they changed (a new
    /// layout or speaker, a microphone muted).
    pub(super) async fn redecorate(&mut self) {
        let named = |id: SessionId| {
            let s = self.sessions.iter().find(|s| s.id == id);
            Named {
                name: s.and_then(|s| self.label_name(s)),
                muted: s.is_some_and(|s| s.muted().0),
            }
        };
        let decorations = decorate(
            &self.layout,
            &self.placed,
            named,
            self.floor.speaker(),
            self.ctx.config.mix.height,
        );
        if decorations != self.decorated {
            self.decorated = decorations.clone();
            self.mixer.set_decorations(decorations).await;
        }
    }

    /// What a session's label says: its name; a screen, its sharer's name and "screen".
    fn label_name(&self, s: &Session) -> Option<String> {
        if !s.screen {
            return s.name.clone();
        }
        let owner = s
            .owner
            .and_then(|o| self.sessions.iter().find(|x| x.id == o))
            .and_then(|o| o.name.clone())
            .or_else(|| s.name.clone());
        Some(match owner {
            Some(name) => format!("{name} (screen)"),
            None => "Screen".to_owned(),
        })
    }

    /// An input's levels since its last report: the floor may move.
    pub(super) async fn on_levels(&mut self, session: SessionId, levels: &[AudioLevel]) {
        // A shared screen's sound (a video playing) is heard, but is nobody speaking.
        if self.sessions.iter().any(|s| s.id == session && s.screen) {
            return;
        }
        let now = std::time::Instant::now();
        if self.floor.levels(session, now, levels).is_some() {
            self.floor_moved().await;
        }
    }

    /// Tells the streams who has the floor now, and moves the tiles if the layout cares.
    pub(super) async fn floor_moved(&mut self) {
        let speaker = self.floor.speaker();
        let name = speaker.and_then(|id| {
            self.sessions
                .iter()
                .find(|s| s.id == id)
                .and_then(|s| s.name.clone())
        });
        tracing::debug!(room = %self.ctx.name, ?speaker, "active speaker");
        self.ctx.publish(RoomEvent::ActiveSpeaker {
            id: speaker.map(|id| id.to_string()),
            name,
        });
        self.reflow().await;
    }

    /// Pins or unpins a session.
    pub(super) async fn pin(&mut self, session: SessionId, pinned: bool) {
        if let Some(idx) = self.sessions.iter().position(|s| s.id == session)
            && self.sessions[idx].pinned != pinned
        {
            self.sessions[idx].pinned = pinned;
            self.publish_updated(idx);
            self.reflow().await;
        }
    }

    /// A session left: it no longer holds the floor.
    pub(super) fn leave_floor(&mut self, session: SessionId) -> bool {
        let had = self.floor.speaker() == Some(session);
        self.floor.remove(session);
        had
    }
}

/// A session the layout does not show still sends, at the bitrate of a thumbnail: it may be
/// shown at any moment (the next speaker), and its picture must be there when it is.
const UNSHOWN: Rect = Rect {
    x: 0,
    y: 0,
    width: 320,
    height: 180,
};

fn tile_infos(tiles: &[Tile]) -> Vec<TileInfo> {
    tiles
        .iter()
        .map(|t| TileInfo {
            id: t.placement.session.to_string(),
            region: t.region.clone(),
            rect: t.placement.rect,
            z: t.placement.z,
            fit: t.placement.fit,
        })
        .collect()
}
