//! The reconcile loop against a mocked API server (tower-test, kube's
//! documented pattern): every request it makes is checked (method, path,
//! query, content type, body) in order, and the scenario ends by checking
//! that no request follows. Nothing sleeps: the reconcile is awaited, the
//! client dropped, and the server task then sees the end of the stream.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource};
use respool_operator::controller::{Context, Error, error_policy, reconcile};
use respool_operator::crd::{
    ClassConcurrency, ConfigMapKey, ProfileSource, RespoolProfile, RespoolProfileSpec,
    RespoolProfileStatus, TargetKind, TargetRef, UpdateMode,
};
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const EXAMPLE: &str = include_str!("../../deploy/profiles-example.json");
const NOW: i64 = 1_765_000_000;
const NOW_TEXT: &str = "2025-12-06T05:46:40Z";
const CM_PATH: &str = "/api/v1/namespaces/shop/configmaps/respool-profiles";
const DEPLOY_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/thumbnailer";
const STATUS_PATH: &str =
    "/apis/respool.dev/v1alpha1/namespaces/shop/respoolprofiles/thumbnailer/status?";

fn profile(mode: UpdateMode, kind: TargetKind) -> RespoolProfile {
    let mut p = RespoolProfile::new(
        "thumbnailer",
        RespoolProfileSpec {
            target_ref: TargetRef {
                kind,
                name: "thumbnailer".into(),
                container_name: "app".into(),
            },
            classes: vec![ClassConcurrency {
                class: "thumbnail".into(),
                concurrency: 4,
            }],
            baseline: None,
            profile_source: ProfileSource {
                config_map_key_ref: ConfigMapKey {
                    name: "respool-profiles".into(),
                    key: "profiles.json".into(),
                },
            },
            percentile: None,
            margin: None,
            max_allowed: None,
            update_mode: mode,
        },
    );
    p.meta_mut().namespace = Some("shop".into());
    p.meta_mut().generation = Some(2);
    p
}

fn configmap(data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "respool-profiles", "namespace": "shop", "resourceVersion": "41" },
        "data": data
    })
}

/// A workload of `kind` with containers "sidecar" and "app", the latter
/// with `resources`.
fn workload(kind: &str, resources: Value) -> Value {
    let mut spec = json!({
        "selector": { "matchLabels": { "app": "t" } },
        "template": {
            "metadata": { "labels": { "app": "t" } },
            "spec": { "containers": [
                { "name": "sidecar", "image": "s" },
                { "name": "app", "image": "a", "resources": resources }
            ] }
        }
    });
    if kind == "StatefulSet" {
        spec["serviceName"] = json!("t");
    }
    json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": { "name": "thumbnailer", "namespace": "shop" },
        "spec": spec
    })
}

fn not_found(what: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{what} not found"), "reason": "NotFound", "code": 404
    })
}

/// The resources p95 + 15% of deploy/profiles-example.json gives 4
/// "thumbnail" tasks plus 64Mi (deploy/kubernetes/deployment.yaml's).
fn recommended() -> Value {
    json!({ "requests": { "cpu": "5212m", "memory": "1244Mi" }, "limits": { "memory": "1244Mi" } })
}

/// The status a ready reconcile writes, with `reason` and `message`.
fn ready_status(reason: &str, message: &str) -> Value {
    json!({ "status": {
        "observedGeneration": 2,
        "lastUpdated": NOW_TEXT,
        "recommendation": {
            "containerName": "app",
            "requests": { "cpu": "5212m", "memory": "1244Mi" },
            "limits": { "memory": "1244Mi" }
        },
        "classes": [ {
            "class": "thumbnail", "concurrency": 4, "runs": 20, "samples": 20,
            "cpu": "1303m", "memory": "295Mi"
        } ],
        "source": {
            "location": "configmap/respool-profiles/profiles.json",
            "resourceVersion": "41",
            "savedAtUnixMs": 1_764_982_200_000u64
        },
        "conditions": [ {
            "type": "Ready", "status": "True", "reason": reason, "message": message,
            "observedGeneration": 2, "lastTransitionTime": NOW_TEXT
        } ]
    } })
}

fn not_ready_status(reason: &str, message: &str) -> Value {
    json!({ "status": {
        "observedGeneration": 2,
        "conditions": [ {
            "type": "Ready", "status": "False", "reason": reason, "message": message,
            "observedGeneration": 2, "lastTransitionTime": NOW_TEXT
        } ]
    } })
}

/// One request the scenario expects, and the answer it gets.
struct Expect {
    method: &'static str,
    uri: String,
    content_type: Option<&'static str>,
    /// The request's JSON body, when it must have one.
    body: Option<Value>,
    status: StatusCode,
    response: Value,
}

fn get(uri: &str, status: StatusCode, response: Value) -> Expect {
    Expect {
        method: "GET",
        uri: uri.to_owned(),
        content_type: None,
        body: None,
        status,
        response,
    }
}

fn status_patch(body: Value) -> Expect {
    Expect {
        method: "PATCH",
        uri: STATUS_PATH.to_owned(),
        content_type: Some("application/merge-patch+json"),
        response: json!({
            "apiVersion": "respool.dev/v1alpha1", "kind": "RespoolProfile",
            "metadata": { "name": "thumbnailer", "namespace": "shop" },
            "spec": serde_json::to_value(profile(UpdateMode::Off, TargetKind::Deployment).spec).unwrap(),
            "status": body["status"].clone()
        }),
        body: Some(body),
        status: StatusCode::OK,
    }
}

fn apply(path: &str, body: Value, status: StatusCode, response: Value) -> Expect {
    Expect {
        method: "PATCH",
        uri: format!("{path}?&force=true&fieldManager=respool-operator"),
        content_type: Some("application/apply-patch+yaml"),
        body: Some(body),
        status,
        response,
    }
}

/// Answers `script` in order, then checks that nothing else is asked.
async fn serve(mut handle: Handle, script: Vec<Expect>) {
    for (i, want) in script.into_iter().enumerate() {
        let (request, send) = handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("request {i} ({} {}) never came", want.method, want.uri));
        assert_eq!(request.method().as_str(), want.method, "request {i}");
        assert_eq!(request.uri().to_string(), want.uri, "request {i}");
        let ct = request
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        if let Some(c) = want.content_type {
            assert_eq!(ct.as_deref(), Some(c), "request {i} content type");
        }
        let bytes = request.into_body().collect_bytes().await.unwrap();
        if let Some(body) = want.body {
            let got: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(got, body, "request {i} ({} {}) body", want.method, want.uri);
        }
        send.send_response(
            Response::builder()
                .status(want.status)
                .body(Body::from(serde_json::to_vec(&want.response).unwrap()))
                .unwrap(),
        );
    }
    if let Some((request, _)) = handle.next_request().await {
        panic!("unexpected request: {} {}", request.method(), request.uri());
    }
}

/// A context on a mocked API server that answers `script`, with the
/// clock at `NOW`, and the server's task.
fn mocked(script: Vec<Expect>) -> (Arc<Context>, tokio::task::JoinHandle<()>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(serve(handle, script));
    let ctx = Arc::new(Context::with_clock(
        Client::new(service, "default"),
        Box::new(|| Time(Timestamp::from_second(NOW).unwrap())),
    ));
    (ctx, server)
}

/// Drops the context (its client: the server's request stream ends) and
/// waits for the server's checks.
async fn finish(ctx: Arc<Context>, server: tokio::task::JoinHandle<()>) {
    drop(Arc::into_inner(ctx).expect("nothing else holds the context"));
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the mock server did not finish")
        .expect("the mock server's checks failed");
}

/// Reconciles `cr` once against `script`.
async fn run(cr: RespoolProfile, script: Vec<Expect>) -> Result<Action, Error> {
    let (ctx, server) = mocked(script);
    let result = reconcile(Arc::new(cr), ctx.clone()).await;
    finish(ctx, server).await;
    result
}

const RECOMMENDED_OFF: &str = "updateMode Off: recommendation in status only";

#[tokio::test]
async fn off_mode_writes_the_status_and_never_the_target() {
    let cr = profile(UpdateMode::Off, TargetKind::Deployment);
    let action = run(
        cr,
        vec![
            get(
                CM_PATH,
                StatusCode::OK,
                configmap(json!({ "profiles.json": EXAMPLE })),
            ),
            get(
                DEPLOY_PATH,
                StatusCode::OK,
                workload("Deployment", json!({ "requests": { "cpu": "1" } })),
            ),
            status_patch(ready_status("Recommended", RECOMMENDED_OFF)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    let mut cr = profile(UpdateMode::Off, TargetKind::Deployment);
    let status = ready_status("Recommended", RECOMMENDED_OFF)["status"].clone();
    cr.status = Some(serde_json::from_value::<RespoolProfileStatus>(status).unwrap());
    let action = run(
        cr,
        vec![
            get(
                CM_PATH,
                StatusCode::OK,
                configmap(json!({ "profiles.json": EXAMPLE })),
            ),
            get(
                DEPLOY_PATH,
                StatusCode::OK,
                workload("Deployment", json!({})),
            ),
            // No status patch: the serve() loop fails on any further request.
        ],
    )
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

#[tokio::test]
async fn auto_mode_applies_the_containers_resources_server_side() {
    let cr = profile(UpdateMode::Auto, TargetKind::Deployment);
    let body = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "thumbnailer", "namespace": "shop" },
        "spec": { "template": { "spec": { "containers": [
            { "name": "app", "resources": recommended() }
        ] } } }
    });
    run(
        cr,
        vec![
            get(
                CM_PATH,
                StatusCode::OK,
                configmap(json!({ "profiles.json": EXAMPLE })),
            ),
            get(
                DEPLOY_PATH,
                StatusCode::OK,
                workload("Deployment", json!({ "requests": { "cpu": "1" } })),
            ),
            apply(
                DEPLOY_PATH,
                body,
                StatusCode::OK,
                workload("Deployment", recommended()),
            ),
            status_patch(ready_status(
                "Applied",
                "applied to Deployment \"thumbnailer\"",
            )),
        ],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn auto_mode_on_a_statefulset_that_has_it_already_applies_nothing() {
    let cr = profile(UpdateMode::Auto, TargetKind::StatefulSet);
    // The same amounts spelled differently (5.212 cores, 1244Mi in KiB).
    let same = json!({
        "requests": { "cpu": "5.212", "memory": "1273856Ki" },
        "limits": { "memory": "1244Mi" }
    });
    run(
        cr,
        vec![
            get(
                CM_PATH,
                StatusCode::OK,
                configmap(json!({ "profiles.json": EXAMPLE })),
            ),
            get(
                "/apis/apps/v1/namespaces/shop/statefulsets/thumbnailer",
                StatusCode::OK,
                workload("StatefulSet", same),
            ),
            status_patch(ready_status(
                "Applied",
                "StatefulSet \"thumbnailer\" has the recommendation",
            )),
        ],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn auto_mode_on_a_daemonset_applies_to_its_path() {
    let cr = profile(UpdateMode::Auto, TargetKind::DaemonSet);
    let path = "/apis/apps/v1/namespaces/shop/daemonsets/thumbnailer";
    let mut body = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": { "name": "thumbnailer", "namespace": "shop" },
        "spec": { "template": { "spec": { "containers": [
            { "name": "app", "resources": recommended() }
        ] } } }
    });
    let answer = workload("DaemonSet", recommended());
    run(
        cr,
        vec![
            get(
                CM_PATH,
                StatusCode::OK,
                configmap(json!({ "profiles.json": EXAMPLE })),
            ),
            get(path, StatusCode::OK, workload("DaemonSet", json!({}))),
            apply(path, body.take(), StatusCode::OK, answer),
            status_patch(ready_status(
                "Applied",
                "applied to DaemonSet \"thumbnailer\"",
            )),
        ],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_refused_apply_is_said_in_the_status() {
    let cr = profile(UpdateMode::Auto, TargetKind::Deployment);
    let refused = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "spec.template.spec.containers[1].resources.requests: Invalid value: \"5212m\": must be less than or equal to cpu limit of 2",
        "reason": "Invalid", "code": 422
    });
    let body = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "thumbnailer", "namespace": "shop" },
        "spec": { "template": { "spec": { "containers": [
            { "name": "app", "resources": recommended() }
        ] } } }
    });
    let action = run(
        cr,
        vec![
            get(CM_PATH, StatusCode::OK, configmap(json!({ "profiles.json": EXAMPLE }))),
            get(DEPLOY_PATH, StatusCode::OK, workload("Deployment", json!({ "limits": { "cpu": "2" } }))),
            apply(DEPLOY_PATH, body, StatusCode::UNPROCESSABLE_ENTITY, refused),
            status_patch(not_ready_status(
                "ApplyFailed",
                "applying to Deployment \"thumbnailer\": spec.template.spec.containers[1].resources.requests: \
                 Invalid value: \"5212m\": must be less than or equal to cpu limit of 2",
            )),
        ],
    )
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
}

#[tokio::test]
async fn a_missing_configmap_is_profile_not_found_and_the_target_is_not_read() {
    let action = run(
        profile(UpdateMode::Auto, TargetKind::Deployment),
        vec![
            get(
                CM_PATH,
                StatusCode::NOT_FOUND,
                not_found("configmaps \"respool-profiles\""),
            ),
            status_patch(not_ready_status(
                "ProfileNotFound",
                "configmap \"respool-profiles\" not found in namespace \"shop\"",
            )),
        ],
    )
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
}

#[tokio::test]
async fn a_missing_key_is_profile_not_found() {
    run(
        profile(UpdateMode::Off, TargetKind::Deployment),
        vec![
            get(
                CM_PATH,
                StatusCode::OK,
                configmap(json!({ "other.json": "{}" })),
            ),
            status_patch(not_ready_status(
                "ProfileNotFound",
                "configmap \"respool-profiles\" has no key \"profiles.json\" in its data",
            )),
        ],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_corrupt_profile_is_profile_invalid_and_nothing_is_applied() {
    // One sample at u64::MAX bytes; the 100th percentile picks it (respool
    // reads it as its largest amount, 2^60, and adds the 15%).
    let corrupt = EXAMPLE.replace("\"memory\": 188743680", "\"memory\": 18446744073709551615");
    let mut cr = profile(UpdateMode::Auto, TargetKind::Deployment);
    cr.spec.percentile = Some(100.0);
    let action = run(
        cr,
        vec![
            get(
                CM_PATH,
                StatusCode::OK,
                configmap(json!({ "profiles.json": corrupt })),
            ),
            status_patch(not_ready_status(
                "ProfileInvalid",
                "configmap/respool-profiles/profiles.json: class \"thumbnail\" was learned to need \
                 1325859730298503168 bytes of memory per task, more than the 1099511627776 the \
                 operator accepts (a corrupt profile?)",
            )),
        ],
    )
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
}

#[tokio::test]
async fn a_missing_target_or_container_is_target_not_found() {
    run(
        profile(UpdateMode::Auto, TargetKind::Deployment),
        vec![
            get(
                CM_PATH,
                StatusCode::OK,
                configmap(json!({ "profiles.json": EXAMPLE })),
            ),
            get(
                DEPLOY_PATH,
                StatusCode::NOT_FOUND,
                not_found("deployments.apps \"thumbnailer\""),
            ),
            status_patch(not_ready_status(
                "TargetNotFound",
                "Deployment \"thumbnailer\" not found in namespace \"shop\"",
            )),
        ],
    )
    .await
    .unwrap();
    let mut cr = profile(UpdateMode::Auto, TargetKind::Deployment);
    cr.spec.target_ref.container_name = "web".into();
    run(
        cr,
        vec![
            get(CM_PATH, StatusCode::OK, configmap(json!({ "profiles.json": EXAMPLE }))),
            get(DEPLOY_PATH, StatusCode::OK, workload("Deployment", json!({}))),
            status_patch(not_ready_status(
                "TargetNotFound",
                "Deployment \"thumbnailer\" has no container \"web\" in its pod template (it has: sidecar, app)",
            )),
        ],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_invalid_spec_reads_nothing_and_waits_for_a_change() {
    let mut cr = profile(UpdateMode::Auto, TargetKind::Deployment);
    cr.spec.classes[0].concurrency = 0;
    let action = run(
        cr,
        vec![status_patch(not_ready_status(
            "InvalidSpec",
            "classes: \"thumbnail\" has concurrency 0, expected 1 to 4096",
        ))],
    )
    .await
    .unwrap();
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn api_errors_back_off_per_object_and_a_success_resets() {
    let cr = Arc::new(profile(UpdateMode::Off, TargetKind::Deployment));
    let broken = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500
    });
    let (ctx, server) = mocked(vec![
        get(CM_PATH, StatusCode::INTERNAL_SERVER_ERROR, broken.clone()),
        get(CM_PATH, StatusCode::INTERNAL_SERVER_ERROR, broken),
        get(
            CM_PATH,
            StatusCode::OK,
            configmap(json!({ "profiles.json": EXAMPLE })),
        ),
        get(
            DEPLOY_PATH,
            StatusCode::OK,
            workload("Deployment", json!({})),
        ),
        status_patch(ready_status("Recommended", RECOMMENDED_OFF)),
    ]);
    let me = ObjectRef::from_obj(&*cr);
    let other = ObjectRef::<RespoolProfile>::new("other").within("shop");
    let err = reconcile(cr.clone(), ctx.clone()).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("reading configmap \"respool-profiles\": "),
        "{err}"
    );
    assert!(
        err.to_string().contains("etcdserver: request timed out"),
        "{err}"
    );
    assert_eq!(
        error_policy(cr.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    let err = reconcile(cr.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(
        error_policy(cr.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    assert_eq!(ctx.failures(&me), 2);
    assert_eq!(ctx.failures(&other), 0, "the backoff is per object");
    let action = reconcile(cr.clone(), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    assert_eq!(ctx.failures(&me), 0, "a success resets the backoff");
    finish(ctx, server).await;
}
