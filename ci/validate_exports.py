"""Checks `respool profiles export --format k8s|slurm|hq|ray` and deploy/ offline.

Run by ci/exports.sh (which makes the virtual environment with the pinned
kubernetes-validate). Each format is parsed by a real parser of its syntax:
JSON (k8s, ray) by Python's json, the HyperQueue job file by Python's
tomllib (TOML 1.0), Slurm's #SBATCH lines by shlex and an argparse parser
with sbatch's option grammar; every Kubernetes object is validated against
the Kubernetes 1.37 OpenAPI schemas by kubernetes-validate --strict (which
also must reject a broken one, so that a validator that checks nothing
fails). The numbers read back from each format are compared with the
requests computed here, independently of respool, from the samples of
deploy/profiles-example.json (nearest-rank percentile, plus the margin,
rounded up; memory at least the bump after the largest OOM event).

usage: validate_exports.py RESPOOL_BINARY KUBERNETES_VALIDATE
"""

import argparse
import json
import math
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "deploy" / "profiles-example.json"
MIB = 1 << 20


def export(respool, fmt, *extra):
    out = subprocess.run(
        [respool, "profiles", "--store", str(FIXTURE), "export", "--format", fmt, *extra],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


def expected(percentile=95, margin=15):
    """class -> (millicores or None, memory bytes or None), computed by hand."""
    doc = json.loads(FIXTURE.read_text())
    want = {}
    for c in doc["classes"]:
        runs = [s for s in c["samples"] if "oom_bytes" not in s]

        def pick(dim):
            vals = sorted(s["usage"][dim] for s in runs if dim in s.get("usage", {}))
            if not vals:
                return None
            rank = max(1, math.ceil(percentile / 100 * len(vals)))
            return math.ceil(vals[rank - 1] * (100 + margin) / 100)

        mem = pick("memory")
        ooms = [s["oom_bytes"] for s in c["samples"] if "oom_bytes" in s]
        if ooms:
            worst = max(ooms)
            bump = max(math.ceil(worst * 1.2), worst + 100 * MIB)
            mem = max(mem or 0, bump)
        if mem is not None:
            mem = math.ceil(mem / MIB) * MIB
        want[c["class"]] = (pick("cpu"), mem)
    return want


def k8s_quantity(q):
    m = re.fullmatch(r"([0-9]+)(m|Mi|Gi|Ki)?", q)
    assert m, f"not a Kubernetes quantity as respool writes them: {q!r}"
    n, unit = int(m.group(1)), m.group(2)
    return {None: n * 1000, "m": n, "Ki": n << 10, "Mi": n << 20, "Gi": n << 30}[unit]


def validate(kv, docs, name):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{name}.json"
        # kubernetes-validate reads YAML; JSON is YAML.
        path.write_text("\n---\n".join(json.dumps(doc) for doc in docs))
        r = subprocess.run([kv, "--strict", "--quiet", str(path)], capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr


def pod_with(resources, name):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "task", "image": "example/task:1", "resources": resources}]},
    }


def check_k8s(respool, kv, want):
    got = json.loads(export(respool, "k8s"))
    assert set(got) == set(want), (set(got), set(want))
    pods = []
    for i, (cls, res) in enumerate(sorted(got.items())):
        cpu, mem = want[cls]
        req, lim = res["requests"], res.get("limits", {})
        assert k8s_quantity(req["memory"]) == mem, (cls, req, mem)
        assert k8s_quantity(lim["memory"]) == mem, (cls, lim, mem)
        assert k8s_quantity(req["cpu"]) == cpu, (cls, req, cpu)
        assert "cpu" not in lim, "no CPU limit"
        pods.append(pod_with(res, f"class-{i}"))
    rc, out = validate(kv, pods, "k8s")
    assert rc == 0, out
    # The validator rejects what is wrong (a misspelt field). It does not
    # check quantity syntax (the schema says int-or-string): k8s_quantity
    # above does.
    bad = pod_with({"request": {"memory": "1Mi"}}, "bad")
    rc, out = validate(kv, [bad], "bad")
    assert rc != 0, f"kubernetes-validate --strict accepted an unknown field: {out}"
    print(f"k8s: {len(pods)} classes, numbers as computed, valid Pods (kubernetes-validate --strict)")


def sbatch_parser():
    # The options respool writes, with sbatch's value grammar (man sbatch:
    # --mem=<size>[units], units K|M|G|T, default M; --cpus-per-task=<ncpus>;
    # --gpus-per-task=[type:]<number>).
    p = argparse.ArgumentParser(prog="sbatch", add_help=False, exit_on_error=False)
    p.add_argument("--mem", type=lambda v: re.fullmatch(r"([0-9]+)([KMGT]?)", v) or int("x"))
    p.add_argument("--cpus-per-task", type=int)
    p.add_argument("--gpus-per-task", type=int)
    return p


def check_slurm(respool, want):
    text = export(respool, "slurm")
    parser = sbatch_parser()
    per_class, current = {}, None
    for line in text.splitlines():
        m = re.fullmatch(r"# respool class (\".*\") \(\d+ runs, \d+ samples\)", line)
        if m:
            current = json.loads(m.group(1))
            per_class[current] = {}
        elif line.startswith("#SBATCH "):
            assert current is not None, line
            ns = parser.parse_args(shlex.split(line[len("#SBATCH "):]))
            if ns.mem is not None:
                n, unit = int(ns.mem.group(1)), ns.mem.group(2) or "M"
                per_class[current]["mem"] = n << {"K": 10, "M": 20, "G": 30, "T": 40}[unit]
            if ns.cpus_per_task is not None:
                per_class[current]["cpus"] = ns.cpus_per_task
        else:
            assert line == "" or line.startswith("# "), f"unexpected line {line!r}"
    assert set(per_class) == set(want)
    for cls, (cpu, mem) in want.items():
        assert per_class[cls]["mem"] == mem, (cls, per_class[cls], mem)
        assert per_class[cls]["cpus"] == math.ceil(cpu / 1000), (cls, per_class[cls], cpu)
    print(f"slurm: {len(per_class)} classes, #SBATCH lines parse, numbers as computed")


def check_hq(respool, want):
    job = tomllib.loads(export(respool, "hq"))
    tasks = job["task"]
    assert len(tasks) == len(want)
    seen = set()
    for t in tasks:
        assert isinstance(t["id"], int) and t["id"] not in seen
        seen.add(t["id"])
        assert all(isinstance(a, str) for a in t["command"]) and t["command"]
        cls = t["env"]["RESPOOL_CLASS"]
        cpu, mem = want[cls]
        (req,) = t["request"]
        res = req["resources"]
        for amount in res.values():
            # HyperQueue: a positive amount, at most 4 decimals.
            assert re.fullmatch(r"[0-9]+(\.[0-9]{1,4})?", amount), amount
        # cpus in cores; mem in megabytes, rounded up.
        assert round(float(res["cpus"]) * 1000) == cpu, (cls, res, cpu)
        assert int(res["mem"]) == math.ceil(mem / 1_000_000), (cls, res, mem)
    print(f"hq: {len(tasks)} tasks, TOML parses (tomllib), [[task.request]] numbers as computed")


def check_ray(respool, want):
    got = json.loads(export(respool, "ray"))
    assert set(got) == set(want)
    allowed = {"num_cpus", "num_gpus", "memory", "resources"}
    for cls, opts in got.items():
        assert set(opts) <= allowed, opts
        cpu, mem = want[cls]
        assert isinstance(opts["memory"], int) and opts["memory"] == mem, (cls, opts)
        assert isinstance(opts["num_cpus"], float | int) and round(opts["num_cpus"] * 1000) == cpu
    print(f"ray: {len(got)} classes, options of @ray.remote / .options(), numbers as computed")


def check_other_percentile(respool):
    got = json.loads(export(respool, "k8s", "--percentile", "50", "--margin", "0"))
    want = expected(50, 0)
    for cls, res in got.items():
        assert k8s_quantity(res["requests"]["cpu"]) == want[cls][0], (cls, res, want[cls])
    print("k8s --percentile 50 --margin 0: numbers as computed")


def exported_metric_families():
    text = (ROOT / "observe" / "src" / "metrics.rs").read_text()
    return set(re.findall(r'"(respool_[a-z0-9_]+)"', text))


def check_deploy(kv):
    manifests = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
    assert manifests
    r = subprocess.run([kv, "--strict", *map(str, manifests)], capture_output=True, text=True)
    print(r.stdout + r.stderr, end="")
    assert r.returncode == 0, "a manifest under deploy/kubernetes does not validate"
    # KEDA's ScaledObject is a CRD kubernetes-validate has no schema for:
    # its required fields are checked here (KEDA 2.x docs: scaleTargetRef.name,
    # triggers[].type and, for prometheus, serverAddress, query, threshold).
    import yaml  # PyYAML, a dependency of kubernetes-validate

    families = exported_metric_families()
    for path in manifests:
        text = path.read_text()
        for doc in yaml.safe_load_all(text):
            if doc["kind"] == "ScaledObject":
                assert doc["apiVersion"] == "keda.sh/v1alpha1"
                assert doc["spec"]["scaleTargetRef"]["name"]
                for t in doc["spec"]["triggers"]:
                    assert t["type"] == "prometheus"
                    md = t["metadata"]
                    assert md["serverAddress"].startswith("http")
                    float(md["threshold"])
                    assert md["query"]
        # Every respool metric a manifest names is one respool-observe exports.
        for name in set(re.findall(r"respool_[a-z0-9_]+", text)):
            assert name in families, f"{path.name} names {name}, which respool-observe does not export"
    print(f"deploy: {len(manifests)} files; KEDA fields checked; metric names exported by respool-observe")


def main():
    respool, kv = sys.argv[1], sys.argv[2]
    want = expected()
    check_k8s(respool, kv, want)
    check_slurm(respool, want)
    check_hq(respool, want)
    check_ray(respool, want)
    check_other_percentile(respool)
    check_deploy(kv)


if __name__ == "__main__":
    main()
