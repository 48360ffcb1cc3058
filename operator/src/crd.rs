//! The `RespoolProfile` custom resource (`respool.dev/v1alpha1`, namespaced).
//!
//! Its spec names a workload's container, the respool classes that
//! container runs and how many tasks of each run at once per pod, where
//! the learned profiles are (a ConfigMap key holding a respool profiles
//! document), and how the request is taken from them (percentile and
//! margin, as `respool profiles export`). Its status holds the
//! recommendation, what it was computed from, and a `Ready` condition.
//! The YAML that [`CustomResourceExt::crd`](kube::CustomResourceExt::crd)
//! generates is committed as `deploy/kubernetes/respoolprofile-crd.yaml`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a `RespoolProfile` asks for: which container to size, from which
/// classes and which profiles.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "respool.dev",
    version = "v1alpha1",
    kind = "RespoolProfile",
    doc = "Sizes a workload's container from what respool learned: per class, the learned request times the tasks run at once, plus the process' baseline.",
    plural = "respoolprofiles",
    shortname = "rpp",
    namespaced,
    status = "RespoolProfileStatus",
    printcolumn = r#"{"name":"Target", "type":"string", "jsonPath":".spec.targetRef.name"}"#,
    printcolumn = r#"{"name":"Mode", "type":"string", "jsonPath":".spec.updateMode"}"#,
    printcolumn = r#"{"name":"Ready", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RespoolProfileSpec {
    /// The workload and container to size.
    pub target_ref: TargetRef,
    /// The respool classes the container runs, each with how many of its
    /// tasks run at once per pod. The container's request is the sum of
    /// `concurrency` x each class's learned request, plus `baseline`.
    #[schemars(length(min = 1, max = 64))]
    pub classes: Vec<ClassConcurrency>,
    /// What the process needs besides its tasks (default: 64Mi of memory,
    /// no CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Amounts>,
    /// Where the learned profiles are.
    pub profile_source: ProfileSource,
    /// The percentile of the measured samples, 0 to 100 (default 95), as
    /// `respool profiles export --percentile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percentile: Option<f64>,
    /// Added on top, in percent, 0 to 1000 (default 15), as `respool
    /// profiles export --margin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub margin: Option<f64>,
    /// Upper bounds for the container's recommendation: a larger one is
    /// capped to them (and the status says so), as the VPA's `maxAllowed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_allowed: Option<Amounts>,
    /// `Off` (default): the recommendation goes to the status only.
    /// `Auto`: the controller also writes it to the target's container
    /// (server-side apply, field manager `respool-operator`), which rolls
    /// the workload's pods. Quote `"Off"` in YAML (YAML 1.1 reads a bare
    /// Off as false).
    #[serde(default)]
    pub update_mode: UpdateMode,
}

/// The workload whose container is sized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// `Deployment`, `StatefulSet` or `DaemonSet` (group `apps`).
    pub kind: TargetKind,
    /// The workload's name, in the RespoolProfile's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The container of its pod template.
    #[schemars(length(min = 1, max = 63))]
    pub container_name: String,
}

/// The workload kinds a `RespoolProfile` can target (all `apps/v1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TargetKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
}

impl TargetKind {
    /// The kind's name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Deployment => "Deployment",
            TargetKind::StatefulSet => "StatefulSet",
            TargetKind::DaemonSet => "DaemonSet",
        }
    }
}

/// One class the container runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClassConcurrency {
    /// The respool class key (as in the profiles document).
    #[schemars(length(min = 1, max = 1024))]
    pub class: String,
    /// How many of its tasks run at once in one pod (the pool's budget for
    /// it), 1 to 4096.
    #[schemars(range(min = 1, max = 4096))]
    pub concurrency: u32,
}

/// CPU and memory as Kubernetes quantities (`"500m"`, `"2"`; `"64Mi"`,
/// `"1Gi"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Amounts {
    /// CPU (`"250m"`, `"1.5"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory (`"64Mi"`, `"1Gi"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// Where the learned profiles are read from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSource {
    /// A key of a ConfigMap in the RespoolProfile's namespace whose value
    /// is a respool profiles document (`respool profiles export`). A
    /// ConfigMap labelled `respool.dev/profiles` is watched: a change is
    /// picked up at once; any other is read again every 5 minutes.
    pub config_map_key_ref: ConfigMapKey,
}

/// A key of a ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKey {
    /// The ConfigMap's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key in its `data`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Whether the recommendation is applied to the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UpdateMode {
    /// The recommendation goes to the status only.
    #[default]
    Off,
    /// The recommendation is applied to the target's container.
    Auto,
}

/// What the controller found and recommends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RespoolProfileStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the recommendation last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<Time>,
    /// The latest recommendation computed (kept when a later attempt
    /// fails; the `Ready` condition says whether it is current).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<ContainerRecommendation>,
    /// Per class: the samples and the per-task request the recommendation
    /// was computed from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassStatus>,
    /// The profiles document it was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceStatus>,
    /// Standard conditions; `Ready` with a reason: `Recommended`
    /// (updateMode Off), `Applied` (Auto), or why not (`InvalidSpec`,
    /// `ProfileNotFound`, `ProfileInvalid`, `ClassNotInProfile`,
    /// `TargetNotFound`, `RecommendationTooLarge`, `ApplyFailed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The resources recommended for one container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecommendation {
    /// The container.
    pub container_name: String,
    /// `requests` for its `resources`.
    #[serde(default)]
    pub requests: BTreeMap<String, Quantity>,
    /// `limits` for its `resources` (memory equals its request; no CPU
    /// limit).
    #[serde(default)]
    pub limits: BTreeMap<String, Quantity>,
    /// The resources capped to `maxAllowed` (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<String>,
}

/// What one class contributed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClassStatus {
    /// The class key.
    pub class: String,
    /// Tasks at once per pod (from the spec).
    pub concurrency: u32,
    /// Runs measured in total.
    pub runs: u64,
    /// Samples the per-task request was computed from.
    pub samples: u64,
    /// One task's CPU request (absent: not measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// One task's memory request (absent: not measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// One task's GPUs (absent: none used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u64>,
}

/// The profiles document a recommendation was computed from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// `configmap/<name>/<key>`.
    pub location: String,
    /// The ConfigMap's `resourceVersion` that was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// The document's `saved_at_unix_ms`.
    pub saved_at_unix_ms: u64,
}

/// The words YAML 1.1 reads as booleans and YAML 1.2 as strings:
/// Kubernetes' YAML reader (and PyYAML) takes them bare as `true`/`false`,
/// so serde_yaml (YAML 1.2) writes them bare as strings. (`true`, `false`
/// and their capitalised forms are booleans in both: serde_yaml already
/// quotes them as strings, and a bare one is a boolean.)
const YAML11_BOOLS: [&str; 16] = [
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF",
];

/// The CRD as YAML (after a comment saying so) that means the same to a YAML 1.1 reader (kubectl,
/// PyYAML) as to a YAML 1.2 one: serde_yaml writes YAML 1.2, where a bare
/// `Off` (an `updateMode` value) is a string; here it is quoted.
///
/// # Errors
///
/// The serializer's error (none is expected for a CRD).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let yaml = serde_yaml::to_string(&RespoolProfile::crd())?;
    Ok(format!("{CRD_HEADER}{}", quote_yaml11_bools(&yaml)))
}

/// The comment [`crd_yaml`] starts with.
pub const CRD_HEADER: &str = "# Generated by `respool-operator crd` (operator/src/crd.rs): do not edit.\n\
    # operator/tests/manifests.rs fails when deploy/kubernetes/respoolprofile-crd.yaml differs.\n";

/// Quotes the bare scalars of `yaml` (block style, as serde_yaml writes
/// it) that YAML 1.1 reads as booleans; block scalars' text is left alone.
#[must_use]
pub fn quote_yaml11_bools(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 64);
    // The indentation a block scalar's lines are deeper than.
    let mut block: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(b) = block {
            if line.trim().is_empty() || indent > b {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            block = None;
        }
        let body = line.trim_start();
        let item = body.strip_prefix("- ").unwrap_or(body);
        let (head, value) = match item.split_once(": ") {
            Some((k, v)) if !k.starts_with(['"', '\'']) => (&line[..line.len() - v.len()], v),
            _ => (&line[..line.len() - item.len()], item),
        };
        if YAML11_BOOLS.contains(&value) {
            out.push_str(head);
            out.push('\'');
            out.push_str(value);
            out.push('\'');
        } else {
            out.push_str(line);
        }
        out.push('\n');
        if value.starts_with('|') || value.starts_with('>') {
            block = Some(indent);
        }
    }
    out
}
