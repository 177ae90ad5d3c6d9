//! Issue 12 in chromium: the pages behind a NAT with no route to the server (the test network
//! of `support::turn_net`, chromedriver and chromium in its client namespace). With a relay
//! they join and watch through coturn, over UDP and, with UDP dropped, over TCP; without one
//! they say why they cannot connect.

use super::*;
use crate::support::turn_net::{self, Coturn, Forwarder, Namespace, NsRuntime, TurnNet};

const SECRET: &str = "chromium-and-coturn-share-this";
/// The issue's bound for a page to say its connection does not come up.
const SAYS_WHY_WITHIN: Duration = Duration::from_secs(15);

/// The type and protocol of the local candidate of the page's selected pair (`relay`, `tcp`).
async fn selected_local(browser: &Browser, pc_expr: &str) -> Result<(String, String)> {
    let body = format!(
        "const pc = {pc_expr}; if (!pc) return null;
         const stats = await pc.getStats(); let pair = null; const byId = new Map();
         stats.forEach((s) => {{ byId.set(s.id, s); }});
         stats.forEach((s) => {{
           if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
         }});
         if (!pair) return null;
         const local = byId.get(pair.localCandidateId);
         return local ? [local.candidateType, local.relayProtocol || local.protocol] : null;"
    );
    let value = browser
        .wait_for("a selected candidate pair", &body, DEADLINE)
        .await?;
    let (kind, protocol): (String, String) = serde_json::from_value(value)?;
    Ok((kind, protocol))
}

/// A chromium in the client namespace whose pages may use the camera on `origin` (plain HTTP
/// on an address: a browser allows the camera only on secure origins).
async fn browser_behind_nat(
    behind: &NsRuntime,
    driver: &Chromedriver,
    origin: &str,
) -> Result<Browser> {
    let url = driver.url().to_owned();
    let flag = format!("--unsafely-treat-insecure-origin-as-secure={origin}");
    behind
        .run(async move { Browser::open_at(url, &[&flag], &[]).await })
        .await?
}

/// Drops every UDP datagram in and out of `ns` (nftables): only TCP gets through.
fn drop_udp(ns: &Namespace) -> Result<()> {
    ns.run(&["nft", "add", "table", "inet", "block"])?;
    for (chain, hook) in [("in", "input"), ("out", "output")] {
        ns.run(&[
            "nft",
            "add",
            "chain",
            "inet",
            "block",
            chain,
            &format!("{{ type filter hook {hook} priority 0; policy accept; }}"),
        ])?;
        ns.run(&[
            "nft", "add", "rule", "inet", "block", chain, "meta", "l4proto", "udp", "drop",
        ])?;
    }
    Ok(())
}

#[test]
fn issue12_chromium_behind_a_nat_joins_through_coturn_over_udp_then_tcp() -> Result<()> {
    if !isolated(
        "browser::relay::issue12_chromium_behind_a_nat_joins_through_coturn_over_udp_then_tcp",
    )? {
        return Ok(());
    }
    runtime().block_on(async {
        let dir = tempfile::tempdir()?;
        let net = TurnNet::build().await?;
        let _coturn = Coturn::start(dir.path(), SECRET).await?;
        let tcp = format!(
            "turn:{}:{}?transport=tcp",
            turn_net::TURN_CLIENT_SIDE,
            turn_net::TURN_PORT
        );
        let server = TestServer::start_in(
            net.server.pid(),
            turn_net::SERVER,
            &[
                "--turn-url",
                &Coturn::url_udp(),
                "--turn-url",
                &tcp,
                "--turn-secret",
                SECRET,
            ],
        )?;
        let forwarder = Forwarder::start(turn_net::TURN_CLIENT_SIDE, server.addr()?).await?;
        let base = forwarder.base_url();
        let behind = NsRuntime::enter(&net.client)?;
        let driver = Chromedriver::start_in(net.client.pid())?;

        // A red camera reaches the server directly; Cleo's page is behind the NAT.
        let red = TestClient::join_with(
            server.base_url(),
            "relayed",
            Role::Contributor,
            Some(SendMedia::new(colours::RED, 440.0)),
            "Camera",
            turn_net::direct(),
        )
        .await?;
        let cleo = browser_behind_nat(&behind, &driver, &base).await?;
        // Join time, click to first decoded frame, through the relay and (from a chromium in
        // the turn namespace, which routes to the server) directly, alternating.
        let direct_driver = Chromedriver::start()?;
        let direct_origin = server.base_url().to_owned();
        let flag = format!("--unsafely-treat-insecure-origin-as-secure={direct_origin}");
        let direct = Browser::open_with(&direct_driver, &[&flag], &[]).await?;
        let (mut relayed_ms, mut direct_ms) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            relayed_ms.push(join_times(&cleo, &base, "relayed", true).await?);
            direct_ms.push(join_times(&direct, &direct_origin, "relayed", true).await?);
        }
        relayed_ms.sort_unstable();
        direct_ms.sort_unstable();
        println!(
            "chromium join time, click to first decoded frame, median of 5: through coturn {} ms \
             {relayed_ms:?}, direct {} ms {direct_ms:?}",
            relayed_ms[2], direct_ms[2]
        );
        direct.close().await?;
        drop(direct_driver);
        join_page(&cleo, &base, "relayed", "Cleo", "").await?;
        assert_receiving(&cleo, "window.tessera.pc", "Cleo behind the NAT").await?;
        let (kind, protocol) = selected_local(&cleo, "window.tessera.pc").await?;
        ensure!(
            (kind.as_str(), protocol.as_str()) == ("relay", "udp"),
            "Cleo's pair: {kind} over {protocol}"
        );
        let left = Rect::new(280, 320, 80, 80);
        wait_page_colour(&cleo, left, colours::RED, "Cleo sees the red camera's tile").await?;
        let right = Rect::new(920, 320, 80, 80);
        let what = "Cleo's own (fake camera) tile, sent through the relay";
        eventually(DEADLINE, what, || async {
            let seen = page_colour(&cleo, right).await?;
            ensure!(seen.is_some_and(looks_like_fake_camera), "saw {seen:?}");
            Ok(Some(()))
        })
        .await?;
        let wall = browser_behind_nat(&behind, &driver, &base).await?;
        wall.goto(&format!("{base}/view.html?room=relayed")).await?;
        assert_receiving(
            &wall,
            "window.tesseraView.pc",
            "the viewer page behind the NAT",
        )
        .await?;
        ensure!(selected_local(&wall, "window.tesseraView.pc").await?.0 == "relay");
        let shot = wall.screenshot("relay-viewer").await?;
        println!("screenshot: {}", shot.display());
        cleo.click("#leave").await?;
        wall.close().await?;

        // A network that drops UDP: the relay over TCP still carries the call.
        drop_udp(&net.client)?;
        join_page(&cleo, &base, "relayed", "Cleo", "").await?;
        assert_receiving(&cleo, "window.tessera.pc", "Cleo with UDP dropped").await?;
        let (kind, protocol) = selected_local(&cleo, "window.tessera.pc").await?;
        ensure!(
            (kind.as_str(), protocol.as_str()) == ("relay", "tcp"),
            "with UDP dropped, Cleo's pair: {kind} over {protocol}"
        );
        wait_page_colour(
            &cleo,
            left,
            colours::RED,
            "Cleo sees the red camera over TCP",
        )
        .await?;
        cleo.close().await?;
        drop(red);
        Ok(())
    })
}

#[test]
fn issue12_chromium_behind_a_nat_without_a_relay_says_why_it_cannot_connect() -> Result<()> {
    if !isolated(
        "browser::relay::issue12_chromium_behind_a_nat_without_a_relay_says_why_it_cannot_connect",
    )? {
        return Ok(());
    }
    runtime().block_on(async {
        let net = TurnNet::build().await?;
        let server = TestServer::start_in(net.server.pid(), turn_net::SERVER, &[])?;
        let forwarder = Forwarder::start(turn_net::TURN_CLIENT_SIDE, server.addr()?).await?;
        let base = forwarder.base_url();
        let behind = NsRuntime::enter(&net.client)?;
        let driver = Chromedriver::start_in(net.client.pid())?;
        let _red = TestClient::join_with(
            server.base_url(),
            "blocked",
            Role::Contributor,
            Some(SendMedia::new(colours::RED, 440.0)),
            "Camera",
            turn_net::direct(),
        )
        .await?;

        let dana = browser_behind_nat(&behind, &driver, &base).await?;
        join_page(&dana, &base, "blocked", "Dana", "").await?;
        let sentence = dana
            .wait_for(
                "the join page says the network blocks the connection",
                "const e = document.getElementById('call-error');
                 return e && !e.hidden && e.textContent.includes('no relay (TURN)') ? e.textContent : null;",
                SAYS_WHY_WITHIN,
            )
            .await?;
        println!("join page: {sentence}");
        let wall = browser_behind_nat(&behind, &driver, &base).await?;
        wall.goto(&format!("{base}/view.html?room=blocked")).await?;
        let sentence = wall
            .wait_for(
                "the viewer page says the network blocks the connection",
                "const e = document.getElementById('status');
                 return e && e.textContent.includes('no relay (TURN)') ? e.textContent : null;",
                SAYS_WHY_WITHIN,
            )
            .await?;
        println!("viewer page: {sentence}");
        let shot = wall.screenshot("relay-none-viewer").await?;
        println!("screenshot: {}", shot.display());
        Ok(())
    })
}
