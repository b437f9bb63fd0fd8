//! Every integration test, in one binary so that the suite links once instead of once per file.
//!
//! The modules share one process and run on parallel threads, so a test must not change
//! process-wide state (environment variables, the current directory, a global tracing subscriber),
//! and a test that measures the process itself runs in a child process of its own
//! (`common::alone_in_process`).
//! Run one module with `cargo test --test it exporter::`.

mod common;

mod accounts;
mod binary;
mod client;
mod config;
mod credentials;
mod deploy;
mod discovery;
mod exporter;
mod faults;
mod hostile;
mod hostile_inputs;
mod independent_signature;
mod kubernetes;
mod listing;
mod operations;
mod prometheus;
mod simulator;
mod status_page;
mod tls;
