//! Which instances the single-host mode runs: how many, and each one's name, workDir, ports
//! and account slot. Pure (ports come from a closure), so the rules are unit-tested here.

use std::path::{Path, PathBuf};

/// More than this is almost certainly a typo (each instance is a Lingma process of ~0.5 GB).
pub const MAX_INSTANCES: usize = 64;

/// One Lingma process and the sidecar that supervises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub index: usize,
    /// `inst-<i>`: the sidecar's name, the gateway's name for it, the workDir's last part.
    pub name: String,
    pub work_dir: PathBuf,
    pub socket_port: u16,
    pub http_port: u16,
    pub sidecar_port: u16,
    /// Index of the account it uses (slot i uses account i mod n); `None` without accounts.
    pub account: Option<usize>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("LINGMA_INSTANCE_COUNT must be a whole number from 1 to {MAX_INSTANCES}")]
    BadCount,
    #[error("no free port on 127.0.0.1: {0}")]
    NoPort(String),
}

/// The legacy settings an instance falls back to when it is the only one.
#[derive(Debug, Clone)]
pub struct Legacy<'a> {
    pub work_dir: &'a Path,
    pub socket_port: u16,
    pub http_port: u16,
}

/// N: LINGMA_INSTANCE_COUNT when set, else the number of accounts (at least 1: the original
/// ran one Lingma even without an account, logged in by hand).
pub fn instance_count(setting: &str, accounts: usize) -> Result<usize, PlanError> {
    let setting = setting.trim();
    if setting.is_empty() {
        return Ok(accounts.clamp(1, MAX_INSTANCES));
    }
    match setting.parse::<usize>() {
        Ok(n) if (1..=MAX_INSTANCES).contains(&n) => Ok(n),
        _ => Err(PlanError::BadCount),
    }
}

/// Lay out `count` instances. One instance keeps the legacy workDir and ports, so an existing
/// deployment finds its login state where it left it; several get `<workDir>/inst-<i>` and
/// free ports (`free_port` must not hand out the same port twice).
pub fn plan(
    count: usize,
    accounts: usize,
    legacy: &Legacy<'_>,
    mut free_port: impl FnMut() -> std::io::Result<u16>,
) -> Result<Vec<Instance>, PlanError> {
    let mut port = || free_port().map_err(|e| PlanError::NoPort(e.kind().to_string()));
    let mut instances = Vec::with_capacity(count);
    for index in 0..count {
        let name = format!("inst-{index}");
        let (work_dir, socket_port, http_port) = if count == 1 {
            (
                legacy.work_dir.to_path_buf(),
                legacy.socket_port,
                legacy.http_port,
            )
        } else {
            (legacy.work_dir.join(&name), port()?, port()?)
        };
        instances.push(Instance {
            index,
            name,
            work_dir,
            socket_port,
            http_port,
            sidecar_port: port()?,
            account: (accounts > 0).then_some(index % accounts.max(1)),
        });
    }
    Ok(instances)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> impl FnMut() -> std::io::Result<u16> {
        let mut next = 40000;
        move || {
            next += 1;
            Ok(next)
        }
    }

    fn legacy() -> Legacy<'static> {
        Legacy {
            work_dir: Path::new("/data/lingma"),
            socket_port: 36510,
            http_port: 37510,
        }
    }

    #[test]
    fn count_defaults_to_accounts_and_validates() {
        assert_eq!(instance_count("", 3), Ok(3));
        assert_eq!(instance_count(" ", 0), Ok(1));
        assert_eq!(instance_count("5", 2), Ok(5));
        assert_eq!(instance_count("0", 2), Err(PlanError::BadCount));
        assert_eq!(instance_count("two", 2), Err(PlanError::BadCount));
        assert_eq!(instance_count("65", 2), Err(PlanError::BadCount));
    }

    #[test]
    fn one_instance_keeps_the_legacy_paths_and_ports() {
        let one = plan(1, 1, &legacy(), ports()).expect("plan");
        assert_eq!(one[0].work_dir, Path::new("/data/lingma"));
        assert_eq!((one[0].socket_port, one[0].http_port), (36510, 37510));
        assert_eq!(one[0].name, "inst-0");
        assert_eq!(one[0].account, Some(0));
    }

    #[test]
    fn several_instances_get_their_own_dirs_ports_and_round_robin_accounts() {
        let three = plan(3, 2, &legacy(), ports()).expect("plan");
        let dirs: Vec<_> = three.iter().map(|i| i.work_dir.clone()).collect();
        assert_eq!(dirs[2], Path::new("/data/lingma/inst-2"));
        let mut all_ports: Vec<u16> = three
            .iter()
            .flat_map(|i| [i.socket_port, i.http_port, i.sidecar_port])
            .collect();
        all_ports.sort_unstable();
        all_ports.dedup();
        assert_eq!(all_ports.len(), 9, "every port distinct");
        let accounts: Vec<_> = three.iter().map(|i| i.account).collect();
        assert_eq!(accounts, [Some(0), Some(1), Some(0)]);
        assert!(
            plan(2, 0, &legacy(), ports()).expect("plan")[1]
                .account
                .is_none()
        );
    }

    #[test]
    fn port_exhaustion_is_an_error_not_a_panic() {
        let err = plan(2, 1, &legacy(), || {
            Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
        });
        assert!(matches!(err, Err(PlanError::NoPort(_))));
    }
}
