use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace root (where the root Cargo.toml is).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// Path of binary `bin` of workspace package `package`, built (debug profile, same target
/// dir as the running test, with every other binary) on first use in this test process. Integration tests of one
/// package need the binaries of others (gateway tests run sidecars and simulators), which
/// cargo does not build for them; `cargo build` is a quick no-op when they are fresh.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let cache = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = cache.lock().unwrap_or_else(|e| e.into_inner());
    let key = format!("{package}/{bin}");
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    if built.is_empty() {
        // Every binary of the workspace at once, as `scripts/test.sh` builds them before
        // the tests: the same feature resolution, so this is a no-op there. Building one
        // package at a time (`-p X --bin X`) resolves features per package and relinks
        // each binary, again and again as test binaries alternate.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args(["build", "--quiet", "--workspace", "--bins"])
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build {key}: {e}"));
        assert!(status.success(), "building the workspace's binaries failed");
    }
    let path = target_dir().join("debug").join(bin);
    assert!(path.exists(), "{} missing after build", path.display());
    built.insert(key, path.clone());
    path
}

fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // The running test lives in <target>/debug/deps/<name>-<hash>.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Paths of the three binaries a stack runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub sim: PathBuf,
    pub sidecar: PathBuf,
    pub gateway: PathBuf,
}

impl Binaries {
    /// Debug builds, built on first use (integration tests).
    pub fn debug() -> Self {
        Self {
            sim: binary("lingma-sim", "lingma-sim"),
            sidecar: binary("sidecar", "sidecar"),
            gateway: binary("gateway", "gateway"),
        }
    }

    /// Release builds (the bench): `cargo build --release` of the three packages, a quick
    /// no-op when they are fresh.
    pub fn release() -> anyhow::Result<Self> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args(["build", "--release", "--quiet"])
            .args(["-p", "lingma-sim", "--bin", "lingma-sim"])
            .args(["-p", "sidecar", "--bin", "sidecar"])
            .args(["-p", "gateway", "--bin", "gateway"])
            .status()
            .map_err(|e| anyhow::anyhow!("running cargo build --release: {e}"))?;
        if !status.success() {
            anyhow::bail!("cargo build --release of lingma-sim, sidecar and gateway failed");
        }
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        Ok(Self::in_dir(&dir.join("release")))
    }

    /// Binaries already built in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            sim: dir.join("lingma-sim"),
            sidecar: dir.join("sidecar"),
            gateway: dir.join("gateway"),
        }
    }
}
