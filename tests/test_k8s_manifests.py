"""test_k8s_manifests: deploy/kubernetes/*.yaml are valid Kubernetes objects and fit llamaserve.

tests/node/k8s_validate.mjs checks every document against the Kubernetes OpenAPI schemas (the
pinned npm package kubernetes-models) and rejects unknown fields. This test runs it on the
shipped manifests, then on broken copies (a wrong type, a misspelt field, a missing required
field, an unknown apiVersion, bad YAML), each of which must fail. It then checks what no schema
knows: the selectors match the pods, the probes and Service reach the container's port, the
grace period covers preStop plus --shutdown-timeout, the pod runs as user 10001 on a read-only
root, every LLAMASERVE_* variable is a real setting, and the HPA's metric is one a running
server exports as a gauge. Skipped (exit 77) when node or tests/node/node_modules is missing
(scripts/test-deps.sh installs them).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from server_harness import BIN, Runner, Server

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")
VALIDATOR = os.path.join(NODE_DIR, "k8s_validate.mjs")
K8S_DIR = os.path.join(HERE, "..", "deploy", "kubernetes")
KINDS = {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
CANCEL_WAIT_S = 5  # after the drain, llamaserve waits this long for the cancelled (cmd_serve.c)
USER_ID = 10001    # the image's numeric USER


def validate(files, dump=False):
    p = subprocess.run(["node", VALIDATOR] + (["--dump"] if dump else []) + files, cwd=NODE_DIR,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def manifests():
    files = sorted(glob.glob(os.path.join(K8S_DIR, "*.yaml")))
    assert files, "no manifests in deploy/kubernetes"
    return files


def test_shipped_manifests_are_valid():
    rc, out = validate(manifests())
    print(out, end="")
    assert rc == 0, out
    kinds = {line.split()[2].split("/")[0] for line in out.splitlines() if line.startswith("ok ")}
    assert kinds == KINDS, kinds


# (file, old text, new text, what the validator must say)
BREAKS = [
    ("deployment.yaml", "containerPort: 8080", 'containerPort: "8080"',
     "containerPort must be integer"),
    ("deployment.yaml", "readinessProbe:", "readinesProbe:", 'unknown field "readinesProbe"'),
    ("deployment.yaml", "      securityContext:\n        runAsNonRoot: true",
     "      securityContext:\n        runAsNonRoot: true\n        readOnlyRootFilesystem: true",
     'unknown field "readOnlyRootFilesystem"'),  # a container field put on the pod
    ("hpa.yaml", "  maxReplicas: 8\n", "", "must have required property maxReplicas"),
    ("hpa.yaml", "averageValue: \"2\"", "averageValue: [2]", "averageValue"),
    ("pdb.yaml", "apiVersion: policy/v1", "apiVersion: policy/v1beta9",
     'unknown apiVersion "policy/v1beta9"'),
    ("service.yaml", "kind: Service", "kind: Servce", 'unknown kind "Servce"'),
    ("service.yaml", "  type: ClusterIP", " type: ClusterIP", "YAML"),
]


def test_broken_copies_fail():
    """Each break, applied to a copy of one file, makes the validator fail on that copy and
    say why (one validator run over all the copies)."""
    tmp = tempfile.mkdtemp(prefix="ls-k8s-")
    try:
        copies = []
        for i, (name, old, new, want) in enumerate(BREAKS):
            src = open(os.path.join(K8S_DIR, name), encoding="utf-8").read()
            assert src.count(old) == 1, "%s: %r occurs %d times" % (name, old, src.count(old))
            broken = os.path.join(tmp, "%02d-%s" % (i, name))
            with open(broken, "w", encoding="utf-8") as f:
                f.write(src.replace(old, new))
            copies.append((broken, want))
        rc, out = validate([c[0] for c in copies])
        assert rc == 1, out
        verdicts = {}  # file -> its lines of output (a YAML error spans several)
        for line in out.splitlines():
            m = re.match(r"^(ok|FAIL) (\S+?)(?: document \d+|:)? ", line)
            if m:
                current = verdicts.setdefault(m.group(2).rstrip(":"), [])
            current.append(line)
        for (broken, want), (name, old, new, _) in zip(copies, BREAKS):
            text = "\n".join(verdicts.get(broken, []))
            assert text.startswith("FAIL") and want in text, \
                "%s with %r -> %r: want FAIL with %r, got:\n%s" % (name, old, new, want, text)
    finally:
        shutil.rmtree(tmp)


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def problems(docs, settings, gauges):
    """What the schemas cannot check, as a list of messages (empty: all good). docs: the parsed
    manifests by kind; settings: the LLAMASERVE_* names `serve --help` lists; gauges: the
    gauge metric names a running server exports."""
    out = []

    def need(cond, msg):
        if not cond:
            out.append(msg)
    dep, svc, pdb, hpa = (docs.get(k) for k in ("Deployment", "Service", "PodDisruptionBudget",
                                                 "HorizontalPodAutoscaler"))
    if not all((dep, svc, pdb, hpa)):
        return ["missing kinds: %s" % sorted(KINDS - set(docs))]
    pod = dep["spec"]["template"]
    labels = pod["metadata"].get("labels", {})
    spec = pod["spec"]
    need(labels_match(dep["spec"]["selector"].get("matchLabels"), labels),
         "Deployment selector does not match its pod labels")
    need(len(spec["containers"]) == 1, "one container expected")
    c = spec["containers"][0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    need(ports.get("http") == 8080, "container port http must be 8080 (the image's)")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        g = c.get(probe, {}).get("httpGet", {})
        need(g.get("path") == "/health" and g.get("port") in ("http", 8080),
             "%s must GET /health on port http" % probe)
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    need(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True, "runAsNonRoot")
    need(csc.get("runAsUser", psc.get("runAsUser")) == USER_ID, "runAsUser %d" % USER_ID)
    need(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    need(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    env = env_of(c)
    for name in env:
        need(name in settings, "%s is not a llamaserve setting" % name)
    cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    need(len(cmd) == 2 and cmd[0] == "sleep" and cmd[1].isdigit(), "preStop must be sleep N")
    pre = int(cmd[1]) if len(cmd) == 2 and cmd[1].isdigit() else 0
    drain = int(env.get("LLAMASERVE_SHUTDOWN_TIMEOUT") or 10)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    need(grace >= pre + drain + CANCEL_WAIT_S,
         "terminationGracePeriodSeconds %d < preStop %d + shutdown timeout %d + %d"
         % (grace, pre, drain, CANCEL_WAIT_S))
    res = c.get("resources", {})
    mem = res.get("requests", {}).get("memory"), res.get("limits", {}).get("memory")
    need(mem[0] is not None and mem[0] == mem[1],
         "memory request must equal the limit (the weights and KV cache are not elastic)")
    need(labels_match(svc["spec"].get("selector"), labels), "Service selects no pod")
    for p in svc["spec"]["ports"]:
        need(p["targetPort"] in ports or p["targetPort"] in ports.values(),
             "Service targetPort %r is no container port" % p["targetPort"])
    need(labels_match(pdb["spec"]["selector"].get("matchLabels"), labels), "PDB selects no pod")
    ref = hpa["spec"]["scaleTargetRef"]
    need((ref["apiVersion"], ref["kind"], ref["name"]) ==
         ("apps/v1", "Deployment", dep["metadata"]["name"]), "HPA scales another object")
    metrics = hpa["spec"].get("metrics", [])
    need(any(m["type"] == "Pods" for m in metrics), "HPA needs a Pods metric")
    for m in metrics:
        if m["type"] == "Pods":
            name = m["pods"]["metric"]["name"]
            need(name in gauges, "HPA metric %s is no gauge of /metrics" % name)
    need(hpa["spec"].get("minReplicas", 1) >= 2, "minReplicas >= 2, so the PDB lets a drain go")
    return out


def parsed_docs():
    rc, out = validate(manifests(), dump=True)
    assert rc == 0, out
    docs = {}
    for entry in json.loads(out):
        assert entry["doc"]["kind"] not in docs, "two %s" % entry["doc"]["kind"]
        docs[entry["doc"]["kind"]] = entry["doc"]
    return docs


def serve_settings():
    p = subprocess.run([BIN, "serve", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    names = set(re.findall(r"env (LLAMASERVE_[A-Z_]+)", p.stdout.decode()))
    assert "LLAMASERVE_SHUTDOWN_TIMEOUT" in names, names
    return names


def served_gauges():
    with Server("--alias", "k8s-metrics") as s:
        st, _, data = s.request("GET", "/metrics")
        assert st == 200, st
    return set(re.findall(r"^# TYPE (\S+) gauge$", data.decode(), re.M))


def test_manifests_fit_llamaserve():
    docs, settings, gauges = parsed_docs(), serve_settings(), served_gauges()
    assert "llamaserve_queue_depth" in gauges, gauges
    found = problems(docs, settings, gauges)
    assert not found, found
    # and the checks can fail: one change each, on a copy of the parsed documents
    breaks = [
        (lambda d: d["Deployment"]["spec"]["template"]["spec"].update(
            terminationGracePeriodSeconds=30), "terminationGracePeriodSeconds 30"),
        (lambda d: d["Service"]["spec"]["selector"].update({"app.kubernetes.io/name": "other"}),
         "Service selects no pod"),
        (lambda d: d["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "LLAMASERVE_CTXSIZE", "value": "1"}), "LLAMASERVE_CTXSIZE is not"),
        (lambda d: d["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"].update(
            name="llamaserve_queue_length"), "llamaserve_queue_length is no gauge"),
        (lambda d: d["Deployment"]["spec"]["template"]["spec"]["securityContext"].update(
            runAsUser=0), "runAsUser"),
        (lambda d: d["Deployment"]["spec"]["template"]["spec"]["containers"][0]
         ["readinessProbe"]["httpGet"].update(path="/"), "readinessProbe must GET /health"),
    ]
    for change, want in breaks:
        copy = json.loads(json.dumps(docs))
        change(copy)
        found = problems(copy, settings, gauges)
        assert any(want in f for f in found), (want, found)


def main():
    if not shutil.which("node") or not all(
            os.path.isdir(os.path.join(NODE_DIR, "node_modules", m))
            for m in ("kubernetes-models", "yaml")):
        print("skip: node or tests/node/node_modules missing (run: npm ci --prefix tests/node)")
        return 77
    runner = Runner("test_k8s_manifests")
    runner.run(test_shipped_manifests_are_valid)
    runner.run(test_broken_copies_fail)
    runner.run(test_manifests_fit_llamaserve)
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
