//! The `verdict` binary: parse the command line, run it, exit with its status.

use clap::Parser;

fn main() {
    let cli = verdict::cli::Cli::parse();
    let code = verdict::cli::run(cli);
    std::process::exit(code as i32);
}
