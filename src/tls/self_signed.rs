//! A self-signed certificate for a trial on a LAN: made at start for `localhost`, the loopback
//! addresses and the addresses the server gives its media (`--rtc-ip`, `--public-ip`), so a
//! colleague's browser can open the page over HTTPS once it trusts this certificate. Its
//! fingerprints are logged: the SHA-256 of the certificate (what a browser's certificate viewer
//! shows) and of its public key (what Chromium's `--ignore-certificate-errors-spki-list`
//! takes).

use std::net::IpAddr;

use base64::Engine;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData, SanType};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use super::TlsError;
use crate::config::RtcConfig;

/// A made certificate and how to recognise it.
pub(super) struct SelfSigned {
    pub(super) key: CertifiedKey,
    /// SHA-256 of the certificate, colon-separated hex.
    pub(super) fingerprint: String,
    /// SHA-256 of the public key (SubjectPublicKeyInfo), base64.
    pub(super) spki_sha256: String,
}

/// The names the certificate covers.
fn names(rtc: &RtcConfig) -> Vec<SanType> {
    let mut ips: Vec<IpAddr> = vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
    for ip in [rtc.rtc_ip, rtc.public_ip].into_iter().flatten() {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    let mut names = vec![SanType::DnsName(
        "localhost"
            .try_into()
            .expect("localhost is a valid DNS name"),
    )];
    names.extend(ips.into_iter().map(SanType::IpAddress));
    names
}

pub(super) fn make(rtc: &RtcConfig, provider: &CryptoProvider) -> Result<SelfSigned, TlsError> {
    let err = |e: rcgen::Error| TlsError::SelfSigned(e.to_string());
    let mut params = CertificateParams::default();
    params.subject_alt_names = names(rtc);
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, "tessera (self-signed)");
    params.distinguished_name = subject;
    let key_pair = KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key_pair).map_err(err)?;
    let der: CertificateDer<'static> = cert.der().clone();
    let fingerprint = Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let spki_sha256 = base64::engine::general_purpose::STANDARD
        .encode(Sha256::digest(key_pair.subject_public_key_info()));
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let key = CertifiedKey::from_der(vec![der], private, provider)
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    Ok(SelfSigned {
        key,
        fingerprint,
        spki_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_localhost_loopback_and_the_configured_addresses() {
        let rtc = RtcConfig {
            rtc_ip: Some([192, 168, 1, 20].into()),
            public_ip: Some([203, 0, 113, 7].into()),
            ..RtcConfig::default()
        };
        let names = names(&rtc);
        let has_ip = |ip: [u8; 4]| names.contains(&SanType::IpAddress(ip.into()));
        assert!(has_ip([127, 0, 0, 1]) && has_ip([192, 168, 1, 20]) && has_ip([203, 0, 113, 7]));
        assert!(matches!(&names[0], SanType::DnsName(n) if n.as_str() == "localhost"));
        let made = make(&rtc, &rustls::crypto::ring::default_provider()).unwrap();
        assert_eq!(made.fingerprint.len(), 32 * 3 - 1);
        assert_eq!(made.spki_sha256.len(), 44);
    }
}
