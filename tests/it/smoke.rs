//! First light: one participant joins and sees itself in the composite.
use std::time::Duration;

use crate::support::analysis::{average_colour, colours, is_close};
use crate::support::{Role, SendMedia, TestClient, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_participant_sees_itself() {
    let server = TestServer::start(&[]).expect("server starts");
    let client = TestClient::join(
        server.base_url(),
        "smoke",
        Role::Participant,
        Some(SendMedia::new(colours::RED, 440.0)),
        "alice",
    )
    .await
    .expect("alice joins");
    let frame = client
        .wait_for_frame(Duration::from_secs(10), |f| {
            is_close(average_colour(f, f.full().inner()), colours::RED, 60)
        })
        .await
        .expect("a red composite");
    eprintln!("frame {}x{}", frame.width, frame.height);
}
