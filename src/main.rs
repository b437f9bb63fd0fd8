//! The `sas-image-scan-exporter` binary: parses flags and wires the library together.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sas_image_scan_exporter::app::{Exporter, Options};
use sas_image_scan_exporter::config::{Config, config_dir};
use sas_image_scan_exporter::logging::{self, LogFormat, LogLevel};
use sas_image_scan_exporter::memory;
use sas_image_scan_exporter::targets::{Shard, TargetFiles, hostname};
use sas_image_scan_exporter::{bind, build_info, parse_listen_address};

/// Prometheus exporter for Alibaba Cloud Security Center image scan tasks.
#[derive(Parser, Debug)]
#[command(
    name = "sas-image-scan-exporter",
    version = build_info::LONG_VERSION,
)]
struct Cli {
    /// YAML configuration file.
    #[arg(
        long = "config.file",
        env = "SAS_EXPORTER_CONFIG_FILE",
        default_value = "sas-image-scan-exporter.yml"
    )]
    config_file: PathBuf,
    /// Parse and validate the configuration, print a summary, and exit.
    #[arg(long = "config.check")]
    config_check: bool,
    /// Address to listen on; repeat the flag for several.
    #[arg(
        long = "web.listen-address",
        env = "SAS_EXPORTER_WEB_LISTEN_ADDRESS",
        value_delimiter = ',',
        default_value = ":9847"
    )]
    listen_addresses: Vec<String>,
    /// Path under which metrics are served.
    #[arg(
        long = "web.telemetry-path",
        env = "SAS_EXPORTER_WEB_TELEMETRY_PATH",
        default_value = "/metrics"
    )]
    telemetry_path: String,
    /// Log level.
    #[arg(
        long = "log.level",
        env = "SAS_EXPORTER_LOG_LEVEL",
        value_enum,
        default_value = "info"
    )]
    log_level: LogLevel,
    /// Log format.
    #[arg(
        long = "log.format",
        env = "SAS_EXPORTER_LOG_FORMAT",
        value_enum,
        default_value = "logfmt"
    )]
    log_format: LogFormat,
    /// Run against the built-in Security Center simulator; no account or config needed.
    #[arg(long = "demo")]
    demo: bool,
    /// TLS and basic auth, in the Prometheus exporter-toolkit web-config format.
    #[arg(long = "web.config.file", env = "SAS_EXPORTER_WEB_CONFIG_FILE")]
    web_config_file: Option<PathBuf>,
    /// Enable POST /-/reload.
    #[arg(
        long = "web.enable-lifecycle",
        env = "SAS_EXPORTER_WEB_ENABLE_LIFECYCLE"
    )]
    enable_lifecycle: bool,
    /// Number of instances sharing the digests.
    #[arg(
        long = "shard.total",
        env = "SAS_EXPORTER_SHARD_TOTAL",
        default_value_t = 1
    )]
    shard_total: u64,
    /// This instance's shard, 0..shard.total; default: the hostname's -N suffix.
    #[arg(long = "shard.index", env = "SAS_EXPORTER_SHARD_INDEX")]
    shard_index: Option<u64>,
}

fn main() -> ExitCode {
    memory::limit_arenas();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and --version are not errors; bad flags exit 1 like every start-up error (clap uses 2).
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if !cli.telemetry_path.starts_with('/')
        || matches!(cli.telemetry_path.as_str(), "/" | "/-/healthy" | "/-/ready")
    {
        eprintln!(
            "--web.telemetry-path must start with / and not be /, /-/healthy or /-/ready; got {:?}",
            cli.telemetry_path
        );
        return ExitCode::from(1);
    }
    // Bad address syntax is a bad flag (exit 1); only a failing bind exits 2.
    for address in &cli.listen_addresses {
        if let Err(e) = parse_listen_address(address) {
            eprintln!("--web.listen-address: {e}");
            return ExitCode::from(1);
        }
    }
    let shard = match Shard::from_flags(cli.shard_total, cli.shard_index, hostname().as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if cli.config_check {
        return config_check(&cli.config_file);
    }
    if let Err(e) = logging::init(cli.log_level, cli.log_format) {
        eprintln!("cannot set up logging: {e}");
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli, shard))
}

/// `--config.check`: the config and every target file must be valid.
fn config_check(path: &std::path::Path) -> ExitCode {
    let mut config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let env = |name: &str| std::env::var(name).ok();
    let assembled =
        TargetFiles::default().assemble(&config, &config_dir(path), Shard::default(), &env);
    if !assembled.problems.is_empty() {
        eprintln!(
            "{} problem(s) in the target files:\n{}",
            assembled.problems.len(),
            assembled.problems.join("\n")
        );
        return ExitCode::from(1);
    }
    config.targets = assembled.targets;
    println!("{}", config.summary());
    ExitCode::SUCCESS
}

async fn run(cli: Cli, shard: Shard) -> ExitCode {
    // Installed first, so a stop request during a slow start-up (waiting for credentials) is a
    // clean exit rather than death by the default signal action.
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::from(1);
        }
    };
    let mut _demo = None;
    let config = if cli.demo {
        let Some((demo, config)) = start_demo().await else {
            return ExitCode::from(1);
        };
        _demo = Some(demo);
        config
    } else {
        // A long target list takes a while to parse: not on the async workers.
        let file = cli.config_file.clone();
        match tokio::task::spawn_blocking(move || Config::load(&file)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::error!(file = %cli.config_file.display(), "invalid configuration");
                eprintln!("{e}");
                return ExitCode::from(1);
            }
            Err(e) => {
                tracing::error!(error = %e, "the config parser failed");
                return ExitCode::from(1);
            }
        }
    };

    // Parsing a large config builds a YAML tree many times the file's size; hand those pages
    // back now rather than carry them for the life of the process.
    memory::release_freed();

    let mut listeners = Vec::new();
    for address in &cli.listen_addresses {
        match bind(address).await {
            Ok(l) => listeners.push(l),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen");
                return ExitCode::from(2);
            }
        }
    }

    let options = Options {
        telemetry_path: cli.telemetry_path,
        config_path: (!cli.demo).then(|| cli.config_file.clone()),
        shard,
        enable_lifecycle: cli.enable_lifecycle,
        web_config: cli.web_config_file.clone(),
        ..Options::default()
    };
    let started = tokio::select! {
        r = Exporter::start(&config, listeners, options) => r,
        _ = signals.stop() => {
            tracing::info!("stopped during start-up");
            return ExitCode::SUCCESS;
        }
    };
    let exporter = match started {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::from(1);
        }
    };
    // The scheduler holds its own copy of every target.
    drop(config);
    memory::release_freed();
    serve_signals(&exporter, &mut signals).await;
    tracing::info!("shutting down");
    // A second stop request means the operator does not want to wait for the drain.
    tokio::spawn(async move {
        signals.stop().await;
        tracing::warn!("second stop signal; exiting at once");
        std::process::exit(1);
    });
    exporter.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// What keeps `--demo`'s simulator running; dropping it stops the simulator.
#[cfg(feature = "demo")]
type DemoGuard = sas_image_scan_exporter::demo::Demo;
#[cfg(not(feature = "demo"))]
type DemoGuard = std::convert::Infallible;

/// `--demo`: starts the simulator and returns the config that points the exporter at it.
#[cfg(feature = "demo")]
async fn start_demo() -> Option<(DemoGuard, Config)> {
    let demo = match DemoGuard::start().await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the demo simulator");
            return None;
        }
    };
    tracing::warn!(
        simulator = %demo.simulator.url(),
        "DEMO MODE: polling the built-in Security Center simulator with synthetic digests, not a real account"
    );
    let config = demo.config();
    Some((demo, config))
}

/// `--demo` in a build without the simulator: says so instead of starting.
#[cfg(not(feature = "demo"))]
async fn start_demo() -> Option<(DemoGuard, Config)> {
    eprintln!("this build has no demo mode: it was built without the `demo` feature");
    None
}

/// SIGTERM, SIGINT and SIGHUP, installed once for the life of the process.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGTERM or SIGINT.
    async fn stop(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Reloads on SIGHUP; returns on SIGTERM or SIGINT.
async fn serve_signals(exporter: &Exporter, signals: &mut Signals) {
    loop {
        tokio::select! {
            _ = signals.term.recv() => return,
            _ = signals.int.recv() => return,
            _ = signals.hup.recv() => {
                // In the background, so a stop signal is seen while a long reload runs; the
                // reloader logs the outcome and runs one reload at a time.
                drop(exporter.spawn_reload());
            }
        }
    }
}
