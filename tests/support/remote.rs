//! Real bundle servers for the remote-source tests, started on 127.0.0.1:
//! nginx (Debian `nginx-light`) over HTTPS with a test CA and over HTTP,
//! and a distribution registry (Debian `docker-registry`). The test
//! command installs both when missing.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// A free port on 127.0.0.1 (bound, then released for the server).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test certificate authority and a server certificate for 127.0.0.1
/// and localhost, written as PEM files in `dir`.
pub struct TestCa {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> Self {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "verdict test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let out = Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            issuer: ca,
            dir: dir.to_path_buf(),
        };
        std::fs::write(&out.ca, out.issuer.pem()).unwrap();
        std::fs::write(&out.cert, cert.pem()).unwrap();
        std::fs::write(&out.key, key.serialize_pem()).unwrap();
        out
    }

    /// A client certificate with these SANs (`dns:NAME` or `uri:URI`),
    /// written as `<name>.pem` and `<name>.key`; returns the two paths.
    pub fn client(&self, name: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.split_once(':') {
                Some(("dns", n)) => rcgen::SanType::DnsName(n.try_into().unwrap()),
                Some(("uri", u)) => rcgen::SanType::URI(u.try_into().unwrap()),
                _ => panic!("{s}: dns:NAME or uri:URI"),
            })
            .collect();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// Wait until something accepts connections on `port`.
fn wait_listening(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} never listened on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nginx serving `www/` over HTTPS and HTTP, logging every request with
/// its status and `If-None-Match`.
pub struct Nginx {
    dir: PathBuf,
    pub https: u16,
    pub http: u16,
    child: Option<Child>,
    /// Increases the mtime of each published file (nginx's ETag is the
    /// mtime and size, and two bundles may have the same size).
    published: u64,
}

impl Nginx {
    /// Start nginx with its files under `dir` (created).
    pub fn start(dir: &Path, ca: &TestCa) -> Self {
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let (https, http) = (free_port(), free_port());
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
  log_format verdict '$request_method $uri $status "$http_if_none_match" $body_bytes_sent';
  access_log {d}/access.log verdict;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  types {{ application/gzip gz; }}
  server {{
    listen 127.0.0.1:{http};
    root {d}/www;
  }}
  server {{
    listen 127.0.0.1:{https} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {d}/www;
  }}
}}
"#,
            cert = ca.cert.display(),
            key = ca.key.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut n = Self {
            dir: dir.to_path_buf(),
            https,
            http,
            child: None,
            published: 0,
        };
        n.resume();
        n
    }

    /// (Re)start nginx on the same ports.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "nginx is running");
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package nginx-light) is installed");
        self.child = Some(child);
        let log = self.dir.join("error.log");
        wait_listening(self.http, "nginx", &log);
        wait_listening(self.https, "nginx", &log);
    }

    /// Stop nginx (the ports close).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn https_url(&self, file: &str) -> String {
        format!("https://127.0.0.1:{}/{file}", self.https)
    }

    pub fn http_url(&self, file: &str) -> String {
        format!("http://127.0.0.1:{}/{file}", self.http)
    }

    /// Replace `www/<file>` atomically with `bytes`, with a newer mtime.
    pub fn publish(&mut self, file: &str, bytes: &[u8]) {
        self.published += 1;
        let tmp = self.dir.join("www").join(format!(".{file}.tmp"));
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(bytes).unwrap();
        f.set_modified(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + self.published),
        )
        .unwrap();
        drop(f);
        std::fs::rename(&tmp, self.dir.join("www").join(file)).unwrap();
    }

    /// The access log's lines: `METHOD URI STATUS "IF-NONE-MATCH" BYTES`.
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.replace(r"\x22", "\""))
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

/// A distribution registry (plain HTTP) storing under `dir`.
pub struct Registry {
    pub port: u16,
    log: PathBuf,
    child: Child,
}

impl Registry {
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        let port = free_port();
        let conf = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        );
        std::fs::write(dir.join("config.yml"), conf).unwrap();
        let log = dir.join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("docker-registry (Debian package docker-registry) is installed");
        wait_listening(port, "docker-registry", &log);
        Self { port, log, child }
    }

    /// The registry's log (access lines included).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The entries of a `.tar.gz`, in order.
pub fn untar(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (path, data)
        })
        .collect()
}

/// A `.tar.gz` of these entries.
pub fn tar_gz(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}
