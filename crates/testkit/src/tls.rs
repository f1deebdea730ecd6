//! Test certificates made with rcgen: a CA issuing server and client certificates, and the
//! self-signed CA certificate used as a server's own that `openssl req -x509` makes.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate (PEM) with its private key (PKCS#8 PEM).
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
    /// The certificate in DER.
    pub cert_der: Vec<u8>,
}

impl CertPair {
    /// A self-signed certificate that is also a CA (basicConstraints CA:TRUE) valid for `names`,
    /// as `openssl req -x509 -newkey …` makes by default. rustls refuses such a certificate as
    /// a server's own unless told otherwise; Go (and so dockerd) accepts it when it is trusted.
    pub fn self_signed_ca_as_leaf(names: &[&str]) -> CertPair {
        let mut params = CertificateParams::new(to_strings(names)).expect("certificate params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("test"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().expect("generate key");
        let cert = params.self_signed(&key).expect("self-sign certificate");
        CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        }
    }

    /// Writes `<dir>/<stem>.<cert_ext>` and `<dir>/<stem>.key`, returning both paths.
    pub fn write(
        &self,
        dir: &Path,
        stem: &str,
        cert_ext: &str,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        std::fs::create_dir_all(dir).expect("create certificate dir");
        let cert = dir.join(format!("{stem}.{cert_ext}"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write certificate");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }

    /// Key then certificate in one PEM buffer, as reqwest's `Identity::from_pem` wants.
    pub fn identity_pem(&self) -> Vec<u8> {
        format!("{}\n{}", self.key_pem, self.cert_pem).into_bytes()
    }
}

/// A test certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(common_name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-sign CA"),
        }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (IP addresses or DNS names).
    pub fn issue_server(&self, names: &[&str]) -> CertPair {
        self.issue(
            names,
            names.first().copied().unwrap_or("server"),
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate (for mutual TLS) with this common name.
    pub fn issue_client(&self, common_name: &str) -> CertPair {
        self.issue(&[], common_name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, names: &[&str], common_name: &str, usage: ExtendedKeyUsagePurpose) -> CertPair {
        let mut params = CertificateParams::new(to_strings(names)).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        }
    }
}

fn to_strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}
