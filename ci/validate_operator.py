"""Checks respool-operator's manifests offline (run by ci/operator.sh).

- The CRD (deploy/kubernetes/respoolprofile-crd.yaml) and the operator's
  objects (deploy/kubernetes/operator.yaml) are validated against the
  Kubernetes 1.37 schemas by kubernetes-validate --strict; each object must
  be reported as passed (a kind without a schema is only a warning there),
  and a broken CRD must be rejected, so that a validator that checks
  nothing fails.
- The CRD's YAML read by PyYAML (YAML 1.1, as kubectl reads it: a bare Off
  is false there) equals `respool-operator crd --json`.
- The example RespoolProfile (deploy/kubernetes/respoolprofile-example.yaml)
  is validated against the CRD's own openAPIV3Schema with jsonschema, made
  strict as the API server's strict field validation is (an unknown field
  is an error; `nullable` allows null); broken copies of it (concurrency 0,
  a bare Off, an unknown field, no targetRef, an unknown kind) must be
  rejected.

usage: validate_operator.py RESPOOL_OPERATOR_BINARY KUBERNETES_VALIDATE
"""

import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
CRD = KUBE / "respoolprofile-crd.yaml"
OPERATOR = KUBE / "operator.yaml"
EXAMPLE = KUBE / "respoolprofile-example.yaml"


def kubernetes_validate(kv, *paths):
    r = subprocess.run([kv, "--strict", *map(str, paths)], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def check_kubernetes_validate(kv):
    rc, out = kubernetes_validate(kv, CRD, OPERATOR)
    print(out, end="")
    assert rc == 0, "the CRD or the operator's manifests do not validate"
    objects = [d for p in (CRD, OPERATOR) for d in yaml.safe_load_all(p.read_text())]
    for d in objects:
        resource = f"{d['kind'].lower()}/{d['metadata']['name']}"
        assert f"passed for resource {resource} " in out, f"{resource} was not validated: {out}"
    broken = yaml.safe_load(CRD.read_text())
    broken["spec"]["scope"] = "Namespace"  # not Namespaced or Cluster
    broken["spec"]["versions"][0]["servedd"] = True
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "broken-crd.yaml"
        path.write_text(yaml.safe_dump(broken))
        rc, out = kubernetes_validate(kv, path)
    assert rc != 0, f"kubernetes-validate --strict accepted a broken CRD: {out}"
    print(f"kubernetes-validate --strict: {len(objects)} objects passed; a broken CRD is rejected")


def check_yaml11(operator):
    as_json = json.loads(
        subprocess.run([operator, "crd", "--json"], check=True, capture_output=True, text=True).stdout
    )
    assert yaml.safe_load(CRD.read_text()) == as_json, "the CRD YAML reads differently in YAML 1.1"
    print("the CRD's YAML means, to a YAML 1.1 reader, what `respool-operator crd --json` says")


def strict(schema):
    """The openAPIV3Schema as JSON Schema the way the API server applies it
    with strict field validation: unknown fields are errors, `nullable`
    allows null."""
    s = copy.deepcopy(schema)
    if s.get("nullable") and "type" in s:
        s["type"] = [s["type"], "null"]
    if s.get("type") in ("object", ["object", "null"]) and "properties" in s:
        s.setdefault("additionalProperties", False)
    for key in ("properties",):
        if key in s:
            s[key] = {k: strict(v) for k, v in s[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(s.get(key), dict):
            s[key] = strict(s[key])
    return s


def check_example():
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]
    [version] = [v for v in spec["versions"] if v["served"] and v["storage"]]
    schema = strict(version["schema"]["openAPIV3Schema"])
    # apiVersion, kind and metadata are the API server's, not the CRD's.
    for k in ("apiVersion", "kind", "metadata"):
        schema["properties"].setdefault(k, {})
    validator = jsonschema.Draft202012Validator(schema)

    def errors(doc):
        problems = [e.message for e in validator.iter_errors(doc)]
        if doc.get("apiVersion") != f"{spec['group']}/{version['name']}":
            problems.append(f"apiVersion {doc.get('apiVersion')}")
        if doc.get("kind") != spec["names"]["kind"]:
            problems.append(f"kind {doc.get('kind')}")
        if not doc.get("metadata", {}).get("name"):
            problems.append("no metadata.name")
        return problems

    [example] = yaml.safe_load_all(EXAMPLE.read_text())
    assert not errors(example), errors(example)
    assert example["spec"]["updateMode"] == "Off"

    def broken(change):
        doc = copy.deepcopy(example)
        change(doc)
        return doc

    bad = {
        "concurrency 0": broken(lambda d: d["spec"]["classes"][0].update(concurrency=0)),
        "a bare Off (false)": broken(
            lambda d: d["spec"].update(yaml.safe_load("updateMode: Off"))
        ),
        "an unknown field": broken(lambda d: d["spec"].update(updatemode="Auto")),
        "no targetRef": broken(lambda d: d["spec"].pop("targetRef")),
        "a Job target": broken(lambda d: d["spec"]["targetRef"].update(kind="Job")),
        "percentile 101": broken(lambda d: d["spec"].update(percentile=101)),
        "no classes": broken(lambda d: d["spec"].update(classes=[])),
        "another group": broken(lambda d: d.update(apiVersion="respool.io/v1alpha1")),
    }
    for what, doc in bad.items():
        assert errors(doc), f"the CRD's schema accepted a RespoolProfile with {what}"
    print(
        f"{EXAMPLE.name} is valid against the CRD's openAPIV3Schema (strict); "
        f"{len(bad)} broken copies are rejected"
    )


def main():
    operator, kv = sys.argv[1], sys.argv[2]
    check_kubernetes_validate(kv)
    check_yaml11(operator)
    check_example()


if __name__ == "__main__":
    main()
