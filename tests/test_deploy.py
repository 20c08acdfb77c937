"""The deploy manifests (deploy/compose, deploy/kubernetes, deploy/systemd) ask only for
what deskbridge has: every command parses with the CLI, every environment variable is a
setting and its value validates, every port and probe path is one the process serves,
no secret is written in a manifest, and the Kubernetes files pass their schemas
(kubernetes-validate, strict, offline: the package ships the schemas)."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import kubernetes_validate
import pytest
import yaml

from deskbridge.cli.main import cli
from deskbridge.cli.supervise import STOP_TIMEOUT_S, parse_processes
from deskbridge.config import Settings
from deskbridge.gateway import create_app
from deskbridge.gateway.app import create_metrics_app
from tests.test_grafana import exported

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose"
KUBE = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
IMAGE_UID = 10001
K8S_VERSION = "1.30"


# --- what deskbridge accepts ---------------------------------------------------------------


def env_names() -> dict[str, str]:
    """Environment variable → Settings field."""
    names: dict[str, str] = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            names.update({str(c): field for c in choices})
        else:
            names[f"DESKBRIDGE_{field.upper()}"] = field
    return names


def secret_fields() -> set[str]:
    return {f for f, info in Settings.model_fields.items() if "SecretStr" in str(info.annotation)}


def check_command(args: list[str]) -> dict[str, Any]:
    """``args`` (after ``deskbridge``) parse as a command of the CLI; its parameters."""
    name, *rest = args
    root = click.Context(cli, info_name="deskbridge")
    command = cli.get_command(root, name)
    assert command is not None, f"no command {name!r}"
    hidden = {o for p in command.params if getattr(p, "hidden", False) for o in p.opts}
    hidden.discard("--processes")  # shown for run/serve; the worker refuses a value
    used = {a.split("=", 1)[0] for a in rest if a.startswith("--")}
    assert not used & hidden, f"internal options in a manifest: {used & hidden}"
    try:
        params = command.make_context(name, list(rest), parent=root).params
    except click.UsageError as exc:
        raise AssertionError(f"deskbridge {shlex.join(args)}: {exc}") from exc
    if name == "worker":
        assert params["processes"] == "1", "the worker takes no --processes"
    else:
        parse_processes(params["processes"])
    return {"command": name, **params}


def check_env(env: Mapping[str, str | None], where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Names are settings; a secret setting never has a literal value; the literal values
    validate together as Settings."""
    known = env_names()
    secrets = secret_fields()
    ours = {k: v for k, v in env.items() if k.startswith(("DESKBRIDGE_", "REDIS_"))}
    unknown = set(ours) - set(known)
    assert not unknown, f"{where}: not a deskbridge setting: {unknown}"
    for name, value in ours.items():
        if value is not None:
            assert known[name] not in secrets, f"{where}: secret {name} written as a value"
    url = ours.get("REDIS_URL")
    if url is not None:
        assert urlsplit(url).password is None, f"{where}: a password in REDIS_URL"
    with monkeypatch.context() as m:
        for name in [n for n in os.environ if n.startswith("DESKBRIDGE_")]:
            m.delenv(name)
        m.delenv("REDIS_URL", raising=False)
        for name, value in ours.items():
            if value is not None:
                m.setenv(name, value)
        Settings()  # raises on a value the settings refuse


async def served_paths(make_runtime: Any) -> dict[str, set[str]]:
    rt = make_runtime()
    paths = {}
    for role in ("serve", "worker", "run"):
        app = create_app(rt, role=role)
        paths[role] = {r.resource.canonical for r in app.router.routes() if r.resource}
    metrics = create_metrics_app(rt)
    paths["metrics"] = {r.resource.canonical for r in metrics.router.routes() if r.resource}
    return paths


# --- Docker Compose -------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text())


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: object) -> str:
    """Compose's ``${NAME:-default}`` with the default (what runs without a .env)."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", str(value))


def deskbridge_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if svc.get("image", "").startswith("deskbridge")
    }


def test_compose_commands_and_environment(monkeypatch) -> None:
    services = deskbridge_services()
    assert set(services) == {"gateway", "worker"}
    roles = set()
    for name, svc in services.items():
        params = check_command(svc["command"])
        roles.add(params["command"])
        env = {k: interpolate(v) for k, v in svc["environment"].items()}
        check_env(env, f"compose {name}", monkeypatch)
        assert svc["user"] == f"{IMAGE_UID}:{IMAGE_UID}"
        assert svc["read_only"] is True
        assert "/tmp" in svc["tmpfs"]  # noqa: S108 - the path checked
        # the files the settings point at are the secrets handed in
        targets = {s["target"] for s in svc["secrets"]}
        assert {env["DESKBRIDGE_CONFIG"], env["DESKBRIDGE_KEYS_FILE"]} <= targets
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        assert int(svc["stop_grace_period"].rstrip("s")) >= STOP_TIMEOUT_S
    assert roles == {"serve", "worker"}


async def test_compose_ports_and_health_paths(make_runtime) -> None:
    paths = await served_paths(make_runtime)
    services = deskbridge_services()
    for name, svc in services.items():
        env = {k: interpolate(v) for k, v in svc["environment"].items()}
        port = env["DESKBRIDGE_PORT"]
        for mapping in svc.get("ports", []):
            assert mapping.rsplit(":", 1)[1] == port, f"{name}: {mapping}"
        test = " ".join(svc["healthcheck"]["test"])
        found = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", test)
        assert found, test
        assert found.group(1) == port
        role = check_command(svc["command"])["command"]
        assert found.group(2) in paths[role]
    # Prometheus scrapes each deskbridge service on its metrics address's port
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    scraped = {
        n: sd["port"]
        for job in prom["scrape_configs"]
        for sd in job["dns_sd_configs"]
        for n in sd["names"]
    }
    assert set(scraped) == set(services)
    for name, port in scraped.items():
        address = interpolate(services[name]["environment"]["DESKBRIDGE_METRICS_ADDRESS"])
        assert address.rsplit(":", 1)[1] == str(port)
    assert "/metrics" in paths["metrics"]


def test_compose_redis_is_durable_and_the_sentinel_profile_is_complete() -> None:
    services = compose()["services"]
    for name in ("redis", "redis-replica"):
        args = services[name]["command"]
        assert args[args.index("--appendonly") + 1] == "yes"
        assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert "redis-replica" in services and services["redis-replica"]["profiles"] == ["sentinel"]
    sentinels = [n for n, s in services.items() if n.startswith("sentinel-")]
    assert len(sentinels) == 3
    for name in sentinels:
        script = services[name]["command"][-1]
        assert "sentinel monitor deskbridge redis 6379 2" in script
        assert services[name]["profiles"] == ["sentinel"]
    # the Sentinel URL in the comment names these Sentinels and the monitored master
    text = (COMPOSE / "compose.yaml").read_text()
    hosts = ",".join(f"{n}:26379" for n in sorted(sentinels))
    assert f"redis+sentinel://{hosts}/deskbridge/0" in text


def test_compose_grafana_gets_the_dashboard_and_prometheus() -> None:
    services = compose()["services"]
    grafana = services["grafana"]
    binds = [v.removesuffix(":ro").split(":") for v in grafana["volumes"]]
    mounts = {b[0]: b[1] for b in binds if b[0].startswith(".")}
    dashboard = (COMPOSE / "../grafana/deskbridge.json").resolve()
    assert dashboard.exists()
    assert mounts["../grafana/deskbridge.json"].startswith("/var/lib/grafana/dashboards/")
    provider = yaml.safe_load(
        (COMPOSE / "grafana/provisioning/dashboards/deskbridge.yaml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load(
        (COMPOSE / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )
    url = urlsplit(source["datasources"][0]["url"])
    assert source["datasources"][0]["type"] == "prometheus"
    assert url.hostname in services and url.port == 9090
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana["environment"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    # every secret is a file outside git
    for secret in compose()["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    assert (COMPOSE / ".gitignore").read_text().split() == ["secrets/"]


# --- Kubernetes ---------------------------------------------------------------------------


def kube_docs() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in kube_docs() if d["kind"] == "Deployment"}


def test_kubernetes_files_pass_their_schemas() -> None:
    docs = list(kube_docs())
    kinds = {d["kind"] for _, d in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds
    for path, doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{path.name}: {doc['kind']}: {exc}") from exc
    # strict: a misspelt field is refused, not ignored
    serve = deployments()["deskbridge-serve"]
    bad = yaml.safe_load(yaml.safe_dump(serve))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_kustomization_lists_every_file() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    files = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


async def test_kubernetes_deployments_match_the_cli(make_runtime, monkeypatch) -> None:
    paths = await served_paths(make_runtime)
    found = deployments()
    assert set(found) == {"deskbridge-serve", "deskbridge-worker"}
    for name, dep in found.items():
        pod = dep["spec"]["template"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == IMAGE_UID
        assert spec["automountServiceAccountToken"] is False
        assert spec["terminationGracePeriodSeconds"] >= STOP_TIMEOUT_S
        (container,) = spec["containers"]
        role = check_command(container["args"])["command"]
        assert name == f"deskbridge-{role}"
        sec = container["securityContext"]
        assert sec["readOnlyRootFilesystem"] is True and sec["allowPrivilegeEscalation"] is False
        assert container["resources"]["requests"] and container["resources"]["limits"]
        literal = {e["name"]: e.get("value") for e in container["env"]}
        for e in container["env"]:
            if "valueFrom" in e:
                assert set(e["valueFrom"]) <= {"secretKeyRef", "configMapKeyRef"}
        check_env(literal, name, monkeypatch)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == int(literal["DESKBRIDGE_PORT"])
        assert ports["metrics"] == int(literal["DESKBRIDGE_METRICS_ADDRESS"].rsplit(":", 1)[1])
        annotations = pod["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == ports["metrics"]
        assert annotations["prometheus.io/path"] in paths["metrics"]
        probes = {k: container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in probes.values():
            get = probe["httpGet"]
            assert get["port"] in ports or get["port"] in ports.values()
            assert get["path"] in paths[role]
        # the files the settings name are mounted from Secrets
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for setting in ("DESKBRIDGE_CONFIG", "DESKBRIDGE_KEYS_FILE"):
            (volume,) = [n for n, at in mounts.items() if literal[setting].startswith(at + "/")]
            assert "secret" in volumes[volume], f"{name}: {setting} is not from a Secret"
        assert mounts["tmp"] == "/tmp"  # noqa: S108 - the path checked
        assert "emptyDir" in volumes["tmp"]


def test_kubernetes_service_pdb_and_autoscaling_point_at_the_deployments() -> None:
    found = deployments()
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in found.items()}
    docs = [d for _, d in kube_docs()]
    services = [d for d in docs if d["kind"] == "Service"]
    assert services
    for svc in services:
        (target,) = [
            n for n, lab in labels.items() if svc["spec"]["selector"].items() <= lab.items()
        ]
        container = found[target]["spec"]["template"]["spec"]["containers"][0]
        names = {p["name"] for p in container["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in names
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    covered = {
        n
        for pdb in pdbs
        for n, lab in labels.items()
        if pdb["spec"]["selector"]["matchLabels"].items() <= lab.items()
    }
    assert covered == set(found)
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas} == set(found)
    known = exported()
    for hpa in hpas:
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] in ("External", "Pods", "Object"):
                name = metric[metric["type"].lower()]["metric"]["name"]
                assert name in known, f"{name} is not a deskbridge metric"


def test_no_secret_in_any_manifest() -> None:
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix != ".json"]
    assert files
    for path in files:
        text = path.read_text()
        assert "PRIVATE KEY" not in text, path
        assert not re.search(
            r"(?i)^\s*(password|requirepass|masterauth)\s*[:=]?\s*\S", text, re.M
        ), path
        for line in text.splitlines():
            # a value that looks generated: long hex, or long base64 of mixed case and digits
            assert not re.search(r"\b[0-9a-fA-F]{32,}\b", line), f"{path}: {line}"
            for word in re.findall(r"[A-Za-z0-9+_-]{24,}={0,2}", line):
                mixed = all(re.search(c, word) for c in ("[a-z]", "[A-Z]", "[0-9]"))
                assert not mixed, f"{path}: {line}"
    kinds = [d["kind"] for _, d in kube_docs()]
    assert "Secret" not in kinds and "ConfigMap" not in kinds


def test_the_image_runs_as_the_non_root_user_the_manifests_name() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users == [f"{IMAGE_UID}:{IMAGE_UID}"]
    assert f"--uid {IMAGE_UID}" in dockerfile


# --- systemd --------------------------------------------------------------------------------


def unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as section → [(key, value)] (keys repeat: Environment=, LoadCredential=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        assert current is not None, f"{path.name}: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line}"
        sections[current].append((key, value))
    return sections


def test_systemd_units_match_the_cli(monkeypatch) -> None:
    units = sorted(SYSTEMD.glob("*.service"))
    assert {p.name for p in units} == {"deskbridge-serve.service", "deskbridge-worker@.service"}
    roles = set()
    for path in units:
        service = unit(path)["Service"]
        values: dict[str, list[str]] = {}
        for key, value in service:
            values.setdefault(key, []).append(value)
        (exec_start,) = values["ExecStart"]
        binary, *args = shlex.split(exec_start)
        assert binary.endswith("/bin/deskbridge")
        role = check_command(args)["command"]
        roles.add(role)
        assert path.name.startswith(f"deskbridge-{role}")
        assert values["User"] == ["deskbridge"]
        assert values["KillSignal"] == ["SIGTERM"]
        assert float(values["TimeoutStopSec"][0]) > STOP_TIMEOUT_S
        credentials = dict(c.split(":", 1) for c in values["LoadCredential"])
        env = dict(e.split("=", 1) for e in values["Environment"])
        for setting in ("DESKBRIDGE_CONFIG", "DESKBRIDGE_KEYS_FILE"):
            assert env[setting].removeprefix("%d/") in credentials, setting
        # systemd's specifiers: %d the credentials directory, %i the instance (a port)
        resolved = {
            k: v.replace("%d", "/run/credentials/x").replace("%i", "8101") for k, v in env.items()
        }
        check_env(resolved, path.name, monkeypatch)
        if "@" in path.name:
            assert env["DESKBRIDGE_PORT"] == "%i"
    assert roles == {"serve", "worker"}
    example = dict(
        line.split("=", 1)
        for line in (SYSTEMD / "deskbridge.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    check_env(example, "deskbridge.env.example", monkeypatch)
