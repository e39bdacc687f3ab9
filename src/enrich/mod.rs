//! Enrich: the context a person (and a traffic guard) needs about an alert —
//! how each variant of its experiment is doing right now, from Prometheus —
//! plus links to the dashboard, the graph and a pre-filled silence.
//!
//! Only the enrichments named by an alert's matched routes run. Queries are
//! templates over the alert's labels ([`template`]), executed by a cached,
//! coalescing client ([`prometheus`]). A failure never stops the alert: its
//! context records `{"error": …}` for that enrichment.

mod links;
pub mod prometheus;
pub mod template;

use crate::ingest::{Alert, Notification};
use crate::metrics::Metrics;
use crate::secret::Secret;
use prometheus::{PrometheusClient, QueryResult};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use template::{QueryTemplate, TemplateVars};

pub use links::LinkSettings;

/// `enrichments.<name>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichmentConfig {
    /// PromQL, a minijinja template over `labels`, `annotations`,
    /// `common_labels`, `group_labels`; values are escaped.
    pub query: String,
    /// Key a vector result by this label (a map variant → number); omit for a scalar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// `prometheus.*`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSettings {
    /// Base URL, e.g. `http://prometheus-operated.monitoring.svc:9090`.
    pub url: String,
    #[serde(default = "default_timeout", with = "crate::conf::duration")]
    pub timeout: Duration,
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    #[serde(default = "default_ttl", with = "crate::conf::duration")]
    pub cache_ttl: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<crate::conf::BasicUser>,
    #[serde(default)]
    pub tls: TlsSettings,
    /// Most bytes of one query's answer; over it the enrichment fails.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Most series in one query's answer; over it the enrichment fails.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
}

/// `prometheus.tls.*` (rustls), on top of the shared `tls.*` policy.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// CA certificates (PEM, one or several) trusted for Prometheus only, in
    /// addition to the system roots and `tls.ca_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_concurrency() -> usize {
    8
}
fn default_max_response_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_series() -> usize {
    1000
}
fn default_ttl() -> Duration {
    Duration::from_secs(15)
}

/// One enrichment's outcome for one alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Enriched {
    /// A number (scalar, or a vector of one series without `by`).
    Number { query: String, value: f64 },
    /// Variant → number (a vector keyed by `by`).
    Map {
        query: String,
        values: BTreeMap<String, f64>,
    },
    /// A string result.
    Text { query: String, value: String },
    /// Why there is no value; `query` is empty when it could not be rendered.
    Error { query: String, error: String },
}

/// JSON cannot hold NaN or ±Inf; they are written as Prometheus writes them.
fn number_json(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v.is_infinite() {
        json!(if v > 0.0 { "+Inf" } else { "-Inf" })
    } else {
        json!(v)
    }
}

impl Enriched {
    /// The value as templates and guards see it (`context.<name>`).
    pub fn value(&self) -> Value {
        match self {
            Enriched::Number { value, .. } => number_json(*value),
            Enriched::Map { values, .. } => Value::Object(
                values
                    .iter()
                    .map(|(k, v)| (k.clone(), number_json(*v)))
                    .collect(),
            ),
            Enriched::Text { value, .. } => json!(value),
            Enriched::Error { error, .. } => json!({ "error": error }),
        }
    }

    /// True when the enrichment has no value.
    pub fn is_error(&self) -> bool {
        matches!(self, Enriched::Error { .. })
    }

    fn plan(&self) -> Value {
        let query = match self {
            Enriched::Number { query, .. }
            | Enriched::Map { query, .. }
            | Enriched::Text { query, .. }
            | Enriched::Error { query, .. } => query,
        };
        match self {
            Enriched::Error { error, .. } => json!({ "query": query, "error": error }),
            _ => json!({ "query": query, "value": self.value() }),
        }
    }
}

/// Everything enrichment knows about one alert.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub values: BTreeMap<String, Enriched>,
    pub links: BTreeMap<String, String>,
}

impl Context {
    /// `context` as action templates and guards see it: `context.<name>` is the
    /// value (number, map or `{"error": …}`), `context.links.<kind>` a URL.
    pub fn template_value(&self) -> Value {
        let mut m: Map<String, Value> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.value()))
            .collect();
        m.insert("links".into(), json!(self.links));
        Value::Object(m)
    }

    /// `context` in the dry-run plan and the ledger: each rendered query with
    /// its value or error, and the links.
    pub fn plan_value(&self) -> Value {
        let mut m: Map<String, Value> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.plan()))
            .collect();
        m.insert("links".into(), json!(self.links));
        Value::Object(m)
    }

    /// Names of enrichments that failed.
    pub fn failed(&self) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(_, v)| v.is_error())
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

struct Compiled {
    template: QueryTemplate,
    by: Option<String>,
}

/// Runs enrichments. Built once at startup.
pub struct Enricher {
    enrichments: BTreeMap<String, Compiled>,
    client: Option<Arc<PrometheusClient>>,
    links: LinkSettings,
    metrics: Arc<Metrics>,
}

/// Compiles every enrichment template; errors name `enrichments.<name>.query`.
pub fn compile_all(
    config: &BTreeMap<String, EnrichmentConfig>,
) -> Result<BTreeMap<String, QueryTemplate>, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = BTreeMap::new();
    for (name, c) in config {
        match QueryTemplate::compile(&c.query) {
            Ok(t) => {
                out.insert(name.clone(), t);
            }
            Err(e) => errors.push(format!("enrichments.{name}.query: {e}")),
        }
        if c.by.as_deref().is_some_and(str::is_empty) {
            errors.push(format!("enrichments.{name}.by: must not be empty"));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

impl Enricher {
    /// Builds the enricher; `prometheus` may be absent when no enrichment is configured.
    pub fn new(
        config: &BTreeMap<String, EnrichmentConfig>,
        prometheus: Option<&PrometheusSettings>,
        links: LinkSettings,
        metrics: Arc<Metrics>,
        tls: &crate::outbound::CaPolicy,
    ) -> anyhow::Result<Self> {
        let templates = compile_all(config).map_err(|e| anyhow::anyhow!(e.join("\n")))?;
        let enrichments = templates
            .into_iter()
            .map(|(name, template)| {
                let by = config.get(&name).and_then(|c| c.by.clone());
                (name, Compiled { template, by })
            })
            .collect();
        let client = match prometheus {
            Some(p) => Some(Arc::new(PrometheusClient::new(p, metrics.clone(), tls)?)),
            None => None,
        };
        Ok(Self {
            enrichments,
            client,
            links,
            metrics,
        })
    }

    /// The context of one alert for the named enrichments (run concurrently).
    pub async fn context(&self, names: &[String], n: &Notification, alert: &Alert) -> Context {
        let vars = TemplateVars {
            labels: &alert.labels,
            annotations: &alert.annotations,
            common_labels: &n.common_labels,
            group_labels: &n.group_labels,
        };
        let runs = names.iter().map(|name| async {
            let value = self.one(name, &vars).await;
            if value.is_error() {
                self.metrics.enrichment_failure(name);
            }
            (name.clone(), value)
        });
        let values = futures_util::future::join_all(runs)
            .await
            .into_iter()
            .collect();
        Context {
            values,
            links: self.links.for_alert(n, alert),
        }
    }

    async fn one(&self, name: &str, vars: &TemplateVars<'_>) -> Enriched {
        let Some(compiled) = self.enrichments.get(name) else {
            return Enriched::Error {
                query: String::new(),
                error: format!("enrichment {name:?} is not configured"),
            };
        };
        let query = match compiled.template.render(vars) {
            Ok(q) => q,
            Err(error) => {
                return Enriched::Error {
                    query: String::new(),
                    error,
                }
            }
        };
        let Some(client) = &self.client else {
            return Enriched::Error {
                query,
                error: "prometheus.url is not configured".into(),
            };
        };
        match client.query(&query).await {
            Ok(result) => shape(query, result, compiled.by.as_deref()),
            Err(e) => Enriched::Error {
                query,
                error: e.to_string(),
            },
        }
    }
}

/// Turns a query result into a number, a map keyed by `by`, or text.
fn shape(query: String, result: QueryResult, by: Option<&str>) -> Enriched {
    match (result, by) {
        (QueryResult::Scalar(value), _) => Enriched::Number { query, value },
        (QueryResult::String(value), _) => Enriched::Text { query, value },
        (QueryResult::Vector(series), Some(by)) => {
            let mut values = BTreeMap::new();
            for (labels, v) in series {
                let key = labels.get(by).cloned().unwrap_or_default();
                if values.insert(key.clone(), v).is_some() {
                    return Enriched::Error {
                        query,
                        error: format!(
                            "several series have {by}={key:?}; aggregate the query by {by} (e.g. sum by ({by}) (…))"
                        ),
                    };
                }
            }
            Enriched::Map { query, values }
        }
        (QueryResult::Vector(series), None) => match series.as_slice() {
            [(_, value)] => Enriched::Number {
                query,
                value: *value,
            },
            [] => Enriched::Error {
                query,
                error: "no data: the query returned no series".into(),
            },
            many => Enriched::Error {
                query,
                error: format!(
                    "the query returned {} series; set `by` to key them by a label",
                    many.len()
                ),
            },
        },
    }
}
