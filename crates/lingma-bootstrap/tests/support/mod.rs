//! Shared by the bootstrap integration tests: VSIX packages built in the test, and a real HTTP
//! server on 127.0.0.1 whose answer each test chooses and which counts the requests.

#![allow(dead_code)]

pub mod tls_server;

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use lingma_bootstrap::{BootstrapConfig, Platform, PlatformChoice, SourceType};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

/// The text of the fake executable for one file of one platform; running it prints its identity.
pub fn script(name: &str, version: &str, platform: &str) -> String {
    format!("#!/bin/sh\necho {name} {version} {platform}\n")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn zip_bytes(entries: &[(String, Vec<u8>)], method: zip::CompressionMethod) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, content) in entries {
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .unix_permissions(0o644);
        writer
            .start_file(name.as_str(), options)
            .expect("zip entry");
        writer.write_all(content).expect("zip write");
    }
    writer.finish().expect("zip finish").into_inner()
}

/// A VSIX like the Lingma extension's: `extension/dist/bin/lingma-<version>.zip` holding
/// `<version>/<platform>/Lingma` and `LingmaLocal` for each platform given.
pub fn vsix(version: &str, platforms: &[&str]) -> Vec<u8> {
    vsix_padded(version, platforms, 0)
}

/// [`vsix`] with an incompressible `padding_bytes`-long extra entry, for tests that need a
/// package big enough to log progress or to be caught mid-download.
pub fn vsix_padded(version: &str, platforms: &[&str], padding_bytes: usize) -> Vec<u8> {
    let mut nested = Vec::new();
    for platform in platforms {
        for name in ["Lingma", "LingmaLocal"] {
            nested.push((
                format!("{version}/{platform}/{name}"),
                script(name, version, platform).into_bytes(),
            ));
        }
        nested.push((
            format!("{version}/{platform}/resources/readme.txt"),
            b"not extracted".to_vec(),
        ));
    }
    let nested = zip_bytes(&nested, zip::CompressionMethod::Deflated);
    zip_bytes(
        &[
            (
                "extension.vsixmanifest".into(),
                b"<PackageManifest/>".to_vec(),
            ),
            (
                "extension/package.json".into(),
                format!("{{\"version\":\"{version}\"}}").into_bytes(),
            ),
            (format!("extension/dist/bin/lingma-{version}.zip"), nested),
            (
                "extension/dist/media/padding.bin".into(),
                noise(padding_bytes),
            ),
        ],
        zip::CompressionMethod::Stored,
    )
}

/// Deterministic incompressible bytes (xorshift), so sizes survive zip and gzip.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip write");
    encoder.finish().expect("gzip finish")
}

/// What the server answers to the next requests.
#[derive(Clone)]
pub enum Reply {
    /// 200 with the body and its Content-Length.
    Body(Bytes),
    /// 200 with the body streamed in chunks, no Content-Length.
    Chunked(Bytes),
    /// The status with a short text body.
    Status(u16),
    /// 200 announcing the full length, sending `sent` bytes, then dropping the connection.
    CutAfter { body: Bytes, sent: usize },
    /// 200 announcing the full length, sending `sent` bytes, then sending nothing more.
    StallAfter { body: Bytes, sent: usize },
}

pub struct ServerState {
    reply: parking_lot::Mutex<Reply>,
    requests: AtomicUsize,
    paths: parking_lot::Mutex<Vec<String>>,
}

/// A real HTTP server on an ephemeral 127.0.0.1 port; it stops when dropped.
pub struct PackageServer {
    pub base_url: String,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

impl PackageServer {
    pub async fn start(reply: Reply) -> Self {
        let state = Arc::new(ServerState {
            reply: parking_lot::Mutex::new(reply),
            requests: AtomicUsize::new(0),
            paths: parking_lot::Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url: format!("http://{addr}"),
            state,
            task,
        }
    }

    pub fn set_reply(&self, reply: Reply) {
        *self.state.reply.lock() = reply;
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn paths(&self) -> Vec<String> {
        self.state.paths.lock().clone()
    }
}

impl Drop for PackageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(state): State<Arc<ServerState>>, uri: Uri) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    state.paths.lock().push(uri.to_string());
    let reply = state.reply.lock().clone();
    let mut response = match &reply {
        Reply::Body(body) => Response::new(Body::from(body.clone())),
        Reply::Chunked(body) => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = body
                .chunks(64 * 1024)
                .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
                .collect();
            Response::new(Body::from_stream(stream::iter(chunks)))
        }
        Reply::Status(code) => {
            let mut response = Response::new(Body::from("no package here"));
            *response.status_mut() = StatusCode::from_u16(*code).expect("status code");
            return response;
        }
        Reply::CutAfter { body, sent } => {
            let head: Result<Bytes, std::io::Error> = Ok(body.slice(..*sent));
            // The pause lets hyper flush the headers and the first half before the abort;
            // without it the client sees no response at all rather than a cut body.
            let cut = stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "test cuts the body",
                ))
            });
            Response::new(Body::from_stream(stream::iter(vec![head]).chain(cut)))
        }
        Reply::StallAfter { body, sent } => {
            let head: Result<Bytes, std::io::Error> = Ok(body.slice(..*sent));
            Response::new(Body::from_stream(
                stream::iter(vec![head]).chain(stream::pending()),
            ))
        }
    };
    if let Reply::CutAfter { body, .. } | Reply::StallAfter { body, .. } = &reply {
        response.headers_mut().insert(
            header::CONTENT_LENGTH,
            HeaderValue::from_str(&body.len().to_string()).expect("length header"),
        );
    }
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// A marketplace config pointing at `server` (plain http on 127.0.0.1, allowed by the test
/// opt-out), installing x86_64_linux into `work_dir`.
pub fn marketplace_config(server: &PackageServer, work_dir: &Path) -> BootstrapConfig {
    let mut config = BootstrapConfig::new(SourceType::Marketplace, work_dir);
    config.args.marketplace_url = server.base_url.clone();
    config.args.allow_http_loopback = true;
    config.args.platform = PlatformChoice(Some(Platform::X86_64Linux));
    config.args.idle_timeout_sec = 5;
    config.args.connect_timeout_sec = 5;
    config
}

/// Entries left in `<work_dir>/bin/.tmp` (scratch dirs of unfinished runs).
pub fn tmp_leftovers(work_dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(work_dir.join("bin").join(".tmp")) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether a scratch dir holds a partial download of at least `min_bytes`.
pub fn partial_download_seen(work_dir: &Path, min_bytes: u64) -> bool {
    tmp_leftovers(work_dir).iter().any(|dir| {
        std::fs::metadata(dir.join("package.download")).is_ok_and(|meta| meta.len() >= min_bytes)
    })
}

/// Runs a fake binary and returns what it printed.
pub fn run(path: &Path) -> String {
    let output = std::process::Command::new(path)
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err}", path.display()));
    assert!(output.status.success(), "{} failed", path.display());
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("lingma_bootstrap=debug")
        .try_init();
}
