//! From a spec and a profiles document to a container's resources: pure
//! functions, no I/O.
//!
//! The per-task arithmetic is [`respool::export::requests`] (the chosen
//! percentile of a class's kept samples plus the margin, memory at least
//! the bump after its worst out-of-memory event), the same numbers
//! `respool profiles export --format k8s` prints. Here they are multiplied
//! by each class's `concurrency`, summed, and the process' `baseline` is
//! added (deploy/README.md's arithmetic).
//!
//! Learned values are data from outside: a class whose per-task request is
//! beyond [`MAX_TASK_MEMORY`], [`MAX_TASK_CPU_MILLIS`] or
//! [`MAX_TASK_GPUS`] makes the document invalid, a container total beyond
//! [`MAX_CONTAINER_MEMORY`], [`MAX_CONTAINER_CPU_MILLIS`] or
//! [`MAX_CONTAINER_GPUS`] is refused, and every sum and product is
//! checked; nothing of it is applied. `maxAllowed` in the spec caps what
//! is within those bounds (as the VPA's).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use respool::Ppm;
use respool::export::{ExportConfig, requests};
use respool::store::Profiles;
use respool::units::{parse_bytes, parse_cpu};

use crate::crd::{Amounts, ClassStatus, ContainerRecommendation, RespoolProfileSpec, SourceStatus};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The largest memory one task may be learned to need (1 TiB).
pub const MAX_TASK_MEMORY: u64 = 1024 * GIB;
/// The most CPU one task may be learned to need (1024 cores).
pub const MAX_TASK_CPU_MILLIS: u64 = 1024 * 1000;
/// The most GPUs one task may be learned to use.
pub const MAX_TASK_GPUS: u64 = 16;
/// The largest memory recommended for one container (16 TiB).
pub const MAX_CONTAINER_MEMORY: u64 = 16 * 1024 * GIB;
/// The most CPU recommended for one container (4096 cores).
pub const MAX_CONTAINER_CPU_MILLIS: u64 = 4096 * 1000;
/// The most GPUs recommended for one container.
pub const MAX_CONTAINER_GPUS: u64 = 64;
/// The default `baseline` memory: the process itself (64 MiB).
pub const DEFAULT_BASELINE_MEMORY: u64 = 64 * MIB;
/// The largest profiles document read (a ConfigMap holds at most 1 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// The resource name of NVIDIA GPUs (what `respool profiles export` uses).
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// A spec that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// A profiles document that gives no usable recommendation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// The document does not parse, or holds values beyond the bounds.
    #[error("{0}")]
    Invalid(String),
    /// A class of the spec has no measured request in the document.
    #[error("class {class:?} has no measured CPU or memory in {location} (classes there: {known})")]
    ClassNotInProfile {
        /// The class.
        class: String,
        /// Where the document came from.
        location: String,
        /// The classes the document has (at most the first 10).
        known: String,
    },
    /// The container's total is beyond the operator's bounds.
    #[error("{0}")]
    TooLarge(String),
}

impl ProfileError {
    /// The `Ready` condition's reason for it.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            ProfileError::Invalid(_) => "ProfileInvalid",
            ProfileError::ClassNotInProfile { .. } => "ClassNotInProfile",
            ProfileError::TooLarge(_) => "RecommendationTooLarge",
        }
    }
}

/// A spec, checked and in numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Percentile and margin for [`respool::export::requests`].
    pub export: ExportConfig,
    /// `(class, concurrency)`, as in the spec.
    pub classes: Vec<(String, u32)>,
    /// The process' own CPU, in millicores.
    pub baseline_cpu_millis: u64,
    /// The process' own memory, in bytes.
    pub baseline_memory: u64,
    /// `maxAllowed` CPU, in millicores.
    pub max_cpu_millis: Option<u64>,
    /// `maxAllowed` memory, in bytes.
    pub max_memory: Option<u64>,
}

/// A percentage (0 to `max`) as parts per million, as the CLI parses
/// `--percentile` and `--margin`.
fn percent(what: &str, v: f64, max: f64) -> Result<Ppm, SpecError> {
    if !v.is_finite() || !(0.0..=max).contains(&v) {
        return Err(SpecError(format!("{what} {v} is outside 0 to {max}")));
    }
    // In range: at most 1000% = 10^7 ppm, which fits a u32.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ppm = (v * 10_000.0).round() as u32;
    Ok(Ppm::from_ppm(ppm))
}

fn amounts(what: &str, a: Option<&Amounts>) -> Result<(Option<u64>, Option<u64>), SpecError> {
    let Some(a) = a else {
        return Ok((None, None));
    };
    let cpu = a
        .cpu
        .as_deref()
        .map(parse_cpu)
        .transpose()
        .map_err(|e| SpecError(format!("{what}.cpu: {e}")))?;
    let memory = a
        .memory
        .as_deref()
        .map(parse_bytes)
        .transpose()
        .map_err(|e| SpecError(format!("{what}.memory: {e}")))?;
    Ok((cpu, memory))
}

/// Checks `spec` and turns it into numbers.
///
/// # Errors
///
/// [`SpecError`] says which field is wrong (the API server's schema
/// catches most of these first; this also guards a server without it).
pub fn settings(spec: &RespoolProfileSpec) -> Result<Settings, SpecError> {
    let t = &spec.target_ref;
    if t.name.is_empty() || t.container_name.is_empty() {
        return Err(SpecError(
            "targetRef.name and targetRef.containerName must not be empty".into(),
        ));
    }
    let src = &spec.profile_source.config_map_key_ref;
    if src.name.is_empty() || src.key.is_empty() {
        return Err(SpecError(
            "profileSource.configMapKeyRef.name and .key must not be empty".into(),
        ));
    }
    if spec.classes.is_empty() || spec.classes.len() > 64 {
        return Err(SpecError(format!(
            "classes: {} given, expected 1 to 64",
            spec.classes.len()
        )));
    }
    let mut classes: Vec<(String, u32)> = Vec::with_capacity(spec.classes.len());
    for c in &spec.classes {
        if c.class.is_empty() {
            return Err(SpecError("classes: a class key is empty".into()));
        }
        if !(1..=4096).contains(&c.concurrency) {
            return Err(SpecError(format!(
                "classes: {:?} has concurrency {}, expected 1 to 4096",
                c.class, c.concurrency
            )));
        }
        if classes.iter().any(|(k, _)| *k == c.class) {
            return Err(SpecError(format!("classes: {:?} is listed twice", c.class)));
        }
        classes.push((c.class.clone(), c.concurrency));
    }
    let export = ExportConfig {
        percentile: percent("percentile", spec.percentile.unwrap_or(95.0), 100.0)?,
        margin: percent("margin", spec.margin.unwrap_or(15.0), 1000.0)?,
        min_samples: 1,
    };
    let (base_cpu, base_mem) = amounts("baseline", spec.baseline.as_ref())?;
    let (max_cpu, max_mem) = amounts("maxAllowed", spec.max_allowed.as_ref())?;
    let baseline_cpu_millis = base_cpu.unwrap_or(0);
    let baseline_memory = base_mem.unwrap_or(DEFAULT_BASELINE_MEMORY);
    if baseline_memory > MAX_TASK_MEMORY || baseline_cpu_millis > MAX_TASK_CPU_MILLIS {
        return Err(SpecError(
            "baseline is beyond 1024 cores or 1Ti of memory".into(),
        ));
    }
    if max_cpu == Some(0) || max_mem.is_some_and(|m| m < MIB) {
        return Err(SpecError(
            "maxAllowed: cpu must be above zero and memory at least 1Mi".into(),
        ));
    }
    Ok(Settings {
        export,
        classes,
        baseline_cpu_millis,
        baseline_memory,
        max_cpu_millis: max_cpu,
        max_memory: max_mem,
    })
}

/// What [`recommend`] computed.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    /// The container's CPU request in millicores (absent: some class has
    /// no CPU measured, so the sum would be too small; left as it is).
    pub cpu_millis: Option<u64>,
    /// The container's memory request and limit in bytes, a whole number
    /// of MiB (absent: some class has no memory measured).
    pub memory_bytes: Option<u64>,
    /// GPUs (absent: none used).
    pub gpus: Option<u64>,
    /// The resources capped to `maxAllowed`.
    pub capped: Vec<String>,
    /// Per class, what it contributed.
    pub classes: Vec<ClassStatus>,
    /// The document's `saved_at_unix_ms`.
    pub saved_at_unix_ms: u64,
}

/// A memory amount as a quantity in MiB, rounded up.
#[must_use]
pub fn memory_quantity(bytes: u64) -> Quantity {
    Quantity(format!("{}Mi", bytes.div_ceil(MIB)))
}

/// A CPU amount as a quantity in millicores.
#[must_use]
pub fn cpu_quantity(millis: u64) -> Quantity {
    Quantity(format!("{millis}m"))
}

impl Recommendation {
    /// As the status shows it, for `container`.
    #[must_use]
    pub fn for_container(&self, container: &str) -> ContainerRecommendation {
        let mut requests = BTreeMap::new();
        let mut limits = BTreeMap::new();
        if let Some(c) = self.cpu_millis {
            requests.insert("cpu".to_owned(), cpu_quantity(c));
        }
        if let Some(m) = self.memory_bytes {
            requests.insert("memory".to_owned(), memory_quantity(m));
            limits.insert("memory".to_owned(), memory_quantity(m));
        }
        if let Some(g) = self.gpus {
            requests.insert(GPU_RESOURCE.to_owned(), Quantity(g.to_string()));
            limits.insert(GPU_RESOURCE.to_owned(), Quantity(g.to_string()));
        }
        ContainerRecommendation {
            container_name: container.to_owned(),
            requests,
            limits,
            capped: self.capped.clone(),
        }
    }

    /// Where it came from, for the status.
    #[must_use]
    pub fn source(&self, location: &str, resource_version: Option<String>) -> SourceStatus {
        SourceStatus {
            location: location.to_owned(),
            resource_version,
            saved_at_unix_ms: self.saved_at_unix_ms,
        }
    }
}

/// `a * n + b`, or `None` on overflow.
fn scaled(a: u64, n: u32, b: u64) -> Option<u64> {
    a.checked_mul(u64::from(n))?.checked_add(b)
}

/// Computes the container's resources from the profiles `document` (read
/// from `source`, named in messages).
///
/// # Errors
///
/// [`ProfileError::Invalid`] when the document does not parse or holds a
/// per-task value beyond the bounds, [`ProfileError::ClassNotInProfile`]
/// when a class has nothing measured, [`ProfileError::TooLarge`] when the
/// container's total is beyond the bounds.
pub fn recommend(
    settings: &Settings,
    document: &str,
    source: &str,
) -> Result<Recommendation, ProfileError> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(ProfileError::Invalid(format!(
            "{source} is {} bytes, more than the {MAX_DOCUMENT_BYTES} read",
            document.len()
        )));
    }
    let profiles =
        Profiles::from_json(document, source).map_err(|e| ProfileError::Invalid(e.to_string()))?;
    let all = requests(&profiles, &settings.export);
    let mut cpu = Some(settings.baseline_cpu_millis);
    let mut memory = Some(settings.baseline_memory);
    let mut gpus: Option<u64> = None;
    let mut classes = Vec::with_capacity(settings.classes.len());
    let too_large = |what: &str| {
        ProfileError::TooLarge(format!(
            "the container's {what} overflows (classes x concurrency)"
        ))
    };
    for (class, concurrency) in &settings.classes {
        let Some(r) = all.iter().find(|r| r.class == *class) else {
            let mut known: Vec<&str> = profiles.classes.iter().map(|c| c.class.as_str()).collect();
            known.truncate(10);
            return Err(ProfileError::ClassNotInProfile {
                class: class.clone(),
                location: source.to_owned(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            });
        };
        if r.cpu_millis.is_none() && r.memory_bytes.is_none() {
            return Err(ProfileError::ClassNotInProfile {
                class: class.clone(),
                location: source.to_owned(),
                known: "it has GPU samples only".into(),
            });
        }
        let bound = |what: &str, v: Option<u64>, max: u64| match v {
            Some(v) if v > max => Err(ProfileError::Invalid(format!(
                "{source}: class {class:?} was learned to need {v} {what} per task, \
                 more than the {max} the operator accepts (a corrupt profile?)"
            ))),
            _ => Ok(()),
        };
        bound("bytes of memory", r.memory_bytes, MAX_TASK_MEMORY)?;
        bound("millicores", r.cpu_millis, MAX_TASK_CPU_MILLIS)?;
        bound("GPUs", r.gpus, MAX_TASK_GPUS)?;
        // A dimension some class has not measured is left out: a sum
        // without it would be too small.
        cpu = match (cpu, r.cpu_millis) {
            (Some(total), Some(c)) => {
                Some(scaled(c, *concurrency, total).ok_or_else(|| too_large("CPU"))?)
            }
            _ => None,
        };
        memory = match (memory, r.memory_bytes) {
            (Some(total), Some(m)) => {
                Some(scaled(m, *concurrency, total).ok_or_else(|| too_large("memory"))?)
            }
            _ => None,
        };
        if let Some(g) = r.gpus {
            gpus =
                Some(scaled(g, *concurrency, gpus.unwrap_or(0)).ok_or_else(|| too_large("GPUs"))?);
        }
        classes.push(ClassStatus {
            class: class.clone(),
            concurrency: *concurrency,
            runs: r.runs,
            samples: u64::try_from(r.samples).unwrap_or(u64::MAX),
            cpu: r.cpu_millis.map(cpu_quantity),
            memory: r.memory_bytes.map(memory_quantity),
            gpus: r.gpus,
        });
    }
    let memory = memory.map(|m| m.div_ceil(MIB).saturating_mul(MIB));
    let over = |what: &str, v: Option<u64>, max: u64, unit: &str| match v {
        Some(v) if v > max => Err(ProfileError::TooLarge(format!(
            "the container would need {v} {unit} of {what}, more than the {max} the operator applies"
        ))),
        _ => Ok(()),
    };
    over("memory", memory, MAX_CONTAINER_MEMORY, "bytes")?;
    over("CPU", cpu, MAX_CONTAINER_CPU_MILLIS, "millicores")?;
    over("GPUs", gpus, MAX_CONTAINER_GPUS, "devices")?;
    if cpu.is_none() && memory.is_none() {
        return Err(ProfileError::Invalid(format!(
            "{source}: neither CPU nor memory is measured for every class"
        )));
    }
    let mut capped = Vec::new();
    let cpu = match (cpu, settings.max_cpu_millis) {
        (Some(c), Some(max)) if c > max => {
            capped.push("cpu".to_owned());
            Some(max)
        }
        (c, _) => c,
    };
    let memory = match (memory, settings.max_memory) {
        (Some(m), Some(max)) if m > max => {
            capped.push("memory".to_owned());
            // Whole MiB, not above the cap.
            Some((max / MIB).max(1) * MIB)
        }
        (m, _) => m,
    };
    Ok(Recommendation {
        cpu_millis: cpu,
        memory_bytes: memory,
        gpus,
        capped,
        classes,
        saved_at_unix_ms: profiles.saved_at_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        ClassConcurrency, ConfigMapKey, ProfileSource, TargetKind, TargetRef, UpdateMode,
    };

    /// The document deploy/ and ci/validate_exports.py use: p95 + 15% is
    /// 1303m / 295Mi per "thumbnail" task and 4548m / 3072Mi per
    /// "transcode" task (its out-of-memory event at 2560Mi bumps it to
    /// 2560 x 1.2 = 3072Mi).
    pub(crate) const EXAMPLE: &str = include_str!("../../deploy/profiles-example.json");

    pub(crate) fn spec(classes: &[(&str, u32)]) -> RespoolProfileSpec {
        RespoolProfileSpec {
            target_ref: TargetRef {
                kind: TargetKind::Deployment,
                name: "thumbnailer".into(),
                container_name: "app".into(),
            },
            classes: classes
                .iter()
                .map(|(c, n)| ClassConcurrency {
                    class: (*c).into(),
                    concurrency: *n,
                })
                .collect(),
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
            update_mode: UpdateMode::Off,
        }
    }

    fn rec(spec: &RespoolProfileSpec, doc: &str) -> Result<Recommendation, ProfileError> {
        recommend(
            &settings(spec).unwrap(),
            doc,
            "configmap/respool-profiles/profiles.json",
        )
    }

    #[test]
    fn the_deployment_examples_arithmetic() {
        // deploy/kubernetes/deployment.yaml: 4 x 295 + 64 = 1244Mi, 4 x 1303m = 5212m.
        let r = rec(&spec(&[("thumbnail", 4)]), EXAMPLE).unwrap();
        assert_eq!(r.memory_bytes, Some(1244 * MIB));
        assert_eq!(r.cpu_millis, Some(5212));
        assert_eq!(r.gpus, None);
        assert!(r.capped.is_empty());
        assert_eq!(r.saved_at_unix_ms, 1_764_982_200_000);
        let c = &r.classes[0];
        assert_eq!((c.runs, c.samples, c.concurrency), (20, 20, 4));
        assert_eq!(c.cpu, Some(Quantity("1303m".into())));
        assert_eq!(c.memory, Some(Quantity("295Mi".into())));
        let k = r.for_container("app");
        assert_eq!(k.requests["cpu"].0, "5212m");
        assert_eq!(k.requests["memory"].0, "1244Mi");
        assert_eq!(k.limits["memory"].0, "1244Mi");
        assert!(!k.limits.contains_key("cpu"), "no CPU limit");
    }

    #[test]
    fn two_classes_a_baseline_and_another_percentile() {
        let mut s = spec(&[("thumbnail", 4), ("transcode", 1)]);
        s.baseline = Some(Amounts {
            cpu: Some("250m".into()),
            memory: Some("64Mi".into()),
        });
        let r = rec(&s, EXAMPLE).unwrap();
        // 4 x 295 + 3072 + 64 = 4316Mi; 4 x 1303 + 4548 + 250 = 10010m.
        assert_eq!(r.memory_bytes, Some(4316 * MIB));
        assert_eq!(r.cpu_millis, Some(10_010));
        // p99 + 20% (ci/validate_exports.py's second case): 1404m / 310Mi
        // and 4773m / 3072Mi per task.
        s.percentile = Some(99.0);
        s.margin = Some(20.0);
        let r = rec(&s, EXAMPLE).unwrap();
        assert_eq!(r.memory_bytes, Some((4 * 310 + 3072 + 64) * MIB));
        assert_eq!(r.cpu_millis, Some(4 * 1404 + 4773 + 250));
    }

    #[test]
    fn max_allowed_caps_and_says_so() {
        let mut s = spec(&[("thumbnail", 4)]);
        s.max_allowed = Some(Amounts {
            cpu: Some("4".into()),
            memory: Some("1Gi".into()),
        });
        let r = rec(&s, EXAMPLE).unwrap();
        assert_eq!(r.cpu_millis, Some(4000));
        assert_eq!(r.memory_bytes, Some(1024 * MIB));
        assert_eq!(r.capped, ["cpu", "memory"]);
        assert_eq!(r.for_container("app").capped, ["cpu", "memory"]);
    }

    #[test]
    fn bad_specs_say_which_field() {
        let e = |s: &RespoolProfileSpec| settings(s).unwrap_err().0;
        assert!(e(&spec(&[])).contains("classes: 0 given"));
        assert!(e(&spec(&[("a", 0)])).contains("concurrency 0"));
        assert!(e(&spec(&[("a", 1), ("a", 2)])).contains("listed twice"));
        let mut s = spec(&[("a", 1)]);
        s.percentile = Some(101.0);
        assert!(
            e(&s).contains("percentile 101 is outside 0 to 100"),
            "{}",
            e(&s)
        );
        s.percentile = Some(f64::NAN);
        assert!(e(&s).contains("percentile"));
        s.percentile = None;
        s.margin = Some(-1.0);
        assert!(e(&s).contains("margin"));
        s.margin = None;
        s.baseline = Some(Amounts {
            cpu: None,
            memory: Some("lots".into()),
        });
        assert!(
            e(&s).starts_with("baseline.memory: invalid memory amount"),
            "{}",
            e(&s)
        );
        s.baseline = None;
        s.max_allowed = Some(Amounts {
            cpu: Some("0".into()),
            memory: None,
        });
        assert!(e(&s).contains("maxAllowed"));
        s.max_allowed = None;
        s.target_ref.container_name.clear();
        assert!(e(&s).contains("containerName"));
        let ok = settings(&spec(&[("a", 1)])).unwrap();
        assert_eq!(ok.baseline_memory, DEFAULT_BASELINE_MEMORY);
        assert_eq!(ok.export, ExportConfig::default());
    }

    #[test]
    fn a_missing_class_names_the_ones_there() {
        let e = rec(&spec(&[("resize", 1)]), EXAMPLE).unwrap_err();
        assert_eq!(e.reason(), "ClassNotInProfile");
        assert_eq!(
            e.to_string(),
            "class \"resize\" has no measured CPU or memory in \
             configmap/respool-profiles/profiles.json (classes there: thumbnail, transcode)"
        );
    }

    /// A document with one class whose samples all use `memory` bytes
    /// and `cpu` millicores.
    fn doc(memory: u64, cpu: u64) -> String {
        format!(
            r#"{{"format":"respool-profiles","version":1,"saved_at_unix_ms":1,"classes":[
            {{"class":"a","runs":1,"samples":[{{"at_unix_ms":1,"usage":{{"memory":{memory},"cpu":{cpu}}}}}]}}]}}"#
        )
    }

    #[test]
    fn corrupt_or_absurd_profiles_are_refused_not_applied() {
        let s = spec(&[("a", 1)]);
        let e = rec(&s, "{ not json").unwrap_err();
        assert_eq!(e.reason(), "ProfileInvalid");
        assert!(e.to_string().contains("is corrupt at line 1"), "{e}");
        let e = rec(&s, r#"{"format":"other","version":1}"#).unwrap_err();
        assert!(e.to_string().contains("not a respool profile file"), "{e}");
        let e = rec(&s, r#"{"format":"respool-profiles","version":9}"#).unwrap_err();
        assert!(e.to_string().contains("format version 9"), "{e}");
        // u64::MAX bytes per task (a corrupt profile): beyond 1 TiB.
        let e = rec(&s, &doc(u64::MAX, 100)).unwrap_err();
        assert_eq!(e.reason(), "ProfileInvalid");
        assert!(e.to_string().contains("more than the 1099511627776"), "{e}");
        let e = rec(&s, &doc(MIB, 5_000_000)).unwrap_err();
        assert!(e.to_string().contains("millicores per task"), "{e}");
        // Within the per-task bound (800 GiB + 15%), beyond the container's: x 4096.
        let s = spec(&[("a", 4096)]);
        let e = rec(&s, &doc(800 * GIB, 100)).unwrap_err();
        assert_eq!(e.reason(), "RecommendationTooLarge");
        // A document over 1 MiB is not parsed.
        let big = " ".repeat(MAX_DOCUMENT_BYTES + 1);
        assert!(
            rec(&spec(&[("a", 1)]), &big)
                .unwrap_err()
                .to_string()
                .contains("bytes, more than")
        );
    }

    #[test]
    fn a_dimension_some_class_lacks_is_left_out() {
        let doc = r#"{"format":"respool-profiles","version":1,"saved_at_unix_ms":1,"classes":[
            {"class":"a","runs":1,"samples":[{"at_unix_ms":1,"usage":{"memory":1048576,"cpu":100}}]},
            {"class":"b","runs":1,"samples":[{"at_unix_ms":1,"usage":{"memory":2097152}}]}]}"#;
        let r = rec(&spec(&[("a", 1), ("b", 1)]), doc).unwrap();
        assert_eq!(r.cpu_millis, None, "b has no CPU measured");
        // 1 MiB x 1.15 -> 2 MiB, 2 MiB x 1.15 -> 3 MiB, + 64.
        assert_eq!(r.memory_bytes, Some(69 * MIB));
        assert!(!r.for_container("x").requests.contains_key("cpu"));
    }
}
