//! The room's picture as pure code (issue 14): what a layout is (`spec.rs`: presets, regions,
//! the checks), the grid's geometry (`grid.rs`) and how a layout's regions are filled with the
//! room's sessions (`compose.rs`). No GStreamer here: the room hands the result to its mixer as
//! [`crate::types::Placement`]s.

pub mod compose;
pub mod decor;
pub mod grid;
pub mod spec;

pub use compose::{Source, Stage, Tile, compose};
pub use grid::{MAX_TILES, grid, tiles};
pub use spec::{Arrange, LayoutSpec, Preset, Region, Selector};
