//! # blindspot
//!
//! Reproduces every experiment of Szegedy et al., *Intriguing properties of neural networks* (ICLR 2014),
//! and turns them into tools for researchers' own models. Paper section ↔ module:
//!
//! | paper | module |
//! |---|---|
//! | §4.2 data (MNIST, P1/P2 split of Table 3) | [`data`] |
//! | §4.2 the MNIST model zoo (Tables 1, 3), TorchScript models (AlexNet) | [`models`] |
//! | "trained with L-BFGS until convergence"; the attack's box-constrained L-BFGS | [`optim`] (one batched L-BFGS-B engine) |
//! | training with weight decay λ·Σw²/k | [`train`] |
//! | §4.2 adversarial training with per-layer pools (foundation; not yet run) | [`train::advtrain`] |
//! | §4.1 the attack, §4.2 Tables 1, 3 (distortions), Fig 7 | [`attack`] |
//! | §4.2 cross-model generalisation, Tables 2 and 4 | [`attack::transfer`] |
//! | §3 units vs random directions, Figs 1–4 | [`units`] |
//! | §4.3 spectral analysis, Table 5 | [`spectral`] |
//! | the result files every stage writes (schemas, readers, writers, checkpoints) | [`results`] |
//! | tables and figures beside the paper's values, drawn from result files only | [`report`] |
//! | YAML experiments, resumable stages | [`config`], [`experiments`] |
//! | speed benchmarks against peers | [`bench`] |
//!
//! The data flow of one run: an experiment file (YAML) is parsed into typed, validated specs
//! ([`config`]); [`experiments`] turns them into a plan of stages, each reading files, calling one
//! library entry point with a typed spec (e.g. [`attack::attack_dataset`], [`units::run`],
//! [`spectral::run`]) and writing result files ([`results`]) into its folder; [`report`] renders tables
//! and figures from those files alone. The `blindspot` binary's `cli` module is the only place that knows
//! clap. Dependency rules and where to add things: `docs/architecture.md`.

#![warn(clippy::too_many_lines)]

pub mod attack;
pub mod bench;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod experiments;
pub mod fingerprint;
pub mod io;
pub mod models;
pub mod optim;
pub mod progress;
pub mod report;
pub mod results;
pub mod spectral;
pub mod train;
pub mod units;

pub use error::{Error, Result};
