//! How the HTTP interface is secured: plain HTTP (the two-command trial), certificate files, a
//! self-signed certificate for a LAN trial, or certificates obtained over ACME. One mode at a
//! time; the choice is checked here, the certificates themselves are handled by `crate::tls`.

use std::path::PathBuf;

use super::ConfigError;

/// Let's Encrypt's production directory, the default ACME server.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Where the ACME account and certificates are kept, relative to the working directory.
pub const DEFAULT_ACME_CACHE: &str = "acme-cache";

/// Where the HTTPS certificate comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain HTTP.
    #[default]
    Off,
    /// PEM files, reloaded when they change.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
    /// A certificate made at start for localhost and this machine's configured addresses.
    SelfSigned,
    /// Certificates from an ACME server.
    Acme(AcmeConfig),
}

/// What it takes to obtain certificates over ACME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The names the certificate is for.
    pub domains: Vec<String>,
    /// The account's contact address.
    pub email: Option<String>,
    /// The directory URL.
    pub directory: String,
    /// Where the account and certificates are kept.
    pub cache: PathBuf,
    /// PEM roots for the directory's own HTTPS, when it is not publicly trusted.
    pub directory_roots: Option<PathBuf>,
}

/// The HTTPS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Where the certificate comes from.
    pub mode: TlsMode,
    /// A plain-HTTP port that redirects to HTTPS.
    pub redirect_port: Option<u16>,
}

impl TlsConfig {
    /// Whether the interface speaks HTTPS.
    pub fn enabled(&self) -> bool {
        self.mode != TlsMode::Off
    }
}

/// The TLS settings as given (flags, environment or file), before they are checked.
#[derive(Debug, Default)]
pub(super) struct TlsArgs {
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) self_signed: bool,
    pub(super) acme_domains: Vec<String>,
    pub(super) acme_email: Option<String>,
    pub(super) acme_directory: Option<String>,
    pub(super) acme_cache: Option<PathBuf>,
    pub(super) acme_ca_roots: Option<PathBuf>,
    pub(super) redirect_port: Option<u16>,
}

impl TlsArgs {
    /// One mode, complete, or a sentence saying what is wrong.
    pub(super) fn into_config(self) -> Result<TlsConfig, ConfigError> {
        let acme = !self.acme_domains.is_empty();
        let files = self.cert.is_some() || self.key.is_some();
        let modes = [files, self.self_signed, acme];
        if modes.iter().filter(|on| **on).count() > 1 {
            return Err(ConfigError::Invalid(
                "choose one source of certificates: --tls-cert/--tls-key, --tls-self-signed or \
                 --acme-domain"
                    .into(),
            ));
        }
        let acme_only = self.acme_email.is_some()
            || self.acme_directory.is_some()
            || self.acme_cache.is_some()
            || self.acme_ca_roots.is_some();
        if acme_only && !acme {
            return Err(ConfigError::Invalid(
                "the --acme-* settings need at least one --acme-domain".into(),
            ));
        }
        let mode = match (self.cert, self.key) {
            (Some(cert), Some(key)) => TlsMode::Files { cert, key },
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "--tls-cert and --tls-key go together".into(),
                ));
            }
            (None, None) if self.self_signed => TlsMode::SelfSigned,
            (None, None) if acme => {
                for domain in &self.acme_domains {
                    if !valid_domain(domain) {
                        return Err(ConfigError::Invalid(format!(
                            "--acme-domain {domain:?} is not a DNS name"
                        )));
                    }
                }
                TlsMode::Acme(AcmeConfig {
                    domains: self.acme_domains,
                    email: self.acme_email,
                    directory: self
                        .acme_directory
                        .unwrap_or_else(|| LETS_ENCRYPT_DIRECTORY.to_owned()),
                    cache: self
                        .acme_cache
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_ACME_CACHE)),
                    directory_roots: self.acme_ca_roots,
                })
            }
            (None, None) => TlsMode::Off,
        };
        if self.redirect_port.is_some() && mode == TlsMode::Off {
            return Err(ConfigError::Invalid(
                "--http-redirect-port redirects to HTTPS: it needs a certificate source".into(),
            ));
        }
        Ok(TlsConfig {
            mode,
            redirect_port: self.redirect_port,
        })
    }
}

/// A DNS name an ACME server can validate: labels of letters, digits and hyphens.
fn valid_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_certificate_source_at_a_time() {
        let files = TlsArgs {
            cert: Some("c.pem".into()),
            key: Some("k.pem".into()),
            ..TlsArgs::default()
        };
        assert!(matches!(
            files.into_config().unwrap().mode,
            TlsMode::Files { .. }
        ));
        let both = TlsArgs {
            cert: Some("c.pem".into()),
            key: Some("k.pem".into()),
            self_signed: true,
            ..TlsArgs::default()
        };
        assert!(both.into_config().is_err());
        let half = TlsArgs {
            cert: Some("c.pem".into()),
            ..TlsArgs::default()
        };
        assert!(half.into_config().is_err());
        let acme = TlsArgs {
            acme_domains: vec!["meet.example.org".into()],
            ..TlsArgs::default()
        };
        match acme.into_config().unwrap().mode {
            TlsMode::Acme(a) => {
                assert_eq!(a.directory, LETS_ENCRYPT_DIRECTORY);
                assert_eq!(a.cache, PathBuf::from(DEFAULT_ACME_CACHE));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            TlsArgs::default().into_config().unwrap(),
            TlsConfig::default()
        );
    }

    #[test]
    fn acme_settings_need_a_domain_and_domains_must_be_names() {
        let stray = TlsArgs {
            acme_email: Some("a@example.org".into()),
            ..TlsArgs::default()
        };
        assert!(stray.into_config().is_err());
        let bad = TlsArgs {
            acme_domains: vec!["not a name".into()],
            ..TlsArgs::default()
        };
        assert!(bad.into_config().is_err());
        let redirect_alone = TlsArgs {
            redirect_port: Some(8081),
            ..TlsArgs::default()
        };
        assert!(redirect_alone.into_config().is_err());
    }
}
