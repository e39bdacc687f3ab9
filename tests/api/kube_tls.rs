//! The kube client's TLS path: the router reads and (in a dry run) previews a
//! patch of a Seldon Experiment on an HTTPS stand-in of the API server, whose
//! certificate is signed by a CA generated here. The router finds the server
//! and the CA through a kubeconfig (as `kubectl` would), in a child process so
//! that no environment variable of this test process changes. A kubeconfig
//! naming another CA must make the read fail on the certificate.

use crate::fake_kube::FakeKube;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mlops-alert-router");

/// A CA generated here: (its certificate PEM, the issuer to sign with).
pub fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn write_kubeconfig(dir: &Path, server: &str, ca_pem: &str) -> std::path::PathBuf {
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: fake, cluster: {{server: '{server}', certificate-authority: '{}'}}}}]\n\
             users: [{{name: router, user: {{token: test-token}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: router}}}}]\n\
             current-context: fake\n",
            ca_file.display()
        ),
    )
    .unwrap();
    path
}

/// `mlops-alert-router plan` of the accuracy alert with a dry-run rollback on
/// the Experiment, the cluster found through `kubeconfig`.
fn plan(dir: &Path, kubeconfig: &Path) -> Value {
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "traffic_targets:\n  financial-ab-test-experiment: {kind: seldon_experiment, namespace: financial-inference, name: financial-ab-test-experiment}\n\
         actions:\n  rollback: {type: traffic_shift, step: 30, dry_run: true}\n\
         route:\n  actions: [rollback]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("plan")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/accuracy-firing.json"))
        .arg("--config")
        .arg(&config)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", dir)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_kube_client_reads_over_tls_trusting_the_kubeconfig_ca_only() {
    let (ca_pem, issuer) = ca("fake-kube-ca");
    let server_key = KeyPair::generate().unwrap();
    let server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let kube = FakeKube::start_tls(&server_cert.pem(), &server_key.serialize_pem()).await;
    assert!(kube.url.starts_with("https://127.0.0.1:"));
    kube.put_experiment();

    let dir = tempfile::tempdir().unwrap();
    // The name in the certificate (localhost is loopback: 127.0.0.1).
    let server = kube.url.replace("127.0.0.1", "localhost");
    let kubeconfig = write_kubeconfig(dir.path(), &server, &ca_pem);
    let out = tokio::task::spawn_blocking({
        let d = dir.path().to_owned();
        move || plan(&d, &kubeconfig)
    })
    .await
    .unwrap();
    let effect = &out["alerts"][0]["effects"]["rollback"];
    assert_eq!(effect["decision"], "dry_run", "{effect:#}");
    let ops = effect["change"]["patch"].as_array().unwrap();
    assert!(
        ops.contains(
            &serde_json::json!({"op": "test", "path": "/spec/candidates/0/weight", "value": 70})
        ),
        "{effect:#}"
    );

    // Another CA: the server's certificate is not trusted, nothing is read.
    let (other_ca, _) = ca("some-other-ca");
    let other = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(other.path(), &server, &other_ca);
    let out = tokio::task::spawn_blocking({
        let d = other.path().to_owned();
        move || plan(&d, &kubeconfig)
    })
    .await
    .unwrap();
    let effect = &out["alerts"][0]["effects"]["rollback"];
    assert_ne!(effect["decision"], "dry_run", "{effect:#}");
    let text = effect.to_string().to_lowercase();
    assert!(
        text.contains("unknownissuer"),
        "the reason names the TLS failure: {effect:#}"
    );
    assert!(kube.patches().is_empty());
}
