//! HTTPS for the emulator: a throw-away CA generated at start (rcgen) and a server certificate
//! it signs, so tests can exercise `DCR_CA_FILE`, a missing or wrong CA, an expired
//! certificate and a certificate for the wrong host.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A CA and one server certificate signed by it, all PEM.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestPki {
    /// A valid certificate for `hosts` (DNS names or IP addresses).
    pub fn new(hosts: &[&str]) -> Result<TestPki, String> {
        Self::build(hosts, false)
    }

    /// A certificate for `hosts` that expired yesterday.
    pub fn expired(hosts: &[&str]) -> Result<TestPki, String> {
        Self::build(hosts, true)
    }

    fn build(hosts: &[&str], expired: bool) -> Result<TestPki, String> {
        let err = |e: rcgen::Error| e.to_string();
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.distinguished_name
            .push(DnType::CommonName, "dcr-idp-emulator test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().map_err(err)?;
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut leaf = CertificateParams::new(names).map_err(err)?;
        leaf.distinguished_name.push(
            DnType::CommonName,
            hosts.first().copied().unwrap_or("localhost"),
        );
        if expired {
            let now = SystemTime::now();
            leaf.not_before = (now - Duration::from_secs(10 * 86_400)).into();
            leaf.not_after = (now - Duration::from_secs(86_400)).into();
        }
        let cert = leaf.signed_by(&key, &issuer).map_err(err)?;
        Ok(TestPki {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, String> {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
        let key =
            PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| e.to_string())?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
    }
}
