//! Kubernetes targets through kube-rs: a Seldon `Experiment` or an Istio
//! `VirtualService`. A change is one JSON patch whose `test` operations pin
//! the weights it read (so a concurrent writer makes it fail with 422/409:
//! read again, decide again) and which records the shift in an annotation.

use super::policy::WeightMap;
use super::target::{ShiftMark, Snapshot, TargetError, TrafficTarget, MARK_ANNOTATION};
use async_trait::async_trait;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

/// (variant, weight, JSON pointer of the entry in the object).
type Entry = (String, u32, String);

/// Which object, and how its weights are laid out.
#[derive(Debug, Clone)]
pub enum Layout {
    /// `spec.candidates[].{name, weight}`, `spec.default`.
    Seldon,
    /// `spec.http[name=route].route[].{destination.subset, weight}`.
    Istio { route: String, default: String },
}

/// Where the API server is: in-cluster config or kubeconfig, unless a URL is
/// given (`kubernetes.api_url`, e.g. `kubectl proxy` or the tests' stand-in).
#[derive(Debug, Clone, Default)]
pub struct ClientSource {
    pub api_url: Option<String>,
}

/// Most bytes of one answer of the API server. An object is at most about
/// 1.5 MiB (etcd's default request limit); over this the call fails (kube-rs
/// collects each answer whole, so the cap is enforced on the body stream
/// under it, not after it).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Longest a single API call (a GET or a PATCH, body included) may take.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl ClientSource {
    async fn client(&self) -> Result<kube::Client, TargetError> {
        let mut config = match &self.api_url {
            Some(url) => {
                let uri = url.parse().map_err(|e| {
                    TargetError::Permanent(format!("kubernetes.api_url {url:?}: {e}"))
                })?;
                kube::Config::new(uri)
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| TargetError::Transient(format!("no Kubernetes client: {e}")))?,
        };
        // kube-rs leaves reads unbounded (for watches); these calls are short.
        config.read_timeout = Some(CALL_TIMEOUT);
        config.write_timeout = Some(CALL_TIMEOUT);
        let builder = kube::client::ClientBuilder::try_from(config)
            .map_err(|e| TargetError::Transient(format!("no Kubernetes client: {e}")))?;
        // Every answer's body is read through a byte limit.
        let cap = tower::util::MapResponseLayer::new(
            |response: http::Response<Box<kube::client::DynBody>>| {
                response.map(|body| http_body_util::Limited::new(body, MAX_RESPONSE_BYTES))
            },
        );
        Ok(builder.with_layer(&cap).build())
    }
}

/// Bounds one API call by [`CALL_TIMEOUT`].
async fn bounded<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, TargetError>>,
) -> Result<T, TargetError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(TargetError::Transient(format!(
                "{what}: the API server did not answer within {}",
                humantime::format_duration(CALL_TIMEOUT)
            )))
        })
}

/// A weights object in Kubernetes.
pub struct KubeWeights {
    namespace: String,
    name: String,
    layout: Layout,
    source: ClientSource,
    /// Built on first use: startup and `check-config` need no cluster.
    client: OnceCell<kube::Client>,
}

impl KubeWeights {
    /// A target; nothing is contacted until the first read.
    pub fn new(namespace: &str, name: &str, layout: Layout, source: ClientSource) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            layout,
            source,
            client: OnceCell::new(),
        }
    }

    fn resource(&self) -> ApiResource {
        let (group, version, kind, plural) = match self.layout {
            Layout::Seldon => ("mlops.seldon.io", "v1alpha1", "Experiment", "experiments"),
            Layout::Istio { .. } => (
                "networking.istio.io",
                "v1",
                "VirtualService",
                "virtualservices",
            ),
        };
        ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(group, version, kind),
            plural,
        )
    }

    async fn api(&self) -> Result<Api<DynamicObject>, TargetError> {
        let client = self
            .client
            .get_or_try_init(|| self.source.client())
            .await?
            .clone();
        Ok(Api::namespaced_with(
            client,
            &self.namespace,
            &self.resource(),
        ))
    }

    /// The entries in object order, and the default variant.
    fn entries(&self, obj: &Value) -> Result<(Vec<Entry>, Option<String>), TargetError> {
        let bad = |what: &str| TargetError::Permanent(format!("{}: {what}", self.describe()));
        match &self.layout {
            Layout::Seldon => {
                let spec = &obj["spec"];
                let candidates = spec["candidates"]
                    .as_array()
                    .ok_or_else(|| bad("no spec.candidates"))?;
                let mut out = Vec::new();
                for (i, c) in candidates.iter().enumerate() {
                    let name = c["name"]
                        .as_str()
                        .ok_or_else(|| bad("a candidate has no name"))?;
                    let weight = c["weight"]
                        .as_u64()
                        .ok_or_else(|| bad("a candidate has no weight"))?;
                    out.push((
                        name.to_owned(),
                        weight as u32,
                        format!("/spec/candidates/{i}"),
                    ));
                }
                Ok((out, spec["default"].as_str().map(str::to_owned)))
            }
            Layout::Istio { route, default } => {
                let http = obj["spec"]["http"]
                    .as_array()
                    .ok_or_else(|| bad("no spec.http"))?;
                let (h, entry) = http
                    .iter()
                    .enumerate()
                    .find(|(_, h)| h["name"].as_str() == Some(route))
                    .ok_or_else(|| bad(&format!("no http route named {route:?}")))?;
                let routes = entry["route"]
                    .as_array()
                    .ok_or_else(|| bad("the http route has no destinations"))?;
                let mut out = Vec::new();
                for (j, r) in routes.iter().enumerate() {
                    let d = &r["destination"];
                    let name = d["subset"]
                        .as_str()
                        .or(d["host"].as_str())
                        .ok_or_else(|| bad("a destination has no subset or host"))?;
                    let weight = r["weight"].as_u64().unwrap_or(0);
                    out.push((
                        name.to_owned(),
                        weight as u32,
                        format!("/spec/http/{h}/route/{j}"),
                    ));
                }
                Ok((out, Some(default.clone())))
            }
        }
    }

    fn patch(
        &self,
        obj: &Value,
        expected: &Snapshot,
        after: &WeightMap,
        mark: &ShiftMark,
    ) -> Result<Value, TargetError> {
        let (entries, _) = self.entries(obj)?;
        let mut ops = Vec::new();
        if let Layout::Istio { route, .. } = &self.layout {
            if let Some((_, _, ptr)) = entries.first() {
                let http = ptr
                    .rsplit_once("/route/")
                    .map(|(h, _)| h)
                    .unwrap_or_default();
                ops.push(json!({"op": "test", "path": format!("{http}/name"), "value": route}));
            }
        }
        for (variant, _, ptr) in &entries {
            let name_path = match self.layout {
                Layout::Seldon => format!("{ptr}/name"),
                Layout::Istio { .. } => format!("{ptr}/destination/subset"),
            };
            let want = expected.weights.get(variant).copied().unwrap_or(0);
            ops.push(json!({"op": "test", "path": name_path, "value": variant}));
            ops.push(json!({"op": "test", "path": format!("{ptr}/weight"), "value": want}));
            if let Some(w) = after.get(variant) {
                ops.push(json!({"op": "replace", "path": format!("{ptr}/weight"), "value": w}));
            }
        }
        let mark_text =
            serde_json::to_string(mark).map_err(|e| TargetError::Permanent(e.to_string()))?;
        if obj["metadata"]["annotations"].is_object() {
            let key = MARK_ANNOTATION.replace('~', "~0").replace('/', "~1");
            ops.push(json!({"op": "add", "path": format!("/metadata/annotations/{key}"), "value": mark_text}));
        } else {
            ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {MARK_ANNOTATION: mark_text}}));
        }
        Ok(Value::Array(ops))
    }

    async fn get(&self) -> Result<Value, TargetError> {
        let api = self.api().await?;
        let obj = bounded(&self.describe(), async {
            api.get(&self.name).await.map_err(|e| self.error(e))
        })
        .await?;
        serde_json::to_value(&obj).map_err(|e| TargetError::Permanent(e.to_string()))
    }

    fn error(&self, e: kube::Error) -> TargetError {
        let what = self.describe();
        match e {
            kube::Error::Api(status) => {
                let code = status.code;
                let msg = format!("{what}: API server answered {code}: {}", status.message);
                match code {
                    409 | 422 => TargetError::Conflict(msg),
                    400..=499 => TargetError::Permanent(msg),
                    _ => TargetError::Transient(msg),
                }
            }
            other => {
                // kube's Display stops at the top error; the causes say why.
                let mut text = other.to_string();
                let mut source = std::error::Error::source(&other);
                while let Some(cause) = source {
                    let cause_text = cause.to_string();
                    if !text.contains(&cause_text) {
                        text.push_str(": ");
                        text.push_str(&cause_text);
                    }
                    source = cause.source();
                }
                if text.contains("length limit exceeded") {
                    text.push_str(&format!(
                        " (answers are read up to {})",
                        crate::outbound::format_bytes(MAX_RESPONSE_BYTES)
                    ));
                }
                TargetError::Transient(format!("{what}: {text}"))
            }
        }
    }
}

#[async_trait]
impl TrafficTarget for KubeWeights {
    fn describe(&self) -> String {
        let kind = match self.layout {
            Layout::Seldon => "seldon_experiment",
            Layout::Istio { .. } => "istio_virtual_service",
        };
        format!("{kind} {}/{}", self.namespace, self.name)
    }

    async fn read(&self) -> Result<Snapshot, TargetError> {
        let obj = self.get().await?;
        let (entries, default) = self.entries(&obj)?;
        let last_shift = obj["metadata"]["annotations"][MARK_ANNOTATION]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok());
        Ok(Snapshot {
            weights: entries.into_iter().map(|(n, w, _)| (n, w)).collect(),
            default,
            last_shift,
        })
    }

    async fn write(
        &self,
        expected: &Snapshot,
        after: &WeightMap,
        mark: &ShiftMark,
    ) -> Result<(), TargetError> {
        let obj = self.get().await?;
        let ops = self.patch(&obj, expected, after, mark)?;
        let patch: json_patch::Patch = serde_json::from_value(ops)
            .map_err(|e| TargetError::Permanent(format!("bad patch: {e}")))?;
        let params = PatchParams {
            field_manager: Some("mlops-alert-router".into()),
            ..Default::default()
        };
        let api = self.api().await?;
        bounded(&self.describe(), async {
            api.patch(&self.name, &params, &Patch::Json::<()>(patch))
                .await
                .map_err(|e| self.error(e))
        })
        .await?;
        Ok(())
    }

    fn preview(&self, expected: &Snapshot, after: &WeightMap, mark: &ShiftMark) -> Value {
        // The object is not fetched for a preview: show the patch against the
        // weights the decision was made on, entries in their sorted order.
        let mut obj = match self.layout {
            Layout::Seldon => {
                json!({"spec": {"candidates": expected.weights.iter().map(|(n, w)| json!({"name": n, "weight": w})).collect::<Vec<_>>()}})
            }
            Layout::Istio { ref route, .. } => {
                json!({"spec": {"http": [{"name": route, "route": expected.weights.iter().map(|(n, w)| json!({"destination": {"subset": n}, "weight": w})).collect::<Vec<_>>()}]}})
            }
        };
        obj["metadata"] = json!({"annotations": {}});
        json!({
            "object": self.describe(),
            "content_type": "application/json-patch+json",
            "patch": self.patch(&obj, expected, after, mark).unwrap_or(Value::Null),
        })
    }
}
