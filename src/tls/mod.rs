//! HTTPS: a rustls server configuration for the certificate source the configuration names
//! (`crate::config::TlsMode`), and the background work that source needs: watching certificate
//! files, or obtaining and renewing certificates over ACME. The accept loop (`crate::serve`)
//! sees only a [`TlsAcceptor`]; this module owns the work and stops it when dropped.

mod acme;
mod files;
mod self_signed;

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::ResolvesServerCert;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::AbortOnDropHandle;

use crate::config::{RtcConfig, TlsConfig, TlsMode};

/// The ALPN name of the TLS-ALPN-01 challenge (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// A certificate source that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate or key file cannot be read or does not fit.
    #[error("certificate files: {0}")]
    Files(String),
    /// The self-signed certificate could not be made.
    #[error("self-signed certificate: {0}")]
    SelfSigned(String),
    /// ACME cannot be set up.
    #[error("ACME: {0}")]
    Acme(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The server's HTTPS: the acceptor and the work that keeps its certificate current.
pub struct Tls {
    acceptor: TlsAcceptor,
    /// Watching files or running ACME; aborted with this value.
    _work: Option<AbortOnDropHandle<()>>,
}

impl Tls {
    /// Sets up HTTPS as `config` says, or `None` for plain HTTP. Fails (before the server
    /// listens) on a file that cannot be used; an ACME certificate arrives in the background.
    pub fn start(config: &TlsConfig, rtc: &RtcConfig) -> Result<Option<Tls>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (resolver, work, acme): (Arc<dyn ResolvesServerCert>, _, bool) = match &config.mode {
            TlsMode::Off => return Ok(None),
            TlsMode::Files { cert, key } => {
                let resolver =
                    Arc::new(files::FileResolver::new(files::load(cert, key, &provider)?));
                let watch = files::watch(
                    resolver.clone(),
                    cert.clone(),
                    key.clone(),
                    provider.clone(),
                );
                tracing::info!(cert = %cert.display(), "HTTPS with the certificate in {}", cert.display());
                (
                    resolver,
                    Some(AbortOnDropHandle::new(tokio::spawn(watch))),
                    false,
                )
            }
            TlsMode::SelfSigned => {
                let made = self_signed::make(rtc, &provider)?;
                tracing::warn!(
                    "HTTPS with a self-signed certificate: browsers will warn until it is trusted. \
                     SHA-256 fingerprint {}; public key (for Chromium's \
                     --ignore-certificate-errors-spki-list) {}",
                    made.fingerprint,
                    made.spki_sha256
                );
                (
                    Arc::new(files::FileResolver::new(made.key)) as Arc<dyn ResolvesServerCert>,
                    None,
                    false,
                )
            }
            TlsMode::Acme(acme) => {
                let (resolver, driver) = acme::start(acme, provider.clone())?;
                tracing::info!(
                    domains = %acme.domains.join(", "),
                    directory = %acme.directory,
                    "HTTPS with certificates from ACME (TLS-ALPN-01 on this port)"
                );
                (
                    resolver,
                    Some(AbortOnDropHandle::new(tokio::spawn(driver))),
                    true,
                )
            }
        };
        let server = server_config(provider, resolver, acme)?;
        Ok(Some(Tls {
            acceptor: TlsAcceptor::from(server),
            _work: work,
        }))
    }

    /// What the accept loop hands each connection to.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }
}

/// TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN, and the ACME challenge protocol when ACME is on.
fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<dyn ResolvesServerCert>,
    acme: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}
