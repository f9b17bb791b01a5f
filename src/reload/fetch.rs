//! Fetching a bundle archive from a server: an HTTPS (or allowed HTTP) URL
//! with `If-None-Match` and `Cache-Control`, or an OCI registry through the
//! distribution API, polling the tag's manifest digest.
//!
//! Every fetch is bounded: a timeout for the whole exchange, and a byte
//! limit checked against the declared length before the body is read and
//! again while it is read. Error messages never carry the URL's query or
//! user information, nor a token.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::bundle::BundleSource;

/// The media type of a bundle archive as an OCI layer.
pub(crate) const OCI_LAYER_MEDIA_TYPE: &str = "application/vnd.verdict.bundle.v1.tar+gzip";
/// The artifact type of a bundle in an OCI manifest.
pub(crate) const OCI_ARTIFACT_TYPE: &str = "application/vnd.verdict.bundle.v1";
/// The (empty) config of a bundle artifact.
pub(crate) const OCI_EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The largest token or headers file read.
const MAX_AUTH_FILE_BYTES: u64 = 64 * 1024;

/// How a remote bundle is fetched (the configuration assembles it).
#[derive(Clone, Debug)]
pub struct FetchSettings {
    /// The longest one fetch may take, connection and body included.
    pub(crate) timeout: Duration,
    /// The largest archive downloaded (`max_bundle_download_bytes`).
    pub(crate) max_bytes: u64,
    /// Trust only the CA certificates of this PEM file, instead of the
    /// system's roots.
    pub(crate) ca_file: Option<PathBuf>,
    /// Send `Authorization: Bearer <the file's content>` (re-read on every
    /// fetch, so a rotated token is used without a restart).
    pub(crate) token_file: Option<PathBuf>,
    /// Send the `Name: value` lines of this file as headers (HTTPS only;
    /// re-read on every fetch).
    pub(crate) headers_file: Option<PathBuf>,
    /// `http://` URLs and plain-HTTP registries are allowed.
    pub(crate) allow_insecure: bool,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_bytes: 64 * 1024 * 1024,
            ca_file: None,
            token_file: None,
            headers_file: None,
            allow_insecure: false,
        }
    }
}

/// What one fetch found.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// The server says the archive with the tag sent is still current.
    NotModified {
        /// `Cache-Control: max-age`, if given.
        max_age: Option<Duration>,
    },
    /// A new archive.
    Archive {
        /// Its bytes, complete and within the limit.
        bytes: Vec<u8>,
        /// Its ETag (HTTPS) or manifest digest (OCI), to send next time.
        tag: Option<String>,
        /// `Cache-Control: max-age`, if given.
        max_age: Option<Duration>,
    },
}

/// A fetch that failed; the message names no secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct FetchError(pub(crate) String);

/// A client for one remote source.
pub(crate) enum Fetcher {
    /// HTTPS or HTTP.
    Http(HttpFetcher),
    /// An OCI registry.
    Oci(OciFetcher),
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Http(_) => "Fetcher::Http",
            Self::Oci(_) => "Fetcher::Oci",
        })
    }
}

impl Fetcher {
    /// A client for `source` (a remote one); `Ok(None)` for local sources.
    pub(crate) fn new(
        source: &BundleSource,
        settings: &FetchSettings,
    ) -> Result<Option<Self>, String> {
        match source {
            BundleSource::Http(url) => Ok(Some(Self::Http(HttpFetcher::new(url, settings)?))),
            BundleSource::Oci(reference) => {
                Ok(Some(Self::Oci(OciFetcher::new(reference, settings)?)))
            }
            BundleSource::Path(_) | BundleSource::Embedded => Ok(None),
        }
    }

    /// Fetch the archive unless the server says `tag` is still current.
    pub(crate) async fn fetch(&self, tag: Option<&str>) -> Result<Fetched, FetchError> {
        match self {
            Self::Http(h) => h.fetch(tag).await,
            Self::Oci(o) => o.fetch(tag).await,
        }
    }
}

/// Install aws-lc-rs as the process's TLS provider (once; later calls are no-ops).
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The CA certificates of a PEM file.
fn read_ca_file(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("bundle_ca_file {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bundle_ca_file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "bundle_ca_file {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// The TLS configuration: the CA file's certificates, or the system roots.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_ca_file(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("bundle_ca_file {}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    errors = found.errors.len(),
                    "no system root certificates found; HTTPS bundle sources will fail until bundle_ca_file is set"
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Read a small credentials file (the token or headers), within a limit.
fn read_small(path: &Path, what: &str) -> Result<String, FetchError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .map_err(|e| FetchError(format!("{what} {}: {e}", path.display())))?;
    let mut text = String::new();
    file.take(MAX_AUTH_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| FetchError(format!("{what} {}: {e}", path.display())))?;
    if text.len() as u64 > MAX_AUTH_FILE_BYTES {
        return Err(FetchError(format!(
            "{what} {}: larger than {MAX_AUTH_FILE_BYTES} bytes",
            path.display()
        )));
    }
    Ok(text)
}

/// The bearer token of `bundle_token_file`, if set.
fn read_token(path: Option<&Path>) -> Result<Option<String>, FetchError> {
    let Some(path) = path else { return Ok(None) };
    let token = read_small(path, "bundle_token_file")?.trim().to_owned();
    if token.is_empty() {
        return Err(FetchError(format!(
            "bundle_token_file {}: empty",
            path.display()
        )));
    }
    Ok(Some(token))
}

/// The headers of `bundle_headers_file`: `Name: value` lines; blank lines
/// and `#` comments skipped. Errors name the line, never its value.
pub(crate) fn parse_headers(text: &str) -> Result<http::HeaderMap, String> {
    let mut headers = http::HeaderMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("line {}: expected `Name: value`", n + 1));
        };
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("line {}: not a header name", n + 1))?;
        let mut value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("line {}: not a header value", n + 1))?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

/// `Cache-Control: max-age=N` of a response.
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|n| n.trim_matches('"').parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// An error and its causes on one line (reqwest's own text names the URL;
/// callers strip it first).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// A bundle over HTTPS or HTTP.
pub(crate) struct HttpFetcher {
    client: reqwest::Client,
    url: reqwest::Url,
    settings: FetchSettings,
}

impl HttpFetcher {
    fn new(url: &str, settings: &FetchSettings) -> Result<Self, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(settings.ca_file.as_deref())?)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .https_only(!settings.allow_insecure)
            .user_agent(concat!("verdict/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| chain(&e))?;
        Ok(Self {
            client,
            url,
            settings: settings.clone(),
        })
    }

    async fn fetch(&self, tag: Option<&str>) -> Result<Fetched, FetchError> {
        let mut request = self.client.get(self.url.clone());
        if let Some(path) = &self.settings.headers_file {
            let text = read_small(path, "bundle_headers_file")?;
            let headers = parse_headers(&text)
                .map_err(|e| FetchError(format!("bundle_headers_file {}: {e}", path.display())))?;
            request = request.headers(headers);
        }
        if let Some(token) = read_token(self.settings.token_file.as_deref())? {
            request = request.bearer_auth(token);
        }
        if let Some(tag) = tag
            && let Ok(value) = http::HeaderValue::from_str(tag)
        {
            request = request.header(http::header::IF_NONE_MATCH, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| FetchError(chain(&e.without_url())))?;
        let status = response.status();
        let max_age = max_age(response.headers());
        if status == http::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified { max_age });
        }
        if !status.is_success() {
            return Err(FetchError(format!("the server answered {status}")));
        }
        let tag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let limit = self.settings.max_bytes;
        if let Some(len) = response.content_length()
            && len > limit
        {
            return Err(FetchError(too_large(len, limit)));
        }
        let bytes = read_limited(response, limit).await?;
        Ok(Fetched::Archive {
            bytes,
            tag,
            max_age,
        })
    }
}

fn too_large(len: u64, limit: u64) -> String {
    format!("the bundle is {len} bytes, over max_bundle_download_bytes ({limit})")
}

/// The body, refused as soon as it passes `limit`.
async fn read_limited(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, FetchError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError(format!("reading the body: {}", chain(&e.without_url()))))?
    {
        let total = bytes.len() as u64 + chunk.len() as u64;
        if total > limit {
            return Err(FetchError(format!(
                "the bundle is more than {limit} bytes (max_bundle_download_bytes)"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// A bundle as an OCI artifact.
pub(crate) struct OciFetcher {
    client: oci_client::Client,
    reference: oci_client::Reference,
    settings: FetchSettings,
}

/// A registry client for `reference` (`registry/repository:tag`).
pub(crate) fn oci_client(
    reference: &str,
    settings: &FetchSettings,
) -> Result<(oci_client::Client, oci_client::Reference), String> {
    install_crypto_provider();
    let reference: oci_client::Reference = reference
        .parse()
        .map_err(|e| format!("not an OCI reference: {e}"))?;
    let tls_certs_only = match &settings.ca_file {
        Some(path) => read_ca_file(path)?
            .into_iter()
            .map(|der| oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Der,
                data: der.to_vec(),
            })
            .collect(),
        None => Vec::new(),
    };
    let config = oci_client::client::ClientConfig {
        protocol: if settings.allow_insecure {
            oci_client::client::ClientProtocol::Http
        } else {
            oci_client::client::ClientProtocol::Https
        },
        tls_certs_only,
        read_timeout: Some(settings.timeout),
        connect_timeout: Some(settings.timeout),
        user_agent: concat!("verdict/", env!("CARGO_PKG_VERSION")),
        platform_resolver: None,
        ..Default::default()
    };
    let client = oci_client::Client::try_from(config).map_err(|e| e.to_string())?;
    Ok((client, reference))
}

/// Publish `archive` (a bundle `.tar.gz`) at `reference` as an OCI
/// artifact: one layer of [`OCI_LAYER_MEDIA_TYPE`], an empty config, the
/// artifact type [`OCI_ARTIFACT_TYPE`], and `annotations` (the bundle's
/// revision, name and serial). Returns the manifest's digest.
pub(crate) async fn oci_push(
    reference: &str,
    settings: &FetchSettings,
    archive: Vec<u8>,
    annotations: std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    use oci_client::client::{Config, ImageLayer};
    use oci_client::manifest::OciImageManifest;
    let (client, reference) = oci_client(reference, settings)?;
    let auth = match read_token(settings.token_file.as_deref()).map_err(|e| e.0)? {
        Some(token) => oci_client::secrets::RegistryAuth::Bearer(token),
        None => oci_client::secrets::RegistryAuth::Anonymous,
    };
    let layers = [ImageLayer::new(
        archive,
        OCI_LAYER_MEDIA_TYPE.to_owned(),
        None,
    )];
    let config = Config::new(b"{}".to_vec(), OCI_EMPTY_CONFIG_MEDIA_TYPE.to_owned(), None);
    let mut manifest = OciImageManifest::build(&layers, &config, Some(annotations));
    manifest.artifact_type = Some(OCI_ARTIFACT_TYPE.to_owned());
    let push = async {
        client
            .push(&reference, &layers, config, &auth, Some(manifest))
            .await?;
        client.fetch_manifest_digest(&reference, &auth).await
    };
    tokio::time::timeout(settings.timeout, push)
        .await
        .map_err(|_| {
            format!(
                "the registry did not answer within {} ms",
                settings.timeout.as_millis()
            )
        })?
        .map_err(|e| chain(&e))
}

impl OciFetcher {
    fn new(reference: &str, settings: &FetchSettings) -> Result<Self, String> {
        let (client, reference) = oci_client(reference, settings)?;
        Ok(Self {
            client,
            reference,
            settings: settings.clone(),
        })
    }

    fn auth(&self) -> Result<oci_client::secrets::RegistryAuth, FetchError> {
        Ok(match read_token(self.settings.token_file.as_deref())? {
            Some(token) => oci_client::secrets::RegistryAuth::Bearer(token),
            None => oci_client::secrets::RegistryAuth::Anonymous,
        })
    }

    async fn fetch(&self, tag: Option<&str>) -> Result<Fetched, FetchError> {
        tokio::time::timeout(self.settings.timeout, self.fetch_unbounded(tag))
            .await
            .map_err(|_| {
                FetchError(format!(
                    "the registry did not answer within {} ms (bundle_fetch_timeout_ms)",
                    self.settings.timeout.as_millis()
                ))
            })?
    }

    async fn fetch_unbounded(&self, tag: Option<&str>) -> Result<Fetched, FetchError> {
        let auth = self.auth()?;
        let oci = |e: oci_client::errors::OciDistributionError| FetchError(chain(&e));
        let current = self
            .client
            .fetch_manifest_digest(&self.reference, &auth)
            .await
            .map_err(oci)?;
        if tag == Some(current.as_str()) {
            return Ok(Fetched::NotModified { max_age: None });
        }
        let (manifest, digest) = self
            .client
            .pull_image_manifest(&self.reference, &auth)
            .await
            .map_err(oci)?;
        let layer = manifest
            .layers
            .iter()
            .find(|l| l.media_type == OCI_LAYER_MEDIA_TYPE)
            .ok_or_else(|| {
                FetchError(format!(
                    "the manifest {digest} has no layer of type {OCI_LAYER_MEDIA_TYPE}"
                ))
            })?;
        let limit = self.settings.max_bytes;
        let declared = u64::try_from(layer.size).unwrap_or(u64::MAX);
        if declared > limit {
            return Err(FetchError(too_large(declared, limit)));
        }
        let mut stream = self
            .client
            .pull_blob_stream(&self.reference, layer)
            .await
            .map_err(oci)?;
        let mut bytes = Vec::new();
        while let Some(chunk) = tokio_stream::StreamExt::next(&mut stream).await {
            let chunk = chunk.map_err(|e| FetchError(format!("reading the layer: {e}")))?;
            if bytes.len() as u64 + chunk.len() as u64 > declared.min(limit) {
                return Err(FetchError(format!(
                    "the layer is longer than its declared {declared} bytes or max_bundle_download_bytes ({limit})"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let got = format!(
            "sha256:{}",
            crate::bundle::sign::hex(&Sha256::digest(&bytes))
        );
        if got != layer.digest {
            return Err(FetchError(format!(
                "the layer's content has digest {got}, not the manifest's {}",
                layer.digest
            )));
        }
        Ok(Fetched::Archive {
            bytes,
            tag: Some(digest),
            max_age: None,
        })
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;

    #[test]
    fn headers_file_lines() {
        let h = parse_headers("# comment\n\nX-Team: keys\nAuthorization: Basic abc\n")
            .unwrap_or_default();
        assert_eq!(h.len(), 2);
        assert!(h.get("authorization").is_some_and(|v| v.is_sensitive()));
        let e = parse_headers("X-Team keys").err().unwrap_or_default();
        assert_eq!(e, "line 1: expected `Name: value`");
        let e = parse_headers("Bad Name: secret-value")
            .err()
            .unwrap_or_default();
        assert!(!e.contains("secret"), "{e}");
    }

    /// A one-shot HTTP/1.1 server on loopback: answers `reply` to the first
    /// request and returns the request's head.
    async fn serve_once(reply: &'static [u8]) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/b.tar.gz", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(buf.get(..n).unwrap_or_default());
            }
            s.write_all(reply).await.unwrap();
            s.shutdown().await.unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        (url, task)
    }

    fn settings(dir: &Path) -> FetchSettings {
        let token = dir.join("token");
        let headers = dir.join("headers");
        std::fs::write(&token, "s3cr3t-token\n").unwrap();
        std::fs::write(&headers, "X-Team: keys\n").unwrap();
        FetchSettings {
            max_bytes: 64,
            token_file: Some(token),
            headers_file: Some(headers),
            allow_insecure: true,
            timeout: Duration::from_secs(5),
            ..FetchSettings::default()
        }
    }

    #[tokio::test]
    async fn sends_credentials_and_tag_and_refuses_short_and_long_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        // 304 with the tag, the token and the extra header sent.
        let (url, head) =
            serve_once(b"HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=30\r\n\r\n").await;
        let f = HttpFetcher::new(&url, &settings).unwrap();
        let got = f.fetch(Some("\"e1\"")).await.unwrap();
        assert!(
            matches!(got, Fetched::NotModified { max_age: Some(d) } if d == Duration::from_secs(30))
        );
        let head = head.await.unwrap().to_ascii_lowercase();
        assert!(head.contains("if-none-match: \"e1\""), "{head}");
        assert!(
            head.contains("authorization: bearer s3cr3t-token"),
            "{head}"
        );
        assert!(head.contains("x-team: keys"), "{head}");
        // A body shorter than its Content-Length: the connection closes early.
        let (url, _) =
            serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\nETag: \"e2\"\r\n\r\nonly ten b")
                .await;
        let e = HttpFetcher::new(&url, &settings)
            .unwrap()
            .fetch(None)
            .await
            .unwrap_err();
        assert!(e.0.contains("reading the body"), "{e}");
        // Declared over the limit: refused before the body is read.
        let (url, _) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").await;
        let e = HttpFetcher::new(&url, &settings)
            .unwrap()
            .fetch(None)
            .await
            .unwrap_err();
        assert!(
            e.0.contains("1000 bytes, over max_bundle_download_bytes (64)"),
            "{e}"
        );
        // Chunked, running past the limit while read.
        let (url, _) = serve_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n").await;
        let e = HttpFetcher::new(&url, &settings)
            .unwrap()
            .fetch(None)
            .await
            .unwrap_err();
        assert!(e.0.contains("more than 64 bytes"), "{e}");
        // A server error names its status, never the URL's query.
        let (url, _) = serve_once(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").await;
        let f = HttpFetcher::new(&format!("{url}?X-Amz-Signature=abc"), &settings).unwrap();
        let e = f.fetch(None).await.unwrap_err();
        assert_eq!(e.0, "the server answered 403 Forbidden");
    }

    #[tokio::test]
    async fn plain_http_needs_allow_insecure() {
        let dir = tempfile::tempdir().unwrap();
        let settings = FetchSettings {
            allow_insecure: false,
            ..settings(dir.path())
        };
        let (url, _) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let e = HttpFetcher::new(&url, &settings)
            .unwrap()
            .fetch(None)
            .await
            .unwrap_err();
        assert!(!e.0.contains("127.0.0.1"), "no URL in {e}");
    }

    #[test]
    fn max_age_from_cache_control() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("public, max-age=120"),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(120)));
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-cache"),
        );
        assert_eq!(max_age(&h), None);
    }
}
