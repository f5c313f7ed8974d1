//! HTTPS egress against a real TLS server on loopback whose certificate comes from a CA of the
//! test's own: trusted through the operator's `ca_file`, refused without it.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use stepwise::egress::{EgressConfig, RuleSpec, TenantEgress};
use stepwise::{EngineConfig, PolicyOverrides, RunStatus};
use stepwise_tests::guests;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::harness_with;

/// Serves `hello` over HTTPS for `localhost` on a free loopback port; writes its CA to
/// `ca_pem`. Returns the port.
async fn tls_server(ca_pem: &Path) -> u16 {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Stepwise test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(ca_pem, ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer =
                    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
                let _ = tls.write_all(answer).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

async fn fetch_over_tls(trust_ca: bool) -> stepwise::RunView {
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = dir.path().join("ca.pem");
    let port = tls_server(&ca_pem).await;
    let h = harness_with(EngineConfig {
        egress: EgressConfig {
            allow_private: true,
            ca_file: trust_ca.then(|| ca_pem.clone()),
            ..EgressConfig::default()
        },
        ..EngineConfig::default()
    })
    .await;
    let rules = TenantEgress {
        rules: vec![RuleSpec {
            pattern: format!("localhost:{port}"),
            methods: vec![],
        }],
        limits: None,
    };
    h.engine.set_egress("local", rules).await.unwrap();
    h.run(
        guests::HTTP_CLIENT,
        "fetch",
        json!({ "url": format!("https://localhost:{port}/hello") }),
        PolicyOverrides::default(),
    )
    .await
}

#[tokio::test]
async fn https_works_with_the_operators_ca_and_fails_without_it() {
    let view = fetch_over_tls(true).await;
    assert_eq!(
        view.run.status,
        RunStatus::Completed,
        "{:?}",
        view.run.error
    );
    assert_eq!(view.run.output, Some(json!({ "status": 200, "bytes": 5 })));
    let call = view.timeline.iter().find_map(|t| t.http.clone()).unwrap();
    assert_eq!((call.scheme.as_str(), call.status), ("https", Some(200)));

    let view = fetch_over_tls(false).await;
    assert_eq!(view.run.status, RunStatus::Failed);
    let call = view.timeline.iter().find_map(|t| t.http.clone()).unwrap();
    let error = call.error.unwrap();
    assert!(error.contains("TLS"), "{error}");
}
