//! The domain: rooms, their sessions and their mix.
//!
//! [`Rooms`] (`registry.rs`) is the registry of [`RoomHandle`]s (`handle.rs`): a handle is a
//! cheap clone of the mailbox of one room actor (`actor.rs`), which alone owns the room's
//! sessions, peers and the handle to its mixer, and holds only a small [`context`] of the world
//! outside. The HTTP edge talks to rooms only through [`Rooms`]; every answer comes back on a
//! oneshot (`api.rs` has their types). Each room name has its own event channel (`events.rs`).
//!
//! The room's decisions that need no IO are pure and tested alone: layouts and their tiles
//! ([`layout`]), the active speaker ([`floor`]), keyframe coalescing ([`keyframe`]), tiers and
//! H.264 ceilings ([`tiers`]), and what an offer makes (`join.rs`).

mod actor;
mod adaptation;
mod api;
mod context;
pub mod events;
pub mod floor;
mod handle;
mod join;
pub mod keyframe;
pub mod layout;
mod recording;
mod registry;
mod session;
mod speakers;
pub mod tiers;
mod tiling;
pub mod uplink;
pub mod voice;

pub use api::{
    Canvas, JoinAnswer, JoinError, JoinRequest, LayoutView, RecordingError, RecordingInfo,
    RecordingState, RoomInfo, SessionError, SessionInfo, TrickleError, valid_room_name,
};
pub use handle::RoomHandle;
pub use recording::Recordings;
pub use registry::Rooms;
