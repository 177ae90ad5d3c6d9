//! Issue 11 in chromium: the join page over HTTPS on a real name, and pages that carry the
//! access token of their link.

use super::*;

/// Issue 11: the join page over HTTPS on a name other than localhost (what a colleague on
/// another machine opens): the camera opens and the participant decodes the composite. The
/// same page over plain HTTP on that name explains that the camera needs HTTPS.
#[test]
fn issue11_the_join_page_over_https_on_a_real_name() -> Result<()> {
    if !isolated("browser::access::issue11_the_join_page_over_https_on_a_real_name")? {
        return Ok(());
    }
    runtime().block_on(async {
        use base64::Engine;
        use sha2::{Digest, Sha256};

        // A certificate for the name, trusted by chromium through its public key's hash.
        let dir = tempfile::tempdir()?;
        let key = rcgen::KeyPair::generate()?;
        let cert =
            rcgen::CertificateParams::new(vec!["tessera.test".to_owned(), "127.0.0.1".to_owned()])?
                .self_signed(&key)?;
        std::fs::write(dir.path().join("cert.pem"), cert.pem())?;
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem())?;
        let spki = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(
            rcgen::PublicKeyData::subject_public_key_info(&key),
        ));
        crate::support::http::trust(cert.der());
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        let server = TestServer::start(&[
            "--tls-cert",
            cert_path.to_str().context("utf-8 path")?,
            "--tls-key",
            key_path.to_str().context("utf-8 path")?,
        ])?;
        let port = server.base_url().rsplit(':').next().context("a port")?;
        let by_name = format!("https://tessera.test:{port}");
        let room = "secure";
        let robot = TestClient::join(
            server.base_url(),
            room,
            Role::Participant,
            Some(SendMedia::new(colours::RED, 440.0)),
            "Robot",
        )
        .await?;

        let driver = Chromedriver::start()?;
        let resolve = "--host-resolver-rules=MAP tessera.test 127.0.0.1".to_owned();
        let trust = format!("--ignore-certificate-errors-spki-list={spki}");
        let ann = Browser::open_with(&driver, &[resolve.as_str(), trust.as_str()], &[]).await?;
        join_page(&ann, &by_name, room, "Ann", "").await?;
        assert_receiving(&ann, "window.tessera.pc", "Ann over HTTPS").await?;
        let grid = tiles(&server, room).await?;
        let robot_tile = grid
            .iter()
            .find(|(n, _)| n == "Robot")
            .map(|(_, r)| *r)
            .context("the robot's tile")?;
        wait_page_colour(
            &ann,
            robot_tile,
            colours::RED,
            "Ann sees the robot's red tile",
        )
        .await?;
        ann.screenshot("participant-page-https").await?;

        // The same page over plain HTTP on that name: no camera, and a sentence saying why.
        let plain = TestServer::start(&[])?;
        let plain_port = plain.base_url().rsplit(':').next().context("a port")?;
        let bob = Browser::open_with(&driver, &[resolve.as_str()], &[]).await?;
        bob.goto(&format!(
            "http://tessera.test:{plain_port}/?room={room}&name=Bob"
        ))
        .await?;
        let sentence = join_error(&bob, "the needs-HTTPS sentence").await?;
        println!("plain HTTP: {sentence:?}");
        ensure!(sentence.contains("https://"), "plain HTTP: {sentence:?}");
        let no_devices: bool = bob
            .eval("return navigator.mediaDevices === undefined;")
            .await?;
        ensure!(no_devices, "chromium hides the camera on an insecure page");
        bob.screenshot("participant-page-plain-http").await?;
        for b in [ann, bob] {
            b.close().await?;
        }
        drop(robot);
        Ok(())
    })
}

/// Issue 11: on a server that needs tokens, a join link with `?token=` joins (the page sends
/// the token with the offer and reads the room's events with it), a viewer link with a view
/// token plays, and a page opened without one says how to get one before anything else.
#[test]
fn issue11_pages_carry_the_token_of_their_link() -> Result<()> {
    if !isolated("browser::access::issue11_pages_carry_the_token_of_their_link")? {
        return Ok(());
    }
    runtime().block_on(async {
        let server = TestServer::start_with_env(&[], &crate::auth::ENV)?;
        let base = server.base_url();
        let room = "tokens";
        let ann_token = crate::auth::mint(&["--room", room, "--identity", "ann", "--grant", "join"])?;
        let wall_token =
            crate::auth::mint(&["--room", room, "--identity", "wall", "--grant", "view"])?;
        let driver = Chromedriver::start()?;

        let ann = Browser::open(&driver).await?;
        join_page(&ann, base, room, "Ann", &format!("&token={ann_token}")).await?;
        assert_receiving(&ann, "window.tessera.pc", "Ann with a token").await?;
        // Her list comes from the event stream, which needs the token too.
        ann.wait_for(
            "Ann listed from the room's events",
            "return document.getElementById('people').textContent.includes('Ann');",
            DEADLINE,
        )
        .await?;

        let wall = Browser::open(&driver).await?;
        wall.goto(&format!("{base}/view.html?room={room}&token={wall_token}"))
            .await?;
        wall.wait_for(
            "the viewer plays with its token",
            "return window.tesseraView.connects >= 1;",
            DEADLINE,
        )
        .await?;

        let stranger = Browser::open(&driver).await?;
        stranger.goto(&format!("{base}/?room={room}&name=Eve")).await?;
        let sentence = join_error(&stranger, "the needs-a-token sentence").await?;
        println!("no token: {sentence:?}");
        ensure!(
            sentence.contains("access token") && sentence.contains("tessera token"),
            "no token: {sentence:?}"
        );
        let watcher = Browser::open(&driver).await?;
        watcher.goto(&format!("{base}/view.html?room={room}")).await?;
        let status = watcher
            .wait_for(
                "the viewer's needs-a-token sentence",
                "const t = document.getElementById('status').textContent; return t.includes('access token') && t;",
                DEADLINE,
            )
            .await?;
        println!("viewer without a token: {status}");
        stranger.screenshot("participant-page-no-token").await?;
        for b in [ann, wall, stranger, watcher] {
            b.close().await?;
        }
        Ok(())
    })
}
