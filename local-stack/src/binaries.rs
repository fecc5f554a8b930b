//! Finds the binaries the single-host mode runs (sidecar, gateway): next to this executable,
//! built on the spot when this runs under `cargo run`.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, binary) pairs the single-host mode runs (the demo runs in process and needs none).
pub const HOST_PACKAGES: &[(&str, &str)] = &[("sidecar", "sidecar"), ("gateway", "gateway")];

pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    pub fn locate(packages: &[(&str, &str)]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable's path")?;
        let dir = exe
            .parent()
            .context("executable has no parent directory")?
            .to_path_buf();
        // Under `cargo run` (CARGO set and not empty): build the siblings first.
        if let Ok(cargo) = std::env::var("CARGO")
            && !cargo.is_empty()
        {
            build_siblings(&cargo, &dir, packages)?;
        }
        for (_, bin) in packages {
            if !dir.join(bin).exists() {
                bail!(
                    "{bin} not found in {}; build the workspace first: cargo build --release --bins",
                    dir.display()
                );
            }
        }
        Ok(Self { dir })
    }

    pub fn path(&self, bin: &str) -> PathBuf {
        self.dir.join(bin)
    }
}

fn build_siblings(cargo: &str, dir: &Path, packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("no workspace root")?;
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).args(["build", "--quiet"]);
    if dir.ends_with("release") {
        cmd.arg("--release");
    }
    let mut names = Vec::new();
    for (package, bin) in packages {
        cmd.args(["-p", package, "--bin", bin]);
        names.push(*bin);
    }
    tracing::info!("building {} (no-op when fresh)", names.join(", "));
    let status = cmd.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build of the stack's binaries failed");
    }
    Ok(())
}
