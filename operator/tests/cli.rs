//! The `respool-operator` binary: `crd` prints the generated CRD, and `run`
//! without any Kubernetes configuration fails with a clear message.

use std::process::Command;

use kube::CustomResourceExt;
use respool_operator::crd::{RespoolProfile, crd_yaml};

fn operator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_respool-operator"))
}

#[test]
fn crd_prints_the_generated_crd() {
    let out = operator().arg("crd").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), crd_yaml().unwrap());
    let out = operator().args(["crd", "--json"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json, serde_json::to_value(RespoolProfile::crd()).unwrap());
}

#[test]
fn run_without_a_cluster_says_so() {
    let home = std::env::temp_dir().join(format!("respool-operator-cli-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let out = operator()
        .arg("run")
        .env("HOME", &home)
        .env("KUBECONFIG", home.join("missing-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&home).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("respool-operator: no Kubernetes configuration: "),
        "{err}"
    );
    assert!(err.contains("KUBECONFIG or ~/.kube/config"), "{err}");
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let out = operator().arg("apply").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("unrecognized subcommand 'apply'")
    );
}
