//! Certificates from PEM files (certbot's, or any CA's), reloaded when the files change: a
//! renewal reaches new connections without a restart, and a half-written pair (the chain
//! replaced, the key not yet) is retried on the next look instead of being served.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::TlsError;

/// How often the files are looked at: a renewal is served within this long.
pub(super) const POLL: Duration = Duration::from_secs(2);

/// Serves the certificate last loaded from the files.
#[derive(Debug)]
pub(super) struct FileResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl FileResolver {
    pub(super) fn new(key: CertifiedKey) -> FileResolver {
        FileResolver {
            current: RwLock::new(Arc::new(key)),
        }
    }

    fn replace(&self, key: CertifiedKey) {
        // A poisoned lock still holds a whole Arc: nothing can be half-written.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
    }
}

impl ResolvesServerCert for FileResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Reads a PEM chain and its key and checks that they belong together.
pub(super) fn load(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let bad = |what: &Path, e: &dyn std::fmt::Display| {
        TlsError::Files(format!("{}: {e}", what.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if chain.is_empty() {
        return Err(bad(cert, &"no CERTIFICATE block"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    CertifiedKey::from_der(chain, private, provider)
        .map_err(|e| TlsError::Files(format!("{} and {}: {e}", cert.display(), key.display())))
}

/// What identifies a version of the two files: their sizes and modification times.
fn stamp(cert: &Path, key: &Path) -> Option<[(u64, SystemTime); 2]> {
    let one = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.len(), m.modified().ok()?))
    };
    Some([one(cert)?, one(key)?])
}

/// Looks at the files every [`POLL`] and loads a changed pair into `resolver`. Runs until its
/// owner aborts it.
pub(super) async fn watch(
    resolver: Arc<FileResolver>,
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
) {
    let mut served = stamp(&cert, &key);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = stamp(&cert, &key);
        if now.is_none() || now == served {
            continue;
        }
        // Small files; reading them on the runtime is cheaper than a blocking task.
        match load(&cert, &key, &provider) {
            Ok(loaded) => {
                resolver.replace(loaded);
                served = now;
                tracing::info!(cert = %cert.display(), "certificate reloaded");
            }
            // Not recorded as served: the next look tries again (the key may follow).
            Err(e) => tracing::warn!("certificate files changed but cannot be used yet: {e}"),
        }
    }
}
