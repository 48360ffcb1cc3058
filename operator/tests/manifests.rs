//! The committed manifests under deploy/kubernetes/ against the code: the
//! CRD is the generated one, the example RespoolProfile is valid and
//! recommends what deploy/kubernetes/deployment.yaml states, and the
//! operator's ClusterRole grants exactly what the controller uses.

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::CustomResourceExt;
use kube::runtime::reflector::ObjectRef;
use respool_operator::controller::readers_of;
use respool_operator::crd::{RespoolProfile, UpdateMode, crd_yaml, quote_yaml11_bools};
use respool_operator::plan::{container_resources, is_applied};
use respool_operator::recommend::{recommend, settings};
use serde::Deserialize;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The documents of a multi-document YAML file, as `T` when their kind is `kind`.
fn docs<T: for<'de> Deserialize<'de>>(text: &str, kind: &str) -> Vec<T> {
    serde_yaml::Deserializer::from_str(text)
        .map(serde_yaml::Value::deserialize)
        .map(Result::unwrap)
        .filter(|v| v["kind"].as_str() == Some(kind))
        .map(|v| serde_yaml::from_value(v).unwrap())
        .collect()
}

#[test]
fn the_committed_crd_is_the_generated_one() {
    let committed = read("deploy/kubernetes/respoolprofile-crd.yaml");
    let generated = crd_yaml().unwrap();
    assert!(
        committed == generated,
        "deploy/kubernetes/respoolprofile-crd.yaml is out of date; regenerate it with\n  \
         cargo run --manifest-path operator/Cargo.toml -- crd > deploy/kubernetes/respoolprofile-crd.yaml"
    );
    // The YAML means the CRD (the quoting changed no value).
    let parsed: serde_json::Value = serde_yaml::from_str(&generated).unwrap();
    assert_eq!(parsed, serde_json::to_value(RespoolProfile::crd()).unwrap());
    assert!(
        generated.contains("default: 'Off'"),
        "Off quoted for YAML 1.1 readers"
    );
}

#[test]
fn yaml11_booleans_are_quoted_and_nothing_else() {
    let yaml = "a: Off\nb:\n- On\n- yes\n- 'no'\n- true\nc: true\nd: |-\n  Off\n  - yes\ne: no\nf: Offset\n";
    assert_eq!(
        quote_yaml11_bools(yaml),
        "a: 'Off'\nb:\n- 'On'\n- 'yes'\n- 'no'\n- true\nc: true\nd: |-\n  Off\n  - yes\ne: 'no'\nf: Offset\n"
    );
}

#[test]
fn the_example_recommends_what_the_example_deployment_states() {
    let cr: RespoolProfile =
        serde_yaml::from_str(&read("deploy/kubernetes/respoolprofile-example.yaml")).unwrap();
    assert_eq!(cr.spec.update_mode, UpdateMode::Off);
    let s = settings(&cr.spec).unwrap();
    let rec = recommend(
        &s,
        &read("deploy/profiles-example.json"),
        "deploy/profiles-example.json",
    )
    .unwrap();
    assert!(rec.capped.is_empty());
    let want = rec.for_container(&cr.spec.target_ref.container_name);
    assert_eq!(want.requests["cpu"].0, "5212m");
    assert_eq!(want.requests["memory"].0, "1244Mi");
    let deployments: Vec<Deployment> =
        docs(&read("deploy/kubernetes/deployment.yaml"), "Deployment");
    let d = &deployments[0];
    assert_eq!(
        d.metadata.name.as_deref(),
        Some(cr.spec.target_ref.name.as_str())
    );
    let have = container_resources(
        cr.spec.target_ref.kind,
        &cr.spec.target_ref.name,
        &d.spec.template,
        &cr.spec.target_ref.container_name,
    )
    .unwrap();
    assert!(
        is_applied(have, &want),
        "deployment.yaml's resources: {have:?}, recommended: {want:?}"
    );
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let v = |s: &[&str]| Some(s.iter().map(|x| (*x).to_owned()).collect());
    PolicyRule {
        api_groups: v(groups),
        resources: v(resources),
        verbs: verbs.iter().map(|x| (*x).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

#[test]
fn the_operators_role_is_least_privilege() {
    let text = read("deploy/kubernetes/operator.yaml");
    let roles: Vec<ClusterRole> = docs(&text, "ClusterRole");
    assert_eq!(roles.len(), 1);
    assert_eq!(
        roles[0].rules.as_deref().unwrap(),
        [
            rule(
                &["respool.dev"],
                &["respoolprofiles"],
                &["get", "list", "watch"]
            ),
            rule(&["respool.dev"], &["respoolprofiles/status"], &["patch"]),
            rule(&[""], &["configmaps"], &["get", "list", "watch"]),
            rule(
                &["apps"],
                &["deployments", "statefulsets", "daemonsets"],
                &["get", "patch"]
            ),
        ]
    );
    let d: Vec<Deployment> = docs(&text, "Deployment");
    let pod = d[0].spec.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("respool-operator")
    );
    assert_eq!(
        pod.containers[0].args.as_deref(),
        Some(&["run".to_owned()][..])
    );
}

#[test]
fn a_configmap_change_reconciles_the_profiles_that_read_it() {
    let cr = |name: &str, ns: &str, cm: &str| {
        let mut p: RespoolProfile =
            serde_yaml::from_str(&read("deploy/kubernetes/respoolprofile-example.yaml")).unwrap();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some(ns.into());
        p.spec.profile_source.config_map_key_ref.name = cm.into();
        p
    };
    let all = [
        cr("a", "shop", "respool-profiles"),
        cr("b", "shop", "other"),
        cr("c", "lab", "respool-profiles"),
        cr("d", "shop", "respool-profiles"),
    ];
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("respool-profiles".into());
    cm.metadata.namespace = Some("shop".into());
    assert_eq!(
        readers_of(&cm, &all),
        [
            ObjectRef::new("a").within("shop"),
            ObjectRef::new("d").within("shop")
        ]
    );
    cm.metadata.namespace = None;
    assert!(readers_of(&cm, &all).is_empty());
}
