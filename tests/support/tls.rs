//! A certificate authority generated for the test process (rcgen) and a server certificate it
//! signed for `localhost` and `127.0.0.1`: the HTTPS application peer and the TLS Postgres
//! cluster present it, and clients trust it through the CA file (`--ca-file`, `sslrootcert`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct TestCa {
    dir: PathBuf,
    /// The server certificate (PEM) and its private key (PKCS#8 PEM).
    pub server_cert_pem: String,
    pub server_key_pem: String,
    server_cert_der: Vec<u8>,
    server_key_der: Vec<u8>,
}

static SHARED: OnceLock<TestCa> = OnceLock::new();

impl TestCa {
    /// The CA of this test process, generated on first use; its files live in a temp dir.
    pub fn shared() -> &'static TestCa {
        SHARED.get_or_init(TestCa::generate)
    }

    fn generate() -> TestCa {
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "opsbook test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca, &ca_key);

        let server_key = KeyPair::generate().expect("generate the server key");
        let mut server =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("server parameters");
        server.distinguished_name.push(DnType::CommonName, "localhost");
        let server_cert = server.signed_by(&server_key, &issuer).expect("sign the server certificate");

        let dir = tempfile::Builder::new().prefix("opsbook-test-ca-").tempdir().expect("temp dir for the CA").keep();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
        // A CA the server does not present: trusting it instead must fail verification.
        let other_key = KeyPair::generate().expect("generate another CA key");
        let mut other = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        other.distinguished_name.push(DnType::CommonName, "opsbook unrelated CA");
        std::fs::write(dir.join("other-ca.pem"), other.self_signed(&other_key).expect("self-sign").pem())
            .expect("write other-ca.pem");
        TestCa {
            dir,
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            server_cert_der: server_cert.der().to_vec(),
            server_key_der: server_key.serialize_der(),
        }
    }

    /// The CA certificate (PEM) clients trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A CA certificate (PEM) that did not sign the server certificate.
    pub fn unrelated_ca_file(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A rustls server configuration presenting the server certificate (ring provider).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.server_cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone())),
            )
            .expect("server certificate and key");
        Arc::new(config)
    }
}
