//! What one reconcile decides, as pure functions of what it read: whether
//! the target already has the recommendation, the server-side apply body
//! that gives it, the next status, and when to look again.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::controller::Action;
use respool::units::{parse_bytes, parse_count, parse_cpu};
use serde_json::json;

use crate::crd::{ContainerRecommendation, RespoolProfileStatus, TargetKind};
use crate::recommend::Recommendation;

/// The field manager of the operator's server-side applies.
pub const FIELD_MANAGER: &str = "respool-operator";
/// The condition every status carries.
pub const READY: &str = "Ready";
/// How often a ready RespoolProfile is looked at again (the profiles may
/// change in a ConfigMap that is not watched).
pub const RESYNC: Duration = Duration::from_secs(300);
/// How soon a missing ConfigMap, class or target is looked for again.
pub const RETRY_MISSING: Duration = Duration::from_secs(60);

/// How a reconcile ended, for the status.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A recommendation was computed (and, in Auto mode, applied).
    Ready {
        /// `Recommended` or `Applied`.
        reason: &'static str,
        /// Said to people.
        message: String,
        /// The recommendation.
        recommendation: Box<Recommendation>,
        /// The container it is for.
        container: String,
        /// `configmap/<name>/<key>`.
        location: String,
        /// The ConfigMap's resourceVersion.
        resource_version: Option<String>,
    },
    /// No recommendation: `reason` (a `Ready` reason) says why.
    NotReady {
        /// `InvalidSpec`, `ProfileNotFound`, ...
        reason: &'static str,
        /// Said to people.
        message: String,
    },
}

impl Outcome {
    /// When to reconcile again without a watch event: a ready profile
    /// every [`RESYNC`]; something missing (it may appear) after
    /// [`RETRY_MISSING`]; an invalid spec only when it changes (a new
    /// generation is a watch event).
    #[must_use]
    pub fn action(&self) -> Action {
        match self {
            Outcome::Ready { .. } => Action::requeue(RESYNC),
            Outcome::NotReady { reason, .. } if *reason == "InvalidSpec" => Action::await_change(),
            Outcome::NotReady { .. } => Action::requeue(RETRY_MISSING),
        }
    }
}

/// Why a target's container cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name:?} has no container {container:?} in its pod template (it has: {known})")]
pub struct ContainerNotFound {
    /// The target's kind.
    pub kind: &'static str,
    /// The target's name.
    pub name: String,
    /// The container asked for.
    pub container: String,
    /// The containers it has.
    pub known: String,
}

/// The resources of `container` in `template`.
///
/// # Errors
///
/// [`ContainerNotFound`] when the template has no such container.
pub fn container_resources<'a>(
    kind: TargetKind,
    name: &str,
    template: &'a PodTemplateSpec,
    container: &str,
) -> Result<Option<&'a ResourceRequirements>, ContainerNotFound> {
    let containers = template
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    containers
        .iter()
        .find(|c| c.name == container)
        .map(|c| c.resources.as_ref())
        .ok_or_else(|| ContainerNotFound {
            kind: kind.as_str(),
            name: name.to_owned(),
            container: container.to_owned(),
            known: containers
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A quantity of resource `name` in its base unit (millicores, bytes,
/// count), or `None` when it does not parse.
fn amount(name: &str, q: &str) -> Option<u64> {
    match name {
        "cpu" => parse_cpu(q).ok(),
        "memory" => parse_bytes(q).ok(),
        _ => parse_count(q).ok(),
    }
}

/// Whether `current` already holds every request and limit of `rec`
/// (compared as amounts: `1Gi` equals `1024Mi`).
#[must_use]
pub fn is_applied(current: Option<&ResourceRequirements>, rec: &ContainerRecommendation) -> bool {
    let have = |side: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
                name: &str,
                want: &str| {
        side.and_then(|m| m.get(name))
            .and_then(|q| amount(name, &q.0))
            .is_some_and(|h| Some(h) == amount(name, want))
    };
    let requests = current.and_then(|r| r.requests.as_ref());
    let limits = current.and_then(|r| r.limits.as_ref());
    rec.requests.iter().all(|(k, v)| have(requests, k, &v.0))
        && rec.limits.iter().all(|(k, v)| have(limits, k, &v.0))
}

/// The server-side apply body that sets `rec` on the container of the
/// `kind` workload `name` in `namespace`: only the fields the operator
/// owns (the container's requests and limits it recommends), so that
/// every other field stays with its own manager.
#[must_use]
pub fn apply_body(
    kind: TargetKind,
    name: &str,
    namespace: &str,
    rec: &ContainerRecommendation,
) -> serde_json::Value {
    let mut resources = serde_json::Map::new();
    if !rec.requests.is_empty() {
        resources.insert("requests".into(), json!(rec.requests));
    }
    if !rec.limits.is_empty() {
        resources.insert("limits".into(), json!(rec.limits));
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": kind.as_str(),
        "metadata": { "name": name, "namespace": namespace },
        "spec": { "template": { "spec": { "containers": [
            { "name": rec.container_name, "resources": resources }
        ] } } }
    })
}

/// The status after `outcome`, from the `previous` one: the Ready
/// condition keeps its `lastTransitionTime` while its status stays, and
/// `lastUpdated` moves only when the recommendation changes, so that a
/// reconcile that changes nothing writes nothing (the status write is
/// itself a watch event).
#[must_use]
pub fn next_status(
    previous: Option<&RespoolProfileStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    now: &Time,
) -> RespoolProfileStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    let (ok, reason, message) = match outcome {
        Outcome::Ready {
            reason,
            message,
            recommendation,
            container,
            location,
            resource_version,
        } => {
            let rec = recommendation.for_container(container);
            if status.recommendation.as_ref() != Some(&rec) {
                status.last_updated = Some(now.clone());
                status.recommendation = Some(rec);
            }
            status.classes.clone_from(&recommendation.classes);
            status.source = Some(recommendation.source(location, resource_version.clone()));
            (true, *reason, message)
        }
        Outcome::NotReady { reason, message } => (false, *reason, message),
    };
    let cond_status = if ok { "True" } else { "False" };
    let old = status.conditions.iter().find(|c| c.type_ == READY);
    let last_transition_time = match old {
        Some(c) if c.status == cond_status => c.last_transition_time.clone(),
        _ => now.clone(),
    };
    let ready = Condition {
        type_: READY.to_owned(),
        status: cond_status.to_owned(),
        reason: reason.to_owned(),
        message: message.clone(),
        observed_generation: generation,
        last_transition_time,
    };
    status.conditions.retain(|c| c.type_ != READY);
    status.conditions.push(ready);
    status
}

/// How long to wait before the `failures`-th retry after an error of the
/// API server (1-based): 5 s doubled each time, at most 5 minutes.
#[must_use]
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    Duration::from_secs(5u64 << exp).min(Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::crd::ClassStatus;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn rec() -> Recommendation {
        Recommendation {
            cpu_millis: Some(5212),
            memory_bytes: Some(1244 << 20),
            gpus: None,
            capped: vec![],
            classes: vec![ClassStatus {
                class: "thumbnail".into(),
                concurrency: 4,
                runs: 20,
                samples: 20,
                ..ClassStatus::default()
            }],
            saved_at_unix_ms: 7,
        }
    }

    fn ready(reason: &'static str) -> Outcome {
        Outcome::Ready {
            reason,
            message: "m".into(),
            recommendation: Box::new(rec()),
            container: "app".into(),
            location: "configmap/p/k".into(),
            resource_version: Some("41".into()),
        }
    }

    fn resources(req: &[(&str, &str)], lim: &[(&str, &str)]) -> ResourceRequirements {
        let m = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        ResourceRequirements {
            requests: m(req),
            limits: m(lim),
            ..ResourceRequirements::default()
        }
    }

    #[test]
    fn applied_compares_amounts_not_spellings() {
        let want = rec().for_container("app");
        let same = resources(
            &[("cpu", "5.212"), ("memory", "1244Mi")],
            &[("memory", "1244Mi")],
        );
        assert!(is_applied(Some(&same), &want));
        // Other resources the target has are not ours to compare.
        let more = resources(
            &[
                ("cpu", "5212m"),
                ("memory", "1244Mi"),
                ("ephemeral-storage", "1Gi"),
            ],
            &[("memory", "1244Mi"), ("cpu", "8")],
        );
        assert!(is_applied(Some(&more), &want));
        let smaller = resources(
            &[("cpu", "5212m"), ("memory", "1Gi")],
            &[("memory", "1244Mi")],
        );
        assert!(!is_applied(Some(&smaller), &want));
        let no_limit = resources(&[("cpu", "5212m"), ("memory", "1244Mi")], &[]);
        assert!(!is_applied(Some(&no_limit), &want));
        let garbage = resources(
            &[("cpu", "lots"), ("memory", "1244Mi")],
            &[("memory", "1244Mi")],
        );
        assert!(!is_applied(Some(&garbage), &want));
        assert!(!is_applied(None, &want));
    }

    #[test]
    fn the_container_is_found_or_named_missing() {
        let t = PodTemplateSpec {
            spec: Some(PodSpec {
                containers: vec![
                    Container {
                        name: "sidecar".into(),
                        ..Container::default()
                    },
                    Container {
                        name: "app".into(),
                        resources: Some(resources(&[("cpu", "1")], &[])),
                        ..Container::default()
                    },
                ],
                ..PodSpec::default()
            }),
            ..PodTemplateSpec::default()
        };
        let r = container_resources(TargetKind::Deployment, "d", &t, "app").unwrap();
        assert_eq!(r.unwrap().requests.as_ref().unwrap()["cpu"].0, "1");
        let e = container_resources(TargetKind::StatefulSet, "d", &t, "web").unwrap_err();
        assert_eq!(
            e.to_string(),
            "StatefulSet \"d\" has no container \"web\" in its pod template (it has: sidecar, app)"
        );
    }

    #[test]
    fn the_apply_body_holds_only_the_operators_fields() {
        let body = apply_body(
            TargetKind::DaemonSet,
            "d",
            "ns",
            &rec().for_container("app"),
        );
        assert_eq!(
            body,
            json!({
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": { "name": "d", "namespace": "ns" },
                "spec": { "template": { "spec": { "containers": [ {
                    "name": "app",
                    "resources": {
                        "requests": { "cpu": "5212m", "memory": "1244Mi" },
                        "limits": { "memory": "1244Mi" }
                    }
                } ] } } }
            })
        );
    }

    #[test]
    fn status_times_move_only_on_change() {
        let s1 = next_status(None, Some(3), &ready("Recommended"), &at(100));
        assert_eq!(s1.observed_generation, Some(3));
        assert_eq!(s1.last_updated, Some(at(100)));
        assert_eq!(
            s1.recommendation.as_ref().unwrap().requests["memory"].0,
            "1244Mi"
        );
        assert_eq!(s1.classes.len(), 1);
        assert_eq!(
            s1.source.as_ref().unwrap().resource_version.as_deref(),
            Some("41")
        );
        let c = &s1.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("Ready", "True", "Recommended")
        );
        assert_eq!(c.last_transition_time, at(100));

        // The same outcome later: the same status (nothing to write).
        let s2 = next_status(Some(&s1), Some(3), &ready("Recommended"), &at(200));
        assert_eq!(s2, s1);

        // Still ready, another reason: the transition time stays.
        let s3 = next_status(Some(&s2), Some(4), &ready("Applied"), &at(300));
        assert_eq!(s3.conditions.len(), 1);
        assert_eq!(s3.conditions[0].reason, "Applied");
        assert_eq!(s3.conditions[0].last_transition_time, at(100));
        assert_eq!(s3.conditions[0].observed_generation, Some(4));
        assert_eq!(
            s3.last_updated,
            Some(at(100)),
            "the recommendation did not change"
        );

        // Not ready: the last recommendation is kept, the condition flips.
        let missing = Outcome::NotReady {
            reason: "ProfileNotFound",
            message: "configmap \"p\" not found".into(),
        };
        let s4 = next_status(Some(&s3), Some(4), &missing, &at(400));
        assert_eq!(s4.recommendation, s3.recommendation);
        assert_eq!(s4.conditions[0].status, "False");
        assert_eq!(s4.conditions[0].reason, "ProfileNotFound");
        assert_eq!(s4.conditions[0].last_transition_time, at(400));

        // A new recommendation moves lastUpdated.
        let mut bigger = rec();
        bigger.memory_bytes = Some(2000 << 20);
        let o = Outcome::Ready {
            reason: "Recommended",
            message: "m".into(),
            recommendation: Box::new(bigger),
            container: "app".into(),
            location: "configmap/p/k".into(),
            resource_version: Some("42".into()),
        };
        let s5 = next_status(Some(&s4), Some(4), &o, &at(500));
        assert_eq!(s5.last_updated, Some(at(500)));
        assert_eq!(s5.conditions[0].last_transition_time, at(500));
    }

    #[test]
    fn requeue_and_backoff() {
        assert_eq!(ready("Applied").action(), Action::requeue(RESYNC));
        let nr = |reason| Outcome::NotReady {
            reason,
            message: String::new(),
        };
        assert_eq!(nr("InvalidSpec").action(), Action::await_change());
        assert_eq!(
            nr("TargetNotFound").action(),
            Action::requeue(RETRY_MISSING)
        );
        assert_eq!(
            nr("ProfileNotFound").action(),
            Action::requeue(RETRY_MISSING)
        );
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
        assert_eq!(backoff(0).as_secs(), 5);
    }
}
