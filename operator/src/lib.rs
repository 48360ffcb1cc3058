//! respool-operator: sizes a Kubernetes workload's container from what
//! respool learned.
//!
//! respool learns, per task class, what one task uses (its profiles). A
//! pod that runs a pool needs, per class, that many tasks at once times
//! one task's request, plus the process itself. This operator does that
//! arithmetic in the cluster and keeps it current, in the manner of the
//! Vertical Pod Autoscaler's recommender, from respool's own measurements
//! instead of the VPA's cgroup samples.
//!
//! # The CRD
//!
//! [`RespoolProfile`](crd::RespoolProfile) (`respool.dev/v1alpha1`,
//! namespaced, short name `rpp`):
//!
//! ```yaml
//! apiVersion: respool.dev/v1alpha1
//! kind: RespoolProfile
//! metadata: { name: thumbnailer, namespace: default }
//! spec:
//!   targetRef: { kind: Deployment, name: thumbnailer, containerName: thumbnailer }
//!   classes: [ { class: thumbnail, concurrency: 4 } ]
//!   baseline: { memory: 64Mi }          # the process itself (default 64Mi, no CPU)
//!   profileSource:
//!     configMapKeyRef: { name: respool-profiles, key: profiles.json }
//!   percentile: 95                      # as `respool profiles export`
//!   margin: 15
//!   maxAllowed: { cpu: "8", memory: 4Gi }   # optional caps
//!   updateMode: Off                     # Off (default) | Auto
//! ```
//!
//! The ConfigMap key holds a respool profiles document, as `respool
//! profiles export` (the default JSON format) writes it, or as a
//! `FileStore` keeps it. Its status holds the `recommendation` (the
//! container's `requests` and `limits`), per class the runs, the samples
//! and the per-task request it was computed from, the document's
//! `source`, `observedGeneration`, `lastUpdated` (when the recommendation
//! last changed) and a `Ready` condition whose reason is `Recommended`
//! (Off), `Applied` (Auto), or what is wrong: `InvalidSpec`,
//! `ProfileNotFound` (no ConfigMap or key), `ProfileInvalid` (a document
//! that does not parse, or a learned value beyond the bounds of
//! [`recommend`]), `ClassNotInProfile`, `TargetNotFound` (no workload or
//! no such container), `RecommendationTooLarge`, `ApplyFailed` (the API
//! server refused the apply).
//!
//! # The reconcile loop
//!
//! [`controller::run`] runs kube-runtime's `Controller` over
//! RespoolProfiles in all namespaces, and over ConfigMaps labelled
//! `respool.dev/profiles`: a change to one reconciles the RespoolProfiles
//! that read it ([`controller::readers_of`]). One
//! [`reconcile`](controller::reconcile):
//!
//! 1. checks the spec ([`recommend::settings`]); a bad one is
//!    `InvalidSpec`, looked at again when it changes;
//! 2. reads the ConfigMap and computes the container's resources
//!    ([`recommend::recommend`]): [`respool::export::requests`] per class
//!    (the same arithmetic as `respool profiles export --format k8s`:
//!    percentile of the kept samples plus the margin, memory at least the
//!    bump after an out-of-memory event), times `concurrency`, summed,
//!    plus `baseline`; memory limit = request, no CPU limit; bounded and
//!    checked, then capped to `maxAllowed`;
//! 3. reads the target's pod template and compares its container's
//!    resources ([`plan::is_applied`]);
//! 4. in `Auto` mode, when they differ, applies them with server-side
//!    apply (field manager `respool-operator`, forced: the operator takes
//!    over those fields; only the requests and limits it recommends are
//!    in the body, [`plan::apply_body`]), which rolls the pods;
//! 5. writes the status ([`plan::next_status`]) as a merge patch of the
//!    status subresource, only when it changed (the write is itself a
//!    watch event);
//! 6. requeues: every 5 minutes when ready, after 1 minute when something
//!    is missing, on the next change when the spec is invalid. An API
//!    error is retried with a per-object backoff
//!    ([`controller::error_policy`], [`plan::backoff`]).
//!
//! Steps 1 to 3 and 5 are pure functions tested directly; the loop is
//! tested against a mocked API server that checks every request.
//!
//! # Roadmap #27 (PR 18 "Kubernetes Operator")
//!
//! | point | where |
//! |-------|-------|
//! | Create Kubernetes CRD | [`crd`]; `deploy/kubernetes/respoolprofile-crd.yaml` (generated, drift-checked) |
//! | Implement operator controller | [`controller`], [`plan`], [`recommend`]; the `respool-operator` binary and `deploy/kubernetes/operator.yaml` |
//! | Add HPA integration | `deploy/kubernetes/hpa-prometheus-adapter.yaml`, `keda-scaledobject.yaml` (scaling on `respool_wait_queue_depth`); the operator sizes pods vertically and leaves replicas to the HPA |
//! | Add example deployments | `deploy/kubernetes/deployment.yaml`, `respoolprofile-example.yaml` |
//!
//! Not done: reading profiles straight from the shared Redis store
//! (`RedisStore`); the ConfigMap is the source (write it with `respool
//! profiles export`, e.g. from a CronJob). Jobs are not a target kind
//! (their pod template cannot change after creation).

pub mod controller;
pub mod crd;
pub mod plan;
pub mod recommend;
