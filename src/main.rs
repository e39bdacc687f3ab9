//! The `mlops-alert-router` binary: everything happens in the library.

fn main() -> std::process::ExitCode {
    mlops_alert_router::cli::main()
}
