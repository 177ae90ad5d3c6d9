//! Let's Encrypt's own ACME test server, pebble (Debian's `pebble` package), with
//! `pebble-challtestsrv` as its DNS: every name resolves to 127.0.0.1, so pebble validates the
//! server under test on loopback. For use inside a test's own network namespace
//! ([`super::netns::isolated`]): the ports are fixed, and nothing can reach further.
//!
//! Pebble's own HTTPS uses a certificate from a CA this module makes (the test trusts it for
//! the directory and the management interface); the certificates pebble issues chain to a root
//! it makes anew at every start, read from its management interface.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use super::eventually;

/// The ACME directory.
pub const DIRECTORY: &str = "https://127.0.0.1:14000/dir";
/// Pebble's management interface (its roots).
const MANAGEMENT: &str = "https://127.0.0.1:15000";
/// Where pebble connects for TLS-ALPN-01: the server under test listens here.
pub const TLS_ALPN_PORT: u16 = 5001;
/// The mock DNS.
const DNS: &str = "127.0.0.1:8053";
/// How long pebble and its DNS may take to answer after start.
const STARTUP: Duration = Duration::from_secs(20);

/// Pebble and its DNS, killed on drop.
pub struct Pebble {
    children: Vec<Child>,
    /// The CA of pebble's own HTTPS, in PEM: what the ACME client must trust.
    ca_pem: PathBuf,
    ca_der: Vec<u8>,
}

impl Pebble {
    /// Starts both in `dir` (configuration and certificates are written there) and waits until
    /// the directory answers.
    pub async fn start(dir: &Path) -> Result<Pebble> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tessera test CA for pebble");
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate()?;
        let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?
            .signed_by(&key, &issuer)?;
        let ca_pem = dir.join("pebble-ca.pem");
        std::fs::write(&ca_pem, ca.pem())?;
        std::fs::write(dir.join("pebble-cert.pem"), cert.pem())?;
        std::fs::write(dir.join("pebble-key.pem"), key.serialize_pem())?;
        let config = json!({
            "pebble": {
                "listenAddress": "127.0.0.1:14000",
                "managementListenAddress": "127.0.0.1:15000",
                "certificate": dir.join("pebble-cert.pem"),
                "privateKey": dir.join("pebble-key.pem"),
                "httpPort": 5002,
                "tlsPort": TLS_ALPN_PORT,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_path = dir.join("pebble-config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;

        let mut pebble = Pebble {
            children: Vec::new(),
            ca_pem,
            ca_der: ca.der().to_vec(),
        };
        // Only the DNS: the server under test answers the challenges itself.
        pebble.children.push(
            Command::new("pebble-challtestsrv")
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-dns01", DNS, "-management", "127.0.0.1:8055"])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .stdin(Stdio::null())
                .spawn()
                .context("starting pebble-challtestsrv (Debian package pebble)")?,
        );
        pebble.children.push(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", DNS])
                // Validate at once, and never reject a good nonce (pebble's defaults test
                // clients' retries; rustls-acme's are not what this test is about).
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdin(Stdio::null())
                .spawn()
                .context("starting pebble (Debian package pebble)")?,
        );
        let client = pebble.client()?;
        eventually(STARTUP, "pebble's directory answers", || {
            let client = client.clone();
            async move {
                let status = client.get(DIRECTORY).send().await?.status();
                Ok(status.is_success().then_some(()))
            }
        })
        .await?;
        Ok(pebble)
    }

    /// The PEM file of the CA behind pebble's own HTTPS.
    pub fn ca_pem(&self) -> &Path {
        &self.ca_pem
    }

    /// A client that trusts pebble's own HTTPS.
    fn client(&self) -> Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .no_proxy()
            .timeout(super::http::HTTP_TIMEOUT)
            .add_root_certificate(reqwest::Certificate::from_der(&self.ca_der)?)
            .build()?)
    }

    /// The root the certificates pebble issued chain to (made anew at each start), in PEM.
    pub async fn issuing_root(&self) -> Result<String> {
        let response = self
            .client()?
            .get(format!("{MANAGEMENT}/roots/0"))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "roots: {}",
            response.status()
        );
        Ok(response.text().await?)
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
