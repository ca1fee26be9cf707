//! The `blindspot` binary: parses the command line ([`cli`], the only place that knows clap), runs it, and
//! maps errors to a one-line message and an exit code (1 for errors, 2 for usage errors from clap).

#![warn(clippy::too_many_lines)]

mod cli;

fn main() {
    std::process::exit(cli::main());
}
