//! The `mlops-alert-router` binary: everything happens in the library.

/// jemalloc: the store's threads free what the HTTP threads allocated, which
/// glibc's malloc serialises on its arena locks (see Cargo.toml).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    mlops_alert_router::cli::main()
}
