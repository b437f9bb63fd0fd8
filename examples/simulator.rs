//! The Security Center simulator as a process of its own, for soak tests and manual runs against
//! the release binary:
//!
//! ```text
//! cargo run --release --example simulator -- --digests 10000 --port 8089 --targets-out targets.yml
//! ```
//!
//! Every digest gets one synthetic finished task (`Scenario::with_synthetic_unknown`), and the
//! simulator's default keys open it. On start it prints `url=`, `access_key_id=` and
//! `access_key_secret=` lines; it runs until SIGINT or SIGTERM and then prints what it served.
//! `--targets-out` writes `--digests` digests as a YAML target list, indented so that it can also
//! be appended under a config's `targets:` key.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use sas_simulator::{SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET, Scenario, Simulator};

#[derive(Parser)]
#[command(about = "Runs the Security Center simulator until killed")]
struct Args {
    /// How many digests `--targets-out` lists (every digest is answered either way).
    #[arg(long, default_value_t = 1000)]
    digests: usize,
    /// Loopback port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Writes the digests as a YAML target list to this file.
    #[arg(long)]
    targets_out: Option<PathBuf>,
}

/// The `i`th digest: 64 hex characters, spread so that shards and maps see no pattern.
fn digest(i: usize) -> String {
    format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(4)
}

fn write_targets(path: &PathBuf, n: usize) -> std::io::Result<()> {
    let teams = ["payments", "platform", "search", "shop"];
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..n {
        let team = teams[i % teams.len()];
        writeln!(
            f,
            "  - digest: {}\n    labels: {{image: \"registry.example.com/{team}/svc-{i}:1.{}.0\", team: {team}}}",
            digest(i),
            i % 17
        )?;
    }
    f.flush()
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if let Some(path) = &args.targets_out {
        write_targets(path, args.digests)?;
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let sim = Simulator::start_on(addr, Scenario::default().with_synthetic_unknown()).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "url={}", sim.url())?;
    writeln!(out, "access_key_id={SIM_ACCESS_KEY_ID}")?;
    writeln!(out, "access_key_secret={SIM_ACCESS_KEY_SECRET}")?;
    writeln!(out, "digests={}", args.digests)?;
    out.flush()?;
    drop(out);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let outcomes = sim
        .outcomes()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!(
        "simulator: {} requests, at most {} at once; {outcomes}",
        sim.total_requests(),
        sim.max_in_flight()
    );
    Ok(())
}
