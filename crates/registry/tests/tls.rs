//! TLS to registries: certs.d CAs and client identities, insecure registries, and what a
//! secure registry with an unknown certificate reports. Certificates are made here with rcgen.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::test_config;
use hoist_registry::{Access, Credentials, Registries, RegistryConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

struct Pem {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "hoist test CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf (never a CA: rustls refuses a CA certificate used as an end entity).
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Pem {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// An HTTPS server answering 200 to everything, counting the requests that got through TLS.
async fn tls_server(config: rustls::ServerConfig) -> (SocketAddr, Arc<AtomicUsize>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_request| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                            Bytes::new(),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, served)
}

fn server_config(
    server: &Pem,
    client_ca: Option<&CertificateDer<'static>>,
) -> rustls::ServerConfig {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der.clone()));
    builder
        .with_single_cert(vec![server.der.clone()], key)
        .unwrap()
}

fn registries_with(certs_dir: &Path, insecure_loopback: bool) -> Registries {
    Registries::new(RegistryConfig {
        certs_dir: certs_dir.to_owned(),
        insecure_loopback,
        ..test_config()
    })
    .unwrap()
}

async fn ping(
    registries: &Registries,
    addr: SocketAddr,
) -> Result<(), hoist_registry::RegistryError> {
    registries
        .repository(
            &addr.to_string(),
            "team/app",
            Access::Pull,
            Credentials::Anonymous,
        )
        .ping()
        .await
}

#[tokio::test]
async fn certs_d_ca_makes_a_private_registry_trusted() {
    let ca = ca();
    let server = leaf(
        &ca,
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (addr, served) = tls_server(server_config(&server, None)).await;
    let certs = tempfile::tempdir().unwrap();

    // Secure and unknown to us: refused, with a hint that names certs.d.
    let error = ping(&registries_with(certs.path(), false), addr)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.contains("TLS handshake failed"), "{text}");
    assert!(
        text.contains("certificate signed by unknown authority"),
        "{text}"
    );
    // Says where the CA would go.
    let host_dir = certs.path().join(addr.to_string());
    assert!(
        text.contains(&format!("{}/ca.crt", host_dir.display())),
        "{text}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 0);

    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("ca.crt"), ca.pem()).unwrap();
    ping(&registries_with(certs.path(), false), addr)
        .await
        .unwrap();
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

/// What `openssl req -x509` makes: self-signed, CA:TRUE, used as the server's own certificate.
fn self_signed_ca_as_leaf(names: &[&str]) -> Pem {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

#[tokio::test]
async fn a_self_signed_ca_certificate_as_the_servers_own_is_trusted_from_certs_d() {
    let server = self_signed_ca_as_leaf(&["127.0.0.1"]);
    let (addr, served) = tls_server(server_config(&server, None)).await;
    let certs = tempfile::tempdir().unwrap();

    let error = ping(&registries_with(certs.path(), false), addr)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("self-signed CA certificate that is not trusted"),
        "{error}"
    );

    let host_dir = certs.path().join(addr.to_string());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("ca.crt"), &server.cert).unwrap();
    ping(&registries_with(certs.path(), false), addr)
        .await
        .unwrap();
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // Trusted, but for another name: still refused, saying so.
    let other = self_signed_ca_as_leaf(&["registry.example"]);
    let (other_addr, other_served) = tls_server(server_config(&other, None)).await;
    let other_dir = certs.path().join(other_addr.to_string());
    std::fs::create_dir_all(&other_dir).unwrap();
    std::fs::write(other_dir.join("ca.crt"), &other.cert).unwrap();
    let error = ping(&registries_with(certs.path(), false), other_addr)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("certificate is valid for") && error.contains("registry.example"),
        "{error}"
    );
    assert_eq!(other_served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn insecure_registry_accepts_an_unverifiable_certificate_over_https() {
    let ca = ca();
    let server = leaf(&ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let (addr, served) = tls_server(server_config(&server, None)).await;
    let certs = tempfile::tempdir().unwrap();
    let registries = registries_with(certs.path(), true);
    assert!(registries.is_insecure(&addr.to_string()).await);
    ping(&registries, addr).await.unwrap();
    ping(&registries, addr).await.unwrap();
    // Both went over HTTPS: the server only counts requests that passed its TLS handshake.
    assert_eq!(served.load(Ordering::SeqCst), 2);

    // The same through an explicit insecure-registries entry instead of loopback.
    let listed = Registries::new(RegistryConfig {
        certs_dir: certs.path().to_owned(),
        insecure_loopback: false,
        insecure_registries: vec![addr.to_string()],
        ..test_config()
    })
    .unwrap();
    ping(&listed, addr).await.unwrap();
    assert_eq!(served.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn certs_d_client_identity_is_presented() {
    let ca = ca();
    let server = leaf(&ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let client = leaf(&ca, &["hoist-client"], ExtendedKeyUsagePurpose::ClientAuth);
    let (addr, served) = tls_server(server_config(&server, Some(ca.der()))).await;
    let certs = tempfile::tempdir().unwrap();
    let host_dir = certs.path().join(addr.to_string());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("ca.crt"), ca.pem()).unwrap();

    assert!(
        ping(&registries_with(certs.path(), false), addr)
            .await
            .is_err()
    );
    assert_eq!(served.load(Ordering::SeqCst), 0);

    std::fs::write(host_dir.join("client.cert"), &client.cert).unwrap();
    std::fs::write(host_dir.join("client.key"), &client.key).unwrap();
    ping(&registries_with(certs.path(), false), addr)
        .await
        .unwrap();
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_client_certificate_without_its_key_is_a_configuration_error() {
    let ca = ca();
    let client = leaf(&ca, &["hoist-client"], ExtendedKeyUsagePurpose::ClientAuth);
    let certs = tempfile::tempdir().unwrap();
    let host_dir = certs.path().join("registry.invalid:5000");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("client.cert"), &client.cert).unwrap();
    let error = registries_with(certs.path(), false)
        .repository(
            "registry.invalid:5000",
            "a/b",
            Access::Pull,
            Credentials::Anonymous,
        )
        .ping()
        .await
        .unwrap_err();
    assert!(
        matches!(error, hoist_registry::RegistryError::Config(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("missing key"), "{error}");
}

/// A port that speaks plain HTTP, but holds a TLS client forever without a word, as a
/// firewall or a half-dead proxy in front of an insecure registry may.
async fn silent_to_tls_server() -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let http_requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&http_requests);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                if socket.peek(&mut first).await.is_err() {
                    return;
                }
                if first[0] == 0x16 {
                    // A TLS hello: never answered, the connection held open.
                    let mut sink = [0u8; 4096];
                    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                    return;
                }
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    (host, http_requests)
}

#[tokio::test]
async fn an_insecure_registry_that_never_answers_tls_is_reached_over_http_after_the_handshake_timeout()
 {
    let (host, http_requests) = silent_to_tls_server().await;
    let registries = Registries::new(RegistryConfig {
        insecure_registries: vec![host.clone()],
        ..test_config()
    })
    .unwrap();
    let repo = registries.repository(&host, "team/app", Access::Pull, Credentials::Anonymous);
    let digest = common::sha256(b"absent");
    let started = std::time::Instant::now();
    let found = repo.blob_exists(&digest).await.unwrap();
    assert_eq!(found, None);
    assert_eq!(http_requests.load(Ordering::SeqCst), 1);
    // dockerd gives up on a handshake after 10 s; the 30 s connect bound is not waited out.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
