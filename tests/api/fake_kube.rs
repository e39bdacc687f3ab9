//! A stateful stand-in for the Kubernetes API server (none can run here):
//! serves GET and applies JSON-patch PATCH with real `test` semantics (a
//! failing test answers 422 as the real one does), validates the result
//! against the Experiment schema, and records every request.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct KubeState {
    /// "group/version/namespace/plural/name" → object.
    pub objects: HashMap<String, Value>,
    /// Applied to the stored object just before the next PATCH is handled:
    /// another writer that committed between the router's GET and PATCH.
    pub interfere: Option<Value>,
    /// Every PATCH body received, in order.
    pub patches: Vec<Value>,
    /// Answer the next PATCH with this status code and message (a 422 from
    /// schema validation or an admission webhook), changing nothing.
    pub reject: Option<(u16, String)>,
    pub version: u64,
}

#[derive(Clone)]
pub struct FakeKube {
    pub url: String,
    pub state: Arc<Mutex<KubeState>>,
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

fn key(p: &(String, String, String, String, String)) -> String {
    format!("{}/{}/{}/{}/{}", p.0, p.1, p.2, p.3, p.4)
}

/// The Experiment schema's rules that matter here (mlops.seldon.io/v1alpha1).
fn validate_experiment(obj: &Value) -> Result<(), String> {
    let spec = obj.get("spec").ok_or("spec: required")?;
    let candidates = spec["candidates"]
        .as_array()
        .ok_or("spec.candidates: required array")?;
    if candidates.is_empty() {
        return Err("spec.candidates: must not be empty".into());
    }
    let mut names = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let name = c["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or(format!("spec.candidates[{i}].name: required"))?;
        if c["weight"].as_u64().is_none_or(|w| w > u32::MAX as u64) {
            return Err(format!(
                "spec.candidates[{i}].weight: must be an unsigned 32-bit integer"
            ));
        }
        names.push(name);
    }
    if let Some(d) = spec.get("default") {
        let d = d.as_str().ok_or("spec.default: must be a string")?;
        if !names.contains(&d) {
            return Err(format!("spec.default: {d:?} is not a candidate"));
        }
    }
    Ok(())
}

async fn get_object(
    State(state): State<Arc<Mutex<KubeState>>>,
    Path(p): Path<(String, String, String, String, String)>,
) -> Response {
    let state = state.lock().unwrap();
    match state.objects.get(&key(&p)) {
        Some(obj) => Json(obj.clone()).into_response(),
        None => status(404, "NotFound", format!("{} {:?} not found", p.3, p.4)),
    }
}

async fn patch_object(
    State(state): State<Arc<Mutex<KubeState>>>,
    Path(p): Path<(String, String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/json-patch+json" {
        return status(
            415,
            "UnsupportedMediaType",
            format!("unexpected content type {content_type:?}"),
        );
    }
    let ops: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", e.to_string()),
    };
    state.patches.push(ops.clone());
    let k = key(&p);
    if let Some(change) = state.interfere.take() {
        if let Some(obj) = state.objects.get_mut(&k) {
            json_patch::merge(obj, &change);
        }
    }
    if let Some((code, message)) = state.reject.take() {
        return status(code, "Invalid", message);
    }
    let Some(current) = state.objects.get(&k).cloned() else {
        return status(404, "NotFound", format!("{} {:?} not found", p.3, p.4));
    };
    let patch: json_patch::Patch = match serde_json::from_value(ops) {
        Ok(p) => p,
        Err(e) => return status(400, "BadRequest", e.to_string()),
    };
    let mut next = current;
    if let Err(e) = json_patch::patch(&mut next, &patch) {
        // What the real API server answers when a `test` operation fails.
        return status(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        );
    }
    if p.3 == "experiments" {
        if let Err(e) = validate_experiment(&next) {
            return status(
                422,
                "Invalid",
                format!("Experiment.mlops.seldon.io is invalid: {e}"),
            );
        }
    }
    state.version += 1;
    next["metadata"]["resourceVersion"] = json!(state.version.to_string());
    state.objects.insert(k, next.clone());
    Json(next).into_response()
}

/// A TLS listener for `axum::serve`: every accepted TCP connection goes
/// through the rustls handshake first (a failed handshake is dropped).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves `app` over HTTPS on loopback with this certificate chain and key
/// (PEM); returns `https://127.0.0.1:PORT`.
pub async fn serve_tls(app: Router, cert_chain_pem: &str, key_pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", tcp.local_addr().unwrap());
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

impl FakeKube {
    fn app(state: Arc<Mutex<KubeState>>) -> Router {
        Router::new()
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}",
                get(get_object).patch(patch_object),
            )
            .with_state(state)
    }

    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(KubeState::default()));
        let app = Self::app(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    /// The same API server over HTTPS, with this certificate chain and key
    /// (PEM). `url` is `https://127.0.0.1:PORT`.
    pub async fn start_tls(cert_chain_pem: &str, key_pem: &str) -> Self {
        let state = Arc::new(Mutex::new(KubeState::default()));
        let url = serve_tls(Self::app(state.clone()), cert_chain_pem, key_pem).await;
        Self { url, state }
    }

    pub fn put(&self, group_version: &str, ns: &str, plural: &str, obj: Value) {
        let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
        let mut state = self.state.lock().unwrap();
        state
            .objects
            .insert(format!("{group_version}/{ns}/{plural}/{name}"), obj);
    }

    pub fn get(&self, group_version: &str, ns: &str, plural: &str, name: &str) -> Value {
        self.state.lock().unwrap().objects[&format!("{group_version}/{ns}/{plural}/{name}")].clone()
    }

    pub fn patches(&self) -> Vec<Value> {
        self.state.lock().unwrap().patches.clone()
    }

    /// The example Experiment (deploy/examples/experiment.yaml): baseline 70 / enhanced 30.
    pub fn put_experiment(&self) {
        self.put(
            "mlops.seldon.io/v1alpha1",
            "financial-inference",
            "experiments",
            json!({
                "apiVersion": "mlops.seldon.io/v1alpha1",
                "kind": "Experiment",
                "metadata": {"name": "financial-ab-test-experiment", "namespace": "financial-inference", "resourceVersion": "1"},
                "spec": {
                    "default": "baseline-predictor",
                    "candidates": [
                        {"name": "baseline-predictor", "weight": 70},
                        {"name": "enhanced-predictor", "weight": 30}
                    ]
                }
            }),
        );
    }

    pub fn experiment(&self) -> Value {
        self.get(
            "mlops.seldon.io/v1alpha1",
            "financial-inference",
            "experiments",
            "financial-ab-test-experiment",
        )
    }

    pub fn experiment_weights(&self) -> Vec<(String, u64)> {
        self.experiment()["spec"]["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["weight"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}
