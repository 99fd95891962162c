"""deploy/kubernetes/: every manifest valid against the Kubernetes API schemas
(kubernetes-validate ships them: no cluster, no network), no failed check from the checkov
security linter (a check skipped is an annotation in the manifest with its reason), and the
perfics objects agreeing with the image and with each other."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from routing.policy_loader import parse_policy
from tests.conftest import ROOT
from tests.deploy.conftest import image_facts

MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33"
CHECKOV = Path(os.environ.get("PERFICS_CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov"))


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = [
        (path.name, document)
        for path in sorted(MANIFESTS.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document is not None
    ]
    assert found, MANIFESTS
    return found


def objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in documents()}


def test_every_manifest_is_valid_against_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    kinds = set()
    for name, document in documents():
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {document['kind']} {document['metadata']['name']}: {exc}")
        assert document["metadata"].get("namespace", "perfics") == "perfics", name
        kinds.add(document["kind"])
    assert {
        "Namespace",
        "Deployment",
        "ConfigMap",
        "Secret",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    } <= kinds


def test_the_schema_check_can_fail() -> None:
    import kubernetes_validate

    deployment = objects()[("Deployment", "perfics")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0] = {
        **container,
        "securityContext": {"readOnlyRootFileSystem": True},  # a typo of the real field
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.slow  # checkov, in its own venv (make test installs it)
def test_checkov_fails_no_check_and_every_skip_gives_its_reason() -> None:
    assert CHECKOV.is_file(), f"{CHECKOV} is missing: `make test` installs it (.venv-checkov)"
    result = subprocess.run(
        [
            *(str(CHECKOV), "--directory", str(MANIFESTS), "--framework", "kubernetes", "secrets"),
            *("--output", "json", "--skip-download"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BC_SKIP_VERSION_CHECK": "true"},
    )
    assert result.returncode in (0, 1), result.stderr
    reports = json.loads(result.stdout)
    results = [r["results"] for r in (reports if isinstance(reports, list) else [reports])]
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['file_path']}: {c['resource']})"
        for r in results
        for c in r["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    assert sum(len(r["passed_checks"]) for r in results) > 100
    for skipped in (c for r in results for c in r["skipped_checks"]):
        reason = skipped["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20, f"{skipped['check_id']} skipped without a reason: {reason!r}"


def test_perfics_runs_as_the_image_says_read_only_with_its_volumes() -> None:
    image = image_facts()
    pod = objects()[("Deployment", "perfics")]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == image.uid
    assert pod["securityContext"]["runAsGroup"] == image.gid
    assert pod["securityContext"]["runAsNonRoot"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        for mount in container["volumeMounts"]:
            assert "subPath" not in mount  # a subPath mount never sees a ConfigMap's update
    perfics = pod["containers"][0]
    mounts = {m["mountPath"]: volumes[m["name"]] for m in perfics["volumeMounts"]}
    assert image.volumes <= {path for path, volume in mounts.items() if "emptyDir" in volume}
    assert perfics["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert perfics["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert perfics["ports"][0]["containerPort"] == image.port
    env = {e["name"]: e for e in perfics["env"]}
    assert env["PERFICS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "perfics"
    policy_path = Path(env["PERFICS_POLICY"]["value"])
    configmap = mounts[str(policy_path.parent)]["configMap"]["name"]
    text = objects()[("ConfigMap", configmap)]["data"][policy_path.name]
    policy = parse_policy(text, f"{configmap}/{policy_path.name}")
    vllm_bases = [m.api_base for m in policy.models if m.backend == "vllm"]
    assert vllm_bases
    assert all("http://vllm:8000/v1" in str(b) for b in vllm_bases)


def test_perfics_reaches_only_vllm_postgresql_and_dns() -> None:
    policy = objects()[("NetworkPolicy", "perfics")]["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    vllm_pods = objects()[("Deployment", "vllm")]["spec"]["template"]["metadata"]["labels"]
    ports = sorted(p["port"] for rule in policy["egress"] for p in rule["ports"])
    assert ports == [53, 53, 5432, 8000]
    selectors = [
        target.get("podSelector", {}).get("matchLabels")
        for rule in policy["egress"]
        for target in rule["to"]
    ]
    assert any(s and s.items() <= vllm_pods.items() for s in selectors)


def test_the_vllm_example_asks_for_a_gpu_and_prefix_caching() -> None:
    (vllm,) = objects()[("Deployment", "vllm")]["spec"]["template"]["spec"]["containers"]
    assert "--enable-prefix-caching" in vllm["args"]
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    service = objects()[("Service", "vllm")]["spec"]
    assert service["ports"][0]["port"] == 8000
