//! How one signal (traces or metrics) is sent: the OTLP exporter variables
//! of the OpenTelemetry specification, read per signal with the common
//! variable as the fallback, and the transports they configure.
//!
//! - `OTEL_EXPORTER_OTLP_[SIGNAL_]PROTOCOL`: `http/protobuf` (the
//!   specification's default) or `grpc`; `http/json` is refused.
//! - `OTEL_EXPORTER_OTLP_[SIGNAL_]ENDPOINT`: for HTTP a signal's own
//!   endpoint is its full URL, and the common one gets `/v1/traces` or
//!   `/v1/metrics` appended; for gRPC the path is not used. A gRPC endpoint
//!   without a scheme is `https`, or `http` when
//!   `OTEL_EXPORTER_OTLP_[SIGNAL_]INSECURE` is `true`.
//! - `OTEL_EXPORTER_OTLP_[SIGNAL_]CERTIFICATE`: the PEM file of the CAs that
//!   the collector's certificate must chain to (else the system roots);
//!   `OTEL_EXPORTER_OTLP_[SIGNAL_]CLIENT_CERTIFICATE` and `…_CLIENT_KEY`: the
//!   client's certificate chain and key, for a collector that asks for one.
//!   The files are read when the server starts.
//! - `…HEADERS`, `…TIMEOUT`, `…COMPRESSION` as before.
//!
//! Every bad value is an error naming its variable, and the server does not
//! start.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::settings::TelemetryError;

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protocol buffers.
    HttpProtobuf,
}

/// A signal's exporter, as configured.
#[derive(Clone, Debug)]
pub struct ExportSettings {
    /// The transport.
    pub protocol: Protocol,
    /// The URL exports go to: for HTTP with the signal's path, for gRPC the
    /// collector's origin.
    pub endpoint: String,
    /// Sent with every export (gRPC metadata or HTTP headers).
    pub(crate) headers: Vec<(String, String)>,
    /// Deadline of one export, retries included.
    pub(crate) timeout: Duration,
    /// gzip the exports.
    pub(crate) gzip: bool,
    /// TLS material, read at start.
    pub(crate) tls: TlsMaterial,
}

/// The PEM files the TLS variables name, read.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsMaterial {
    /// Trusted CAs (none: the system roots).
    pub(crate) ca: Option<Arc<[u8]>>,
    /// The client's certificate chain and key.
    pub(crate) identity: Option<(Pem, Pem)>,
}

/// The bytes of a PEM file.
pub(crate) type Pem = Arc<[u8]>;

/// Files the TLS variables may name are at most this large.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// The signal an exporter is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn var_part(self) -> &'static str {
        match self {
            Self::Traces => "TRACES",
            Self::Metrics => "METRICS",
        }
    }

    fn http_path(self) -> &'static str {
        match self {
            Self::Traces => "v1/traces",
            Self::Metrics => "v1/metrics",
        }
    }
}

/// Reads a signal's variables: its own, else the common one.
struct Vars<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
    signal: Signal,
}

impl Vars<'_> {
    /// The value and the variable it came from.
    fn either(&self, suffix: &str) -> Option<(String, String)> {
        let own = format!("OTEL_EXPORTER_OTLP_{}_{suffix}", self.signal.var_part());
        let common = format!("OTEL_EXPORTER_OTLP_{suffix}");
        (self.get)(&own)
            .map(|v| (own, v))
            .or_else(|| (self.get)(&common).map(|v| (common, v)))
    }
}

fn error(var: &str, message: String) -> TelemetryError {
    TelemetryError {
        var: var.to_owned(),
        message,
    }
}

/// Read one signal's exporter (none when it has no endpoint).
pub(crate) fn read(
    get: &dyn Fn(&str) -> Option<String>,
    signal: Signal,
    errors: &mut Vec<TelemetryError>,
) -> Option<ExportSettings> {
    let vars = Vars { get, signal };
    let protocol = match vars.either("PROTOCOL") {
        None => Protocol::HttpProtobuf,
        Some((_, v)) if v == "http/protobuf" => Protocol::HttpProtobuf,
        Some((_, v)) if v == "grpc" => Protocol::Grpc,
        Some((var, v)) => {
            let why = if v == "http/json" {
                "is not supported (grpc or http/protobuf)"
            } else {
                "is not an OTLP protocol (grpc or http/protobuf)"
            };
            errors.push(error(&var, format!("`{}` {why}", cut(&v))));
            Protocol::HttpProtobuf
        }
    };
    let insecure = vars
        .either("INSECURE")
        .is_some_and(|(_, v)| v.eq_ignore_ascii_case("true"));
    let own = format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.var_part());
    let (var, endpoint, is_own) = match (get(&own), get("OTEL_EXPORTER_OTLP_ENDPOINT")) {
        (Some(e), _) => (own, e, true),
        (None, Some(e)) => ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), e, false),
        (None, None) => return None,
    };
    let endpoint = match endpoint_url(&endpoint, protocol, insecure, (!is_own).then_some(signal)) {
        Ok(url) => url,
        Err(message) => {
            errors.push(error(&var, message));
            return None;
        }
    };
    Some(ExportSettings {
        protocol,
        endpoint,
        headers: headers(&vars, errors),
        timeout: timeout(&vars, errors),
        gzip: gzip(&vars, errors),
        tls: tls(&vars, errors),
    })
}

/// A value quoted in an error, cut short.
fn cut(v: &str) -> String {
    crate::policy::err::cut(v, 128)
}

/// The URL exports go to. `append` is the signal whose path a common HTTP
/// endpoint gets.
fn endpoint_url(
    raw: &str,
    protocol: Protocol,
    insecure: bool,
    append: Option<Signal>,
) -> Result<String, String> {
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else if protocol == Protocol::Grpc {
        let scheme = if insecure { "http" } else { "https" };
        format!("{scheme}://{raw}")
    } else {
        return Err(format!(
            "`{}` has no scheme (http:// or https://)",
            cut(raw)
        ));
    };
    let uri: http::Uri = with_scheme
        .parse()
        .map_err(|e| format!("`{}` is not a URL ({e})", cut(raw)))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "`{}`: the scheme must be http:// or https://",
                cut(raw)
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{}` names no host", cut(raw)));
    }
    Ok(match (protocol, append) {
        (Protocol::HttpProtobuf, Some(signal)) => {
            let base = with_scheme.trim_end_matches('/');
            format!("{base}/{}", signal.http_path())
        }
        _ => with_scheme,
    })
}

fn headers(vars: &Vars<'_>, errors: &mut Vec<TelemetryError>) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    let Some((var, list)) = vars.either("HEADERS") else {
        return headers;
    };
    for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = pair.split_once('=').and_then(|(k, v)| {
            let k = k.trim();
            let v = percent_encoding::percent_decode_str(v.trim())
                .decode_utf8()
                .ok()?;
            (!k.is_empty()).then(|| (k.to_owned(), v.into_owned()))
        });
        match parsed {
            Some(kv) => headers.push(kv),
            None => errors.push(error(
                &var,
                format!(
                    "`{}` is not key=value (with a percent-encoded UTF-8 value)",
                    cut(pair)
                ),
            )),
        }
    }
    headers
}

fn timeout(vars: &Vars<'_>, errors: &mut Vec<TelemetryError>) -> Duration {
    let Some((var, v)) = vars.either("TIMEOUT") else {
        return Duration::from_secs(10);
    };
    match v.parse::<u64>() {
        Ok(ms) if ms > 0 => Duration::from_millis(ms),
        _ => {
            errors.push(error(
                &var,
                format!("`{}` is not a positive number of milliseconds", cut(&v)),
            ));
            Duration::from_secs(10)
        }
    }
}

fn gzip(vars: &Vars<'_>, errors: &mut Vec<TelemetryError>) -> bool {
    match vars.either("COMPRESSION") {
        None => false,
        Some((_, v)) if v.eq_ignore_ascii_case("none") => false,
        Some((_, v)) if v.eq_ignore_ascii_case("gzip") => true,
        Some((var, v)) => {
            errors.push(error(
                &var,
                format!("unsupported compression `{}` (gzip or none)", cut(&v)),
            ));
            false
        }
    }
}

/// Read a PEM file a variable names; it must hold `what`.
fn pem_file(var: &str, path: &str, what: PemKind) -> Result<Arc<[u8]>, TelemetryError> {
    use std::io::Read as _;
    let fail = |message: String| error(var, format!("{path}: {message}"));
    let file = std::fs::File::open(Path::new(path)).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(fail(format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    what.check(&bytes).map_err(fail)?;
    Ok(bytes.into())
}

/// What a PEM file must hold.
#[derive(Clone, Copy)]
enum PemKind {
    Certificates,
    Key,
}

impl PemKind {
    fn check(self, pem: &[u8]) -> Result<(), String> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        match self {
            Self::Certificates => {
                let certs = CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("not PEM certificates ({e})"))?;
                if certs.is_empty() {
                    return Err("no PEM certificate in it".into());
                }
            }
            Self::Key => {
                PrivateKeyDer::from_pem_slice(pem)
                    .map_err(|e| format!("no PEM private key in it ({e})"))?;
            }
        }
        Ok(())
    }
}

fn tls(vars: &Vars<'_>, errors: &mut Vec<TelemetryError>) -> TlsMaterial {
    let mut read = |suffix: &str, kind: PemKind| {
        let (var, path) = vars.either(suffix)?;
        pem_file(&var, &path, kind)
            .map_err(|e| errors.push(e))
            .ok()
            .map(|bytes| (var, bytes))
    };
    let ca = read("CERTIFICATE", PemKind::Certificates).map(|(_, b)| b);
    let cert = read("CLIENT_CERTIFICATE", PemKind::Certificates);
    let key = read("CLIENT_KEY", PemKind::Key);
    let identity = match (cert, key) {
        (Some((_, cert)), Some((_, key))) => Some((cert, key)),
        (None, None) => None,
        (Some((var, _)), None) | (None, Some((var, _))) => {
            errors.push(error(
                &var,
                "a client certificate needs its key, and a key its certificate (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY, or their per-signal forms)".into(),
            ));
            None
        }
    };
    TlsMaterial { ca, identity }
}

// === Transports ===

impl ExportSettings {
    /// A lazily connecting gRPC channel to the collector, with TLS for an
    /// `https` endpoint. Must be called inside the tokio runtime that is to
    /// carry its connection.
    pub(crate) fn grpc_channel(&self) -> Result<tonic::transport::Channel, String> {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let mut endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|e| format!("endpoint `{}`: {e}", cut(&self.endpoint)))?
            .timeout(self.timeout);
        if endpoint.uri().scheme_str() == Some("https") {
            crate::reload::fetch::install_crypto_provider();
            let mut tls = ClientTlsConfig::new();
            tls = match &self.tls.ca {
                Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
                None => tls.with_native_roots(),
            };
            if let Some((cert, key)) = &self.tls.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("TLS for `{}`: {e}", cut(&self.endpoint)))?;
        }
        Ok(endpoint.connect_lazy())
    }

    /// An HTTP client for the collector: rustls with the CA file's
    /// certificates (else the system roots) and the client identity.
    pub(crate) fn http_client(&self) -> Result<reqwest::Client, String> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        crate::reload::fetch::install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        match &self.tls.ca {
            Some(ca) => {
                for cert in CertificateDer::pem_slice_iter(ca) {
                    let cert = cert.map_err(|e| e.to_string())?;
                    roots.add(cert).map_err(|e| e.to_string())?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match &self.tls.identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| e.to_string())?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())
    }
}

/// An HTTP client for opentelemetry-otlp's metric exporter whose requests
/// run on the telemetry runtime, whatever thread the exporter calls from
/// (its periodic reader drives exports from a thread of its own, outside
/// any runtime).
#[derive(Debug)]
pub(crate) struct RuntimeHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// Largest collector response read.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

impl RuntimeHttpClient {
    /// Send requests with `client` on `runtime`.
    pub(crate) fn new(client: reqwest::Client, runtime: tokio::runtime::Handle) -> Self {
        Self { client, runtime }
    }

    /// Send one request on the runtime, within `within` when given (the
    /// client's own timeout applies too); the response with its body (at
    /// most [`MAX_RESPONSE_BYTES`]).
    pub(crate) async fn send(
        &self,
        request: http::Request<bytes::Bytes>,
        within: Option<Duration>,
    ) -> Result<http::Response<bytes::Bytes>, String> {
        let client = self.client.clone();
        let call = async move {
            let mut request = reqwest::Request::try_from(request).map_err(|e| e.to_string())?;
            if let Some(t) = within {
                *request.timeout_mut() = Some(t);
            }
            let mut response = client.execute(request).await.map_err(|e| {
                // reqwest's text names the URL, never a header.
                e.without_url().to_string()
            })?;
            let mut out = http::Response::builder().status(response.status());
            if let Some(headers) = out.headers_mut() {
                headers.clone_from(response.headers());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            out.body(bytes::Bytes::from(body))
                .map_err(|e| e.to_string())
        };
        self.runtime
            .spawn(call)
            .await
            .map_err(|e| format!("the export task ended: {e}"))?
    }
}

#[tonic::async_trait]
impl opentelemetry_http::HttpClient for RuntimeHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        self.send(request, None).await.map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read_with(
        pairs: &[(&str, &str)],
        signal: Signal,
    ) -> Result<Option<ExportSettings>, Vec<String>> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let mut errors = Vec::new();
        let s = read(&|k| m.get(k).cloned(), signal, &mut errors);
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(errors.into_iter().map(|e| e.to_string()).collect())
        }
    }

    #[test]
    fn http_protobuf_is_the_default_and_a_common_endpoint_gets_the_signal_path() {
        let s = read_with(
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")],
            Signal::Traces,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.endpoint, "http://c:4318/v1/traces");
        let s = read_with(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318/otlp"),
                (
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                    "https://m/custom/path",
                ),
            ],
            Signal::Metrics,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "https://m/custom/path");
        let s = read_with(
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c/otlp")],
            Signal::Metrics,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "https://c/otlp/v1/metrics");
        assert_eq!(
            read_with(&[], Signal::Traces).unwrap().map(|s| s.endpoint),
            None
        );
    }

    #[test]
    fn grpc_endpoints_keep_their_origin_and_insecure_picks_the_scheme() {
        let grpc = |pairs: &[(&str, &str)]| {
            let mut all = vec![("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
            all.extend_from_slice(pairs);
            read_with(&all, Signal::Traces).unwrap().unwrap().endpoint
        };
        assert_eq!(
            grpc(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]),
            "http://c:4317"
        );
        assert_eq!(
            grpc(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4317")]),
            "https://c:4317"
        );
        assert_eq!(
            grpc(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true")
            ]),
            "http://c:4317"
        );
        // A signal's own protocol wins over the common one.
        let s = read_with(
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ],
            Signal::Metrics,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.endpoint, "http://c:4318/v1/metrics");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let e = read_with(
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ],
            Signal::Traces,
        )
        .unwrap_err();
        assert_eq!(
            e,
            ["OTEL_EXPORTER_OTLP_PROTOCOL: `http/json` is not supported (grpc or http/protobuf)"]
        );
        let e = read_with(
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://c"),
            ],
            Signal::Traces,
        )
        .unwrap_err();
        assert!(
            e[0].starts_with("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL:"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:"),
            "{e:?}"
        );
        let e = read_with(
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
            Signal::Traces,
        )
        .unwrap_err();
        assert!(e[0].contains("no scheme"), "{e:?}");
    }

    #[test]
    fn tls_files_are_read_at_start_and_a_cert_needs_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["c".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let ca = dir.path().join("ca.pem");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&ca, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let ca = ca.to_str().unwrap();
        let key_file = key_file.to_str().unwrap();
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")];
        let with = |extra: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            read_with(&all, Signal::Metrics)
        };
        let s = with(&[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca),
            ("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", ca),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key_file),
        ])
        .unwrap()
        .unwrap();
        assert!(s.tls.ca.is_some() && s.tls.identity.is_some());
        let e = with(&[("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", ca)]).unwrap_err();
        assert!(
            e[0].starts_with("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE:"),
            "{e:?}"
        );
        let e = with(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem")]).unwrap_err();
        assert!(
            e[0].starts_with("OTEL_EXPORTER_OTLP_CERTIFICATE: /nonexistent/ca.pem:"),
            "{e:?}"
        );
        let e = with(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", key_file)]).unwrap_err();
        assert!(e[0].contains("no PEM certificate"), "{e:?}");
    }
}
