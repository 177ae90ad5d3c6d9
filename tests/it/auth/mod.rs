//! Issue 11, access tokens: tokens minted by `tessera token`, presented as `Authorization:
//! Bearer` (or `?access_token=` on GET); 401 and 403 with their JSON bodies; session URLs whose
//! secret is never published; owners, administrators, kicks and server-side mutes; recordings
//! behind the `record` grant with signed download links; an open server that says so.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use reqwest::{Method, Url};
use serde_json::{Value, json};
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::support::analysis::{Rect, average_colour, colours, is_close, tone_level_db};
use crate::support::client::make_offer;
use crate::support::events::EventStream;
use crate::support::http::{self, RawResponse};
use crate::support::{JoinOptions, Role, SendMedia, TestClient, TestServer, eventually};

const KEY: &str = "it-key";
pub(crate) const SECRET: &str = "it-secret-of-at-least-thirty-two-characters";
pub(crate) const ENV: [(&str, &str); 2] =
    [("TESSERA_API_KEY", KEY), ("TESSERA_API_SECRET", SECRET)];
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs the tessera binary with `args` and the test key in its environment; waits at most
/// `DEADLINE` for it to exit. (exit status, stdout, stderr)
fn run_tessera(args: &[&str], env: &[(&str, &str)]) -> Result<(ExitStatus, String, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning tessera")?;
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("tessera {args:?} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out)?;
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err)?;
    }
    Ok((status, out, err))
}

/// `tessera token <args>`: the token it prints, alone on its line.
pub(crate) fn mint(args: &[&str]) -> Result<String> {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    let (status, out, err) = run_tessera(&all, &ENV)?;
    ensure!(status.success(), "tessera token {args:?}: {status}: {err}");
    let lines: Vec<&str> = out.lines().collect();
    ensure!(lines.len() == 1, "one line, got {out:?}");
    ensure!(
        lines[0].split('.').count() == 3,
        "a JWT is three dot-separated parts: {out:?}"
    );
    Ok(lines[0].to_owned())
}

/// The payload of a JWT, read without verifying (what a client library shows).
fn payload(token: &str) -> Result<Value> {
    use base64::Engine;
    let part = token.split('.').nth(1).context("a payload part")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// A server that needs tokens, logging at debug so that the test can look for leaks.
fn secured(extra: &[&str]) -> Result<TestServer> {
    let mut env = ENV.to_vec();
    env.push(("TESSERA_LOG", "tessera=debug,info"));
    TestServer::start_with_env(extra, &env)
}

fn url(server: &TestServer, path: &str) -> Result<Url> {
    Url::parse(&server.url(path)).context("a URL")
}

/// `response` is `status` with the JSON error `code`.
fn assert_refused(case: &str, response: &RawResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{case}: {}", response.body);
    let body: Value = serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("{case}: the body is not JSON ({e}): {}", response.body));
    assert_eq!(body["error"], code, "{case}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}: a sentence says why: {body}"
    );
    if status == 401 {
        let challenge = response.www_authenticate.as_deref().unwrap_or("");
        assert!(
            challenge.starts_with("Bearer"),
            "{case}: 401 says how to authenticate: {challenge:?}"
        );
    }
}

/// A real offer from the test client's WebRTC stack (no media flows from it).
async fn offer(role: Role) -> Result<String> {
    make_offer(role, "probe").await
}

#[tokio::test]
async fn issue11_tokens_are_checked_on_every_request_with_401_and_403() -> Result<()> {
    let server = secured(&[])?;
    let join_a = mint(&["--room", "a", "--identity", "ann", "--grant", "join"])?;
    let view_a = mint(&["--room", "a", "--identity", "wall", "--grant", "view"])?;
    let admin = mint(&["--admin"])?;

    // What `tessera token` signed.
    let claims = payload(&join_a)?;
    assert_eq!(claims["iss"], KEY, "{claims}");
    assert_eq!(claims["sub"], "ann");
    assert_eq!(claims["room"], "a");
    assert_eq!(claims["grants"], json!(["join"]));
    let exp = claims["exp"].as_u64().context("exp")?;
    let now = tessera::auth::now();
    assert!(
        (now + 6 * 3600 - 60..=now + 6 * 3600 + 60).contains(&exp),
        "the default lifetime is 6 h: exp {exp}, now {now}"
    );
    let server_admin = payload(&admin)?;
    assert_eq!(server_admin["room"], "*");
    assert_eq!(server_admin["grants"], json!(["admin"]));
    // Mistakes on the command line are said, not signed.
    let (status, out, err) = run_tessera(
        &["token", "--room", "a", "--identity", "x", "--grant", "own"],
        &ENV,
    )?;
    assert!(!status.success() && out.is_empty(), "{out}");
    assert!(err.contains("unknown grant"), "{err}");

    // Tokens made otherwise: expired, from another secret, not a JWT.
    let key = tessera::auth::ApiKey {
        key: KEY.into(),
        secret: SECRET.into(),
    };
    let claims = |exp: u64| tessera::auth::Claims {
        iss: KEY.into(),
        sub: "ann".into(),
        name: None,
        exp,
        nbf: None,
        room: "a".into(),
        grants: vec![tessera::auth::Grant::Join],
    };
    let expired = tessera::auth::mint(&key, &claims(now - 3600))?;
    let forged = tessera::auth::mint(
        &tessera::auth::ApiKey {
            key: KEY.into(),
            secret: "another-secret-of-at-least-thirty-two-chars".into(),
        },
        &claims(now + 3600),
    )?;
    let unknown_key = tessera::auth::mint(
        &tessera::auth::ApiKey {
            key: "nobody".into(),
            secret: SECRET.into(),
        },
        &tessera::auth::Claims {
            iss: "nobody".into(),
            ..claims(now + 3600)
        },
    )?;

    let sdp = offer(Role::Participant).await?;
    let whip = |room: &str| url(&server, &format!("/rooms/{room}/whip"));
    let body = || Some(("application/sdp", sdp.clone()));
    for (case, token) in [
        ("no token", None),
        ("not a JWT", Some("garbage")),
        ("an expired token", Some(expired.as_str())),
        ("a token signed with another secret", Some(forged.as_str())),
        ("a token of an unknown key", Some(unknown_key.as_str())),
    ] {
        let r = http::send(Method::POST, &whip("a")?, token, body()).await?;
        assert_refused(case, &r, 401, "unauthorized");
        if token.is_some() {
            let challenge = r.www_authenticate.as_deref().unwrap_or("");
            assert!(challenge.contains("invalid_token"), "{case}: {challenge}");
        }
    }
    let r = http::send(Method::POST, &whip("a")?, Some(&expired), body()).await?;
    assert!(r.body.contains("expired"), "{}", r.body);
    // A header in another scheme is no token either.
    let basic = http::client()?
        .post(whip("a")?)
        .header("authorization", "Basic dXNlcjpwYXNz")
        .header("content-type", "application/sdp")
        .body(sdp.clone())
        .send()
        .await?;
    assert_eq!(basic.status(), 401);

    // Good tokens without the grant, or for another room.
    let r = http::send(Method::POST, &whip("a")?, Some(&view_a), body()).await?;
    assert_refused("a view token on WHIP", &r, 403, "forbidden");
    let r = http::send(Method::POST, &whip("b")?, Some(&join_a), body()).await?;
    assert_refused("room a's token on room b", &r, 403, "forbidden");
    assert!(
        r.body.contains("\\\"a\\\""),
        "the room it is for: {}",
        r.body
    );
    let whep = offer(Role::Viewer).await?;
    let r = http::send(
        Method::POST,
        &url(&server, "/rooms/b/whep")?,
        Some(&view_a),
        Some(("application/sdp", whep.clone())),
    )
    .await?;
    assert_refused("room a's view token on room b", &r, 403, "forbidden");

    // Room state: a token for the room; the server's lists: a server administrator.
    let r = http::send(Method::GET, &url(&server, "/rooms/a")?, None, None).await?;
    assert_refused("room state without a token", &r, 401, "unauthorized");
    let r = http::send(Method::GET, &url(&server, "/rooms/b")?, Some(&view_a), None).await?;
    assert_refused("room b's state with room a's token", &r, 403, "forbidden");
    let r = http::send(Method::GET, &url(&server, "/rooms/a")?, Some(&view_a), None).await?;
    assert_refused("room a's state (no one there yet)", &r, 404, "unknown_room");
    for path in ["/rooms", "/debug/counts"] {
        let r = http::send(Method::GET, &url(&server, path)?, Some(&join_a), None).await?;
        assert_refused(path, &r, 403, "forbidden");
        let r = http::send(Method::GET, &url(&server, path)?, Some(&admin), None).await?;
        assert_eq!(r.status, 200, "{path} for the server admin: {}", r.body);
        // GET takes ?access_token= as well.
        let mut with_query = url(&server, path)?;
        with_query
            .query_pairs_mut()
            .append_pair("access_token", &admin);
        let r = http::send(Method::GET, &with_query, None, None).await?;
        assert_eq!(r.status, 200, "{path}?access_token=: {}", r.body);
    }
    // ... but not on a POST: a token in a URL ends up in logs and histories.
    let mut in_query = whip("a")?;
    in_query
        .query_pairs_mut()
        .append_pair("access_token", &join_a);
    let r = http::send(Method::POST, &in_query, None, body()).await?;
    assert_refused("a POST with ?access_token=", &r, 401, "unauthorized");

    // Open to anyone: health (which says tokens are needed), pages, CORS preflights.
    let health = http::get_json(&url(&server, "/healthz")?).await?;
    assert_eq!(health["tokens"], true, "{health}");
    let page = http::send(Method::GET, &url(&server, "/")?, None, None).await?;
    assert_eq!(page.status, 200);
    let preflight = http::send(Method::OPTIONS, &whip("a")?, None, None).await?;
    assert_eq!(preflight.status, 204);

    // With the right token the same offer is answered.
    let r = http::send(Method::POST, &whip("a")?, Some(&join_a), body()).await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http::send(
        Method::POST,
        &url(&server, "/rooms/a/whep")?,
        Some(&view_a),
        Some(("application/sdp", whep)),
    )
    .await?;
    assert_eq!(r.status, 201, "{}", r.body);

    assert_no_secret_logged(&server, &[&join_a, &view_a, &admin, &expired, SECRET]);
    Ok(())
}

/// Neither tokens nor secrets reach the log, not even at debug level.
fn assert_no_secret_logged(server: &TestServer, secrets: &[&str]) {
    let log = server.log();
    assert!(
        log.len() > 10,
        "the server logged at debug: {} lines",
        log.len()
    );
    for line in &log {
        for secret in secrets {
            // A JWT's signature part alone is enough to look for.
            let needle = secret.rsplit('.').next().unwrap_or(secret);
            assert!(!line.contains(needle), "a secret in the log: {line}");
        }
    }
}

/// Join options with an access token.
fn join_options(token: &str) -> JoinOptions {
    JoinOptions {
        token: Some(token.to_owned()),
        ..JoinOptions::default()
    }
}

#[tokio::test]
async fn issue11_an_open_server_says_so_and_require_auth_refuses_to_start_open() -> Result<()> {
    let server = TestServer::start(&[])?;
    let warning = server
        .wait_for_line("anyone", DEADLINE)
        .await
        .context("an open server warns")?;
    assert!(warning.contains("WARN"), "{warning}");
    let health = http::get_json(&url(&server, "/healthz")?).await?;
    assert_eq!(health["tokens"], false, "{health}");

    let (status, _, err) = run_tessera(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rtc-ip",
            "127.0.0.1",
            "--require-auth",
        ],
        &[],
    )?;
    assert!(!status.success(), "--require-auth without a key started");
    assert!(err.contains("--require-auth"), "{err}");
    // A secret too short to sign safely is refused as well.
    let (status, _, err) = run_tessera(
        &["serve", "--listen", "127.0.0.1:0", "--rtc-ip", "127.0.0.1"],
        &[("TESSERA_API_KEY", "k"), ("TESSERA_API_SECRET", "short")],
    )?;
    assert!(!status.success(), "a 5-character secret was taken");
    assert!(err.contains("32"), "{err}");
    Ok(())
}

mod recordings;
mod sessions;
