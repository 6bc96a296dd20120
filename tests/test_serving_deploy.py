"""deploy/: each file is checked by the tool that runs it, and against what `voxpipe serve` does.

HAProxy's own ``haproxy -c``; the Kubernetes manifests with ``kubernetes-validate``
(its schemas ship in the wheel: no network); the systemd unit parsed as INI. Beyond syntax,
the numbers that must agree do: the drain deadline and the time each supervisor gives a
worker to stop, the probe paths, the metric the autoscaler reads.
"""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess

import pytest
import yaml

from pipeline.cli import build_parser
from serving_procs import HAPROXY, ROOT

DEPLOY = ROOT / "deploy"


def serve_args(argv: list[str]):
    """The argv of a `voxpipe serve` command line, parsed by voxpipe's own parser."""
    start = argv.index("serve")
    return build_parser().parse_args(argv[start:])


@pytest.mark.skipif(HAPROXY is None, reason="needs Debian's haproxy (.ci/run installs it)")
def test_haproxy_config_is_valid_and_balances_by_readiness():
    done = subprocess.run([HAPROXY, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    text = (DEPLOY / "haproxy.cfg").read_text()
    assert re.search(r"(?m)^\s+balance leastconn$", text)
    assert "uri /readyz" in text and "expect status 200" in text
    assert "shutdown-sessions" not in text.split("#")[0]  # a draining worker keeps its calls
    assert re.search(r"(?m)^\s+timeout tunnel 2h$", text)  # calls outlive the drain deadline's hour


def _manifests() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "voxpipe.yaml").read_text()) if d]
    return {d["kind"]: d for d in docs}


def test_kubernetes_manifests_validate_offline():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    for kind, doc in _manifests().items():
        kubernetes_validate.validate(doc, version, strict=True)  # raises with the field that is wrong
    assert set(_manifests()) >= {"Deployment", "Service", "HorizontalPodAutoscaler"}


def test_kubernetes_drain_readiness_and_autoscaling_agree_with_serve():
    docs = _manifests()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = serve_args(container["args"])
    assert args.workers == 1  # one worker per pod: Kubernetes is the balancer
    assert pod["terminationGracePeriodSeconds"] >= args.drain_timeout + 10  # never SIGKILL a draining pod
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "/drain" in " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    rolling = docs["Deployment"]["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    metric = hpa["metrics"][0]["pods"]["metric"]["name"]
    from processors.serving.metrics import ServingMetrics

    pytest.importorskip("prometheus_client")
    assert metric == ServingMetrics().sessions_active._name == "voxpipe_sessions_active"
    assert float(hpa["metrics"][0]["pods"]["target"]["averageValue"]) < args.max_sessions


def test_systemd_unit_gives_the_drain_its_time():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(DEPLOY / "systemd" / "voxpipe@.service")
    service = unit["Service"]
    args = serve_args(shlex.split(service["ExecStart"].replace("%i", "8081")))
    assert args.workers == 1 and args.port == 8081
    assert service["KillSignal"] == "SIGTERM"
    assert float(service["TimeoutStopSec"]) >= args.drain_timeout + 10
    assert service["Restart"] == "on-failure"  # a drained worker exits 0 and stays stopped
