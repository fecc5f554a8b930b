//! Unpacks a downloaded VSIX: gzip sniffing, the outer zip, the nested
//! `extension/dist/bin/lingma-<version>.zip`, and this platform's `Lingma` and `LingmaLocal`.
//!
//! Blocking code: call it from `spawn_blocking`.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use zip::ZipArchive;
use zip::result::ZipError;

use crate::{BootstrapError, Platform};

pub(crate) const LINGMA: &str = "Lingma";
pub(crate) const LINGMA_LOCAL: &str = "LingmaLocal";
const NESTED_PREFIX: &str = "extension/dist/bin/lingma-";
const NESTED_SUFFIX: &str = ".zip";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Size and sha256 of one unpacked file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileDigest {
    pub size: u64,
    pub sha256: String,
}

/// The two binaries written into a staging directory, not yet installed.
#[derive(Debug)]
pub(crate) struct Unpacked {
    pub version: String,
    pub lingma: FileDigest,
    pub lingma_local: FileDigest,
}

/// Unpacks `package` into `stage_dir` (which must exist and be empty), using `scratch_dir`
/// for the intermediate files (the gunzipped package and the nested zip).
pub(crate) fn unpack(
    package: &Path,
    scratch_dir: &Path,
    stage_dir: &Path,
    platform: Platform,
    max_bytes: u64,
) -> Result<Unpacked, BootstrapError> {
    let package = gunzip_if_wrapped(package, scratch_dir, max_bytes)?;
    let mut outer = open_zip(&package, "the package")?;

    let (version, nested_name) = find_nested_zip(&outer)?;
    tracing::info!(%version, entry = %nested_name, "found the nested Lingma zip");
    let nested_path = scratch_dir.join("lingma-nested.zip");
    {
        let entry = outer
            .by_name(&nested_name)
            .map_err(|err| zip_error(err, &package, "the package"))?;
        write_capped(entry, &nested_path, max_bytes, &nested_name)?;
    }
    drop(outer);

    let mut nested = open_zip(&nested_path, &nested_name)?;
    let (lingma_entry, local_entry) = find_platform_entries(&nested, platform)?;
    let lingma = extract_executable(
        &mut nested,
        &nested_path,
        &lingma_entry,
        &stage_dir.join(LINGMA),
        max_bytes,
    )?;
    let lingma_local = extract_executable(
        &mut nested,
        &nested_path,
        &local_entry,
        &stage_dir.join(LINGMA_LOCAL),
        max_bytes,
    )?;
    Ok(Unpacked {
        version,
        lingma,
        lingma_local,
    })
}

/// Returns the path of a plain zip: `package` itself, or its gunzipped copy in `scratch_dir`.
fn gunzip_if_wrapped(
    package: &Path,
    scratch_dir: &Path,
    max_bytes: u64,
) -> Result<PathBuf, BootstrapError> {
    let mut file =
        File::open(package).map_err(|err| BootstrapError::io("opening", package, err))?;
    let mut magic = [0u8; 2];
    let read = read_up_to(&mut file, &mut magic)
        .map_err(|err| BootstrapError::io("reading", package, err))?;
    if read < 2 || magic != GZIP_MAGIC {
        return Ok(package.to_path_buf());
    }
    tracing::info!("package is gzip-wrapped; unwrapping");
    file.rewind()
        .map_err(|err| BootstrapError::io("reading", package, err))?;
    let unwrapped = scratch_dir.join("package.zip");
    write_capped(
        GzDecoder::new(BufReader::new(file)),
        &unwrapped,
        max_bytes,
        "the gunzipped package",
    )?;
    Ok(unwrapped)
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn open_zip(path: &Path, what: &str) -> Result<ZipArchive<BufReader<File>>, BootstrapError> {
    let file = File::open(path).map_err(|err| BootstrapError::io("opening", path, err))?;
    ZipArchive::new(BufReader::new(file)).map_err(|err| zip_error(err, path, what))
}

fn zip_error(err: ZipError, path: &Path, what: &str) -> BootstrapError {
    match err {
        ZipError::Io(source) if source.kind() != io::ErrorKind::UnexpectedEof => {
            BootstrapError::io("reading", path, source)
        }
        other => BootstrapError::NotAZip {
            what: what.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// Finds `extension/dist/bin/lingma-<version>.zip`; with several, the last by name wins.
fn find_nested_zip<R: Read + Seek>(
    outer: &ZipArchive<R>,
) -> Result<(String, String), BootstrapError> {
    let mut found: Vec<(String, String)> = outer
        .file_names()
        .filter_map(|name| name.ok())
        .filter_map(|name| {
            let version = name
                .strip_prefix(NESTED_PREFIX)?
                .strip_suffix(NESTED_SUFFIX)?;
            is_version(version).then(|| (version.to_owned(), name.to_string()))
        })
        .collect();
    found.sort();
    if found.len() > 1 {
        tracing::warn!(entries = ?found.iter().map(|(_, name)| name).collect::<Vec<_>>(), "several nested Lingma zips; using the last");
    }
    found.pop().ok_or_else(|| BootstrapError::PackageLayout {
        detail: format!(
            "no {NESTED_PREFIX}<version>{NESTED_SUFFIX} among its {} entries",
            outer.len()
        ),
    })
}

/// A version string safe to use as a directory name.
fn is_version(text: &str) -> bool {
    !text.is_empty()
        && text != "."
        && text != ".."
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
}

/// Finds `<...>/<platform>/Lingma` and `LingmaLocal` beside it.
fn find_platform_entries<R: Read + Seek>(
    nested: &ZipArchive<R>,
    platform: Platform,
) -> Result<(String, String), BootstrapError> {
    let mut platforms = BTreeSet::new();
    let mut wanted = None;
    for name in nested.file_names().filter_map(|name| name.ok()) {
        let mut parts = name.rsplit('/');
        let (Some(file), Some(dir)) = (parts.next(), parts.next()) else {
            continue;
        };
        if file != LINGMA || dir.is_empty() {
            continue;
        }
        platforms.insert(dir.to_owned());
        if dir == platform.dir_name() && wanted.is_none() {
            wanted = Some(name.to_string());
        }
    }
    let Some(lingma) = wanted else {
        return Err(BootstrapError::PlatformMissing {
            platform: platform.dir_name().to_owned(),
            found: platforms.into_iter().collect(),
        });
    };
    let local = format!("{}{LINGMA_LOCAL}", &lingma[..lingma.len() - LINGMA.len()]);
    if nested.index_for_name(&local).is_none() {
        return Err(BootstrapError::PackageLayout {
            detail: format!("{lingma} has no {LINGMA_LOCAL} beside it"),
        });
    }
    Ok((lingma, local))
}

fn extract_executable<R: Read + Seek>(
    nested: &mut ZipArchive<R>,
    nested_path: &Path,
    entry_name: &str,
    dest: &Path,
    max_bytes: u64,
) -> Result<FileDigest, BootstrapError> {
    let entry = nested
        .by_name(entry_name)
        .map_err(|err| zip_error(err, nested_path, entry_name))?;
    let digest = write_capped(entry, dest, max_bytes, entry_name)?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))
        .map_err(|err| BootstrapError::io("setting the exec bit of", dest, err))?;
    tracing::info!(file = %dest.display(), bytes = digest.size, sha256 = %digest.sha256, "unpacked");
    Ok(digest)
}

/// Copies `reader` into a new file at `dest`, hashing it, and fails past `max_bytes`.
/// Read failures mean a corrupt archive; write failures are I/O (or a full disk).
fn write_capped(
    mut reader: impl Read,
    dest: &Path,
    max_bytes: u64,
    what: &str,
) -> Result<FileDigest, BootstrapError> {
    let mut file = File::create(dest).map_err(|err| BootstrapError::io("creating", dest, err))?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                return Err(BootstrapError::NotAZip {
                    what: what.to_owned(),
                    detail: format!("corrupt data: {err}"),
                });
            }
        };
        size += n as u64;
        if size > max_bytes {
            return Err(BootstrapError::TooLarge {
                what: what.to_owned(),
                limit: max_bytes,
            });
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|err| BootstrapError::io("writing", dest, err))?;
    }
    file.sync_all()
        .map_err(|err| BootstrapError::io("syncing", dest, err))?;
    Ok(FileDigest {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// sha256 and size of a file on disk.
pub(crate) fn digest_file(path: &Path) -> Result<FileDigest, BootstrapError> {
    let mut file = File::open(path).map_err(|err| BootstrapError::io("opening", path, err))?;
    let mut hasher = Sha256::new();
    let size =
        io::copy(&mut file, &mut hasher).map_err(|err| BootstrapError::io("reading", path, err))?;
    Ok(FileDigest {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_reported_as_such() {
        // /dev/full answers every write with ENOSPC: a real kernel error, no mock.
        let dev_full = Path::new("/dev/full");
        if !dev_full.exists() {
            return;
        }
        let err = write_capped(&b"Lingma"[..], dev_full, 1024, "Lingma").expect_err("ENOSPC");
        assert!(matches!(err, BootstrapError::DiskFull { .. }), "{err}");
        assert!(err.to_string().contains("no space left"), "{err}");
    }

    #[test]
    fn versions_are_safe_directory_names() {
        assert!(is_version("2.5.20"));
        assert!(is_version("2.6.10-beta+1"));
        assert!(!is_version(".."));
        assert!(!is_version("a/b"));
        assert!(!is_version(""));
    }
}
