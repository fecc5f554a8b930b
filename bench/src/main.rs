//! `cargo run --release -p bench -- [--only latency,lowload,idle,reuse,pool,fairness,prefill] [--json out.json]`
//!
//! Starts simulators, sidecars and gateways (release builds) on 127.0.0.1 and prints every
//! figure of docs/performance.md next to its goal, as a table and as JSON.

mod scenarios;

use anyhow::Result;
use bench::report::Report;
use clap::Parser;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use test_support::Binaries;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Benchmarks of the gateway + sidecar + simulator stack"
)]
struct Args {
    /// Scenarios to run, comma-separated: latency (also streaming and memory), lowload (one
    /// connection, back to back and paced; streaming cadence), idle, reuse, pool, fairness
    /// (fair shares across keys and Retry-After accuracy), prefill (time to first token with
    /// a prefill cost, sticky versus least-in-flight).
    #[arg(
        long,
        env = "BENCH_ONLY",
        value_delimiter = ',',
        default_value = "latency,lowload,idle,reuse,pool,fairness,prefill"
    )]
    only: Vec<String>,
    /// Write the figures as JSON here too (they are always printed to stdout).
    #[arg(long, env = "BENCH_JSON")]
    json: Option<PathBuf>,
    /// Use the binaries in this directory instead of building release ones.
    #[arg(long, env = "BENCH_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Seconds per fixed rate (and per closed-loop run).
    #[arg(long, env = "BENCH_SECS_PER_RATE", default_value_t = 4.0)]
    secs_per_rate: f64,
    /// Open-loop rates, requests per second.
    #[arg(
        long,
        env = "BENCH_RATES",
        value_delimiter = ',',
        default_value = "500,2000,5000"
    )]
    rates: Vec<f64>,
    /// Connections of the closed-loop (max throughput) run.
    #[arg(long, env = "BENCH_CLOSED_CONNECTIONS", default_value_t = 64)]
    closed_connections: usize,
    /// Rate of the streaming run.
    #[arg(long, env = "BENCH_STREAMING_RATE", default_value_t = 200.0)]
    streaming_rate: f64,
    /// Requests per path of each back-to-back low-load run.
    #[arg(long, env = "BENCH_LOW_LOAD_REQUESTS", default_value_t = 200)]
    low_load_requests: usize,
    /// Rate of the paced low-load run (5 seconds of it), requests per second.
    #[arg(long, env = "BENCH_LOW_LOAD_RATE", default_value_t = 5.0)]
    low_load_rate: f64,
    /// Concurrent idle SSE streams.
    #[arg(long, env = "BENCH_IDLE_STREAMS", default_value_t = 10_000)]
    idle_streams: usize,
    /// How long the simulator holds the idle streams before answering.
    #[arg(long, env = "BENCH_IDLE_HOLD_SECS", default_value_t = 20)]
    idle_hold_secs: u64,
    /// Turns of the session-reuse conversation.
    #[arg(long, env = "BENCH_REUSE_TURNS", default_value_t = 12)]
    reuse_turns: usize,
    /// Sidecars (each with a one-chat simulator) in the pool run.
    #[arg(long, env = "BENCH_POOL_SIDECARS", default_value_t = 4)]
    pool_sidecars: usize,
    /// Seconds per (routing, M) pool run.
    #[arg(long, env = "BENCH_POOL_SECS", default_value_t = 6.0)]
    pool_secs: f64,
    /// GATEWAY_QUEUE_TIMEOUT_SEC of the pool's gateways.
    #[arg(long, env = "BENCH_POOL_QUEUE_TIMEOUT_SEC", default_value_t = 3.0)]
    pool_queue_timeout_sec: f64,
}

/// The scenario settings, in the units the scenarios use.
#[derive(Debug, Clone)]
pub struct Settings {
    pub secs_per_rate: Duration,
    pub rates: Vec<f64>,
    pub closed_connections: usize,
    pub streaming_rate: f64,
    pub low_load_requests: usize,
    pub low_load_rate: f64,
    pub idle_streams: usize,
    pub idle_hold: Duration,
    pub reuse_turns: usize,
    pub pool_sidecars: usize,
    pub pool_secs: Duration,
    pub pool_queue_timeout: Duration,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Two workers: the generator shares the machine's 2 cores with the stack it measures.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let bins = match &args.bin_dir {
        Some(dir) => Binaries::in_dir(dir),
        None => {
            eprintln!("building release binaries (lingma-sim, sidecar, gateway)...");
            Binaries::release()?
        }
    };
    let settings = Settings {
        secs_per_rate: Duration::from_secs_f64(args.secs_per_rate),
        rates: args.rates.clone(),
        closed_connections: args.closed_connections,
        streaming_rate: args.streaming_rate,
        low_load_requests: args.low_load_requests.max(1),
        low_load_rate: args.low_load_rate,
        idle_streams: args.idle_streams,
        idle_hold: Duration::from_secs(args.idle_hold_secs),
        reuse_turns: args.reuse_turns.max(2),
        pool_sidecars: args.pool_sidecars.max(1),
        pool_secs: Duration::from_secs_f64(args.pool_secs),
        pool_queue_timeout: Duration::from_secs_f64(args.pool_queue_timeout_sec),
    };
    let mut ctx = scenarios::Ctx {
        bins,
        settings,
        report: Report::default(),
    };
    let started = Instant::now();
    for name in &args.only {
        let t = Instant::now();
        eprintln!("running {name}...");
        let result = match name.as_str() {
            "latency" => scenarios::latency::run(&mut ctx).await,
            "lowload" => scenarios::low_load::run(&mut ctx).await,
            "idle" => scenarios::idle_streams::run(&mut ctx).await,
            "reuse" => scenarios::session_reuse::run(&mut ctx).await,
            "pool" => scenarios::pool::run(&mut ctx).await,
            "fairness" => scenarios::fairness::run(&mut ctx).await,
            "prefill" => scenarios::prefill::run(&mut ctx).await,
            other => Err(anyhow::anyhow!("unknown scenario {other:?}")),
        };
        if let Err(e) = result {
            eprintln!("{name} failed: {e:#}");
            ctx.report.skip(name, format!("failed: {e:#}"));
        }
        eprintln!("{name} took {:.1} s", t.elapsed().as_secs_f64());
    }
    ctx.report.info(
        "bench",
        "wall time",
        Some(started.elapsed().as_secs_f64()),
        "s",
    );
    println!("{}", ctx.report.table());
    let json = serde_json::to_string_pretty(&ctx.report)?;
    println!("{json}");
    if let Some(path) = &args.json {
        std::fs::write(path, &json)?;
    }
    Ok(())
}
