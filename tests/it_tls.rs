//! TLS on the TCP listener, against real tonic clients on loopback: with
//! `tls_client_ca` a client without a certificate, or with one from
//! another CA, fails at the handshake; one whose SANs `tls_allowed_clients`
//! does not name gets PERMISSION_DENIED (health checks excepted); an
//! allowed one is answered, and the decision log names it. A certificate
//! rotated on disk is served to new connections without a restart. Both
//! runtimes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::remote::TestCa;
use support::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use verdict::proto::{self, AuthorizeRequest};

const PAYMENTS: &str = "uri:spiffe://test.example/ns/payments/sa/api";

/// A TLS channel to `running`, trusting `ca`, presenting `client` if given.
async fn channel(
    running: &verdict::app::Running,
    ca: &Path,
    client: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    Endpoint::try_from(format!("https://{}", running.tcp.unwrap()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// frank's `kms:Encrypt` over `channel`: the decision or the status code.
async fn authorize(channel: Result<Channel, tonic::transport::Error>) -> Result<(), tonic::Code> {
    let Ok(channel) = channel else {
        return Err(tonic::Code::Unavailable);
    };
    proto::authorizer_client::AuthorizerClient::new(channel)
        .authorize(AuthorizeRequest {
            principal: "arn:aws:iam::111122223333:user/frank".into(),
            action: "kms:Encrypt".into(),
            resource: KEY.into(),
            ..Default::default()
        })
        .await
        .map(|r| assert_eq!(r.into_inner().decision(), proto::Decision::Allow))
        .map_err(|s| s.code())
}

async fn mutual_tls(runtime: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new(&d.join("ca"));
    let other = TestCa::new(&d.join("other"));
    let allowed = ca.client("payments", &[PAYMENTS]);
    let intruder = ca.client("intruder", &["dns:intruder.internal"]);
    let stranger = other.client("stranger", &[PAYMENTS]);
    let (cert, key) = (d.join("tls.pem"), d.join("tls.key"));
    std::fs::copy(&ca.cert, &cert).unwrap();
    std::fs::copy(&ca.key, &key).unwrap();
    let log = d.join("decisions.jsonl");
    let config = config(
        &root().join(KMS),
        None,
        &[
            ("VERDICT_RUNTIME", runtime),
            ("VERDICT_TLS_CERT", cert.to_str().unwrap()),
            ("VERDICT_TLS_KEY", key.to_str().unwrap()),
            ("VERDICT_TLS_CLIENT_CA", ca.ca.to_str().unwrap()),
            (
                "VERDICT_TLS_ALLOWED_CLIENTS",
                "uri:spiffe://test.example/ns/payments/*, dns:ops.internal",
            ),
            ("VERDICT_DECISION_LOG", log.to_str().unwrap()),
        ],
    );
    let telemetry = std::sync::Arc::new(
        verdict::telemetry::Telemetry::start(config.telemetry_options()).unwrap(),
    );
    let running = start_with(&config, telemetry).await;

    assert_eq!(
        authorize(channel(&running, &ca.ca, Some(&allowed)).await).await,
        Ok(())
    );
    // No certificate, or one from another CA: refused at the handshake
    // (with TLS 1.3 the client learns it at its first call).
    for (what, client) in [("no certificate", None), ("another CA", Some(&stranger))] {
        let got = authorize(channel(&running, &ca.ca, client).await).await;
        assert!(
            matches!(
                got,
                Err(tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled)
            ),
            "{what}: {got:?}"
        );
    }
    // A certificate of the right CA whose SANs are not allowed.
    assert_eq!(
        authorize(channel(&running, &ca.ca, Some(&intruder)).await).await,
        Err(tonic::Code::PermissionDenied)
    );
    // It may still ask whether the server is healthy.
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        channel(&running, &ca.ca, Some(&intruder)).await.unwrap(),
    );
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();

    // Rotation: a certificate of another CA replaces the files; new
    // connections get it (within the one-second check) without a restart.
    assert!(
        authorize(channel(&running, &other.ca, Some(&allowed)).await)
            .await
            .is_err()
    );
    for (from, to) in [(&other.key, &key), (&other.cert, &cert)] {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if authorize(channel(&running, &other.ca, Some(&allowed)).await).await == Ok(()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate is never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.shutdown().await;

    let text = std::fs::read_to_string(&log).unwrap();
    let callers: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| r["caller"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(!callers.is_empty());
    assert!(callers.iter().all(|c| c == PAYMENTS), "{callers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_thread_per_core() {
    mutual_tls("thread_per_core").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_multi_thread() {
    mutual_tls("multi_thread").await;
}
