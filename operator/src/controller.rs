//! The reconcile loop: reads, the pure decisions of [`crate::plan`] and
//! [`crate::recommend`], then writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::crd::{RespoolProfile, TargetKind, UpdateMode};
use crate::plan::{self, Outcome};
use crate::recommend::{self, ProfileError};

/// The label that makes a ConfigMap watched: a change to it reconciles at
/// once the RespoolProfiles that read it.
pub const PROFILES_LABEL: &str = "respool.dev/profiles";

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Consecutive failed reconciles per RespoolProfile, for the backoff.
    failures: Mutex<HashMap<ObjectRef<RespoolProfile>, u32>>,
    /// The clock (a fixed one in tests).
    now: Box<dyn Fn() -> Time + Send + Sync>,
}

impl Context {
    /// A context on `client`, with the system clock.
    #[must_use]
    pub fn new(client: Client) -> Context {
        Context::with_clock(client, Box::new(|| Time(Timestamp::now())))
    }

    /// A context with a clock of its own.
    #[must_use]
    pub fn with_clock(client: Client, now: Box<dyn Fn() -> Time + Send + Sync>) -> Context {
        Context {
            client,
            failures: Mutex::new(HashMap::new()),
            now,
        }
    }

    /// Consecutive failures of `obj` so far.
    #[must_use]
    pub fn failures(&self, obj: &ObjectRef<RespoolProfile>) -> u32 {
        let map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(obj).copied().unwrap_or(0)
    }

    fn failed(&self, obj: ObjectRef<RespoolProfile>) -> u32 {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(obj).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn succeeded(&self, obj: &ObjectRef<RespoolProfile>) {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(obj);
    }
}

/// Why a reconcile failed (it is retried with [`plan::backoff`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The object has no namespace (the CRD is namespaced: never).
    #[error("RespoolProfile {0:?} has no namespace")]
    NotNamespaced(String),
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

/// The pod template of a workload, `None` when it does not exist.
async fn template_of<K>(
    api: Api<K>,
    name: &str,
    template: impl FnOnce(K) -> PodTemplateSpec,
) -> Result<Option<PodTemplateSpec>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?.map(template))
}

async fn target_template(
    client: &Client,
    ns: &str,
    kind: TargetKind,
    name: &str,
) -> Result<Option<PodTemplateSpec>, kube::Error> {
    let found = match kind {
        TargetKind::Deployment => {
            template_of(
                Api::<Deployment>::namespaced(client.clone(), ns),
                name,
                |d| d.spec.template,
            )
            .await?
        }
        TargetKind::StatefulSet => {
            template_of(
                Api::<StatefulSet>::namespaced(client.clone(), ns),
                name,
                |d| d.spec.template,
            )
            .await?
        }
        TargetKind::DaemonSet => {
            template_of(
                Api::<DaemonSet>::namespaced(client.clone(), ns),
                name,
                |d| d.spec.template,
            )
            .await?
        }
    };
    Ok(found)
}

async fn apply_target(
    client: &Client,
    ns: &str,
    kind: TargetKind,
    name: &str,
    body: &serde_json::Value,
) -> Result<(), kube::Error> {
    let pp = PatchParams::apply(plan::FIELD_MANAGER).force();
    let patch = Patch::Apply(body);
    match kind {
        TargetKind::Deployment => {
            Api::<Deployment>::namespaced(client.clone(), ns)
                .patch(name, &pp, &patch)
                .await?;
        }
        TargetKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client.clone(), ns)
                .patch(name, &pp, &patch)
                .await?;
        }
        TargetKind::DaemonSet => {
            Api::<DaemonSet>::namespaced(client.clone(), ns)
                .patch(name, &pp, &patch)
                .await?;
        }
    }
    Ok(())
}

/// Reads what `cr` names and decides; writes only the target (Auto mode).
async fn decide(cr: &RespoolProfile, ns: &str, ctx: &Context) -> Result<Outcome, Error> {
    let settings = match recommend::settings(&cr.spec) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Outcome::NotReady {
                reason: "InvalidSpec",
                message: e.to_string(),
            });
        }
    };
    let src = &cr.spec.profile_source.config_map_key_ref;
    let location = format!("configmap/{}/{}", src.name, src.key);
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let Some(cm) = cms
        .get_opt(&src.name)
        .await
        .map_err(kube_err(format!("reading configmap {:?}", src.name)))?
    else {
        return Ok(Outcome::NotReady {
            reason: "ProfileNotFound",
            message: format!("configmap {:?} not found in namespace {ns:?}", src.name),
        });
    };
    let Some(document) = cm.data.as_ref().and_then(|d| d.get(&src.key)) else {
        return Ok(Outcome::NotReady {
            reason: "ProfileNotFound",
            message: format!(
                "configmap {:?} has no key {:?} in its data",
                src.name, src.key
            ),
        });
    };
    let rec = match recommend::recommend(&settings, document, &location) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Outcome::NotReady {
                reason: ProfileError::reason(&e),
                message: e.to_string(),
            });
        }
    };
    let t = &cr.spec.target_ref;
    let Some(template) = target_template(&ctx.client, ns, t.kind, &t.name)
        .await
        .map_err(kube_err(format!(
            "reading {} {:?}",
            t.kind.as_str(),
            t.name
        )))?
    else {
        return Ok(Outcome::NotReady {
            reason: "TargetNotFound",
            message: format!(
                "{} {:?} not found in namespace {ns:?}",
                t.kind.as_str(),
                t.name
            ),
        });
    };
    let current = match plan::container_resources(t.kind, &t.name, &template, &t.container_name) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Outcome::NotReady {
                reason: "TargetNotFound",
                message: e.to_string(),
            });
        }
    };
    let container_rec = rec.for_container(&t.container_name);
    let applied = plan::is_applied(current, &container_rec);
    let (reason, message) = match cr.spec.update_mode {
        UpdateMode::Off => (
            "Recommended",
            if applied {
                "updateMode Off: the target's container already has the recommendation".to_owned()
            } else {
                "updateMode Off: recommendation in status only".to_owned()
            },
        ),
        UpdateMode::Auto if applied => (
            "Applied",
            format!("{} {:?} has the recommendation", t.kind.as_str(), t.name),
        ),
        UpdateMode::Auto => {
            let body = plan::apply_body(t.kind, &t.name, ns, &container_rec);
            if let Err(e) = apply_target(&ctx.client, ns, t.kind, &t.name, &body).await {
                return match e {
                    // The server refused the object itself (say, a CPU
                    // limit below the new request): said in the status.
                    kube::Error::Api(s) if s.code == 422 => Ok(Outcome::NotReady {
                        reason: "ApplyFailed",
                        message: format!(
                            "applying to {} {:?}: {}",
                            t.kind.as_str(),
                            t.name,
                            s.message
                        ),
                    }),
                    e => Err(kube_err(format!(
                        "applying to {} {:?}",
                        t.kind.as_str(),
                        t.name
                    ))(e)),
                };
            }
            (
                "Applied",
                format!("applied to {} {:?}", t.kind.as_str(), t.name),
            )
        }
    };
    Ok(Outcome::Ready {
        reason,
        message,
        recommendation: Box::new(rec),
        container: t.container_name.clone(),
        location,
        resource_version: cm.metadata.resource_version.clone(),
    })
}

/// One reconcile of `cr`: reads its ConfigMap and target, computes the
/// recommendation, applies it in Auto mode, and writes the status when it
/// changed (a merge patch of the status subresource).
///
/// # Errors
///
/// [`Error`] when the API server fails a read or write; the controller
/// retries after [`error_policy`]'s backoff. Everything else (missing
/// objects, a bad spec or profile) ends in the status, not in an error.
pub async fn reconcile(cr: Arc<RespoolProfile>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = cr.name_any();
    let ns = cr
        .namespace()
        .ok_or_else(|| Error::NotNamespaced(name.clone()))?;
    let outcome = decide(&cr, &ns, &ctx).await?;
    let now = (ctx.now)();
    let status = plan::next_status(cr.status.as_ref(), cr.metadata.generation, &outcome, &now);
    if cr.status.as_ref() != Some(&status) {
        let api: Api<RespoolProfile> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(kube_err(format!("writing the status of {name:?}")))?;
    }
    ctx.succeeded(&ObjectRef::from_obj(&*cr));
    let (ready, reason) = match &outcome {
        Outcome::Ready { reason, .. } => (true, *reason),
        Outcome::NotReady { reason, .. } => (false, *reason),
    };
    tracing::info!(namespace = %ns, name = %name, ready, reason, "reconciled");
    Ok(outcome.action())
}

/// After a failed reconcile: retry with [`plan::backoff`] of the
/// object's consecutive failures (5 s, doubling, at most 5 minutes).
pub fn error_policy(cr: Arc<RespoolProfile>, err: &Error, ctx: Arc<Context>) -> Action {
    let n = ctx.failed(ObjectRef::from_obj(&*cr));
    let wait = plan::backoff(n);
    tracing::warn!(name = %cr.name_any(), error = %err, failures = n, ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// The RespoolProfiles among `profiles` that read `cm`.
pub fn readers_of<'a>(
    cm: &ConfigMap,
    profiles: impl IntoIterator<Item = &'a RespoolProfile>,
) -> Vec<ObjectRef<RespoolProfile>> {
    let (Some(name), Some(ns)) = (
        cm.metadata.name.as_deref(),
        cm.metadata.namespace.as_deref(),
    ) else {
        return Vec::new();
    };
    profiles
        .into_iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(ns)
                && p.spec.profile_source.config_map_key_ref.name == name
        })
        .map(ObjectRef::from_obj)
        .collect()
}

/// Runs the controller until a termination signal: RespoolProfiles in all
/// namespaces, and ConfigMaps labelled [`PROFILES_LABEL`].
pub async fn run(client: Client) {
    let profiles: Api<RespoolProfile> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::all(client.clone());
    let controller = Controller::new(profiles, watcher::Config::default().any_semantic());
    let store = controller.store();
    controller
        .watches(
            cms,
            watcher::Config::default().labels(PROFILES_LABEL),
            move |cm| readers_of(&cm, store.state().iter().map(|p| &**p)),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, Arc::new(Context::new(client)))
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller");
            }
        })
        .await;
}
