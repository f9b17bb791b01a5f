//! The `verdict` binary: parse the command line, run it, exit with its status.

use clap::Parser;

/// mimalloc: the server allocates and frees small buffers on every call
/// (HTTP/2 frames, protobuf strings), where it is measurably faster than the
/// system allocator (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = verdict::cli::Cli::parse();
    let code = verdict::cli::run(cli);
    std::process::exit(code as i32);
}
