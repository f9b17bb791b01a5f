//! TLS on the TCP listener: the certificate and key (and the client CA)
//! re-read when their files change, so a rotated certificate is served
//! without a restart; with a client CA, mutual TLS, refused at the
//! handshake without a certificate that chains to it; and the client's
//! identity (its certificate's SANs) for the allowlist, spans and the
//! decision log.
//!
//! Each handshake runs on a task of its own within `handshake_timeout_ms`,
//! so a client that stalls its handshake never holds up another.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;

use super::{Gate, Slot, Warnings, Watched};

/// How often, at most, the files are looked at for a change.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What `tls_cert`, `tls_key`, `tls_client_ca` and `tls_allowed_clients`
/// configure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server's certificate chain (PEM).
    pub(crate) cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub(crate) key: PathBuf,
    /// Client certificates must chain to these CAs (PEM): mutual TLS.
    pub(crate) client_ca: Option<PathBuf>,
    /// SANs allowed to call (empty: any client the handshake accepts).
    pub(crate) allowed_clients: Allowlist,
}

/// The client's identity: the SANs of its certificate, each as `dns:NAME`,
/// `uri:URI` (SPIFFE IDs are URIs) or `ip:ADDRESS`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientIdentity {
    pub(crate) sans: Vec<String>,
}

impl ClientIdentity {
    /// The SANs of a DER certificate; none when it does not parse (the
    /// handshake has verified it, so that does not happen in practice).
    fn of(cert: &[u8]) -> Self {
        use x509_parser::extensions::GeneralName;
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert) else {
            return Self::default();
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return Self::default();
        };
        let sans = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(d) => Some(format!("dns:{d}")),
                GeneralName::URI(u) => Some(format!("uri:{u}")),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => <[u8; 4]>::try_from(*ip)
                        .ok()
                        .map(|a| format!("ip:{}", std::net::Ipv4Addr::from(a))),
                    16 => <[u8; 16]>::try_from(*ip)
                        .ok()
                        .map(|a| format!("ip:{}", std::net::Ipv6Addr::from(a))),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        Self { sans }
    }

    /// The SANs joined with commas, for logs and records.
    pub(crate) fn display(&self) -> String {
        self.sans.join(",")
    }
}

/// `tls_allowed_clients`: entries `dns:NAME`, `uri:URI` or `ip:ADDRESS`;
/// an entry ending in `*` allows every SAN it is a prefix of
/// (`uri:spiffe://prod.example.com/ns/payments/*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist(Vec<String>);

impl Allowlist {
    /// Parse the comma-separated setting.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        let entries: Vec<String> = value
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect();
        for e in &entries {
            if !["dns:", "uri:", "ip:"].iter().any(|p| e.starts_with(p)) {
                return Err(format!(
                    "`{}`: each entry is dns:NAME, uri:URI or ip:ADDRESS",
                    crate::policy::err::cut(e, 64)
                ));
            }
        }
        Ok(Self(entries))
    }

    /// Whether any client is allowed (no list configured).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a client with this identity may call.
    pub(crate) fn allows(&self, who: &ClientIdentity) -> bool {
        who.sans.iter().any(|san| {
            self.0.iter().any(|e| match e.strip_suffix('*') {
                Some(prefix) => san.starts_with(prefix),
                None => san == e,
            })
        })
    }
}

/// The TLS configuration in force, rebuilt when a file changes.
pub(crate) struct Tls {
    settings: TlsSettings,
    current: ArcSwap<rustls::ServerConfig>,
    /// When the files were last looked at, and what they were then.
    checked: Mutex<(Instant, u64)>,
    failed: Warnings,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Read the files; any error stops the server at start.
    pub(crate) fn new(settings: TlsSettings) -> Result<Self, String> {
        let config = server_config(&settings)?;
        let seen = fingerprint(&settings);
        Ok(Self {
            settings,
            current: ArcSwap::from_pointee(config),
            checked: Mutex::new((Instant::now(), seen)),
            failed: Warnings::new("the TLS files changed but do not load; the previous ones serve"),
        })
    }

    /// The acceptor for the next handshake, after looking at the files
    /// (at most every second) and rebuilding when they changed.
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.maybe_reload();
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    fn maybe_reload(&self) {
        let Ok(mut checked) = self.checked.try_lock() else {
            return;
        };
        if checked.0.elapsed() < CHECK_EVERY {
            return;
        }
        checked.0 = Instant::now();
        let seen = fingerprint(&self.settings);
        if seen == checked.1 {
            return;
        }
        match server_config(&self.settings) {
            Ok(config) => {
                checked.1 = seen;
                self.current.store(Arc::new(config));
                tracing::info!("TLS certificate, key or client CA reloaded");
            }
            Err(e) => self.failed.note_with(Some(&e)),
        }
    }
}

/// Sizes and modification times of the files (a rotation changes them).
fn fingerprint(s: &TlsSettings) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    for path in [Some(&s.cert), Some(&s.key), s.client_ca.as_ref()]
        .into_iter()
        .flatten()
    {
        let meta = std::fs::metadata(path).ok();
        meta.as_ref().map(std::fs::Metadata::len).hash(&mut h);
        meta.and_then(|m| m.modified().ok())
            .unwrap_or(SystemTime::UNIX_EPOCH)
            .hash(&mut h);
    }
    h.finish()
}

fn server_config(s: &TlsSettings) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let named = |path: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&s.cert)
        .map_err(|e| named(&s.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| named(&s.cert, &e))?;
    if certs.is_empty() {
        return Err(named(&s.cert, &"no PEM certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&s.key).map_err(|e| named(&s.key, &e))?;
    crate::reload::fetch::install_crypto_provider();
    let builder = rustls::ServerConfig::builder();
    let builder = match &s.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| named(path, &e))? {
                roots
                    .add(cert.map_err(|e| named(path, &e))?)
                    .map_err(|e| named(path, &e))?;
            }
            if roots.is_empty() {
                return Err(named(path, &"no PEM certificate in it"));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| named(path, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} and {}: {e}", s.cert.display(), s.key.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// An accepted connection, its peer and its place under `max_connections`.
pub(crate) type Accepted<IO> = (IO, Option<SocketAddr>, Slot);

/// The connections of `plain` once their TLS handshake is done, each on a
/// task of its own within the gate's handshake timeout, then watched by
/// the gate (its handshake timer starts again for the HTTP/2 preface) and
/// passed through `finish`. A failed or timed-out handshake closes the
/// connection and is logged at most every ten seconds.
pub(crate) fn handshakes<IO, S, F, Out>(
    plain: S,
    tls: Arc<Tls>,
    gate: Gate,
    finish: F,
) -> impl Stream<Item = io::Result<Out>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Stream<Item = io::Result<Accepted<IO>>> + Send + 'static,
    F: Fn(Watched<TlsStream<IO>>) -> Out + Send + Sync + 'static,
    Out: Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Out>>(64);
    let failed = Arc::new(Warnings::new("TLS handshakes failed"));
    let finish = Arc::new(finish);
    tokio::spawn(async move {
        let mut plain = std::pin::pin!(plain);
        while let Some(accepted) = tokio_stream::StreamExt::next(&mut plain).await {
            let (io, peer, slot) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let (tx, acceptor, gate) = (tx.clone(), tls.acceptor(), gate.clone());
            let (failed, finish) = (failed.clone(), finish.clone());
            let timeout = gate.handshake_timeout();
            tokio::spawn(async move {
                let done = match timeout {
                    Some(t) => tokio::time::timeout(t, acceptor.accept(io)).await,
                    None => Ok(acceptor.accept(io).await),
                };
                let stream = match done {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return failed.note_with(Some(&e)),
                    Err(_) => {
                        return failed
                            .note_with(Some(&"no TLS handshake within handshake_timeout_ms"));
                    }
                };
                let identity = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| Arc::new(ClientIdentity::of(c)));
                let watched = gate.watch_identified(stream, peer, identity, slot);
                let _ = tx.send(Ok(finish(watched))).await;
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_entries_and_prefixes() {
        let list =
            Allowlist::parse("dns:payments.internal, uri:spiffe://prod.example.com/ns/keys/*")
                .unwrap_or_default();
        let who = |sans: &[&str]| ClientIdentity {
            sans: sans.iter().map(|s| (*s).to_owned()).collect(),
        };
        assert!(list.allows(&who(&["dns:payments.internal"])));
        assert!(list.allows(&who(&[
            "dns:x",
            "uri:spiffe://prod.example.com/ns/keys/sa/api"
        ])));
        assert!(!list.allows(&who(&["dns:payments.internal.evil"])));
        assert!(!list.allows(&who(&["uri:spiffe://prod.example.com/ns/other/sa/api"])));
        assert!(!list.allows(&who(&[])));
        assert!(Allowlist::parse("payments.internal").is_err());
    }
}
