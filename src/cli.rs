//! Command line: `serve`, `check-config`, `replay`.

use crate::route::matcher::parse_label_arg;
use crate::route::test_output;
use crate::settings::Settings;
use crate::startup::{shutdown_signal, Application};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Receives Alertmanager webhooks, stores them durably, routes and acts on them.
#[derive(Debug, Parser)]
#[command(name = "mlops-alert-router", version, about)]
pub struct Cli {
    /// Config file layered over the embedded default.
    #[arg(long, global = true, env = "MLOPS_ALERT_ROUTER_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; none means `serve`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the worker (the default).
    Serve,
    /// Validate a config offline and print the effective config, secrets redacted.
    CheckConfig {
        /// Config file (same as --config).
        file: Option<PathBuf>,
    },
    /// Inspect the route tree.
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Print the dry-run plan of a saved Alertmanager payload (nothing is sent or stored).
    Plan {
        /// JSON file with an Alertmanager webhook body.
        file: PathBuf,
    },
    /// POST a saved Alertmanager payload to a running router and print the answer.
    Replay {
        /// JSON file with an Alertmanager webhook body.
        file: PathBuf,
        /// The router's webhook URL.
        #[arg(long, default_value = "http://127.0.0.1:9095/api/v1/alerts")]
        url: String,
        /// Bearer token.
        #[arg(long, env = "MLOPS_ALERT_ROUTER_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Ask for the plan only; nothing is stored.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `routes …` subcommands.
#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// Print the route tree.
    Show,
    /// Print the actions an alert with these labels is routed to, comma-separated
    /// in match order, as `amtool config routes test` prints receivers.
    Test {
        /// Labels as LABEL=VALUE (or LABEL="quoted value").
        labels: Vec<String>,
    },
}

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let settings = load(cli.config.as_deref())?;
            crate::telemetry::init(&settings.log);
            runtime()?.block_on(async {
                let app = Application::build(settings).await?;
                app.run_until_stopped(shutdown_signal()).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file } => {
            let settings = load(file.or(cli.config).as_deref())?;
            // Forms Alertmanager accepts but warns about (deprecated `match`,
            // matchers only its classic parser reads, ambiguous escapes).
            if let Ok(route) = settings.compile_route() {
                for w in route.warnings() {
                    eprintln!("warning: {w}");
                }
            }
            print!("{}", settings.to_redacted_yaml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Routes { command } => {
            let settings = load(cli.config.as_deref())?;
            let route = settings.compile_route()?;
            match command {
                RoutesCommand::Show => print!("{}", route.render()),
                RoutesCommand::Test { labels } => {
                    let mut set = std::collections::BTreeMap::new();
                    for arg in &labels {
                        let (name, value) = parse_label_arg(arg)
                            .map_err(|e| anyhow::anyhow!("invalid label {arg:?}: {e}"))?;
                        set.insert(name, value);
                    }
                    print!("{}", test_output(&route, &set));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { file } => {
            let settings = load(cli.config.as_deref())?;
            let body =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let accepted = crate::ingest::parse(&body, usize::MAX)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let plan = runtime()?.block_on(async {
                let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
                let planner = crate::pipeline::Planner::from_settings(&settings, metrics)?;
                anyhow::Ok(planner.dry_run(accepted.notification).await)
            })?;
            println!("{}", serde_json::to_string_pretty(&plan)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            file,
            url,
            token,
            dry_run,
        } => runtime()?.block_on(replay(file, url, token, dry_run)),
    }
}

fn load(file: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    Settings::load(file).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn replay(
    file: PathBuf,
    url: String,
    token: Option<String>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let body = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut request = reqwest::Client::new()
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    if dry_run {
        request = request.query(&[("dry_run", "true")]);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("posting to {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("{} {}", status.as_u16(), text.trim_end());
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
