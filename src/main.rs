//! `rpa-ml`: one binary, a subcommand per role.

mod backup;
mod bench;
mod cli;
mod healthcheck;
mod roles;
mod setup;
mod standalone;
mod train;

use clap::Parser;

// glibc's allocator keeps the peak of a training run or a large batch as
// resident memory for the life of a worker; mimalloc returns it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's full collection on the calling thread: its empty pages go
/// back to the OS now instead of after its purge delay, which needs later
/// allocator activity on that thread to run.
#[allow(unsafe_code)]
fn return_freed_pages() {
    // SAFETY: mi_collect takes no pointer and reads no caller memory; it
    // walks mimalloc's own per-thread and arena structures and may be
    // called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

fn main() -> std::process::ExitCode {
    rpa_ml_shared::memory::set_release(return_freed_pages);
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        // A container runtime reads a health check's exit 2 as reserved:
        // a health check that cannot run is unhealthy (1).
        Err(e) if e.use_stderr() && std::env::args().nth(1).as_deref() == Some("healthcheck") => {
            let _ = e.print();
            return std::process::ExitCode::FAILURE;
        }
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(roles::dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
