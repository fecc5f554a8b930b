//! Without LINGMA_BIN, `lingma-local host` bootstraps Lingma once, into
//! `LINGMA_WORK_DIR/bin`, and every instance runs that binary; a second start reuses it.
//! The package is a VSIX built here and served on 127.0.0.1 (LINGMA_SOURCE_TYPE=vsix); its
//! `Lingma` is a script that runs the simulator (a test double with Lingma's command line).

mod host_support;

use axum::extract::State;
use host_support::{HostStack, sim_bin, wait_sims};
use std::io::{Cursor, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use zip::write::SimpleFileOptions;

const VERSION: &str = "9.9.9";
const PLATFORM: &str = "x86_64_linux";

fn zip_bytes(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, content) in entries {
        writer
            .start_file(name.as_str(), SimpleFileOptions::default())
            .expect("zip entry");
        writer.write_all(content).expect("zip write");
    }
    writer.finish().expect("zip finish").into_inner()
}

/// The Lingma extension's layout: `extension/dist/bin/lingma-<version>.zip` holding
/// `<version>/<platform>/Lingma` and `LingmaLocal`.
fn vsix() -> Vec<u8> {
    let lingma = format!("#!/bin/sh\nexec '{}' \"$@\"\n", sim_bin().display());
    let nested = zip_bytes(&[
        (format!("{VERSION}/{PLATFORM}/Lingma"), lingma.into_bytes()),
        (
            format!("{VERSION}/{PLATFORM}/LingmaLocal"),
            b"#!/bin/sh\nexit 0\n".to_vec(),
        ),
    ]);
    zip_bytes(&[
        (
            "extension/package.json".into(),
            format!("{{\"version\":\"{VERSION}\"}}").into_bytes(),
        ),
        (format!("extension/dist/bin/lingma-{VERSION}.zip"), nested),
    ])
}

/// A real HTTP server on 127.0.0.1 that serves the package and counts the downloads.
async fn serve_package(package: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let downloads = Arc::new(AtomicUsize::new(0));
    let package = Arc::new(package);
    let app = axum::Router::new()
        .fallback(
            |State((count, body)): State<(Arc<AtomicUsize>, Arc<Vec<u8>>)>| async move {
                count.fetch_add(1, Ordering::SeqCst);
                body.as_ref().clone()
            },
        )
        .with_state((downloads.clone(), package));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/lingma.vsix"), downloads)
}

#[tokio::test(flavor = "multi_thread")]
async fn lingma_is_bootstrapped_once_for_all_instances_and_reused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, downloads) = serve_package(vsix()).await;
    let env = [
        ("LINGMA_BIN", ""),
        ("LINGMA_SOURCE_TYPE", "vsix"),
        ("LINGMA_VSIX_URL", url.as_str()),
        // The test server is plain http on 127.0.0.1: the test opt-out.
        ("LINGMA_DOWNLOAD_ALLOW_HTTP_LOOPBACK", "true"),
        ("LINGMA_PLATFORM", PLATFORM),
        ("LINGMA_ACCOUNTS", "alice:pw-a,bob:pw-b"),
        ("LINGMA_SIM_LOGGED_IN", "true"),
    ];
    let installed = dir
        .path()
        .join("data")
        .join("bin")
        .join(VERSION)
        .join(PLATFORM)
        .join("Lingma");

    let mut stack = HostStack::start(dir.path(), &env, &[]);
    stack.wait_up().await;
    stack.wait_all_usable(2).await;
    assert_eq!(downloads.load(Ordering::SeqCst), 1, "one download for both");
    assert!(installed.is_file(), "installed under LINGMA_WORK_DIR/bin");
    let sims = wait_sims(&stack.data, 2).await;
    assert_eq!(sims.len(), 2);
    let out = stack.output();
    assert!(
        out.contains(&format!("Lingma binary: {}", installed.display())),
        "every instance runs the bootstrapped binary:\n{out}"
    );
    stack.stop();

    let mut again = HostStack::start(dir.path(), &env, &[]);
    again.wait_up().await;
    again.wait_all_usable(2).await;
    assert_eq!(
        downloads.load(Ordering::SeqCst),
        1,
        "the second start reuses the installed binary"
    );
    again.stop();
}
