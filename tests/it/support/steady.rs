//! The room that must not notice: a contributor sending blue and a viewer decoding the
//! composite, joined with `token`, for the tests that load the server beside it (the flood,
//! the hostile client) and watch its frame rate.

use std::time::Duration;

use anyhow::Result;

use super::analysis::colours;
use super::{JoinOptions, Role, SendMedia, TestClient};

/// Joins the sender and the viewer to `room`; returns once the viewer decodes the full canvas.
pub async fn steady_room(base: &str, room: &str, token: &str) -> Result<(TestClient, TestClient)> {
    let with = || JoinOptions {
        token: Some(token.to_owned()),
        ..Default::default()
    };
    let sender = TestClient::join_with(
        base,
        room,
        Role::Contributor,
        Some(SendMedia::new(colours::BLUE, 440.0)),
        "sender",
        with(),
    )
    .await?;
    let viewer = TestClient::join_with(base, room, Role::Viewer, None, "wall", with()).await?;
    viewer
        .wait_for_frame(Duration::from_secs(10), |f| f.width == 1280)
        .await?;
    Ok((sender, viewer))
}
