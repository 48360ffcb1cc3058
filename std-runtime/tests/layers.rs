//! The engine reads as a stack: every module of `respool` imports only
//! modules of lower layers (never its own layer, never one above), so the
//! module graph has no cycle. The layers are those of `ARCHITECTURE.md`; a
//! new module must be given one here, which is the moment to decide where
//! it belongs.
//!
//! The check reads the sources: an edge from module `a` to module `b` is a
//! `crate::b` path in `a`'s code (comments and doc comments are skipped, so
//! a doc link may point anywhere). Methods that a module adds to a type of
//! another (`impl Shared` blocks spread over `engine`, `admit` and
//! `worker`) are not edges: only paths are.

use std::collections::BTreeMap;
use std::path::Path;

/// Bottom to top. A module may use the modules of the layers before its own.
const LAYERS: &[&[&str]] = &[
    // Leaves: no module of the crate.
    &[
        "sync", "barrier", "job", "alloc", "metrics", "place", "cost", "waitq",
    ],
    // Utilities over the leaves.
    &["measure", "runq", "timer", "units", "store", "sys"],
    &["error", "learn", "export"],
    &["limits", "handle"],
    // The observer seam (its `Started` event carries a handle's canceller).
    &["observe"],
    // The unit of work and the configuration.
    &["work", "config"],
    // Decides: admission, the wait queue, placement.
    &["scheduler"],
    // The shared state: queues, gate, lanes.
    &["engine"],
    // Act on it: submission and dispatch, the worker, the snapshot.
    &["admit", "worker", "snapshot"],
    // The facade and lifecycle.
    &["pool"],
    // What users build with: tasks, scopes, the builder.
    &["task", "scope", "builder"],
    // The Go-compatible batch API, over all of it.
    &["batch"],
];

/// The `crate::module` paths in `text`, comments left out.
fn uses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

fn collect(dir: &Path, src: &Path, into: &mut BTreeMap<String, Vec<(String, String)>>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(&path, src, into);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let rel = path.strip_prefix(src).expect("under src");
        let module = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_owned())
            .expect("a module name");
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable source");
        let edges = into.entry(module.clone()).or_default();
        for used in uses(&text) {
            if used != module {
                edges.push((used, rel.display().to_string()));
            }
        }
    }
}

#[test]
fn every_module_uses_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    collect(&src, &src, &mut graph);
    let layer_of = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    let mut problems = Vec::new();
    for (module, edges) in &graph {
        let Some(mine) = layer_of(module) else {
            problems.push(format!(
                "module `{module}` has no layer: add it to LAYERS (and ARCHITECTURE.md)"
            ));
            continue;
        };
        for (used, file) in edges {
            match layer_of(used) {
                None => problems.push(format!("{file} uses `crate::{used}`, which has no layer")),
                Some(theirs) if theirs >= mine => problems.push(format!(
                    "{file} (layer {mine}) uses `crate::{used}` (layer {theirs}): \
                     a module may use only lower layers"
                )),
                Some(_) => {}
            }
        }
    }
    // Every layered module exists (a renamed module is renamed here too).
    for m in LAYERS.iter().flat_map(|l| l.iter()) {
        if !graph.contains_key(*m) {
            problems.push(format!("LAYERS names `{m}`, which is not a module of src/"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The check itself: an upward edge and an unlayered module are caught.
#[test]
fn the_check_sees_paths_and_skips_comments() {
    let text = "use crate::pool::Pool;\n// crate::batch in a comment\nlet x = crate::sync::lock(&m); // crate::task\n/// [`X`](crate::builder::Builder)\n";
    assert_eq!(uses(text), ["pool", "sync"]);
}
