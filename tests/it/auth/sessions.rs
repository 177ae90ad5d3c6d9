//! Sessions belong to the identity that made them; administrators mute, kick and end rooms.

use super::*;

/// The last segment of a session URL.
fn url_secret(session_url: &Url) -> String {
    session_url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default()
        .to_owned()
}

async fn room_state(server: &TestServer, room: &str, token: &str) -> Result<Value> {
    let r = http::send(
        Method::GET,
        &url(server, &format!("/rooms/{room}"))?,
        Some(token),
        None,
    )
    .await?;
    ensure!(r.status == 200, "room state: HTTP {}: {}", r.status, r.body);
    r.json()
}

/// The public id of the participant called `name`.
fn id_of(state: &Value, name: &str) -> Result<String> {
    state["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .and_then(|p| p["id"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no participant {name:?} in {state}"))
}

#[tokio::test]
async fn issue11_sessions_belong_to_their_identity_and_admins_mute_and_kick() -> Result<()> {
    let server = secured(&[])?;
    let base = server.base_url();
    let ann_token = mint(&[
        "--room",
        "own",
        "--identity",
        "ann",
        "--name",
        "Ann Archer",
        "--grant",
        "join",
    ])?;
    let bob_token = mint(&["--room", "own", "--identity", "bob", "--grant", "join"])?;
    let admin = mint(&["--room", "own", "--identity", "mod", "--grant", "admin"])?;
    let other_admin = mint(&["--room", "elsewhere", "--identity", "x", "--grant", "admin"])?;

    let ann = TestClient::join_with(
        base,
        "own",
        Role::Participant,
        Some(SendMedia::new(colours::RED, 440.0)),
        "whatever-ann-typed",
        join_options(&ann_token),
    )
    .await?;
    let bob = TestClient::join_with(
        base,
        "own",
        Role::Participant,
        Some(SendMedia::new(colours::BLUE, 660.0)),
        "Bob",
        join_options(&bob_token),
    )
    .await?;
    let mut events = EventStream::open_with(base, "own", Some(&bob_token)).await?;
    assert!(
        EventStream::open(base, "own").await.is_err(),
        "the event stream needs a token"
    );

    // The session URL's secret: 128 bits, and nowhere in what the room publishes.
    let secret = url_secret(ann.session_url());
    assert_eq!(secret.len(), 32, "{secret}");
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()), "{secret}");
    let state = room_state(&server, "own", &bob_token).await?;
    let text = state.to_string();
    assert!(
        !text.contains(&secret),
        "the room publishes a secret: {text}"
    );
    assert!(!text.contains(&url_secret(bob.session_url())), "{text}");
    // The token's name wins over ?name=.
    let ann_id = id_of(&state, "Ann Archer")?;
    let bob_id = id_of(&state, "Bob")?;
    assert_ne!(ann_id, secret);
    assert_ne!(bob_id, url_secret(bob.session_url()));

    // Bob sees Ann's red and hears her 440 Hz.
    bob.wait_for_frame(DEADLINE, |f| {
        f.width == 1280
            && (0..f.width - 20).step_by(40).any(|x| {
                is_close(
                    average_colour(f, Rect::new(x, 340, 20, 20)),
                    colours::RED,
                    24,
                )
            })
    })
    .await
    .context("Ann's red tile")?;
    let heard = tone_level_db(
        &bob.next_audio(Duration::from_secs(1), DEADLINE).await?,
        48_000,
        440.0,
    );
    assert!(heard > -40.0, "Bob hears Ann: {heard:.1} dBFS");

    // Strangers and other participants cannot touch Ann's session.
    let ann_url = ann.session_url().clone();
    let by_id = url(&server, &format!("/rooms/own/sessions/{ann_id}"))?;
    let mute = |u: &Url| Url::parse(&format!("{u}/mute")).expect("a URL");
    let muting = || Some(("application/json", json!({"audio": true}).to_string()));
    let r = http::send(Method::DELETE, &ann_url, None, None).await?;
    assert_refused("DELETE without a token", &r, 401, "unauthorized");
    let r = http::send(Method::DELETE, &ann_url, Some(&bob_token), None).await?;
    assert_refused("Bob deleting Ann's URL", &r, 403, "forbidden");
    let r = http::send(Method::DELETE, &by_id, Some(&bob_token), None).await?;
    assert_refused("Bob kicking Ann by id", &r, 403, "forbidden");
    let r = http::send(Method::PUT, &mute(&by_id), Some(&bob_token), muting()).await?;
    assert_refused("Bob muting Ann by id", &r, 403, "forbidden");
    let r = http::send(Method::PUT, &mute(&ann_url), Some(&bob_token), muting()).await?;
    assert_refused("Bob muting Ann's URL", &r, 403, "forbidden");
    let r = http::send(Method::DELETE, &by_id, Some(&other_admin), None).await?;
    assert_refused("another room's admin", &r, 403, "forbidden");
    let r = http::send(
        Method::DELETE,
        &url(
            &server,
            "/rooms/own/sessions/0123456789abcdef0123456789abcdef",
        )?,
        Some(&admin),
        None,
    )
    .await?;
    assert_refused("a secret that is no session", &r, 404, "unknown_session");
    assert_eq!(ann.connection_state(), RTCPeerConnectionState::Connected);

    // The admin mutes Ann server-side: her voice leaves Bob's mix, and she cannot undo it.
    let r = http::send(Method::PUT, &mute(&by_id), Some(&admin), muting()).await?;
    assert_eq!(r.status, 204, "{}", r.body);
    // Other updates (who speaks, Bob's uplink limit) may come first: wait for Ann's mute.
    events
        .until_where(
            "participant_updated",
            |u| {
                u["participant"]["id"] == ann_id.as_str() && u["participant"]["audio_muted"] == true
            },
            DEADLINE,
        )
        .await
        .context("Ann shown muted")?;
    let r = http::send(
        Method::PUT,
        &mute(&ann_url),
        Some(&ann_token),
        Some(("application/json", json!({"audio": false}).to_string())),
    )
    .await?;
    assert_eq!(r.status, 204, "Ann's own unmute is taken: {}", r.body);
    let state = room_state(&server, "own", &admin).await?;
    let ann_state = state["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"] == ann_id.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ann_state["audio_muted"], true, "held by the admin: {state}");
    bob.next_audio(Duration::from_millis(500), DEADLINE).await?;
    let muted = tone_level_db(
        &bob.next_audio(Duration::from_secs(1), DEADLINE).await?,
        48_000,
        440.0,
    );
    assert!(
        muted < heard - 30.0,
        "Ann muted by the admin is still heard: {muted:.1} dBFS (was {heard:.1})"
    );

    // The admin kicks Ann: she is told by the end of her connection, the room by an event.
    let r = http::send(Method::DELETE, &by_id, Some(&admin), None).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let left = events.until("participant_left", DEADLINE).await?;
    assert_eq!(left["id"], ann_id.as_str(), "{left}");
    assert_eq!(left["reason"], "kicked", "{left}");
    ann.wait_for_disconnect(DEADLINE).await?;
    let r = http::send(Method::DELETE, &ann_url, Some(&ann_token), None).await?;
    assert_refused("the kicked session's own URL", &r, 404, "unknown_session");

    // Bob may leave by his own URL with his own token.
    let bob_url = bob.session_url().clone();
    let r = http::send(Method::DELETE, &bob_url, Some(&bob_token), None).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let left = events.until("participant_left", DEADLINE).await?;
    assert_eq!(left["reason"], "left", "{left}");
    ann.disconnect().await;
    bob.disconnect().await;

    assert_no_secret_logged(&server, &[&ann_token, &bob_token, &admin, &secret, SECRET]);
    Ok(())
}

#[tokio::test]
async fn issue11_an_admin_ends_a_room_for_everyone() -> Result<()> {
    let server = secured(&[])?;
    let base = server.base_url();
    let join = mint(&["--room", "end", "--identity", "cy", "--grant", "join"])?;
    let view = mint(&["--room", "end", "--identity", "wall", "--grant", "view"])?;
    let admin = mint(&["--room", "end", "--identity", "mod", "--grant", "admin"])?;
    let cy = TestClient::join_with(
        base,
        "end",
        Role::Participant,
        Some(SendMedia::new(colours::GREEN, 440.0)),
        "Cy",
        join_options(&join),
    )
    .await?;
    let wall =
        TestClient::join_with(base, "end", Role::Viewer, None, "wall", join_options(&view)).await?;
    wall.wait_for_frame(DEADLINE, |f| f.width == 1280).await?;
    let mut events = EventStream::open_with(base, "end", Some(&view)).await?;
    let end = url(&server, "/rooms/end")?;

    let r = http::send(Method::DELETE, &end, Some(&join), None).await?;
    assert_refused("a participant ending the room", &r, 403, "forbidden");
    let r = http::send(Method::DELETE, &end, Some(&admin), None).await?;
    assert_eq!(r.status, 204, "{}", r.body);
    let left = events.until("participant_left", DEADLINE).await?;
    assert_eq!(left["reason"], "room_ended", "{left}");
    events.until("room_ended", DEADLINE).await?;
    cy.wait_for_disconnect(DEADLINE).await?;
    wall.wait_for_disconnect(DEADLINE).await?;
    let r = http::send(Method::GET, &end, Some(&admin), None).await?;
    assert_refused("the ended room", &r, 404, "unknown_room");
    let r = http::send(Method::DELETE, &end, Some(&admin), None).await?;
    assert_refused("ending it again", &r, 404, "unknown_room");
    cy.disconnect().await;
    wall.disconnect().await;
    Ok(())
}
