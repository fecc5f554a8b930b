//! Saves the failure screenshot an operator looks at to see what stopped the login.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes `png` as `<dir>/login-failure-<UTC timestamp>.png` and returns the path.
pub(crate) async fn save(dir: &Path, png: &[u8]) -> std::io::Result<PathBuf> {
    tokio::fs::create_dir_all(dir).await?;
    let path = dir.join(format!(
        "login-failure-{}.png",
        utc_timestamp(SystemTime::now())
    ));
    tokio::fs::write(&path, png).await?;
    Ok(path)
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
