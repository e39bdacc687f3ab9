//! A client for Prometheus' instant-query API, with a TTL cache and in-flight
//! coalescing keyed by the rendered query, and a bound on concurrent queries.
//!
//! A storm of alerts for one experiment renders the same few queries; each
//! distinct query goes to Prometheus once per TTL, however many alerts ask.

use super::PrometheusSettings;
use crate::metrics::Metrics;
use crate::outbound::{Kind, Options, OutboundError, Scrubber, Transport};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;

/// One query's result, as Prometheus typed it. NaN and ±Inf are kept.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    /// Instant vector: (labels, value) per series.
    Vector(Vec<(BTreeMap<String, String>, f64)>),
    Scalar(f64),
    String(String),
}

/// Why a query gave no result. Each message names the destination
/// (`GET http://host:port/api/v1/query`, never credentials) and the cause.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("prometheus did not answer: {0}")]
    Timeout(String),
    #[error("prometheus unreachable: {0}")]
    Unreachable(String),
    #[error("prometheus answered {message}")]
    Http { status: u16, message: String },
    #[error("prometheus query failed ({error_type}): {message}")]
    Query { error_type: String, message: String },
    #[error("prometheus answered something that is not a query result: {0}")]
    Garbage(String),
    #[error("prometheus answer refused: {0}")]
    TooLarge(String),
}

impl QueryError {
    /// The `outcome` label of `enrichment_queries_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            QueryError::Timeout(_) => "timeout",
            _ => "error",
        }
    }

    fn from_outbound(e: OutboundError) -> Self {
        match e.kind {
            Kind::Timeout => QueryError::Timeout(e.message),
            Kind::TooLarge => QueryError::TooLarge(e.message),
            Kind::Status(status) => {
                // Prometheus explains a failed query in a JSON body.
                match serde_json::from_str::<Envelope>(&e.body) {
                    Ok(env) if env.status == "error" => QueryError::Query {
                        error_type: env.error_type.unwrap_or_default(),
                        message: env.error.unwrap_or_default(),
                    },
                    _ => QueryError::Http {
                        status,
                        message: e.message,
                    },
                }
            }
            Kind::Redirect(status) => QueryError::Http {
                status,
                message: e.message,
            },
            Kind::Incomplete(_) if e.message.contains("no answer within") => {
                QueryError::Timeout(e.message)
            }
            Kind::Request | Kind::Connect | Kind::Network | Kind::Incomplete(_) => {
                QueryError::Unreachable(e.message)
            }
        }
    }
}

type Answer = Result<QueryResult, QueryError>;

struct Entry {
    cell: Arc<OnceCell<(Instant, Answer)>>,
}

/// The client. Cheap to share behind an `Arc`.
pub struct PrometheusClient {
    transport: Transport,
    query_url: String,
    auth: Option<(String, Option<String>, bool)>,
    max_series: usize,
    ttl: Duration,
    limit: Semaphore,
    cache: Mutex<HashMap<String, Entry>>,
    metrics: Arc<Metrics>,
}

impl PrometheusClient {
    /// Builds the HTTP client (rustls) from `prometheus.*`: the shared CA
    /// policy (`tls`) plus `prometheus.tls.ca_file`.
    pub fn new(
        settings: &PrometheusSettings,
        metrics: Arc<Metrics>,
        tls: &crate::outbound::CaPolicy,
    ) -> anyhow::Result<Self> {
        let mut builder = tls.builder();
        if let Some(ca) = &settings.tls.ca_file {
            let certs = crate::outbound::read_ca_file(ca, "prometheus.tls.ca_file")
                .map_err(|e| anyhow::anyhow!(e))?;
            builder = crate::outbound::add_roots(builder, &certs);
        }
        if settings.tls.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let mut scrubber = Scrubber::new();
        if let Ok(url) = url::Url::parse(&settings.url) {
            scrubber.add_url_credentials(&url);
        }
        let auth = if let Some(token) = &settings.bearer_token {
            scrubber.add(token.expose());
            Some((token.expose().to_owned(), None, true))
        } else {
            settings.basic_auth.as_ref().map(|b| {
                if let Some(p) = &b.password {
                    scrubber.add_basic(&b.username, p.expose());
                }
                (
                    b.username.clone(),
                    b.password.as_ref().map(|p| p.expose().to_owned()),
                    false,
                )
            })
        };
        let options = Options::new(settings.timeout, settings.max_response_bytes)
            .setting("prometheus.max_response_bytes");
        let transport = Transport::with_builder(builder, options, scrubber)
            .map_err(|e| anyhow::anyhow!("prometheus: {e}"))?;
        Ok(Self {
            transport,
            query_url: format!("{}/api/v1/query", settings.url.trim_end_matches('/')),
            auth,
            max_series: settings.max_series,
            ttl: settings.cache_ttl,
            limit: Semaphore::new(settings.max_concurrency),
            cache: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// The result of `query`: from the cache if fresh, from the request in flight
    /// if another caller already asked, else from Prometheus.
    pub async fn query(&self, query: &str) -> Answer {
        let cell = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let fresh = cache.get(query).is_some_and(|e| match e.cell.get() {
                Some((at, Ok(_))) => now.duration_since(*at) < self.ttl,
                // A failure is shared with whoever was waiting, never cached.
                Some((_, Err(_))) => false,
                None => true,
            });
            if fresh {
                self.metrics.enrichment_cache_hits.inc();
            } else {
                cache.insert(
                    query.to_owned(),
                    Entry {
                        cell: Arc::new(OnceCell::new()),
                    },
                );
            }
            if cache.len() > 10_000 {
                let ttl = self.ttl;
                cache.retain(|_, e| {
                    e.cell
                        .get()
                        .is_none_or(|(at, _)| now.duration_since(*at) < ttl)
                });
            }
            // Inserted just above when absent.
            cache.get(query).map(|e| e.cell.clone())
        };
        let Some(cell) = cell else {
            return self.fetch(query).await;
        };
        let (_, answer) = cell
            .get_or_init(|| async { (Instant::now(), self.fetch(query).await) })
            .await;
        answer.clone()
    }

    async fn fetch(&self, query: &str) -> Answer {
        let started = std::time::Instant::now();
        let answer = match self.limit.acquire().await {
            Ok(_permit) => self.send(query).await,
            Err(_) => Err(QueryError::Unreachable("client closed".into())),
        };
        let outcome = match &answer {
            Ok(_) => "success",
            Err(e) => e.outcome(),
        };
        self.metrics.enrichment_query(outcome, started.elapsed());
        answer
    }

    async fn send(&self, query: &str) -> Answer {
        let mut request = self
            .transport
            .client()
            .get(&self.query_url)
            .query(&[("query", query)]);
        match &self.auth {
            Some((token, None, true)) => request = request.bearer_auth(token),
            Some((user, password, false)) => request = request.basic_auth(user, password.as_ref()),
            _ => {}
        }
        let answer = self
            .transport
            .send(request)
            .await
            .map_err(QueryError::from_outbound)?;
        parse_answer_limited(answer.status.as_u16(), &answer.body, self.max_series)
            .map_err(|e| self.scrubbed(e))
    }

    /// A parse error quotes the answer, which may quote the request: scrubbed
    /// and cut like any error.
    fn scrubbed(&self, e: QueryError) -> QueryError {
        let clean = |m: String| {
            self.transport
                .scrubber()
                .scrub_clip(&m, crate::outbound::ERROR_BODY_KEEP, false)
        };
        match e {
            QueryError::Garbage(m) => QueryError::Garbage(clean(m)),
            QueryError::Query {
                error_type,
                message,
            } => QueryError::Query {
                error_type: clean(error_type),
                message: clean(message),
            },
            QueryError::Http { status, message } => QueryError::Http {
                status,
                message: clean(message),
            },
            other => other,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Sample>),
    Scalar((f64, String)),
    String((f64, String)),
    Matrix(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Sample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

fn number(s: &str) -> Result<f64, QueryError> {
    // Prometheus writes "NaN", "+Inf", "-Inf"; Rust's parser takes "inf", "+inf", "NaN".
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse()
            .map_err(|_| QueryError::Garbage(format!("sample value {s:?} is not a number"))),
    }
}

/// Only counts a vector's series, without building them.
#[derive(Deserialize)]
struct Count {
    #[serde(default)]
    data: Option<CountData>,
}

#[derive(Deserialize)]
struct CountData {
    #[serde(default, rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Option<Vec<serde::de::IgnoredAny>>,
}

/// Parses an HTTP answer of `/api/v1/query` (no series limit).
pub fn parse_answer(status: u16, body: &[u8]) -> Answer {
    parse_answer_limited(status, body, usize::MAX)
}

/// Parses an HTTP answer of `/api/v1/query`; a vector of more than
/// `max_series` series is refused before its series are built.
pub fn parse_answer_limited(status: u16, body: &[u8], max_series: usize) -> Answer {
    if let Ok(Count {
        data: Some(CountData {
            result_type,
            result: Some(series),
        }),
    }) = serde_json::from_slice::<Count>(body)
    {
        if matches!(result_type.as_str(), "vector" | "matrix") && series.len() > max_series {
            return Err(QueryError::TooLarge(format!(
                "the query returned {} series, over the limit of {max_series} (prometheus.max_series); aggregate it (e.g. sum by (variant) (…))",
                series.len()
            )));
        }
    }
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) if (200..300).contains(&status) => return Err(QueryError::Garbage(e.to_string())),
        Err(_) => {
            return Err(QueryError::Http {
                status,
                message: format!(
                    "HTTP {status}: {}",
                    crate::text::clip(&String::from_utf8_lossy(body), 200)
                ),
            })
        }
    };
    if envelope.status != "success" {
        return Err(QueryError::Query {
            error_type: envelope.error_type.unwrap_or_default(),
            message: envelope.error.unwrap_or_default(),
        });
    }
    if !(200..300).contains(&status) {
        return Err(QueryError::Http {
            status,
            message: format!("HTTP {status} with a success status in the body"),
        });
    }
    match envelope.data {
        Some(Data::Vector(samples)) => samples
            .into_iter()
            .map(|s| Ok((s.metric, number(&s.value.1)?)))
            .collect::<Result<Vec<_>, _>>()
            .map(QueryResult::Vector),
        Some(Data::Scalar((_, v))) => Ok(QueryResult::Scalar(number(&v)?)),
        Some(Data::String((_, v))) => Ok(QueryResult::String(v)),
        Some(Data::Matrix(_)) => Err(QueryError::Garbage(
            "a range vector (matrix); enrichment queries must return an instant vector or scalar"
                .into(),
        )),
        None => Err(QueryError::Garbage("no data in a success answer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_scalars_strings_and_special_floats_parse() {
        let v = parse_answer(
            200,
            br#"{"status":"success","data":{"resultType":"vector","result":[
              {"metric":{"model_name":"a"},"value":[1.5,"NaN"]},
              {"metric":{"model_name":"b"},"value":[1.5,"+Inf"]},
              {"metric":{"model_name":"c"},"value":[1.5,"-Inf"]},
              {"metric":{},"value":[1.5,"71.25"]}]}}"#,
        )
        .unwrap();
        let QueryResult::Vector(series) = v else {
            panic!("{v:?}")
        };
        assert!(series[0].1.is_nan());
        assert_eq!(series[1].1, f64::INFINITY);
        assert_eq!(series[2].1, f64::NEG_INFINITY);
        assert_eq!(series[3].1, 71.25);
        assert_eq!(
            parse_answer(
                200,
                br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#
            ),
            Ok(QueryResult::Scalar(2.0))
        );
        assert_eq!(
            parse_answer(
                200,
                br#"{"status":"success","data":{"resultType":"string","result":[1,"hi"]}}"#
            ),
            Ok(QueryResult::String("hi".into()))
        );
    }

    #[test]
    fn a_vector_over_max_series_is_refused_naming_the_limit() {
        let body = |n: usize| {
            let series: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"metric":{{"model_name":"m{i}"}},"value":[1,"1"]}}"#))
                .collect();
            format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
                series.join(",")
            )
        };
        assert!(matches!(
            parse_answer_limited(200, body(3).as_bytes(), 3),
            Ok(QueryResult::Vector(v)) if v.len() == 3
        ));
        assert_eq!(
            parse_answer_limited(200, body(4).as_bytes(), 3)
                .unwrap_err()
                .to_string(),
            "prometheus answer refused: the query returned 4 series, over the limit of 3 (prometheus.max_series); aggregate it (e.g. sum by (variant) (…))"
        );
    }

    #[test]
    fn errors_and_garbage_are_told_apart() {
        assert!(matches!(
            parse_answer(
                400,
                br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#
            ),
            Err(QueryError::Query { .. })
        ));
        assert!(matches!(
            parse_answer(502, b"<html>bad gateway</html>"),
            Err(QueryError::Http { status: 502, .. })
        ));
        assert!(matches!(
            parse_answer(200, b"not json"),
            Err(QueryError::Garbage(_))
        ));
        assert!(matches!(
            parse_answer(200, br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#),
            Err(QueryError::Garbage(_))
        ));
    }
}
