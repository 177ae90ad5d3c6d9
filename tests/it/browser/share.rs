//! Issue 14 in chromium: a participant shares its screen from the page (getDisplayMedia, with
//! chromium's fake display capture), the screen becomes a session of its own tied to the
//! participant, and the composite shows it large; "Stop sharing" ends it.

use super::*;

/// The screen-sharing session of `room`, from `GET /rooms/{room}`.
async fn screen_of(server: &TestServer, room: &str) -> Result<Option<Value>> {
    let info = server.room(room).await?;
    Ok(info["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["screen"] == true)
        .cloned())
}

#[test]
fn issue14_a_browser_shares_its_screen_and_the_composite_shows_it() -> Result<()> {
    if !isolated("browser::share::issue14_a_browser_shares_its_screen_and_the_composite_shows_it")?
    {
        return Ok(());
    }
    runtime().block_on(async {
        let server = TestServer::start(&[])?;
        let base = server.base_url();
        let room = "sharing";
        let robot = TestClient::join(
            base,
            room,
            Role::Participant,
            Some(SendMedia {
                tone_volume: 0.0,
                ..SendMedia::new(colours::RED, 440.0)
            }),
            "Robot",
        )
        .await?;
        let driver = Chromedriver::start()?;
        let ann = Browser::open(&driver).await?;
        join_page(&ann, base, room, "Ann", "").await?;
        assert_receiving(&ann, "window.tessera.pc", "Ann").await?;
        // Before: a grid of two, the robot's red tile on the left.
        let red_left = |frame: &crate::support::analysis::Frame| {
            is_close(
                average_colour(frame, Rect::new(280, 320, 80, 80)),
                colours::RED,
                48,
            )
        };
        robot
            .wait_for_frame(DEADLINE, red_left)
            .await
            .context("the grid of two")?;

        // A click is the user gesture getDisplayMedia needs.
        ann.click("#toggle-share").await?;
        ann.wait_for(
            "Ann's page is sharing",
            "return document.getElementById('toggle-share').textContent === 'Stop sharing';",
            DEADLINE,
        )
        .await?;
        let screen = eventually(DEADLINE, "a screen session in the room", || async {
            screen_of(&server, room).await
        })
        .await?;
        assert_eq!(screen["name"], "Ann", "{screen}");
        assert_eq!(screen["kind"], "contributor", "{screen}");
        // Presentation: the screen in the large region (its tile there), the robot's red in
        // the column on the right.
        let screen_id = screen["id"].as_str().context("an id")?.to_owned();
        let layout = crate::support::http::get_json(&crate::support::http::endpoint(
            base,
            &["rooms", room, "layout"],
        )?)
        .await?;
        let main = layout["tiles"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["region"] == "main")
            .cloned()
            .context("a tile in the large region")?;
        assert_eq!(main["id"], screen_id.as_str(), "{layout}");
        let frame = robot
            .wait_for_frame(DEADLINE, |f| {
                let big = average_colour(f, Rect::new(400, 300, 160, 120));
                let strip = average_colour(f, Rect::new(1080, 50, 80, 80));
                !is_close(big, colours::RED, 48)
                    && !is_close(big, colours::BLACK, 24)
                    && is_close(strip, colours::RED, 48)
            })
            .await
            .context("the composite shows the screen large and the robot in the column")?;
        eprintln!(
            "the shared screen in the composite: {:?}",
            average_colour(&frame, Rect::new(400, 300, 160, 120))
        );
        ann.screenshot("issue14-sharing").await?;

        // Stop sharing: its session ends, the grid is back.
        ann.click("#toggle-share").await?;
        eventually(DEADLINE, "the screen session ends", || async {
            Ok(screen_of(&server, room).await?.is_none().then_some(()))
        })
        .await?;
        robot
            .wait_for_frame(DEADLINE, red_left)
            .await
            .context("the grid again")?;
        ann.close().await?;
        robot.leave().await?;
        Ok(())
    })
}
