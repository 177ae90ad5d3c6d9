//! Certificates over ACME (RFC 8555) with rustls-acme: the TLS-ALPN-01 challenge (RFC 8737) is
//! answered on the HTTPS port itself, so no port 80 is needed. The account and certificates
//! are cached in a directory, so a restart reuses them; the driver task obtains the first
//! certificate at start and renews it before it expires (rustls-acme renews when less than a
//! third of its lifetime is left, and retries failures with a doubling back-off).

use std::sync::Arc;

use futures::StreamExt;
use rustls::RootCertStore;
use rustls::client::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::ResolvesServerCert;
use rustls_acme::caches::DirCache;

use super::TlsError;
use crate::config::AcmeConfig;

/// Whose certificates the ACME client trusts when it talks to the directory: the public web
/// PKI, or the roots given for a private ACME server.
fn directory_client(
    config: &AcmeConfig,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match &config.directory_roots {
        Some(path) => {
            let bad =
                |e: &dyn std::fmt::Display| TlsError::Acme(format!("{}: {e}", path.display()));
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&"no CERTIFICATE block"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Acme(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(client))
}

/// The resolver that serves the ACME certificates (and the TLS-ALPN-01 challenge certificate),
/// and the task that obtains and renews them.
pub(super) fn start(
    config: &AcmeConfig,
    provider: Arc<CryptoProvider>,
) -> Result<
    (
        Arc<dyn ResolvesServerCert>,
        impl Future<Output = ()> + Send + 'static,
    ),
    TlsError,
> {
    std::fs::create_dir_all(&config.cache)
        .map_err(|e| TlsError::Acme(format!("{}: {e}", config.cache.display())))?;
    let mut acme = rustls_acme::AcmeConfig::new_with_client_config(
        config.domains.iter(),
        directory_client(config, provider)?,
    )
    .directory(&config.directory)
    .cache(DirCache::new(config.cache.clone()));
    if let Some(email) = &config.email {
        acme = acme.contact_push(format!("mailto:{email}"));
    }
    let mut state = acme.state();
    let resolver: Arc<dyn ResolvesServerCert> = state.resolver();
    let domains = config.domains.join(", ");
    let driver = async move {
        // The state is a stream of what happened; polling it is what makes things happen.
        while let Some(event) = state.next().await {
            match event {
                Ok(ok) => tracing::info!(%domains, "ACME: {ok:?}"),
                Err(e) => tracing::warn!(%domains, "ACME: {e:?} (retrying)"),
            }
        }
    };
    Ok((resolver, driver))
}
