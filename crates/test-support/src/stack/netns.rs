//! Network namespaces for network-fault tests: one namespace for the gateway and one per
//! sidecar (with its simulator), joined by links the test can delay, make lossy and cut.
//!
//! ```text
//!   test (root ns) 10.X.0.1 --veth-- 10.X.0.2 gateway ns 10.X.(i+1).1 --faultable link-- 10.X.(i+1).2 sidecar i ns
//! ```
//!
//! The gateway namespace forwards, so the test reaches every process (readiness, metrics).
//! A sidecar's link is a pair of TAP devices whose frames the test process relays: the relay
//! applies delay, loss and a partition (every frame dropped, the link stays "up", as with a
//! cut cable somewhere upstream), the semantics of `tc qdisc ... netem delay 200ms loss 5%`
//! on a kernel without `sch_netem` (many CI and VM kernels ship without it, the machines this
//! suite runs on included), and with no tool but `ip`.
//!
//! Names carry a prefix, the test's pid and a counter, so a crashed run never blocks the
//! next: leftovers of processes that are gone are deleted when a lab starts; everything a
//! lab made is deleted when it is dropped.

use anyhow::{Context, Result, anyhow, bail};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tun_tap::{Iface, Mode};

/// Prefix of every namespace and interface a lab makes.
const PREFIX: &str = "lgnt";

/// Where `ip netns add` puts its namespaces.
const NETNS_DIR: &str = "/run/netns";

/// `ip` from iproute2 (in `/usr/sbin`, which a non-login PATH may lack).
pub fn ip_binary() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("ip")
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new(ip_binary())
        .args(args)
        .output()
        .context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn ip_output(args: &[&str]) -> String {
    Command::new(ip_binary())
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Why namespaces cannot be made here (not root, no `ip`, no TUN device), or None.
pub fn unavailable() -> Option<String> {
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing (no TUN/TAP support)".into());
    }
    let probe = format!("{PREFIX}{}probe", std::process::id());
    if let Err(e) = ip(&["netns", "add", &probe]) {
        return Some(format!(
            "cannot create a network namespace (needs root and iproute2): {e:#}"
        ));
    }
    let _ = ip(&["netns", "del", &probe]);
    None
}

/// Run `f` on a fresh thread that has entered namespace `ns` (a socket or TAP device made
/// there stays in `ns`; the test's own threads never change namespace).
pub fn in_namespace<T, F>(ns: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = Path::new(NETNS_DIR).join(ns);
    std::thread::spawn(move || -> Result<T> {
        let file = std::fs::File::open(&path).with_context(|| path.display().to_string())?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .context("setns (needs root)")?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow!("thread in namespace {ns} panicked"))?
}

/// Wait until `host:port` accepts TCP connections as seen from inside namespace `ns` (for
/// a process that listens on that namespace's loopback only).
pub async fn wait_for_port_in(ns: &str, host: &str, port: u16, timeout: Duration) -> Result<()> {
    let addr: std::net::SocketAddr = format!("{host}:{port}").parse()?;
    let deadline = Instant::now() + timeout;
    loop {
        let ns_owned = ns.to_owned();
        let up = tokio::task::spawn_blocking(move || {
            in_namespace(&ns_owned, move || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
            })
        })
        .await??;
        if up {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{addr} in namespace {ns}: nothing listening after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The namespaces and links of one test.
pub struct NetLab {
    id: String,
    /// Second octet of the lab's 10.X.0.0/16.
    octet: u8,
    namespaces: Vec<String>,
    root_veth: Option<String>,
    links: Vec<FaultLink>,
}

impl NetLab {
    /// A gateway namespace and `sidecars` sidecar namespaces, each linked to the gateway's
    /// by a faultable link (healthy until told otherwise).
    pub fn new(sidecars: usize) -> Result<Self> {
        remove_leftovers();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed) % 10;
        let id = format!("{PREFIX}{}x{n}", std::process::id());
        let mut lab = Self {
            octet: free_octet()?,
            id,
            namespaces: Vec::new(),
            root_veth: None,
            links: Vec::new(),
        };
        // On any error below, dropping `lab` deletes what was made so far.
        lab.make_gateway_namespace()?;
        for i in 0..sidecars {
            lab.make_sidecar_namespace(i)?;
        }
        Ok(lab)
    }

    fn add_namespace(&mut self, role: &str) -> Result<String> {
        let ns = format!("{}-{role}", self.id);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn make_gateway_namespace(&mut self) -> Result<()> {
        let ns = self.add_namespace("gw")?;
        let veth = format!("{}r", self.id);
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "up0", "netns", &ns,
        ])?;
        self.root_veth = Some(veth.clone());
        let x = self.octet;
        ip(&["addr", "add", &format!("10.{x}.0.1/24"), "dev", &veth])?;
        ip(&["link", "set", &veth, "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.{x}.0.2/24"),
            "dev",
            "up0",
        ])?;
        ip(&["-n", &ns, "link", "set", "up0", "up"])?;
        // The test reaches the sidecars' namespaces through the gateway's.
        ip(&[
            "route",
            "add",
            &format!("10.{x}.0.0/16"),
            "via",
            &format!("10.{x}.0.2"),
        ])?;
        in_namespace(&ns, || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .and_then(|()| std::fs::write("/proc/sys/net/ipv4/conf/all/rp_filter", "0"))
        })?
        .context("enabling forwarding in the gateway namespace")?;
        Ok(())
    }

    fn make_sidecar_namespace(&mut self, i: usize) -> Result<()> {
        let ns = self.add_namespace(&format!("s{i}"))?;
        let gw_ns = self.gateway_ns().to_owned();
        let gw_side = format!("sc{i}");
        let name = gw_side.clone();
        let gw_tap = in_namespace(&gw_ns, move || Iface::without_packet_info(&name, Mode::Tap))?
            .context("TAP device in the gateway namespace")?;
        let sc_tap = in_namespace(&ns, || Iface::without_packet_info("eth0", Mode::Tap))?
            .context("TAP device in the sidecar namespace")?;
        let (x, subnet) = (self.octet, i + 1);
        ip(&[
            "-n",
            &gw_ns,
            "addr",
            "add",
            &format!("10.{x}.{subnet}.1/24"),
            "dev",
            &gw_side,
        ])?;
        ip(&["-n", &gw_ns, "link", "set", &gw_side, "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.{x}.{subnet}.2/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &format!("10.{x}.{subnet}.1"),
        ])?;
        self.links.push(FaultLink::start(gw_tap, sc_tap));
        Ok(())
    }

    pub fn gateway_ns(&self) -> &str {
        &self.namespaces[0]
    }

    /// The gateway namespace's address on the test's link (where the gateway listens).
    pub fn gateway_addr(&self) -> String {
        format!("10.{}.0.2", self.octet)
    }

    pub fn sidecar_ns(&self, i: usize) -> &str {
        &self.namespaces[i + 1]
    }

    /// Sidecar `i`'s address on its link to the gateway.
    pub fn sidecar_addr(&self, i: usize) -> String {
        format!("10.{}.{}.2", self.octet, i + 1)
    }

    /// The link between the gateway and sidecar `i`.
    pub fn link(&self, i: usize) -> &FaultLink {
        &self.links[i]
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for link in &self.links {
            link.shaping.stop.store(true, Ordering::Relaxed);
        }
        // Deleting a namespace deletes its devices: the veth pair and the TAP devices
        // (whose relay threads then see their reads fail and end).
        for ns in self.namespaces.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
        if let Some(veth) = &self.root_veth {
            let _ = ip(&["link", "del", veth]);
        }
    }
}

/// The pid a lab name was made by, if it is one of ours.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Delete namespaces and root-side links of labs whose process is gone (a crashed run).
fn remove_leftovers() {
    let dead = |name: &str| {
        owner_pid(name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    for line in ip_output(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if dead(name) {
            let _ = ip(&["netns", "del", name]);
        }
    }
    for line in ip_output(&["-o", "link", "show"]).lines() {
        // "12: lgnt123x0r@if11: <...>"
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or_default();
        if dead(name) {
            let _ = ip(&["link", "del", name]);
        }
    }
}

/// A second octet X whose 10.X.0.0/16 no route of this machine uses.
fn free_octet() -> Result<u8> {
    let routes = ip_output(&["-4", "route", "show", "table", "all"]);
    let start = 100 + (std::process::id() % 100) as u8;
    (0..100u8)
        .map(|k| 100 + (start - 100 + k) % 100)
        .find(|x| !routes.contains(&format!("10.{x}.")))
        .ok_or_else(|| anyhow!("no free 10.X.0.0/16 for the namespaces"))
}

/// What a link does to frames right now; the relay threads read it per frame.
#[derive(Default)]
struct Shaping {
    delay_us: AtomicU64,
    /// Loss in parts per million.
    loss_ppm: AtomicU32,
    partitioned: AtomicBool,
    passed: AtomicU64,
    dropped: AtomicU64,
    stop: AtomicBool,
}

/// A point-to-point link of two TAP devices whose frames the test relays, applying delay
/// and loss (each direction) and a partition.
pub struct FaultLink {
    shaping: Arc<Shaping>,
}

impl FaultLink {
    fn start(a: Iface, b: Iface) -> Self {
        let shaping = Arc::new(Shaping::default());
        let (a, b) = (Arc::new(a), Arc::new(b));
        relay(a.clone(), b.clone(), shaping.clone(), 0x9e37_79b9_7f4a_7c15);
        relay(b, a, shaping.clone(), 0xd1b5_4a32_d192_ed03);
        Self { shaping }
    }

    /// Delay every frame by `delay` and drop `loss_percent` % of them, in each direction
    /// (`tc netem delay D loss L%` on both ends).
    pub fn impair(&self, delay: Duration, loss_percent: f64) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shaping.delay_us.store(us, Ordering::Relaxed);
        let ppm = (loss_percent.clamp(0.0, 100.0) * 10_000.0) as u32;
        self.shaping.loss_ppm.store(ppm, Ordering::Relaxed);
    }

    /// Drop every frame from now on; the devices stay up, so neither end is told.
    pub fn partition(&self) {
        self.shaping.partitioned.store(true, Ordering::Relaxed);
    }

    /// Let frames through again (delay and loss as set by [`FaultLink::impair`]).
    pub fn heal(&self) {
        self.shaping.partitioned.store(false, Ordering::Relaxed);
    }

    /// No delay, no loss, no partition.
    pub fn clear(&self) {
        self.impair(Duration::ZERO, 0.0);
        self.heal();
    }

    /// Frames passed and dropped so far (both directions).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shaping.passed.load(Ordering::Relaxed),
            self.shaping.dropped.load(Ordering::Relaxed),
        )
    }
}

/// Frames from `from` to `to`: a reader thread drops or timestamps them, a writer thread
/// sends each when its delay is over (in order, as a fixed delay keeps them).
fn relay(from: Arc<Iface>, to: Arc<Iface>, shaping: Arc<Shaping>, seed: u64) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        for (due, frame) in rx {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // A full or gone device drops the frame, as a wire would.
            let _ = to.send(&frame);
        }
    });
    std::thread::spawn(move || {
        let mut rng = seed ^ u64::from(std::process::id());
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = from.recv(&mut buf) {
            if shaping.stop.load(Ordering::Relaxed) {
                break;
            }
            // xorshift64: uniform enough for a loss rate, no dependency.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let lost = (rng % 1_000_000) < u64::from(shaping.loss_ppm.load(Ordering::Relaxed));
            if shaping.partitioned.load(Ordering::Relaxed) || lost {
                shaping.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            shaping.passed.fetch_add(1, Ordering::Relaxed);
            let delay = Duration::from_micros(shaping.delay_us.load(Ordering::Relaxed));
            let Some(frame) = buf.get(..n) else { continue };
            if tx.send((Instant::now() + delay, frame.to_vec())).is_err() {
                break;
            }
        }
    });
}
