//! The room's picture: each video-sending session's tile (in join order, from the pure grid in
//! [`super::layout`]), and the reflow after a join or leave.

use super::actor::RoomActor;
use super::api::Canvas;
use super::events::{RoomEvent, TileInfo};
use super::{layout, uplink};
use crate::types::{Rect, SessionId};

impl RoomActor {
    /// The tiles of the video-sending sessions, in join order.
    pub(super) fn tiles(&self) -> Vec<(SessionId, Rect)> {
        let senders: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|s| s.sends_video)
            .map(|s| s.id)
            .collect();
        let mix = &self.ctx.config.mix;
        senders
            .iter()
            .copied()
            .zip(layout::tiles(senders.len(), mix.width, mix.height))
            .collect()
    }

    /// Moves the tiles to the current layout, tells each sender the bitrate its tile needs
    /// (see [`uplink`]) and tells the event streams.
    pub(super) async fn reflow(&mut self) {
        let tiles = self.tiles();
        self.mixer.set_tiles(tiles.clone()).await;
        let mix = &self.ctx.config.mix;
        for (id, rect) in &tiles {
            if let Some(s) = self.sessions.iter().find(|s| s.id == *id) {
                s.peer.limit_uplink(uplink::tile_bitrate(*rect, mix.fps));
            }
        }
        self.ctx.publish(RoomEvent::LayoutChanged {
            canvas: Canvas {
                width: mix.width,
                height: mix.height,
                fps: mix.fps,
            },
            tiles: tiles
                .iter()
                .map(|(id, rect)| TileInfo {
                    id: id.to_string(),
                    rect: *rect,
                })
                .collect(),
        });
    }
}
