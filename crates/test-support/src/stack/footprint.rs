//! Memory, threads and open files of a process, from `/proc/<pid>`.

/// Memory and thread count of a process, from /proc/<pid>/status.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ProcStatus {
    pub rss_bytes: u64,
    pub threads: u64,
}

pub fn proc_status(pid: u32) -> Option<ProcStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(ProcStatus {
        rss_bytes: field("VmRSS:")? * 1024,
        threads: field("Threads:").unwrap_or(0),
    })
}

/// Memory, threads and open files of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Footprint {
    pub rss_bytes: u64,
    pub threads: u64,
    pub fds: u64,
}

pub fn footprint(pid: Option<u32>) -> Option<Footprint> {
    let pid = pid?;
    let status = proc_status(pid)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Footprint {
        rss_bytes: status.rss_bytes,
        threads: status.threads,
        fds,
    })
}
