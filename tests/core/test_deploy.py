"""deploy/ cannot run here (no Docker engine): check what a parser can check."""

from __future__ import annotations

from pathlib import Path

import yaml

from mediation_schemas.topics import Topics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERVICES = {"intake", "routing", "cases", "alerts", "reporting"}


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]


def test_kubernetes_manifests_parse_and_cover_every_service_and_topic():
    deployments = {d["metadata"]["name"]: d for d in _docs("services.yaml") if d["kind"] == "Deployment"}
    assert set(deployments) == SERVICES
    for name, d in deployments.items():
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["args"] == ["serve", name]
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"secretRef": {"name": "mediation-keys"}} in c["envFrom"]
    declared = {d["spec"]["topicName"] for d in _docs("topics.yaml")}
    assert set(Topics().all_business()) <= declared
    kinds = {d["kind"] for d in _docs("config.yaml")}
    assert kinds == {"ConfigMap", "Secret"}


def test_compose_file_has_the_stack_and_the_five_services():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert SERVICES | {"kafka", "postgres", "otel-collector", "jaeger"} <= set(compose["services"])
    for s in SERVICES:
        assert compose["services"][s]["command"] == ["serve", s]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["mediation"]' in dockerfile and "requirements.lock" in dockerfile
