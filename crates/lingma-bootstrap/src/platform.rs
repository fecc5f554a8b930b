//! The platform directory names used inside Lingma's packages.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::BootstrapError;

/// A platform directory of the nested Lingma zip (`<version>/<platform>/Lingma`).
///
/// `aarch64_linux` is an assumption (protocol page, A12): only the x86_64 Linux and the macOS
/// directories have been seen in public material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum Platform {
    #[serde(rename = "x86_64_linux")]
    #[value(name = "x86_64_linux")]
    X86_64Linux,
    #[serde(rename = "aarch64_linux")]
    #[value(name = "aarch64_linux")]
    Aarch64Linux,
}

impl Platform {
    /// The platform this process runs on, if Lingma ships a binary for it.
    pub fn detect() -> Result<Self, BootstrapError> {
        Self::from_target(std::env::consts::ARCH, std::env::consts::OS)
    }

    fn from_target(arch: &str, os: &str) -> Result<Self, BootstrapError> {
        match (arch, os) {
            ("x86_64", "linux") => Ok(Self::X86_64Linux),
            ("aarch64", "linux") => Ok(Self::Aarch64Linux),
            _ => Err(BootstrapError::Config(format!(
                "no Lingma binary for {arch}/{os}; supported: x86_64_linux, aarch64_linux"
            ))),
        }
    }

    /// The directory name inside the package and under `<work_dir>/bin/<version>/`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::X86_64Linux => "x86_64_linux",
            Self::Aarch64Linux => "aarch64_linux",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_rust_targets_to_lingma_directories() {
        assert_eq!(
            Platform::from_target("x86_64", "linux").expect("x86_64 linux"),
            Platform::X86_64Linux
        );
        assert_eq!(
            Platform::from_target("aarch64", "linux").expect("aarch64 linux"),
            Platform::Aarch64Linux
        );
        let err = Platform::from_target("x86_64", "windows").expect_err("windows unsupported");
        assert!(err.to_string().contains("x86_64/windows"), "{err}");
    }
}
