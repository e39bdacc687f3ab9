//! Kubernetes targets through kube-rs: a Seldon `Experiment` or an Istio
//! `VirtualService`. A change is one JSON patch whose `test` operations pin
//! the weights it read (so a concurrent writer makes it fail with 422/409:
//! read again, decide again) and which records the shift in annotations (the
//! last few marks, and the newest one alone).

use super::policy::WeightMap;
use super::target::{
    push_mark, read_marks, IstioApiVersion, ShiftMark, Snapshot, TargetError, TrafficTarget,
    MARKS_ANNOTATION, MARK_ANNOTATION,
};
use async_trait::async_trait;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

/// One variant's entry in the object.
#[derive(Debug, Clone)]
struct Entry {
    variant: String,
    /// The weight in effect (an absent Istio weight counts as its implied value).
    weight: u32,
    /// Whether the object has a `weight` field there (Istio may omit it).
    has_weight: bool,
    /// JSON pointer of the entry.
    ptr: String,
    /// JSON pointer of the field that names the variant: the patch tests it.
    name_path: String,
}

/// Which object, and how its weights are laid out.
#[derive(Debug, Clone)]
pub enum Layout {
    /// `spec.candidates[].{name, weight}`, `spec.default`.
    Seldon,
    /// `spec.http[name=route].route[].{destination.subset or destination.host, weight}`.
    Istio {
        route: String,
        default: String,
        api_version: IstioApiVersion,
    },
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
            Layout::Istio { api_version, .. } => (
                "networking.istio.io",
                api_version.version(),
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
        let (out, default) = match &self.layout {
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
                        .and_then(|w| u32::try_from(w).ok())
                        .ok_or_else(|| bad("a candidate has no weight"))?;
                    let ptr = format!("/spec/candidates/{i}");
                    out.push(Entry {
                        variant: name.to_owned(),
                        weight,
                        has_weight: true,
                        name_path: format!("{ptr}/name"),
                        ptr,
                    });
                }
                (out, spec["default"].as_str().map(str::to_owned))
            }
            Layout::Istio { route, default, .. } => {
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
                    // A subset names the variant when there is one (one Service,
                    // DestinationRule subsets); else the host does (one Service
                    // per variant).
                    let (name, field) = match (d["subset"].as_str(), d["host"].as_str()) {
                        (Some(s), _) => (s, "subset"),
                        (None, Some(h)) => (h, "host"),
                        (None, None) => return Err(bad("a destination has no subset or host")),
                    };
                    // Istio: a single destination takes all traffic; otherwise a
                    // destination without a weight gets none.
                    let implied = if routes.len() == 1 { 100 } else { 0 };
                    let weight = match r.get("weight") {
                        None | Some(Value::Null) => None,
                        Some(w) => Some(
                            w.as_u64()
                                .and_then(|w| u32::try_from(w).ok())
                                .ok_or_else(|| bad("a destination weight is not a number"))?,
                        ),
                    };
                    let ptr = format!("/spec/http/{h}/route/{j}");
                    out.push(Entry {
                        variant: name.to_owned(),
                        weight: weight.unwrap_or(implied),
                        has_weight: weight.is_some(),
                        name_path: format!("{ptr}/destination/{field}"),
                        ptr,
                    });
                }
                (out, Some(default.clone()))
            }
        };
        for (i, e) in out.iter().enumerate() {
            if out[..i].iter().any(|o| o.variant == e.variant) {
                return Err(bad(&format!(
                    "variant {:?} appears twice; cannot tell which entry to change",
                    e.variant
                )));
            }
        }
        Ok((out, default))
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
            if let Some(e) = entries.first() {
                let http = e
                    .ptr
                    .rsplit_once("/route/")
                    .map(|(h, _)| h)
                    .unwrap_or_default();
                ops.push(json!({"op": "test", "path": format!("{http}/name"), "value": route}));
            }
        }
        for e in &entries {
            let want = expected.weights.get(&e.variant).copied().unwrap_or(0);
            // Test the very field the variant was read from (subset, host or name).
            ops.push(json!({"op": "test", "path": e.name_path, "value": e.variant}));
            let weight_path = format!("{}/weight", e.ptr);
            if e.has_weight {
                ops.push(json!({"op": "test", "path": weight_path, "value": want}));
                if let Some(w) = after.get(&e.variant) {
                    ops.push(json!({"op": "replace", "path": weight_path, "value": w}));
                }
            } else {
                // No weight field to test or replace: write the weight explicitly.
                let w = after.get(&e.variant).copied().unwrap_or(e.weight);
                ops.push(json!({"op": "add", "path": weight_path, "value": w}));
            }
        }
        // The marks of the object as read here (not of `expected`: a change
        // since the decision read it fails the weight tests anyway), with
        // this one first; the list annotation is tested, so two writers never
        // drop each other's mark.
        let marks = push_mark(&marks_of(obj), mark);
        let text = |r: serde_json::Result<String>| {
            r.map_err(|e| TargetError::Permanent(format!("cannot serialise the mark: {e}")))
        };
        let mark_text = text(serde_json::to_string(mark))?;
        let marks_text = text(serde_json::to_string(&marks))?;
        let annotations = &obj["metadata"]["annotations"];
        if annotations.is_object() {
            let pointer = |key: &str| {
                format!(
                    "/metadata/annotations/{}",
                    key.replace('~', "~0").replace('/', "~1")
                )
            };
            if let Some(held) = annotations[MARKS_ANNOTATION].as_str() {
                ops.push(json!({"op": "test", "path": pointer(MARKS_ANNOTATION), "value": held}));
            }
            ops.push(json!({"op": "add", "path": pointer(MARK_ANNOTATION), "value": mark_text}));
            ops.push(json!({"op": "add", "path": pointer(MARKS_ANNOTATION), "value": marks_text}));
        } else {
            ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {MARK_ANNOTATION: mark_text, MARKS_ANNOTATION: marks_text}}));
        }
        Ok(Value::Array(ops))
    }

    /// A 422 answer to the patch: a conflict only if one of its `test`
    /// operations fails against the object as it is now (read again); any
    /// other 422 (schema validation, an admission webhook) will not pass on
    /// a retry and is permanent, with the API server's message.
    async fn classify_unprocessable(
        &self,
        ops: &Value,
        status: &kube::core::Status,
    ) -> TargetError {
        let mut msg = format!(
            "{}: API server answered 422: {}",
            self.describe(),
            status.message
        );
        if let Some(details) = &status.details {
            for c in &details.causes {
                if !c.message.is_empty() && !status.message.contains(&c.message) {
                    msg.push_str(&format!("; {}", c.message));
                }
            }
        }
        let now = match self.get().await {
            Ok(obj) => obj,
            Err(e) => return TargetError::Transient(format!("{msg} (and reading it again: {e})")),
        };
        let tests: Vec<Value> = ops
            .as_array()
            .map(|a| a.iter().filter(|o| o["op"] == "test").cloned().collect())
            .unwrap_or_default();
        let failed_test = serde_json::from_value::<json_patch::Patch>(Value::Array(tests))
            .map_err(|e| e.to_string())
            .and_then(|p| json_patch::patch(&mut now.clone(), &p).map_err(|e| e.to_string()));
        match failed_test {
            Err(why) => TargetError::Conflict(format!("{msg} ({why})")),
            Ok(()) => TargetError::Permanent(msg),
        }
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
                    409 => TargetError::Conflict(msg),
                    408 | 429 => TargetError::Transient(msg),
                    400..=499 => TargetError::Permanent(msg),
                    _ => TargetError::Transient(msg),
                }
            }
            other => {
                // The whole source chain: "client error (Connect)" alone hides
                // the cause (a TLS certificate error, a refused connection).
                let mut text = error_chain(&other);
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

/// The marks on an object, newest first: the list annotation, and the
/// single-mark annotation (all an object annotated by an older router has).
/// A mark that does not parse is ignored (an annotation edited by hand must
/// not stop traffic decisions).
fn marks_of(obj: &Value) -> Vec<ShiftMark> {
    let annotations = &obj["metadata"]["annotations"];
    let single = annotations[MARK_ANNOTATION]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok());
    let list = annotations[MARKS_ANNOTATION]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    read_marks(single, list)
}

/// `e: source: source...`, each message once.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        next = s.source();
    }
    out
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
        let shifts = marks_of(&obj);
        Ok(Snapshot {
            weights: entries.into_iter().map(|e| (e.variant, e.weight)).collect(),
            default,
            shifts,
            object: Some(obj),
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
        let patch: json_patch::Patch = serde_json::from_value(ops.clone())
            .map_err(|e| TargetError::Permanent(format!("bad patch: {e}")))?;
        let params = PatchParams {
            field_manager: Some("mlops-alert-router".into()),
            ..Default::default()
        };
        let api = self.api().await?;
        let answer = bounded(&self.describe(), async {
            Ok(api
                .patch(&self.name, &params, &Patch::Json::<()>(patch))
                .await)
        })
        .await?;
        match answer {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 422 => {
                Err(self.classify_unprocessable(&ops, &status).await)
            }
            Err(e) => Err(self.error(e)),
        }
    }

    fn preview(&self, expected: &Snapshot, after: &WeightMap, mark: &ShiftMark) -> Value {
        // The patch against the object as the decision read it: entries at
        // their real positions, the fields they are named by.
        if let Some(obj) = &expected.object {
            return json!({
                "object": self.describe(),
                "content_type": "application/json-patch+json",
                "patch": self.patch(obj, expected, after, mark).unwrap_or(Value::Null),
            });
        }
        // Not read (cannot happen for a decision, which reads first): say so.
        json!({
            "object": self.describe(),
            "illustrative": true,
            "note": "the object was not read: the real patch tests and replaces each entry at its position in the object",
            "after": after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(ops: &Value) -> json_patch::Patch {
        serde_json::from_value(ops.clone()).unwrap()
    }

    fn experiment(annotations: Value) -> Value {
        json!({
            "apiVersion": "mlops.seldon.io/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": "exp", "namespace": "ns", "annotations": annotations},
            "spec": {"default": "a", "candidates": [{"name": "a", "weight": 70}, {"name": "b", "weight": 30}]},
        })
    }

    fn mark(episode: &str) -> ShiftMark {
        ShiftMark {
            episode: episode.into(),
            before: [("a".to_owned(), 70), ("b".to_owned(), 30)].into(),
            after: [("a".to_owned(), 80), ("b".to_owned(), 20)].into(),
            at: "2027-01-15T08:00:00Z".into(),
        }
    }

    /// An object annotated by an older router holds one mark as a JSON
    /// object; the next change keeps it in the list and tests the list it read.
    #[test]
    fn the_single_mark_of_an_older_router_is_read_and_kept() {
        let old = mark("old");
        let obj = experiment(json!({MARK_ANNOTATION: serde_json::to_string(&old).unwrap()}));
        assert_eq!(marks_of(&obj), vec![old.clone()]);
        let target = KubeWeights::new("ns", "exp", Layout::Seldon, ClientSource::default());
        let expected = Snapshot {
            weights: [("a".to_owned(), 70), ("b".to_owned(), 30)].into(),
            default: Some("a".into()),
            shifts: marks_of(&obj),
            object: Some(obj.clone()),
        };
        let new = mark("new");
        let ops = target.patch(&obj, &expected, &new.after, &new).unwrap();
        let mut patched = obj.clone();
        json_patch::patch(&mut patched, &apply(&ops)).unwrap();
        assert_eq!(marks_of(&patched), vec![new.clone(), old.clone()]);
        let single: ShiftMark = serde_json::from_str(
            patched["metadata"]["annotations"][MARK_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(single, new, "the single form names the newest");

        // With a list on the object, the patch tests it: a concurrent
        // writer's mark is never dropped.
        let newer = ShiftMark {
            before: new.after.clone(),
            after: [("a".to_owned(), 90), ("b".to_owned(), 10)].into(),
            ..mark("newer")
        };
        let expected = Snapshot {
            weights: new.after.clone(),
            ..expected
        };
        let ops = target
            .patch(&patched, &expected, &newer.after, &newer)
            .unwrap();
        let tested = ops.as_array().unwrap().iter().find(|o| {
            o["op"] == "test" && o["path"] == "/metadata/annotations/mlops-alert-router.io~1shifts"
        });
        assert!(tested.is_some(), "{ops:#}");
        let mut twice = patched.clone();
        json_patch::patch(&mut twice, &apply(&ops)).unwrap();
        assert_eq!(marks_of(&twice), vec![newer, new, old]);
        assert!(
            json_patch::patch(&mut twice, &apply(&ops)).is_err(),
            "the same patch on the changed object fails its tests"
        );
    }

    #[test]
    fn an_unparsable_mark_is_ignored() {
        let obj = experiment(json!({MARK_ANNOTATION: "not json", MARKS_ANNOTATION: "[1]"}));
        assert!(marks_of(&obj).is_empty());
    }
}
