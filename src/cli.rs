//! Command line: `serve`, `check-config`, `routes`, `plan`, `replay`.

use crate::route::matcher::parse_label_arg;
use crate::route::test_output;
use crate::settings::Settings;
#[cfg(not(unix))]
use crate::startup::shutdown_signal;
use crate::startup::Application;
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
    /// Validate a config offline; the last line is the verdict (`config OK: …`
    /// or `config INVALID: …`).
    CheckConfig {
        /// Config file (same as --config).
        file: Option<PathBuf>,
        /// Also print the effective config (default + file + environment),
        /// secrets redacted, before the verdict.
        #[arg(long, short)]
        print: bool,
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
                // Listen for SIGTERM/SIGINT before the socket is bound: a signal
                // sent as soon as the port answers must drain, not kill.
                let shutdown = signals()?;
                let app = Application::build(settings).await?;
                app.run_until_stopped(shutdown).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file, print } => Ok(check_config(file.or(cli.config), print)),
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

/// `check-config`: the errors, or the effective config if asked; then one
/// verdict line.
fn check_config(file: Option<PathBuf>, print: bool) -> ExitCode {
    let env: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with(&format!("{}__", crate::settings::ENV_PREFIX)))
        .collect();
    let mut sources = vec!["embedded default".to_owned()];
    if let Some(f) = &file {
        sources.push(f.display().to_string());
    }
    match env.len() {
        0 => {}
        1 => sources.push(format!("environment {}", env[0])),
        n => sources.push(format!("{n} environment variables")),
    }
    let sources = sources.join(" + ");
    // The actions are built as `serve` builds them (no I/O): a config they
    // cannot be built from is as invalid as one that does not parse.
    let loaded = Settings::load(file.as_deref())
        .map_err(|e| e.0)
        .and_then(|s| build_actions(&s).map(|()| s));
    match loaded {
        Ok(settings) => {
            // Forms Alertmanager accepts but warns about (deprecated `match`,
            // matchers only its classic parser reads, ambiguous escapes).
            if let Ok(route) = settings.compile_route() {
                for w in route.warnings() {
                    eprintln!("warning: {w}");
                }
            }
            if print {
                print!("{}", settings.to_redacted_yaml());
            }
            println!("{}", verdict(&settings, &sources));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for line in &errors {
                eprintln!("{line}");
            }
            let n = errors.len();
            eprintln!(
                "config INVALID: {n} error{} in {sources}",
                if n == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}

/// Builds every configured action offline (no ledger); the errors name
/// each action's key.
fn build_actions(settings: &Settings) -> Result<(), Vec<String>> {
    use crate::act::traffic::{kube::ClientSource, Targets};
    let targets = Targets::build(
        &settings.traffic_targets,
        &ClientSource {
            api_url: settings.kubernetes.api_url.clone(),
        },
    );
    let deps = crate::act::ActionDeps::new(
        None,
        std::sync::Arc::new(crate::metrics::Metrics::new()),
        std::sync::Arc::new(targets),
        settings.ca.clone(),
    );
    crate::act::ActionSet::build(&settings.actions, &deps).map(|_| ())
}

/// `config OK: 2 actions, 1 route, …` for a config that loaded.
fn verdict(s: &Settings, sources: &str) -> String {
    fn routes(r: &crate::route::RouteConfig) -> usize {
        r.routes.iter().map(|c| 1 + routes(c)).sum()
    }
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let auth = if s.auth.enabled() {
        "auth on"
    } else {
        "no auth"
    };
    format!(
        "config OK: {}, {} under the root, {}, {}; listens on {}, {auth}, stores into {} ({sources})",
        count(s.actions.len(), "action"),
        count(routes(&s.route), "route"),
        count(s.enrichments.len(), "enrichment"),
        count(s.traffic_targets.len(), "traffic target"),
        s.server.listen,
        s.storage.path.display(),
    )
}

fn load(file: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    Settings::load(file).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

/// A future that completes on SIGTERM or SIGINT, with both handlers already
/// installed when this returns (inside the runtime).
#[cfg(unix)]
fn signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

#[cfg(not(unix))]
fn signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(shutdown_signal())
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
