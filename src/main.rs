//! The `verdict` binary: parse the command line, run it, exit with its status.

use clap::Parser;

/// mimalloc: the server allocates and frees small buffers on every call
/// (HTTP/2 frames, protobuf strings), where it is measurably faster than the
/// system allocator (BENCHMARKS.md). Built without its transparent huge page
/// hint (`no_thp`); see `main`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // No transparent huge pages for this process. A fault on a huge page
    // zeroes 2 MiB at once, on the request path whenever the allocator
    // takes back memory it had returned; at half load that set off backlogs
    // lasting hundreds of milliseconds (BENCHMARKS.md, latency at half
    // load). Without them the server's resident memory also halves. A
    // kernel that refuses the call leaves the default, which is only
    // slower, never wrong.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = verdict::cli::Cli::parse();
    let code = verdict::cli::run(cli);
    std::process::exit(code as i32);
}
