//! The `sas-image-scan-exporter` binary: parses flags and wires the library together.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sas_image_scan_exporter::config::Config;

/// Prometheus exporter for Alibaba Cloud Security Center image scan tasks.
#[derive(Parser, Debug)]
#[command(name = "sas-image-scan-exporter", version)]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match Config::load(&cli.config_file) {
        Ok(config) => {
            println!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
