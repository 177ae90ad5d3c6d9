//! Issue 12: clients that cannot reach the server directly join through a real coturn, with
//! credentials the server mints per caller and hands out (RFC 9725 `Link` headers on the `201`,
//! `GET /ice-servers` for pages). The network tests build their own namespaces
//! (`support::turn_net`): a client with no route to the server, coturn between them.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use reqwest::Url;
use rtc::peer_connection::configuration::RTCIceServer;
use serde_json::Value;
use tessera::ice_servers::rest_credential;

use crate::support::analysis::{
    Frame, Rect, Rgb, average_colour, colours, is_close, tone_level_db,
};
use crate::support::http;
use crate::support::netns::isolated;
use crate::support::turn_net::{self, Coturn, Forwarder, NsRuntime, TurnNet};
use crate::support::{JoinOptions, Role, SendMedia, TestClient, TestServer};

const SECRET: &str = "coturn-and-tessera-share-this-secret";
const FRAME_DEADLINE: Duration = Duration::from_secs(15);

/// The server's ICE servers for a caller, as `RTCIceServer`s (`GET /ice-servers`).
async fn ice_servers(base: &str, token: Option<&str>) -> Result<Vec<RTCIceServer>> {
    let url = Url::parse(&format!("{base}/ice-servers"))?;
    let r = http::send(reqwest::Method::GET, &url, token, None).await?;
    ensure!(r.status == 200, "GET /ice-servers: {} {}", r.status, r.body);
    let body = r.json()?;
    let list = body["iceServers"]
        .as_array()
        .with_context(|| format!("no iceServers in {body}"))?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    Ok(list
        .iter()
        .map(|s| RTCIceServer {
            urls: s["urls"]
                .as_array()
                .map(|u| u.iter().map(text).collect())
                .unwrap_or_default(),
            username: text(&s["username"]),
            credential: text(&s["credential"]),
        })
        .collect())
}

/// Two tiles side by side on the 1280x720 canvas: `left` and `right`.
fn shows_pair(f: &Frame, left: Rgb, right: Rgb) -> bool {
    f.width == 1280
        && is_close(average_colour(f, Rect::new(280, 320, 80, 80)), left, 48)
        && is_close(average_colour(f, Rect::new(920, 320, 80, 80)), right, 48)
}

/// Whether `client` hears `hz` in its next two seconds of audio.
async fn hears(client: &TestClient, hz: f32) -> Result<f32> {
    let audio = client
        .next_audio(Duration::from_secs(2), Duration::from_secs(10))
        .await?;
    Ok(tone_level_db(&audio, 48_000, hz))
}

/// Options for a client in the client namespace, with `ice` as its ICE servers.
fn behind_nat(ice: Vec<RTCIceServer>) -> JoinOptions {
    JoinOptions {
        bind: Some(format!("{}:0", turn_net::CLIENT)),
        ice_servers: ice,
        ..JoinOptions::default()
    }
}

/// A client in the client namespace joins (on that namespace's runtime).
async fn join_behind_nat(
    ns: &NsRuntime,
    base: String,
    room: &'static str,
    role: Role,
    send: Option<SendMedia>,
    name: &'static str,
    ice: Vec<RTCIceServer>,
) -> Result<TestClient> {
    ns.run(
        async move { TestClient::join_with(&base, room, role, send, name, behind_nat(ice)).await },
    )
    .await?
}

/// Median of a few durations, in milliseconds.
fn median_ms(mut samples: Vec<Duration>) -> u128 {
    samples.sort();
    samples[samples.len() / 2].as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_a_client_with_no_route_to_the_server_joins_through_coturn() -> Result<()> {
    if !isolated("turn::issue12_a_client_with_no_route_to_the_server_joins_through_coturn")? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let net = TurnNet::build().await?;
    let coturn = Coturn::start(dir.path(), SECRET).await?;
    let server = TestServer::start_in(
        net.server.pid(),
        turn_net::SERVER,
        &["--turn-url", &Coturn::url_udp(), "--turn-secret", SECRET],
    )?;
    let forwarder = Forwarder::start(turn_net::TURN_CLIENT_SIDE, server.addr()?).await?;
    let behind = NsRuntime::enter(&net.client)?;

    // Ann reaches the server directly (from the turn namespace, which routes to it).
    let direct = turn_net::direct();
    let ann = TestClient::join_with(
        server.base_url(),
        "relayed",
        Role::Participant,
        Some(SendMedia::new(colours::RED, 440.0)),
        "ann",
        direct.clone(),
    )
    .await?;
    ensure!(ann.selected_local_candidate().await? == "host");

    // Bob cannot: only his HTTP gets out (the forwarder), his media goes through coturn.
    let ice = ice_servers(&forwarder.base_url(), None).await?;
    ensure!(ice.iter().any(|s| s.urls == [Coturn::url_udp()]), "{ice:?}");
    let bob = join_behind_nat(
        &behind,
        forwarder.base_url(),
        "relayed",
        Role::Participant,
        Some(SendMedia::new(colours::BLUE, 660.0)),
        "bob",
        ice.clone(),
    )
    .await?;
    ensure!(
        bob.selected_local_candidate().await? == "relay",
        "Bob's media must go through the relay"
    );
    bob.wait_for_frame(FRAME_DEADLINE, |f| {
        shows_pair(f, colours::RED, colours::BLUE)
    })
    .await
    .context("Bob decodes the composite through the relay")?;
    ann.wait_for_frame(FRAME_DEADLINE, |f| {
        shows_pair(f, colours::RED, colours::BLUE)
    })
    .await
    .context("Ann sees Bob's tile, sent through the relay")?;
    let (bob_hears, ann_hears) = (hears(&bob, 440.0).await?, hears(&ann, 660.0).await?);
    ensure!(
        bob_hears > -40.0 && ann_hears > -40.0,
        "tones: Bob hears Ann at {bob_hears:.1} dBFS, Ann hears Bob at {ann_hears:.1} dBFS"
    );
    ensure!(
        !coturn.lines_with("ALLOCATE processed, success").is_empty(),
        "coturn allocated no relay"
    );

    // A viewer behind the NAT decodes the composite too; and how long joining takes, relayed
    // or direct (POST to the first decoded frame), five times each.
    let mut relayed = Vec::new();
    let mut direct_times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let viewer = join_behind_nat(
            &behind,
            forwarder.base_url(),
            "relayed",
            Role::Viewer,
            None,
            "kiosk",
            ice.clone(),
        )
        .await?;
        viewer
            .wait_for_frame(FRAME_DEADLINE, |f| {
                shows_pair(f, colours::RED, colours::BLUE)
            })
            .await
            .context("a viewer behind the NAT decodes the composite")?;
        relayed.push(started.elapsed());
        ensure!(viewer.selected_local_candidate().await? == "relay");
        viewer.leave().await?;

        let started = Instant::now();
        let viewer = TestClient::join_with(
            server.base_url(),
            "relayed",
            Role::Viewer,
            None,
            "wall",
            direct.clone(),
        )
        .await?;
        viewer
            .wait_for_frame(FRAME_DEADLINE, |f| {
                shows_pair(f, colours::RED, colours::BLUE)
            })
            .await?;
        direct_times.push(started.elapsed());
        viewer.leave().await?;
    }
    println!(
        "join time (POST to first decoded frame), median of 5: through coturn {} ms, direct {} ms",
        median_ms(relayed),
        median_ms(direct_times)
    );
    drop(bob);
    drop(ann);
    Ok(())
}

/// The username of the TURN entry of `ice`.
fn turn_username(ice: &[RTCIceServer]) -> Result<String> {
    ice.iter()
        .find(|s| s.urls.iter().any(|u| u.starts_with("turn:")))
        .map(|s| s.username.clone())
        .context("no TURN server handed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_no_relay_or_refused_credentials_leave_a_client_behind_a_nat_unconnected()
-> Result<()> {
    if !isolated(
        "turn::issue12_no_relay_or_refused_credentials_leave_a_client_behind_a_nat_unconnected",
    )? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let net = TurnNet::build().await?;
    let coturn = Coturn::start(dir.path(), SECRET).await?;
    let url = Coturn::url_udp();
    let servers = [
        TestServer::start_in(net.server.pid(), turn_net::SERVER, &[])?,
        TestServer::start_in(
            net.server.pid(),
            turn_net::SERVER,
            &[
                "--turn-url",
                &url,
                "--turn-secret",
                SECRET,
                "--turn-ttl",
                "1s",
            ],
        )?,
        TestServer::start_in(
            net.server.pid(),
            turn_net::SERVER,
            &[
                "--turn-url",
                &url,
                "--turn-secret",
                "not-the-secret-coturn-knows",
            ],
        )?,
    ];
    let mut forwarders = Vec::new();
    for server in &servers {
        forwarders.push(Forwarder::start(turn_net::TURN_CLIENT_SIDE, server.addr()?).await?);
    }
    let behind = NsRuntime::enter(&net.client)?;

    let none = ice_servers(&forwarders[0].base_url(), None).await?;
    ensure!(
        none.is_empty(),
        "no relay configured, none handed out: {none:?}"
    );
    let expiring = ice_servers(&forwarders[1].base_url(), None).await?;
    let wrong = ice_servers(&forwarders[2].base_url(), None).await?;
    let (expired_user, wrong_user) = (turn_username(&expiring)?, turn_username(&wrong)?);
    // The credentials of the 1 s TTL expire: wait for the second their username names to pass.
    let expiry: u64 = expired_user
        .split(':')
        .next()
        .and_then(|s| s.parse().ok())
        .context("an expiry before the ':'")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    tokio::time::sleep(Duration::from_secs(expiry.saturating_sub(now) + 2)).await;

    // Three clients behind the NAT at once: no relay, expired credentials, a wrong secret.
    let attempts = [none, expiring, wrong]
        .into_iter()
        .zip(&forwarders)
        .map(|(ice, forwarder)| {
            join_behind_nat(
                &behind,
                forwarder.base_url(),
                "blocked",
                Role::Viewer,
                None,
                "nobody",
                ice,
            )
        });
    let results = futures::future::join_all(attempts).await;
    for (result, what) in results.iter().zip(["no relay", "expired", "wrong secret"]) {
        if let Ok(client) = result {
            bail!(
                "{what}: a client with no route to the server connected ({})",
                client.selected_local_candidate().await?
            );
        }
    }
    // coturn refused both sets of credentials (after its first, unauthenticated challenge).
    for user in [&expired_user, &wrong_user] {
        let lines = coturn.lines_with(&format!("user <{user}>"));
        ensure!(
            lines.iter().any(|l| l.contains("401")),
            "coturn did not refuse {user}: {lines:?}"
        );
        ensure!(
            !lines.iter().any(|l| l.contains("success")),
            "coturn accepted {user}: {lines:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn issue12_relay_credentials_are_minted_per_caller_and_handed_out_as_rfc_9725_says()
-> Result<()> {
    use crate::auth::{ENV, mint};
    let turn = "turn:127.0.0.1:3478?transport=udp";
    let turn_tcp = "turn:127.0.0.1:3478?transport=tcp";
    let stun = "stun:127.0.0.1:3478";
    let server = TestServer::start_with_env(
        &[
            "--stun-url",
            stun,
            "--turn-url",
            turn,
            "--turn-url",
            turn_tcp,
            "--turn-secret",
            SECRET,
            "--turn-ttl",
            "2h",
        ],
        &ENV,
    )?;
    let base = server.base_url();
    let kiosk = mint(&["--room", "hall", "--identity", "kiosk-7", "--grant", "view"])?;

    // On the 201 of WHEP: one Link per URL, the TURN ones with credentials for the identity.
    let offer = crate::support::client::make_offer(Role::Viewer, "kiosk").await?;
    let url = Url::parse(&format!("{base}/rooms/hall/whep"))?;
    let r = http::send(
        reqwest::Method::POST,
        &url,
        Some(&kiosk),
        Some(("application/sdp", offer)),
    )
    .await?;
    ensure!(r.status == 201, "{} {}", r.status, r.body);
    ensure!(r.links.len() == 3, "one Link per URL: {:?}", r.links);
    ensure!(
        r.links[0] == format!("<{stun}>; rel=\"ice-server\""),
        "{:?}",
        r.links
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    for (link, url) in r.links[1..].iter().zip([turn, turn_tcp]) {
        let username = between(link, "username=\"", "\"")?;
        let credential = between(link, "credential=\"", "\"")?;
        ensure!(
            link.starts_with(&format!("<{url}>; rel=\"ice-server\"")),
            "{link}"
        );
        ensure!(link.ends_with("credential-type=\"password\""), "{link}");
        let (expiry, who) = username.split_once(':').context("expiry:who")?;
        let expiry: u64 = expiry.parse()?;
        ensure!(who == "kiosk-7", "{username}");
        ensure!(
            (now + 7200 - 5..=now + 7200 + 5).contains(&expiry),
            "expires in 2 h: {expiry} (now {now})"
        );
        ensure!(credential == rest_credential(SECRET, &username), "{link}");
    }

    // The same for a page, before its offer; nothing without a token that may send or watch.
    let page = ice_servers(base, Some(&kiosk)).await?;
    ensure!(
        page.len() == 2 && page[1].urls == [turn, turn_tcp],
        "{page:?}"
    );
    ensure!(page[1].username.ends_with(":kiosk-7"), "{page:?}");
    let get = |token: Option<String>, query: &'static str| {
        let url = format!("{base}/ice-servers{query}");
        async move {
            http::send(
                reqwest::Method::GET,
                &Url::parse(&url)?,
                token.as_deref(),
                None,
            )
            .await
        }
    };
    let anonymous = get(None, "").await?;
    ensure!(anonymous.status == 401, "{}", anonymous.body);
    ensure!(!anonymous.body.contains("credential"), "{}", anonymous.body);
    let recorder = mint(&["--room", "hall", "--identity", "rec", "--grant", "record"])?;
    ensure!(get(Some(recorder), "").await?.status == 403);
    ensure!(get(Some(kiosk.clone()), "?room=other").await?.status == 403);
    ensure!(get(Some(kiosk.clone()), "?room=hall").await?.status == 200);
    // No relay credentials on a preflight.
    let preflight = http::client()?
        .request(reqwest::Method::OPTIONS, url.clone())
        .send()
        .await?;
    ensure!(
        preflight.headers().get(reqwest::header::LINK).is_none(),
        "a preflight carries no Link"
    );
    Ok(())
}

/// The text of `s` between `start` and the next `end`.
fn between(s: &str, start: &str, end: &str) -> Result<String> {
    let from = s.find(start).with_context(|| format!("{start} in {s}"))? + start.len();
    let len = s[from..]
        .find(end)
        .with_context(|| format!("{end} in {s}"))?;
    Ok(s[from..from + len].to_owned())
}
