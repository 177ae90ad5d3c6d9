//! Issue 11: HTTPS. Certificate files (and a renewal picked up without a restart), a
//! self-signed certificate for a LAN trial (its fingerprints logged), plain HTTP redirected to
//! HTTPS, unusable files refused at start, and a room joined over HTTPS with real media.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::support::analysis::{COLOUR_TOLERANCE, colours, is_close};
use crate::support::http;
use crate::support::{Role, SendMedia, TestClient, TestServer, eventually};

const DEADLINE: Duration = Duration::from_secs(10);

/// A certificate (and its key) for `names`, signed by itself: (certificate PEM, key PEM, DER).
fn certificate(names: &[&str]) -> Result<(String, String, Vec<u8>)> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(names)?.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem(), cert.der().to_vec()))
}

/// Writes a certificate and key where the server reads them.
fn install(dir: &Path, cert_pem: &str, key_pem: &str) -> Result<()> {
    // The key first, as certbot's renewal leaves a moment where only one file is new: the
    // server must not serve a mismatched pair.
    std::fs::write(dir.join("key.pem"), key_pem)?;
    std::fs::write(dir.join("cert.pem"), cert_pem)?;
    Ok(())
}

/// The certificate a fresh connection to `base` is served, after a `GET /healthz` that works.
/// A new client each time: a client's TLS session cache would resume the old session, and a
/// resumed session is not shown a certificate at all.
async fn served_certificate(base: &str) -> Result<Vec<u8>> {
    let client = inspecting_client()?;
    let response = client.get(format!("{base}/healthz")).send().await?;
    ensure!(response.status() == 200, "healthz: {}", response.status());
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .context("no TLS information: not HTTPS?")?;
    info.peer_certificate()
        .map(<[u8]>::to_vec)
        .context("no peer certificate")
}

/// A client that takes any certificate, to read what a server serves before trusting it.
fn inspecting_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(http::HTTP_TIMEOUT)
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_https_from_certificate_files_renewed_without_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (first_pem, first_key, first_der) = certificate(&["localhost", "127.0.0.1"])?;
    install(dir.path(), &first_pem, &first_key)?;
    http::trust(&first_der);
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let server = TestServer::start(&[
        "--tls-cert",
        cert.to_str().context("utf-8 path")?,
        "--tls-key",
        key.to_str().context("utf-8 path")?,
    ])?;
    let base = server.base_url().to_owned();
    ensure!(base.starts_with("https://"), "listening on {base}");
    ensure!(served_certificate(&base).await? == first_der);
    // The same port does not speak plain HTTP.
    let plain = base.replacen("https://", "http://", 1);
    ensure!(
        http::client()?
            .get(format!("{plain}/healthz"))
            .send()
            .await
            .is_err(),
        "plain HTTP was answered on the HTTPS port"
    );

    // A room over HTTPS: a participant sends red and a viewer decodes it.
    let sender = TestClient::join(
        &base,
        "secure",
        Role::Participant,
        Some(SendMedia::new(colours::RED, 440.0)),
        "ann",
    )
    .await?;
    let viewer = TestClient::join(&base, "secure", Role::Viewer, None, "wall").await?;
    viewer
        .wait_for_frame(DEADLINE, |f| {
            is_close(f.centre(), colours::RED, COLOUR_TOLERANCE)
        })
        .await
        .context("the viewer decodes the participant's red over a room joined by HTTPS")?;

    // The renewal: new files, the same paths; new connections get the new certificate.
    let (second_pem, second_key, second_der) = certificate(&["localhost", "127.0.0.1"])?;
    http::trust(&second_der);
    install(dir.path(), &second_pem, &second_key)?;
    eventually(DEADLINE, "the renewed certificate is served", || {
        let (base, second) = (&base, &second_der);
        async move { Ok((&served_certificate(base).await? == second).then_some(())) }
    })
    .await?;
    // The media kept flowing through the renewal.
    viewer.wait_for_new_frames(30, DEADLINE).await?;
    sender.leave().await?;
    viewer.leave().await?;
    let log = server.log().join("\n");
    ensure!(log.contains("certificate reloaded"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_a_self_signed_certificate_names_this_machine_and_is_logged() -> Result<()> {
    let server = TestServer::start(&["--tls-self-signed"])?;
    let base = server.base_url().to_owned();
    let der = served_certificate(&base).await?;
    let line = server
        .wait_for_line("SHA-256 fingerprint", DEADLINE)
        .await?;
    let fingerprint: Vec<String> = Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    ensure!(line.contains(&fingerprint.join(":")), "{line}");
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)?;
    let spki = base64::engine::general_purpose::STANDARD
        .encode(Sha256::digest(parsed.tbs_certificate.subject_pki.raw));
    ensure!(
        line.contains(&spki),
        "the public key hash {spki} is not in {line}"
    );
    let names = parsed
        .subject_alternative_name()?
        .context("no subjectAltName")?;
    let names: Vec<String> = names
        .value
        .general_names
        .iter()
        .map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
            x509_parser::extensions::GeneralName::IPAddress(ip) => {
                format!(
                    "ip:{}",
                    ip.iter().map(u8::to_string).collect::<Vec<_>>().join(".")
                )
            }
            other => format!("{other:?}"),
        })
        .collect();
    ensure!(
        names.contains(&"localhost".to_owned()) && names.contains(&"ip:127.0.0.1".to_owned()),
        "{names:?}"
    );
    // Trusted, it is an ordinary HTTPS server.
    http::trust(&der);
    let health = http::get(&http::endpoint(&base, &["healthz"])?).await?;
    ensure!(health.status == 200, "{health:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_plain_http_is_redirected_to_https() -> Result<()> {
    let server = TestServer::start(&["--tls-self-signed", "--http-redirect-port", "0"])?;
    let line = server
        .wait_for_line("tessera redirecting http://", DEADLINE)
        .await?;
    let plain = line
        .split_whitespace()
        .nth(2)
        .context("the redirect line names its address")?
        .to_owned();
    let https_port = server
        .base_url()
        .rsplit(':')
        .next()
        .context("a port")?
        .to_owned();
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(http::HTTP_TIMEOUT)
        .build()?;
    let response = client
        .post(format!("{plain}/rooms/demo/whip?name=Ann"))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await?;
    ensure!(response.status() == 308, "{}", response.status());
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("a Location")?;
    ensure!(
        location == format!("https://127.0.0.1:{https_port}/rooms/demo/whip?name=Ann"),
        "{location}"
    );
    Ok(())
}

#[test]
fn issue11_unusable_certificate_files_stop_the_server_with_a_sentence() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert_pem, _, _) = certificate(&["localhost"])?;
    let (_, other_key, _) = certificate(&["localhost"])?;
    install(dir.path(), &cert_pem, &other_key)?;
    let run = |cert: &Path, key: &Path| {
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["serve", "--listen", "127.0.0.1:0", "--rtc-ip", "127.0.0.1"])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
    };
    let mismatched = run(&dir.path().join("cert.pem"), &dir.path().join("key.pem"))?;
    let stderr = String::from_utf8_lossy(&mismatched.stderr);
    ensure!(
        !mismatched.status.success(),
        "started with a key of another certificate"
    );
    ensure!(
        stderr.contains("cert.pem"),
        "the error names the files: {stderr}"
    );
    ensure!(mismatched.stdout.is_empty(), "it said it listens");
    let missing = run(&dir.path().join("none.pem"), &dir.path().join("key.pem"))?;
    let stderr = String::from_utf8_lossy(&missing.stderr);
    ensure!(
        !missing.status.success() && stderr.contains("none.pem"),
        "{stderr}"
    );
    Ok(())
}
