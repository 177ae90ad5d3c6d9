//! Issue 11: certificates over ACME, end to end against pebble (Let's Encrypt's test server),
//! in a network namespace of the test's own: the server asks for a certificate for
//! `tessera.test`, pebble validates it by TLS-ALPN-01 on the server's HTTPS port (its DNS says
//! the name is 127.0.0.1), and a client that trusts only pebble's root then reaches the server
//! by that name. A restart finds the certificate in the cache and serves it at once.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::support::netns::isolated;
use crate::support::pebble::{self, Pebble};
use crate::support::{TestServer, eventually};

const DOMAIN: &str = "tessera.test";
/// Obtaining the first certificate: an account, an order, a validation, a download.
const ISSUANCE: Duration = Duration::from_secs(60);

/// A client that trusts `root` (PEM) only and finds `DOMAIN` at `at`.
fn client_for(root: &str, at: SocketAddr) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes())?)
        .resolve(DOMAIN, at)
        .tls_info(true)
        .build()?)
}

/// `GET /healthz` by name, trusting `root` only; the leaf certificate served. A new client
/// each time: a resumed TLS session would show no certificate.
async fn healthz_by_name(root: &str, at: SocketAddr) -> Result<Vec<u8>> {
    let response = client_for(root, at)?
        .get(format!("https://{DOMAIN}:{}/healthz", at.port()))
        .send()
        .await?;
    ensure!(response.status() == 200, "healthz: {}", response.status());
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .context("no TLS information")?;
    info.peer_certificate()
        .map(<[u8]>::to_vec)
        .context("no peer certificate")
}

fn serve_args<'a>(pebble: &'a Pebble, cache: &'a str) -> Result<Vec<&'a str>> {
    Ok(vec![
        "--acme-domain",
        DOMAIN,
        "--acme-email",
        "ops@tessera.test",
        "--acme-directory",
        pebble::DIRECTORY,
        "--acme-ca-roots",
        pebble.ca_pem().to_str().context("utf-8 path")?,
        "--acme-cache",
        cache,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_a_certificate_from_acme_via_tls_alpn_01_against_pebble() -> Result<()> {
    if !isolated("acme::issue11_a_certificate_from_acme_via_tls_alpn_01_against_pebble")? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let pebble = Pebble::start(dir.path()).await?;
    let cache = dir.path().join("acme-cache");
    let cache = cache.to_str().context("utf-8 path")?.to_owned();
    let listen = format!("127.0.0.1:{}", pebble::TLS_ALPN_PORT);
    let at: SocketAddr = listen.parse()?;
    let server = TestServer::start_on(&listen, &serve_args(&pebble, &cache)?)?;
    ensure!(
        server.base_url().starts_with("https://"),
        "{}",
        server.base_url()
    );

    let root = pebble.issuing_root().await?;
    let leaf = eventually(ISSUANCE, "the ACME certificate is served", || {
        let root = &root;
        async move { Ok(Some(healthz_by_name(root, at).await?)) }
    })
    .await?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf)?;
    let names = parsed
        .subject_alternative_name()?
        .context("no subjectAltName")?;
    let for_domain = names
        .value
        .general_names
        .iter()
        .any(|n| matches!(n, x509_parser::extensions::GeneralName::DNSName(d) if *d == DOMAIN));
    ensure!(
        for_domain,
        "the served certificate is not for {DOMAIN}: {names:?}"
    );
    ensure!(
        parsed
            .issuer()
            .to_string()
            .to_lowercase()
            .contains("pebble"),
        "issued by {}",
        parsed.issuer()
    );
    drop(server);

    // A restart: the cached certificate is served within moments (read from the cache, not
    // asked of pebble again: it would be another certificate).
    let restarted = TestServer::start_on(&listen, &serve_args(&pebble, &cache)?)?;
    let again = eventually(Duration::from_secs(5), "the cached certificate", || {
        let root = &root;
        async move { Ok(Some(healthz_by_name(root, at).await?)) }
    })
    .await?;
    ensure!(again == leaf, "a restart served another certificate");
    drop(restarted);
    Ok(())
}
