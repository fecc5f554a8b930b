//! Saves the failure screenshot an operator looks at to see what stopped the login.
//!
//! A screenshot shows the typed account name and whatever the page showed: it is written
//! for the owner only (file 0600, directory 0700), and only the newest few are kept.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const PREFIX: &str = "login-failure-";
const SUFFIX: &str = ".png";

/// Writes `png` as `<dir>/login-failure-<UTC timestamp>.png` (0600; `dir` is created or
/// tightened to 0700), then deletes all but the newest `keep` screenshots in `dir`.
pub(crate) async fn save(dir: &Path, png: &[u8], keep: usize) -> std::io::Result<PathBuf> {
    let dir = dir.to_path_buf();
    let png = png.to_vec();
    tokio::task::spawn_blocking(move || save_blocking(&dir, &png, keep))
        .await
        .map_err(std::io::Error::other)?
}

fn save_blocking(dir: &Path, png: &[u8], keep: usize) -> std::io::Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // An existing directory keeps its mode through `create`: tighten it.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let path = dir.join(format!(
        "{PREFIX}{}{SUFFIX}",
        utc_timestamp(SystemTime::now())
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut file, png)?;
    prune(dir, keep)?;
    Ok(path)
}

/// Deletes all but the newest `keep` screenshots (names sort by time).
fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    let mut shots: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with(PREFIX) && name.ends_with(SUFFIX)
        })
        .map(|entry| entry.path())
        .collect();
    shots.sort();
    let excess = shots.len().saturating_sub(keep);
    for old in &shots[..excess] {
        if let Err(e) = std::fs::remove_file(old)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(e);
        }
    }
    Ok(())
}

/// `YYYYMMDDTHHMMSS.mmmZ`: sortable, readable, and safe in a file name.
pub(crate) fn utc_timestamp(at: SystemTime) -> String {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm); saves a
/// date-time dependency for one file name.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn screenshots_are_private_and_only_the_newest_are_kept() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("shots");
        std::fs::create_dir(&dir).expect("dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // Older screenshots (earlier names) and an unrelated file.
        for name in [
            "login-failure-20200101T000000.000Z.png",
            "login-failure-20200102T000000.000Z.png",
            "notes.txt",
        ] {
            std::fs::write(dir.join(name), b"old").expect("write");
        }
        let path = save(&dir, b"\x89PNG new", 2).await.expect("save");
        assert_eq!(mode(&path), 0o600, "the screenshot is owner-only");
        assert_eq!(mode(&dir), 0o700, "the directory is owner-only");
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let newest = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            left,
            [
                "login-failure-20200102T000000.000Z.png".to_owned(),
                newest,
                "notes.txt".to_owned()
            ]
        );

        let fresh = root.path().join("new/nested");
        let path = save(&fresh, b"png", 1).await.expect("save into a new dir");
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "19700101T000000.000Z");
        // 2026-11-23T12:14:19.250Z
        let at = UNIX_EPOCH + Duration::from_millis(1_795_436_059_250);
        assert_eq!(utc_timestamp(at), "20261123T121419.250Z");
        // 2024-02-29T23:59:59Z, a leap day
        let at = UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(utc_timestamp(at), "20240229T235959.000Z");
    }
}
