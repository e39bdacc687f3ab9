//! Configuration: the embedded `config/default.yaml`, an optional file on top,
//! then `MLOPS_ALERT_ROUTER__SECTION__KEY` environment overrides (the rules: `EnvLayer`).
//!
//! Loading is pure (no sockets, no database): `check-config` runs exactly this.
//! Every error names the key path it is about.

use crate::act::ActionConfig;
use crate::enrich::{EnrichmentConfig, LinkSettings, PrometheusSettings};
use crate::ingest::alertmanager::AlertmanagerSettings;
use crate::route::{Route, RouteConfig, RouteError};
use crate::secret::Secret;
// The helpers the stages share live in the leaf module `conf`.
pub(crate) use crate::conf::read_file;
pub use crate::conf::{duration, opt_duration, BasicUser};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration compiled into the binary.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.yaml");

/// Prefix of environment overrides; `__` separates the key path.
pub const ENV_PREFIX: &str = "MLOPS_ALERT_ROUTER";

/// A configuration error, always naming the key path and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

impl ConfigError {
    fn one(path: &str, msg: impl std::fmt::Display) -> Self {
        Self(vec![format!("{path}: {msg}")])
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub auth: AuthSettings,
    pub ingest: IngestSettings,
    pub worker: WorkerSettings,
    pub log: LogSettings,
    #[serde(default)]
    pub actions: BTreeMap<String, ActionConfig>,
    #[serde(default)]
    pub route: RouteConfig,
    /// Where enrichment queries go; required when `enrichments` is not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSettings>,
    /// Named PromQL templates that routes attach with `enrich: [name, …]`.
    #[serde(default)]
    pub enrichments: BTreeMap<String, EnrichmentConfig>,
    /// Dashboard links in the context.
    #[serde(default)]
    pub grafana: GrafanaSettings,
    /// Silence links, and fetching the rest of truncated notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerSettings>,
    /// Where A/B weights live, keyed by the alert's experiment label value.
    #[serde(default)]
    pub traffic_targets: BTreeMap<String, crate::act::traffic::target::TargetConfig>,
    /// The Kubernetes API for `seldon_experiment` / `istio_virtual_service` targets.
    #[serde(default)]
    pub kubernetes: KubernetesSettings,
    /// What every outbound HTTPS client trusts: the system roots plus `tls.ca_file`
    /// (the Kubernetes client keeps its kubeconfig / in-cluster CA).
    #[serde(default)]
    pub tls: crate::outbound::TlsSettings,
    /// `tls.*` loaded (certificates read and checked at load time).
    #[serde(skip)]
    pub ca: crate::outbound::CaPolicy,
}

/// `kubernetes.*`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSettings {
    /// API server URL; default: in-cluster config, else kubeconfig. Set it for
    /// `kubectl proxy` (e.g. `http://127.0.0.1:8001`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// `grafana.*`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrafanaSettings {
    /// Base URL of Grafana as people reach it; no dashboard link without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// UID of the A/B testing dashboard (`dashboards/ab-testing.json`).
    #[serde(default = "default_dashboard_uid")]
    pub dashboard_uid: String,
}

impl Default for GrafanaSettings {
    fn default() -> Self {
        Self {
            url: None,
            dashboard_uid: default_dashboard_uid(),
        }
    }
}

fn default_dashboard_uid() -> String {
    "mlops-ab-testing".into()
}

/// `server.*`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    #[serde(with = "duration")]
    pub grace_period: Duration,
    /// Time a client has to send a complete request head (request line and
    /// headers), from the connection's start or the first byte of the head.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Time a client has to send the whole request body, from the end of its head.
    #[serde(with = "duration")]
    pub body_read_timeout: Duration,
    /// A kept-alive connection with no request in progress is closed after this.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Connections open at once; past it, the longest-idle one makes room.
    pub max_connections: usize,
}

/// `storage.*`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    pub path: PathBuf,
    #[serde(with = "duration")]
    pub busy_timeout: Duration,
    /// Finished notifications (and their action runs) older than this are pruned.
    #[serde(with = "duration")]
    pub retention: Duration,
    /// Notifications holding a dead letter are kept this long (unless replayed).
    #[serde(with = "duration")]
    pub dead_letter_retention: Duration,
    /// How often the pruner runs.
    #[serde(with = "duration")]
    pub prune_interval: Duration,
}

/// `auth.*`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    #[serde(default)]
    pub bearer_tokens: Vec<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_tokens_file: Option<PathBuf>,
    #[serde(default)]
    pub basic_users: Vec<BasicUser>,
    #[serde(default)]
    pub protect_metrics: bool,
}

impl AuthSettings {
    /// True when any credential is configured, i.e. the API is protected.
    pub fn enabled(&self) -> bool {
        !self.bearer_tokens.is_empty() || !self.basic_users.is_empty()
    }
}

/// `ingest.*`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    pub max_body_bytes: usize,
    pub max_alerts: usize,
    #[serde(with = "duration")]
    pub dedup_window: Duration,
    pub max_inbox: u64,
}

/// `worker.*`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub enabled: bool,
    pub concurrency: usize,
    #[serde(with = "duration")]
    pub lease: Duration,
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    pub max_attempts: u32,
    #[serde(with = "duration")]
    pub backoff_initial: Duration,
    #[serde(with = "duration")]
    pub backoff_max: Duration,
    /// How often every traffic target is read to publish `traffic_weight`.
    #[serde(with = "duration")]
    pub weights_poll_interval: Duration,
    /// A failing run older than this (since its first attempt) is dead; none: no age limit.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age: Option<Duration>,
}

/// `log.*`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// `log.format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    /// Loads the embedded default, then `file` if given, then the process
    /// environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        // Variables that are not valid Unicode cannot be ours: skip them.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::load_with_env(file, env)
    }

    /// [`Settings::load`] with an explicit environment (tests pass their own).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let user = match file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                ConfigError(vec![format!(
                    "cannot read config file {}: {e}",
                    path.display()
                )])
            })?),
            None => None,
        };
        let base = match &user {
            Some(text) => defaults_under(text)?,
            None => DEFAULT_CONFIG.to_owned(),
        };
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(&base, config::FileFormat::Yaml));
        if let Some(text) = &user {
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Yaml));
        }
        let mut env = EnvLayer::parse(env)?;
        let merged = builder
            .build()
            .map_err(|e| ConfigError(vec![format!("invalid configuration: {e}")]))?;
        let mut value: serde_json::Value = merged
            .try_deserialize()
            .map_err(|e| ConfigError(vec![format!("invalid configuration: {e}")]))?;
        env.apply(&mut value)?;
        let mut settings: Settings = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            env.annotate(ConfigError::one(&path, e.into_inner()))
        })?;
        settings
            .resolve_secret_files()
            .map_err(|e| env.annotate(e))?;
        settings.ca = crate::outbound::CaPolicy::load(&settings.tls)
            .map_err(|e| env.annotate(ConfigError(vec![e])))?;
        if let Some(ca) = settings
            .prometheus
            .as_ref()
            .and_then(|p| p.tls.ca_file.as_ref())
        {
            crate::outbound::read_ca_file(ca, "prometheus.tls.ca_file")
                .map_err(|e| env.annotate(ConfigError(vec![e])))?;
        }
        settings.validate().map_err(|e| env.annotate(e))?;
        Ok(settings)
    }

    /// Reads every `*_file` secret into its value.
    fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        if let Some(path) = &self.auth.bearer_tokens_file {
            let text = read_secret_file(path, "auth.bearer_tokens_file")?;
            self.auth.bearer_tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(Secret::new),
            );
        }
        if let Some(p) = &mut self.prometheus {
            if let Some(path) = &p.bearer_token_file {
                let text = read_secret_file(path, "prometheus.bearer_token_file")?;
                p.bearer_token = Some(Secret::new(text.trim()));
            }
            if let Some(user) = &mut p.basic_auth {
                if let (None, Some(path)) = (&user.password, &user.password_file) {
                    let text = read_secret_file(path, "prometheus.basic_auth.password_file")?;
                    user.password = Some(Secret::new(text.trim_end_matches(['\n', '\r'])));
                }
            }
        }
        if let Some(am) = &mut self.alertmanager {
            if let Some(path) = &am.bearer_token_file {
                let text = read_secret_file(path, "alertmanager.bearer_token_file")?;
                am.bearer_token = Some(Secret::new(text.trim()));
            }
        }
        for (name, action) in &mut self.actions {
            action
                .resolve_files(&format!("actions.{name}"))
                .map_err(|e| ConfigError(vec![e]))?;
        }
        for (i, user) in self.auth.basic_users.iter_mut().enumerate() {
            let key = format!("auth.basic_users[{i}]");
            match (&user.password, &user.password_file) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::one(
                        &key,
                        "set either password or password_file, not both",
                    ))
                }
                (None, Some(path)) => {
                    let text = read_secret_file(path, &format!("{key}.password_file"))?;
                    user.password = Some(Secret::new(text.trim_end_matches(['\n', '\r'])));
                }
                (None, None) => {
                    return Err(ConfigError::one(
                        &key,
                        "password or password_file is required",
                    ))
                }
                (Some(_), None) => {}
            }
        }
        Ok(())
    }

    /// Checks what serde cannot: ranges, references between sections.
    fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, path: &str, msg: &str| {
            if !ok {
                errors.push(format!("{path}: {msg}"));
            }
        };
        for (path, d) in [
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("server.body_read_timeout", self.server.body_read_timeout),
            ("server.idle_timeout", self.server.idle_timeout),
        ] {
            check(!d.is_zero(), path, "must be greater than 0");
        }
        check(
            self.server.max_connections >= 1,
            "server.max_connections",
            "must be at least 1",
        );
        check(
            self.ingest.max_body_bytes >= 1024,
            "ingest.max_body_bytes",
            "must be at least 1024",
        );
        check(
            self.ingest.max_alerts >= 1,
            "ingest.max_alerts",
            "must be at least 1",
        );
        check(
            self.ingest.max_inbox >= 1,
            "ingest.max_inbox",
            "must be at least 1",
        );
        check(
            self.worker.concurrency >= 1,
            "worker.concurrency",
            "must be at least 1",
        );
        check(
            self.worker.max_attempts >= 1,
            "worker.max_attempts",
            "must be at least 1",
        );
        check(
            !self.worker.lease.is_zero(),
            "worker.lease",
            "must be greater than 0",
        );
        check(
            !self.worker.weights_poll_interval.is_zero(),
            "worker.weights_poll_interval",
            "must be greater than 0",
        );
        check(
            !self.worker.poll_interval.is_zero(),
            "worker.poll_interval",
            "must be greater than 0",
        );
        check(
            self.worker.backoff_initial <= self.worker.backoff_max,
            "worker.backoff_initial",
            "must not exceed worker.backoff_max",
        );
        check(
            !self.storage.path.as_os_str().is_empty(),
            "storage.path",
            "must not be empty",
        );
        check(
            !self.storage.retention.is_zero(),
            "storage.retention",
            "must be greater than 0",
        );
        check(
            self.storage.dead_letter_retention >= self.storage.retention,
            "storage.dead_letter_retention",
            "must not be shorter than storage.retention",
        );
        check(
            !self.storage.prune_interval.is_zero(),
            "storage.prune_interval",
            "must be greater than 0",
        );
        for (i, token) in self.auth.bearer_tokens.iter().enumerate() {
            check(
                !token.expose().trim().is_empty(),
                &format!("auth.bearer_tokens[{i}]"),
                "must not be empty",
            );
        }
        for (i, user) in self.auth.basic_users.iter().enumerate() {
            check(
                !user.username.is_empty() && !user.username.contains(':'),
                &format!("auth.basic_users[{i}].username"),
                "must be non-empty and contain no ':'",
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            errors.push(format!(
                "log.level: {:?} is not a valid filter (e.g. info, debug, mlops_alert_router=debug)",
                self.log.level
            ));
        }
        if self.worker.max_age.is_some_and(|d| d.is_zero()) {
            errors.push("worker.max_age: must be greater than 0".into());
        }
        for (name, action) in &self.actions {
            if let Err(e) = action.validate() {
                errors.extend(e.into_iter().map(|e| format!("actions.{name}.{e}")));
            }
        }
        if let Err(e) = self.compile_route() {
            errors.push(e.to_string());
        }
        if let Err(e) = crate::enrich::compile_all(&self.enrichments) {
            errors.extend(e);
        }
        check_enrich_refs(&self.route, "route", &self.enrichments, &mut errors);
        match &self.prometheus {
            None if !self.enrichments.is_empty() => {
                errors.push("prometheus.url: required when enrichments are configured".into())
            }
            Some(p) => {
                if url::Url::parse(&p.url).is_err() {
                    errors.push(format!("prometheus.url: {:?} is not a URL", p.url));
                }
                if p.max_concurrency == 0 {
                    errors.push("prometheus.max_concurrency: must be at least 1".into());
                }
                if p.timeout.is_zero() {
                    errors.push("prometheus.timeout: must be greater than 0".into());
                }
                if p.max_response_bytes < 1024 {
                    errors.push("prometheus.max_response_bytes: must be at least 1024".into());
                }
                if p.max_series == 0 {
                    errors.push("prometheus.max_series: must be at least 1".into());
                }
            }
            None => {}
        }
        for (name, t) in &self.traffic_targets {
            use crate::act::traffic::target::TargetConfig;
            let empty = |v: &str| v.trim().is_empty();
            match t {
                TargetConfig::SeldonExperiment { namespace, name: n }
                | TargetConfig::IstioVirtualService {
                    namespace, name: n, ..
                } if empty(namespace) || empty(n) => errors.push(format!(
                    "traffic_targets.{name}: namespace and name must not be empty"
                )),
                TargetConfig::File { file } if file.path.as_os_str().is_empty() => errors.push(
                    format!("traffic_targets.{name}.file.path: must not be empty"),
                ),
                _ => {}
            }
        }
        if let Some(u) = &self.kubernetes.api_url {
            if url::Url::parse(u).is_err() {
                errors.push(format!("kubernetes.api_url: {u:?} is not a URL"));
            }
        }
        if let Some(am) = &self.alertmanager {
            if url::Url::parse(&am.url).is_err() {
                errors.push(format!("alertmanager.url: {:?} is not a URL", am.url));
            }
        }
        if let Some(g) = &self.grafana.url {
            if url::Url::parse(g).is_err() {
                errors.push(format!("grafana.url: {g:?} is not a URL"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(errors))
        }
    }

    /// Where context links point.
    pub fn link_settings(&self) -> LinkSettings {
        LinkSettings {
            grafana_url: self.grafana.url.clone(),
            dashboard_uid: self.grafana.dashboard_uid.clone(),
            alertmanager_url: self.alertmanager.as_ref().map(|a| a.url.clone()),
        }
    }

    /// Compiles the route tree against the configured actions.
    pub fn compile_route(&self) -> Result<Route, RouteError> {
        crate::route::compile(&self.route, &|name| self.actions.contains_key(name))
    }

    /// The effective configuration as YAML, secrets redacted.
    pub fn to_redacted_yaml(&self) -> String {
        // Serialising plain data structs to YAML cannot fail.
        serde_yaml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// The environment layer: `MLOPS_ALERT_ROUTER__A__B__C=value` sets the key
/// path `a.b.c` (each segment lower-cased) on top of the default and the file.
///
/// - In the sections of named entries (`actions`, `traffic_targets`,
///   `enrichments`) the segment after the section names an entry the default
///   or the file already defines; `_` and `-` count as the same character,
///   so `ACTIONS__NOTIFY_ML__URL` addresses `notify-ml`. A variable never
///   creates a named entry: one that matches none is an error.
/// - A key that holds a list takes a comma-separated value (`a,b`); a string
///   key takes the value as it is; a number or boolean key parses it.
/// - Any other `MLOPS_ALERT_ROUTER_*` variable is an error, except the
///   router's own `MLOPS_ALERT_ROUTER_CONFIG` and `MLOPS_ALERT_ROUTER_TOKEN`
///   and the service variables Kubernetes injects for a Service named
///   `mlops-alert-router` (`…_SERVICE_HOST`, `…_SERVICE_PORT…`, `…_PORT…`).
/// - Every error a variable causes names the variable.
#[derive(Debug, Default)]
struct EnvLayer {
    /// (variable, lower-cased key segments, value), sorted by variable.
    overrides: Vec<(String, Vec<String>, String)>,
    /// (key path as set, variable), filled by `apply`.
    applied: Vec<(String, String)>,
}

/// Sections whose keys are names the user chose.
const NAMED_SECTIONS: [&str; 3] = ["actions", "traffic_targets", "enrichments"];

/// `MLOPS_ALERT_ROUTER_*` variables that are not overrides but read by the CLI.
pub const ENV_VARIABLES: [&str; 2] = ["MLOPS_ALERT_ROUTER_CONFIG", "MLOPS_ALERT_ROUTER_TOKEN"];

impl EnvLayer {
    fn parse(env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let prefix = format!("{ENV_PREFIX}__");
        let single = format!("{ENV_PREFIX}_");
        let mut layer = Self::default();
        let mut errors = Vec::new();
        for (var, value) in env {
            if let Some(rest) = var.strip_prefix(&prefix) {
                let segments: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
                if segments
                    .iter()
                    .any(|s| s.is_empty() || s.starts_with('_') || s.ends_with('_'))
                {
                    errors.push(format!(
                        "{var}: empty key segment; write MLOPS_ALERT_ROUTER__SECTION__KEY with exactly two underscores between segments"
                    ));
                } else {
                    layer.overrides.push((var, segments, value));
                }
            } else if let Some(rest) = var.strip_prefix(&single) {
                let kubernetes_service_link = rest.starts_with("SERVICE_")
                    || rest == "PORT"
                    || rest
                        .strip_prefix("PORT_")
                        .is_some_and(|p| p.starts_with(|c: char| c.is_ascii_digit()));
                if !ENV_VARIABLES.contains(&var.as_str()) && !kubernetes_service_link {
                    errors.push(format!(
                        "{var}: unknown variable; config overrides are MLOPS_ALERT_ROUTER__SECTION__KEY (two underscores after the prefix), and the other variables are {}",
                        ENV_VARIABLES.join(", ")
                    ));
                }
            }
        }
        if !errors.is_empty() {
            errors.sort();
            return Err(ConfigError(errors));
        }
        // A stable order: the same environment gives the same result.
        layer.overrides.sort();
        Ok(layer)
    }

    /// Writes every override into the merged default + file.
    fn apply(&mut self, root: &mut serde_json::Value) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        for (var, segments, raw) in &self.overrides {
            match set_path(root, segments, raw) {
                Ok(path) => self.applied.push((path, var.clone())),
                Err(e) => errors.push(format!("{var}: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(errors))
        }
    }

    /// Appends the variable to every error about a key it set (or a key under
    /// it, or the named entry it changed).
    fn annotate(&self, mut err: ConfigError) -> ConfigError {
        for line in &mut err.0 {
            let Some((path, _)) = line.split_once(": ") else {
                continue;
            };
            let path = path.to_owned();
            let under = |p: &str, q: &str| {
                p == q
                    || p.strip_prefix(q)
                        .is_some_and(|r| r.starts_with('.') || r.starts_with('['))
            };
            let vars: Vec<&str> = self
                .applied
                .iter()
                .filter(|(set, _)| under(&path, set) || under(set, &path))
                .map(|(_, var)| var.as_str())
                .collect();
            if !vars.is_empty() {
                line.push_str(&format!(" (environment: {})", vars.join(", ")));
            }
        }
        err
    }
}

/// Sets `segments` (lower-cased) to `raw` in `root`; returns the key path set.
fn set_path(
    root: &mut serde_json::Value,
    segments: &[String],
    raw: &str,
) -> Result<String, String> {
    let mut path = Vec::with_capacity(segments.len());
    set_in(root, segments, 0, raw, &mut path)?;
    Ok(path.join("."))
}

/// One step of [`set_path`]: `node` is the value at `segments[..i]`.
fn set_in(
    node: &mut serde_json::Value,
    segments: &[String],
    i: usize,
    raw: &str,
    path: &mut Vec<String>,
) -> Result<(), String> {
    use serde_json::Value;
    if node.is_null() {
        *node = Value::Object(Default::default());
    }
    let here = if path.is_empty() {
        "the top level".to_owned()
    } else {
        path.join(".")
    };
    let segment = &segments[i];
    let Value::Object(map) = node else {
        return Err(format!(
            "{here} is not a section, so {segment:?} cannot be set inside it"
        ));
    };
    let key = if i == 1 && NAMED_SECTIONS.contains(&segments[0].as_str()) {
        let norm = |s: &str| s.to_lowercase().replace('-', "_");
        let found: Vec<&String> = map.keys().filter(|k| norm(k) == norm(segment)).collect();
        match found.as_slice() {
            [one] => (*one).clone(),
            [] => {
                let defined: Vec<&str> = map.keys().map(String::as_str).collect();
                return Err(format!(
                    "{here}.{segment}: no such entry (defined: {}); a variable can change an entry the config file or the default defines, not create one",
                    if defined.is_empty() { "none".to_owned() } else { defined.join(", ") }
                ));
            }
            many => {
                let names: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
                return Err(format!(
                    "{here}.{segment}: ambiguous, matches {} (`_` and `-` count as the same)",
                    names.join(" and ")
                ));
            }
        }
    } else {
        segment.clone()
    };
    path.push(key.clone());
    if i + 1 == segments.len() {
        let typed = typed_value(map.get(&key), raw);
        map.insert(key, typed);
        Ok(())
    } else {
        set_in(
            map.entry(key).or_insert(Value::Null),
            segments,
            i + 1,
            raw,
            path,
        )
    }
}

/// `raw` as the type of the value it replaces: a list is comma-separated, a
/// string stays a string, a number or boolean is parsed. A new key gets a
/// boolean or number if the text is one, else a string.
fn typed_value(existing: Option<&serde_json::Value>, raw: &str) -> serde_json::Value {
    use serde_json::Value;
    let guess = |s: &str| -> Value {
        let t = s.trim();
        match t.to_lowercase().as_str() {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
        if let Ok(n) = t.parse::<i64>() {
            return Value::from(n);
        }
        if let Ok(n) = t.parse::<u64>() {
            return Value::from(n);
        }
        if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
        Value::String(s.to_owned())
    };
    match existing {
        Some(Value::String(_)) => Value::String(raw.to_owned()),
        Some(Value::Bool(_) | Value::Number(_)) => guess(raw),
        Some(Value::Array(items)) => {
            let numbers_or_bools = items
                .first()
                .is_some_and(|v| v.is_number() || v.is_boolean());
            Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        if numbers_or_bools {
                            guess(s)
                        } else {
                            Value::String(s.to_owned())
                        }
                    })
                    .collect(),
            )
        }
        _ => guess(raw),
    }
}

/// Every `enrich` name in the tree must be a configured enrichment.
fn check_enrich_refs(
    route: &RouteConfig,
    path: &str,
    enrichments: &BTreeMap<String, EnrichmentConfig>,
    errors: &mut Vec<String>,
) {
    for (i, name) in route.enrich.iter().enumerate() {
        if !enrichments.contains_key(name) {
            errors.push(format!("{path}.enrich[{i}]: unknown enrichment {name:?}"));
        }
    }
    for (i, child) in route.routes.iter().enumerate() {
        check_enrich_refs(child, &format!("{path}.routes[{i}]"), enrichments, errors);
    }
}

/// The embedded default, minus what `user` redefines as a whole: a named
/// action, traffic target or enrichment, and the route tree, replace the
/// default's instead of merging key by key into it (a merge would mix, say, a
/// default `traffic_shift` action's `step` into a user's `log` action).
fn defaults_under(user: &str) -> Result<String, ConfigError> {
    let user: serde_yaml::Value = serde_yaml::from_str(user)
        .map_err(|e| ConfigError(vec![format!("config file is not valid YAML: {e}")]))?;
    let mut base: serde_yaml::Value = serde_yaml::from_str(DEFAULT_CONFIG)
        .map_err(|e| ConfigError(vec![format!("embedded default config: {e}")]))?;
    if let (Some(base), Some(user)) = (base.as_mapping_mut(), user.as_mapping()) {
        for section in ["actions", "traffic_targets", "enrichments"] {
            let (Some(theirs), Some(ours)) = (
                user.get(section).and_then(|v| v.as_mapping()),
                base.get_mut(section).and_then(|v| v.as_mapping_mut()),
            ) else {
                continue;
            };
            for key in theirs.keys() {
                ours.remove(key);
            }
        }
        if user.contains_key("route") {
            base.remove("route");
        }
    }
    serde_yaml::to_string(&base)
        .map_err(|e| ConfigError(vec![format!("embedded default config: {e}")]))
}

fn read_secret_file(path: &Path, key: &str) -> Result<String, ConfigError> {
    read_file(path, key).map_err(|e| ConfigError(vec![e]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        Settings::load_with_env(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn embedded_default_loads_without_any_file() {
        let s = Settings::load_with_env(None, Vec::new()).unwrap();
        assert_eq!(s.server.listen.port(), 9095);
        assert_eq!(s.ingest.dedup_window, Duration::from_secs(300));
        assert_eq!(s.server.grace_period, Duration::from_secs(10));
        assert!(s.actions.contains_key("log"));
    }

    #[test]
    fn file_and_env_layer_on_top_of_the_default() {
        let s = load(
            "server: {listen: '127.0.0.1:1234'}\nauth: {bearer_tokens: [a]}\n",
            &[
                ("MLOPS_ALERT_ROUTER__SERVER__GRACE_PERIOD", "3s"),
                ("MLOPS_ALERT_ROUTER__AUTH__BEARER_TOKENS", "x,y"),
            ],
        )
        .unwrap();
        assert_eq!(s.server.listen.port(), 1234);
        assert_eq!(s.server.grace_period, Duration::from_secs(3));
        let tokens: Vec<_> = s.auth.bearer_tokens.iter().map(|t| t.expose()).collect();
        assert_eq!(tokens, ["x", "y"]);
        // Untouched keys keep the embedded default.
        assert_eq!(s.storage.busy_timeout, Duration::from_secs(5));
    }

    #[test]
    fn unknown_key_is_rejected_with_its_path() {
        let err = load("server: {lisen: '127.0.0.1:1'}\n", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("server.lisen: unknown field `lisen`"),
            "{msg}"
        );
        let msg = load("colour: blue\n", &[]).unwrap_err().to_string();
        assert!(msg.starts_with("colour: unknown field `colour`"), "{msg}");
    }

    #[test]
    fn tls_ca_file_is_read_at_load_and_errors_name_key_file_and_source() {
        let s = load("{}\n", &[]).unwrap();
        assert_eq!(s.ca.extra_certificates(), 0, "system roots only by default");
        let msg = load("tls: {ca_file: /nonexistent/ca.pem}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("tls.ca_file: /nonexistent/ca.pem: cannot read"),
            "{msg}"
        );
        let msg = load(
            "{}\n",
            &[("MLOPS_ALERT_ROUTER__TLS__CA_FILE", "/nonexistent/env.pem")],
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("tls.ca_file: /nonexistent/env.pem"), "{msg}");
        assert!(msg.contains("MLOPS_ALERT_ROUTER__TLS__CA_FILE"), "{msg}");
        let msg = load("tls: {insecure_skip_verify: true}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("tls.insecure_skip_verify: unknown field"),
            "{msg}"
        );
    }

    #[test]
    fn bad_values_name_the_key_path() {
        let msg = load("ingest: {dedup_window: soon}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("ingest.dedup_window: invalid duration"),
            "{msg}"
        );
        let msg = load("server: {listen: nowhere}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("server.listen:"), "{msg}");
        let msg = load("worker: {concurrency: 0}\n", &[])
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "worker.concurrency: must be at least 1");
    }

    #[test]
    fn server_limits_have_defaults_and_are_checked() {
        let s = Settings::load_with_env(None, Vec::new()).unwrap();
        assert_eq!(s.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.server.body_read_timeout, Duration::from_secs(30));
        assert_eq!(s.server.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.server.max_connections, 512);
        let msg = load("server: {max_connections: 0}\n", &[])
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "server.max_connections: must be at least 1");
        let msg = load("server: {header_read_timeout: 0s}\n", &[])
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "server.header_read_timeout: must be greater than 0");
    }

    #[test]
    fn retention_defaults_and_bounds() {
        let s = load("", &[]).unwrap();
        assert_eq!(s.storage.retention, Duration::from_secs(120 * 3600));
        assert_eq!(
            s.storage.dead_letter_retention,
            Duration::from_secs(720 * 3600)
        );
        let msg = load(
            "storage: {retention: 48h, dead_letter_retention: 24h}\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            msg,
            "storage.dead_letter_retention: must not be shorter than storage.retention"
        );
        let msg = load("storage: {retention: 0s}\n", &[])
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "storage.retention: must be greater than 0");
    }

    #[test]
    fn secrets_are_read_from_files_and_redacted_in_the_rendering() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "tok-one\n\n tok-two \n").unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hunter2\n").unwrap();
        let yaml = format!(
            "auth:\n  bearer_tokens_file: {}\n  basic_users: [{{username: am, password_file: {}}}]\n",
            tokens.display(),
            pw.display()
        );
        let s = load(&yaml, &[]).unwrap();
        let got: Vec<_> = s.auth.bearer_tokens.iter().map(|t| t.expose()).collect();
        assert_eq!(got, ["tok-one", "tok-two"]);
        assert_eq!(
            s.auth.basic_users[0].password.as_ref().unwrap().expose(),
            "hunter2"
        );
        let rendered = s.to_redacted_yaml();
        for secret in ["tok-one", "tok-two", "hunter2"] {
            assert!(!rendered.contains(secret), "{secret} leaked:\n{rendered}");
        }
    }

    #[test]
    fn a_named_entry_or_the_route_in_a_file_replaces_the_default_one() {
        // The default routes candidates to a traffic_shift `rollback`; a file
        // that defines its own `rollback` and `route` gets exactly those.
        let s = load(
            "actions: {rollback: {type: log}}\nroute: {actions: [rollback]}\n",
            &[],
        )
        .unwrap();
        assert!(matches!(s.actions["rollback"], ActionConfig::Log(_)));
        assert!(s.route.routes.is_empty());
        assert_eq!(s.route.actions, Some(vec!["rollback".to_string()]));
        // Untouched entries keep their defaults.
        assert!(s.actions.contains_key("log"));
    }

    fn load_env(yaml: &str, env: &[(&str, &str)]) -> Result<Settings, String> {
        load(yaml, env).map_err(|e| e.to_string())
    }

    const CHAT: &str = "actions:\n  ml-slack: {type: webhook, url: 'https://file.example/'}\n  log: {type: log}\nroute: {actions: [ml-slack]}\n";

    fn webhook_url(s: &Settings, name: &str) -> String {
        match &s.actions[name] {
            ActionConfig::Webhook(c) => c.url.as_ref().unwrap().expose().to_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn env_segment_of_a_named_entry_matches_with_underscore_or_hyphen() {
        for var in [
            "MLOPS_ALERT_ROUTER__ACTIONS__ML_SLACK__URL",
            "MLOPS_ALERT_ROUTER__ACTIONS__ML-SLACK__URL",
            "MLOPS_ALERT_ROUTER__ACTIONS__ml_slack__URL",
        ] {
            let s = load_env(CHAT, &[(var, "https://env.example/")]).unwrap();
            assert_eq!(webhook_url(&s, "ml-slack"), "https://env.example/", "{var}");
            // No second, broken entry appears.
            let names: Vec<_> = s.actions.keys().map(String::as_str).collect();
            assert!(!names.contains(&"ml_slack"), "{var}: {names:?}");
        }
    }

    #[test]
    fn env_cannot_create_a_named_entry_and_the_error_names_the_variable() {
        let msg = load_env(
            CHAT,
            &[("MLOPS_ALERT_ROUTER__ACTIONS__ML_SLAK__URL", "https://x/")],
        )
        .unwrap_err();
        assert!(
            msg.starts_with("MLOPS_ALERT_ROUTER__ACTIONS__ML_SLAK__URL: actions.ml_slak: no such entry (defined: "),
            "{msg}"
        );
        assert!(msg.contains("ml-slack"), "{msg}");
        for section in ["TRAFFIC_TARGETS", "ENRICHMENTS"] {
            let var = format!("MLOPS_ALERT_ROUTER__{section}__NEW__X");
            let msg = load_env("{}", &[(&var, "1")]).unwrap_err();
            assert!(msg.starts_with(&format!("{var}: ")), "{msg}");
            assert!(msg.contains("no such entry"), "{msg}");
        }
    }

    #[test]
    fn env_name_matching_two_entries_is_ambiguous() {
        let yaml = "actions:\n  a-b: {type: log}\n  a_b: {type: log}\nroute: {actions: [a-b]}\n";
        let msg = load_env(yaml, &[("MLOPS_ALERT_ROUTER__ACTIONS__A_B__TYPE", "log")]).unwrap_err();
        assert!(msg.contains("ambiguous"), "{msg}");
        assert!(
            msg.starts_with("MLOPS_ALERT_ROUTER__ACTIONS__A_B__TYPE: "),
            "{msg}"
        );
    }

    #[test]
    fn env_errors_about_values_name_the_variable() {
        // A bad value (serde), a failed check (validate) and an unknown key.
        let cases = [
            (
                "MLOPS_ALERT_ROUTER__SERVER__LISTEN",
                "nowhere",
                "server.listen: ",
            ),
            (
                "MLOPS_ALERT_ROUTER__WORKER__CONCURRENCY",
                "0",
                "worker.concurrency: must be at least 1",
            ),
            (
                "MLOPS_ALERT_ROUTER__SERVER__LISTN",
                "127.0.0.1:1",
                "server.listn: unknown field",
            ),
            (
                "MLOPS_ALERT_ROUTER__ACTIONS__ML_SLACK__URL",
                "not a url",
                "actions.ml-slack",
            ),
        ];
        for (var, value, want) in cases {
            let msg = load_env(CHAT, &[(var, value)]).unwrap_err();
            assert!(msg.contains(want), "{var}: {msg}");
            assert!(
                msg.contains(&format!("(environment: {var})")),
                "{var}: {msg}"
            );
        }
        // An error the variable did not cause does not name it.
        let msg = load_env(
            "worker: {concurrency: 0}\n",
            &[("MLOPS_ALERT_ROUTER__SERVER__GRACE_PERIOD", "3s")],
        )
        .unwrap_err();
        assert_eq!(msg, "worker.concurrency: must be at least 1");
    }

    #[test]
    fn env_values_take_the_type_of_the_key_they_replace() {
        let s = load_env(
            "{}",
            &[
                ("MLOPS_ALERT_ROUTER__AUTH__BEARER_TOKENS", "12345, abc"),
                ("MLOPS_ALERT_ROUTER__WORKER__ENABLED", "FALSE"),
                ("MLOPS_ALERT_ROUTER__WORKER__CONCURRENCY", "7"),
                ("MLOPS_ALERT_ROUTER__LOG__LEVEL", "debug"),
                // A section the default does not have is created.
                (
                    "MLOPS_ALERT_ROUTER__PROMETHEUS__URL",
                    "http://127.0.0.1:9090",
                ),
            ],
        )
        .unwrap();
        let tokens: Vec<_> = s.auth.bearer_tokens.iter().map(|t| t.expose()).collect();
        assert_eq!(tokens, ["12345", "abc"]);
        assert!(!s.worker.enabled);
        assert_eq!(s.worker.concurrency, 7);
        assert_eq!(s.prometheus.unwrap().url, "http://127.0.0.1:9090");
    }

    #[test]
    fn unknown_single_underscore_variables_are_errors_but_known_ones_are_not() {
        let msg =
            load_env("{}", &[("MLOPS_ALERT_ROUTER_SERVER__LISTEN", "0.0.0.0:1")]).unwrap_err();
        assert!(
            msg.starts_with("MLOPS_ALERT_ROUTER_SERVER__LISTEN: unknown variable; config overrides are MLOPS_ALERT_ROUTER__SECTION__KEY"),
            "{msg}"
        );
        load_env(
            "{}",
            &[
                ("MLOPS_ALERT_ROUTER_CONFIG", "/x.yaml"),
                ("MLOPS_ALERT_ROUTER_TOKEN", "t"),
                // What Kubernetes injects for a Service named mlops-alert-router.
                ("MLOPS_ALERT_ROUTER_SERVICE_HOST", "10.0.0.1"),
                ("MLOPS_ALERT_ROUTER_SERVICE_PORT", "9095"),
                ("MLOPS_ALERT_ROUTER_SERVICE_PORT_HTTP", "9095"),
                ("MLOPS_ALERT_ROUTER_PORT", "tcp://10.0.0.1:9095"),
                ("MLOPS_ALERT_ROUTER_PORT_9095_TCP_ADDR", "10.0.0.1"),
                ("OTHER_VARIABLE", "x"),
            ],
        )
        .unwrap();
        let msg = load_env("{}", &[("MLOPS_ALERT_ROUTER___SERVER__LISTEN", "x")]).unwrap_err();
        assert!(msg.contains("empty key segment"), "{msg}");
    }

    #[test]
    fn env_cannot_descend_into_a_value() {
        let msg = load_env("{}", &[("MLOPS_ALERT_ROUTER__LOG__LEVEL__X", "1")]).unwrap_err();
        assert!(
            msg.starts_with("MLOPS_ALERT_ROUTER__LOG__LEVEL__X: log.level is not a section"),
            "{msg}"
        );
    }

    #[test]
    fn missing_secret_file_names_the_key() {
        let msg = load("auth: {bearer_tokens_file: /nonexistent/t}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("auth.bearer_tokens_file: cannot read /nonexistent/t"),
            "{msg}"
        );
    }
}
