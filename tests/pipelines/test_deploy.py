"""deploy/: the cluster files parse, agree with Dagster's schemas and with the code they run.

Offline. dagster-k8s is not installed here: the instance file is checked against Dagster's own
instance schema (which treats the run launcher's config as an opaque block), and the executor
fragment against the field names of dagster-k8s 0.29.27. dagster-celery is (the dev extra): the
Celery example is checked with its own config loader and against the jobs the code builds. No
Helm chart can be rendered here (neither `helm` nor the Dagster chart comes in a package this
project can install), so values.yaml is checked against the instance file and the code.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import (
    AssetsDefinition,
    DagsterInstance,
    DagsterInvalidConfigError,
    GraphDefinition,
    OpDefinition,
    QueuedRunCoordinator,
    execute_job,
    job,
    multiprocess_executor,
    op,
    validate_run_config,
)

# No public API validates a dagster.yaml against the instance schema without a live instance
# (its Postgres storage) or an executor's config alone: these few stay on Dagster's internals.
from dagster._config import Shape, process_config
from dagster._core.instance.config import dagster_instance_config, dagster_instance_config_schema
from dagster._core.storage.config import pg_config
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from assets import ALL_ASSETS
from assets.resources import EXECUTOR_ENV, EXECUTORS, GPU_POOL, GPU_STEP_TAGS, Settings
from pipelines.definitions import build_definitions

PROJECT = Path(__file__).resolve().parents[2]
DEPLOY = PROJECT / "deploy"
CELERY = DEPLOY / "celery"
BIN = Path(sys.executable).parent  # this environment's console scripts (dagster, dagster-celery)

#: The steps that ask for a GPU, as deploy/ names them: the per-step keys of k8s-executor.yaml,
#: the comments of both instance files, deploy/README.md and README.md. Each carries
#: GPU_STEP_TAGS and pool=GPU_POOL in code.
GPU_OPS = {
    "reference_model",
    "score_rpr_shard",
    "train_oof_fold",
    "retrained_model",
    "evaluate_model",
}
#: The Celery example's broker and backend variables (celery.yaml's env: entries).
CELERY_ENV = {
    "CELERY_BROKER_URL": "redis://redis.example.internal:6379/0",
    "CELERY_RESULT_BACKEND": "redis://redis.example.internal:6379/1",
}

PG_ENV = {
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "secret",
    "DAGSTER_PG_HOST": "postgres.example.internal",
    "DAGSTER_PG_DB": "dagster",
}

#: Fields of k8s_job_executor's config in dagster-k8s 0.29.27 (dagster_k8s/executor.py and
#: DagsterK8sJobConfig.config_type_job); copied because dagster-k8s is not installed here.
K8S_JOB_EXECUTOR_FIELDS = {
    "job_image", "image_pull_policy", "image_pull_secrets", "service_account_name",
    "env_config_maps", "env_secrets", "env_vars", "volume_mounts", "volumes", "labels",
    "resources", "scheduler_name", "security_context", "load_incluster_config",
    "kubeconfig_file", "job_namespace", "retries", "max_concurrent", "tag_concurrency_limits",
    "step_k8s_config", "per_step_k8s_config", "enable_owner_references", "step_dependency_config",
}  # fmt: skip
#: Keys of one step's raw Kubernetes config (USER_DEFINED_K8S_JOB_CONFIG_SCHEMA, same release).
K8S_STEP_CONFIG_KEYS = {
    "container_config", "pod_template_spec_metadata", "pod_spec_config", "job_config",
    "job_metadata", "job_spec_config", "merge_behavior",
}  # fmt: skip
#: Shards the README launches at once, one GPU pod each.
README_SHARDS = 8


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / name).read_text())


def env_names(node: object) -> set[str]:
    """Every NAME of an ``{env: NAME}`` entry anywhere in a parsed YAML document."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            return {node["env"]}
        return set().union(*(env_names(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(env_names(value) for value in node))
    return set()


def code_ops() -> dict[str, OpDefinition]:
    """Every op of the code location's assets by name (one op, or every leaf of a graph asset)."""
    pending = [a.node_def for a in ALL_ASSETS if isinstance(a, AssetsDefinition)]
    found: dict[str, OpDefinition] = {}
    while pending:
        node = pending.pop()
        if isinstance(node, GraphDefinition):
            pending.extend(child.definition for child in node.nodes)
        else:
            assert isinstance(node, OpDefinition)
            found[node.name] = node
    return found


def gpu_tagged_ops() -> set[str]:
    return {name for name, op in code_ops().items() if "dagster-k8s/config" in op.tags}


def pooled_ops() -> dict[str, str]:
    """Op name -> its concurrency pool, for every op that declares one."""
    return {name: op.pool for name, op in code_ops().items() if op.pool}


def read_env_file(path: Path) -> dict[str, str]:
    """What ``set -a; . FILE`` exports, read by bash itself (so the file is valid shell)."""
    script = 'set -a; . "$1"; env -0'
    result = subprocess.run(
        ["bash", "-c", script, "_", str(path)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        check=True,
    )
    pairs = (item.split("=", 1) for item in result.stdout.decode().split("\0") if item)
    baseline = {"PATH", "PWD", "SHLVL", "_", "OLDPWD"}
    return {key: value for key, value in pairs if key not in baseline}


def gpu_limit(k8s_config: dict[str, Any]) -> str | None:
    return k8s_config["container_config"]["resources"]["limits"].get("nvidia.com/gpu")


# --- every file -----------------------------------------------------------------------------


def test_deploy_holds_the_expected_files() -> None:
    names = {str(path.relative_to(DEPLOY)) for path in DEPLOY.rglob("*")}
    assert {"dagster.yaml", "k8s-executor.yaml", "values.yaml", "Dockerfile", "README.md"} <= names
    celery = {"dagster.yaml", "celery.yaml", "scoring-2-shards.yaml", "worker.env.example"}
    celery |= {"start-workers.sh", "reexecute.py"}
    assert {f"celery/{name}" for name in celery} <= names


@pytest.mark.parametrize(
    "path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda path: str(path.relative_to(DEPLOY))
)
def test_every_yaml_parses_to_a_mapping(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict) and document, f"{path.name} parsed to {document!r}"


# --- the instance: deploy/dagster.yaml ------------------------------------------------------


def test_instance_passes_dagsters_own_instance_validation() -> None:
    # The loader the instance itself uses: schema plus the cross-field concurrency rules,
    # without importing the run launcher's or the storage's classes.
    config, custom_instance_class = dagster_instance_config(str(DEPLOY))
    assert custom_instance_class is None
    assert set(config["storage"]) == {"postgres"}
    assert config["run_launcher"]["class"] == "K8sRunLauncher"


def test_instance_env_entries_resolve_as_string_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    raw = load("dagster.yaml")
    whole = process_config(Shape(dagster_instance_config_schema()), raw)
    assert whole.success, whole.errors
    db = whole.value["storage"]["postgres"]["postgres_db"]
    assert (db["username"], db["password"], db["hostname"], db["db_name"], db["port"]) == (
        "dagster", "secret", "postgres.example.internal", "dagster", 5432,
    )  # fmt: skip
    # The entries really are read from the environment: one missing variable fails.
    monkeypatch.delenv("DAGSTER_PG_HOST")
    assert not process_config(Shape(pg_config()), raw["storage"]["postgres"]).success


def test_instance_pg_settings_come_only_from_the_environment() -> None:
    db = load("dagster.yaml")["storage"]["postgres"]["postgres_db"]
    assert {key: db[key] for key in ("username", "password", "hostname", "db_name")} == {
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "db_name": {"env": "DAGSTER_PG_DB"},
    }
    assert db["port"] == 5432


def test_run_pods_receive_every_variable_the_instance_reads() -> None:
    # Run pods resolve this file's env: entries themselves; the launcher must hand them over.
    raw = load("dagster.yaml")
    launcher = raw["run_launcher"]["config"]
    passed = set(launcher["env_vars"])
    assert {"ROBUST_DATA_STORE", "ROBUST_DATA_HOME"} <= passed
    # The password arrives from postgres_password_secret as DAGSTER_PG_PASSWORD instead.
    assert launcher["postgres_password_secret"]
    missing = env_names(raw) - passed - {"DAGSTER_PG_PASSWORD"}
    assert not missing, f"run pods would lack {sorted(missing)}"
    assert launcher["env_secrets"], "AWS credentials: expected a Secret in env_secrets"


def test_instance_run_coordinator_is_dagsters_queued_coordinator() -> None:
    block = load("dagster.yaml")["run_coordinator"]
    coordinator = getattr(importlib.import_module(block["module"]), block["class"])
    assert coordinator is QueuedRunCoordinator
    assert process_config(coordinator.config_type(), block.get("config") or {}).success


def test_instance_settings() -> None:
    raw = load("dagster.yaml")
    assert raw["run_retries"] == {"enabled": True, "max_retries": 2}
    assert raw["telemetry"] == {"enabled": False}
    assert raw["nux"] == {"enabled": False}
    assert raw["concurrency"]["runs"]["max_concurrent_runs"] >= 1
    assert raw["concurrency"]["pools"]["default_limit"] >= README_SHARDS


# --- the executor fragment: deploy/k8s-executor.yaml ----------------------------------------


def test_fragment_configures_the_kubernetes_executor() -> None:
    fragment = load("k8s-executor.yaml")
    assert list(fragment) == ["execution"]
    assert list(fragment["execution"]) == ["config"]
    config = fragment["execution"]["config"]
    unknown = set(config) - K8S_JOB_EXECUTOR_FIELDS
    assert not unknown, f"not fields of k8s_job_executor: {sorted(unknown)}"
    assert {"job_namespace", "step_k8s_config", "per_step_k8s_config"} <= set(config)
    assert config["max_concurrent"] >= README_SHARDS
    requests = config["step_k8s_config"]["container_config"]["resources"]["requests"]
    assert {"cpu", "memory"} <= set(requests)
    for step_config in config["per_step_k8s_config"].values():
        assert set(step_config) <= K8S_STEP_CONFIG_KEYS


def test_fragment_only_configures_the_executor_a_job_already_has() -> None:
    # Run config configures the job's executor, it cannot select one: the fragment only takes
    # effect in a job built with k8s_job_executor (what deploy/README.md warns about).
    @op
    def one() -> int:
        return 1

    @job
    def default_executor_job() -> None:
        one()

    @job(executor_def=multiprocess_executor)
    def multiprocess_job() -> None:
        one()

    @job(executor_def=multiprocess_executor.configured({"max_concurrent": 2}))
    def preconfigured_job() -> None:
        one()

    fragment = load("k8s-executor.yaml")
    for target in (default_executor_job, multiprocess_job):
        with pytest.raises(DagsterInvalidConfigError):
            validate_run_config(target, fragment)
    # A preconfigured executor takes any execution config and ignores it: no error to see.
    resolved = validate_run_config(preconfigured_job, fragment)["execution"]
    assert resolved["multiprocess"]["max_concurrent"] == 2
    assert "per_step_k8s_config" not in json.dumps(resolved)


def test_per_step_keys_are_the_gpu_steps_of_the_code() -> None:
    # dagster-k8s looks the override up by op name (score_rpr_shard), not by step key
    # (rpr_scores.score_rpr_shard[shard_0]) nor node path (rpr_scores.score_rpr_shard): a key
    # that names no op is silently ignored, and a GPU op without a key gets no toleration.
    per_step = load("k8s-executor.yaml")["execution"]["config"]["per_step_k8s_config"]
    assert set(per_step) == GPU_OPS
    missing = GPU_OPS - set(code_ops())
    assert not missing, f"per_step_k8s_config keys that name no op of the code: {sorted(missing)}"


@pytest.mark.parametrize("op_name", sorted(GPU_OPS))
def test_per_step_config_gives_each_gpu_step_a_gpu_on_a_gpu_node(op_name: str) -> None:
    per_step = load("k8s-executor.yaml")["execution"]["config"]["per_step_k8s_config"][op_name]
    assert set(per_step) <= K8S_STEP_CONFIG_KEYS
    assert gpu_limit(per_step) == "1"
    in_code = GPU_STEP_TAGS["dagster-k8s/config"]["container_config"]["resources"]["requests"]
    assert per_step["container_config"]["resources"]["requests"] == in_code
    tolerations = per_step["pod_spec_config"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


@pytest.mark.parametrize("job_name", ["curation_job", "scoring_job"])
def test_readme_shard_config_plans_eight_shards(job_name: str) -> None:
    # deploy/README.md launches both jobs with ops: {rpr_scores: {config: {shards: 8}}}.
    run_config = {"ops": {"rpr_scores": {"config": {"shards": README_SHARDS}}}}
    resolved = validate_run_config(build_definitions().resolve_job_def(job_name), run_config)
    assert resolved["ops"]["rpr_scores.plan_rpr_shards"]["config"] == {"shards": README_SHARDS}


# --- GPU steps and the `gpu` pool: code against deploy/ -------------------------------------


def test_the_gpu_steps_of_the_code_are_the_ones_deploy_names() -> None:
    tagged = gpu_tagged_ops()
    assert tagged == GPU_OPS, (
        f"GPU ops in code but not in deploy/: {sorted(tagged - GPU_OPS)}; "
        f"named in deploy/ but without the GPU tag in code: {sorted(GPU_OPS - tagged)}"
    )


@pytest.mark.parametrize("op_name", sorted(GPU_OPS))
def test_each_gpu_step_carries_the_k8s_tag_and_the_gpu_pool(op_name: str) -> None:
    op_def = code_ops().get(op_name)
    assert op_def is not None, f"expected an op {op_name} in the assets; found none"
    tag = json.loads(op_def.tags["dagster-k8s/config"])
    assert tag == GPU_STEP_TAGS["dagster-k8s/config"]
    assert gpu_limit(tag) == "1"
    assert op_def.pool == GPU_POOL, f"{op_name}: expected pool={GPU_POOL!r}; found {op_def.pool!r}"


def test_gpu_is_the_only_pool_and_only_gpu_steps_are_in_it() -> None:
    # Dagster 1.13's instance config has one pool setting, default_limit, for every pool without
    # a limit of its own: it is the `gpu` limit only while `gpu` is the only pool in the code.
    pools = pooled_ops()
    assert set(pools.values()) <= {GPU_POOL}
    assert set(pools) == gpu_tagged_ops(), "a step in the gpu pool without the GPU tag, or back"


@pytest.mark.parametrize("name", ["dagster.yaml", "celery/dagster.yaml"])
def test_instance_files_limit_the_gpu_pool(name: str) -> None:
    raw = load(name)
    assert dagster_instance_config(str((DEPLOY / name).parent))[0]["concurrency"]["pools"]
    pools = raw["concurrency"]["pools"]
    assert pools["default_limit"] >= 1 and pools["granularity"] == "op"
    text = (DEPLOY / name).read_text()
    assert f'pool="{GPU_POOL}"' in text
    assert all(op_name in text for op_name in GPU_OPS), "the comment lists the GPU steps"


@pytest.mark.parametrize("name", ["README.md", "k8s-executor.yaml", "celery/dagster.yaml"])
def test_deploy_docs_name_every_gpu_step(name: str) -> None:
    text = (DEPLOY / name).read_text()
    missing = {op_name for op_name in GPU_OPS if op_name not in text}
    assert not missing, f"{name} does not name {sorted(missing)}"


def test_docs_give_the_command_that_sets_the_gpu_pool_limit() -> None:
    command = f"dagster instance concurrency set {GPU_POOL}"
    for path in (DEPLOY / "README.md", DEPLOY / "dagster.yaml", PROJECT / "README.md"):
        assert command in path.read_text(), path
    words = ["instance", "concurrency", "set", "--help"]
    result = subprocess.run([str(BIN / "dagster"), *words], capture_output=True, timeout=120)
    assert result.returncode == 0 and b"KEY LIMIT" in result.stdout, result.stderr


# --- executors: ROBUST_DATA_EXECUTOR --------------------------------------------------------


def documented_executors(text: str) -> set[str]:
    return set(re.findall(rf"{EXECUTOR_ENV}\s*[=:]\s*`?(\w+)", text))


def cluster_section() -> str:
    text = (PROJECT / "README.md").read_text()
    assert text.count("\n## Running on a cluster\n") == 1
    section = text.split("\n## Running on a cluster\n", 1)[1]
    return section.split("\n## ", 1)[0]


def test_executor_values_in_deploy_and_readme_are_the_codes() -> None:
    paths = [*sorted(p for p in DEPLOY.rglob("*") if p.is_file()), PROJECT / "README.md"]
    for path in paths:
        found = documented_executors(path.read_text())
        assert found <= set(EXECUTORS), f"{path.name}: {sorted(found - set(EXECUTORS))}"
    # the cluster section names every executor the code accepts
    assert documented_executors(cluster_section()) == set(EXECUTORS)
    assert Settings.from_environ({EXECUTOR_ENV: "k8s"}).executor == "k8s"


def test_the_kubernetes_files_pass_the_executor_and_the_store_to_every_pod() -> None:
    values = load("values.yaml")["dagster-user-deployments"]["deployments"][0]
    instance = load("dagster.yaml")["run_launcher"]["config"]
    fragment = load("k8s-executor.yaml")["execution"]["config"]
    assert values["env"][EXECUTOR_ENV] == "k8s"
    needed = {EXECUTOR_ENV, "ROBUST_DATA_STORE", "ROBUST_DATA_HOME"}
    assert needed <= set(values["env"])  # the chart: code server, run and step pods
    assert needed <= set(instance["env_vars"])  # without the chart: run pods
    assert needed <= set(fragment["env_vars"])  # step pods
    # the AWS_* variables: one Secret, named alike in all three
    secrets = {secret["name"] for secret in values["envSecrets"]}
    assert secrets == set(instance["env_secrets"]) == set(fragment["env_secrets"])


# --- the Helm values: deploy/values.yaml ----------------------------------------------------


def test_values_serve_the_workspaces_code_location() -> None:
    values = load("values.yaml")
    deployment = values["dagster-user-deployments"]["deployments"][0]
    workspace = yaml.safe_load((PROJECT / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]["module_name"]
    assert deployment["codeServerArgs"] == ["-m", module]
    assert values["dagster-user-deployments"]["enabled"] is True
    assert {"ROBUST_DATA_STORE", "ROBUST_DATA_HOME", "ROBUST_DATA_INBOX"} <= set(deployment["env"])


def test_values_match_the_instance_file() -> None:
    values, instance = load("values.yaml"), load("dagster.yaml")
    assert values["runLauncher"]["type"] == instance["run_launcher"]["class"]
    assert values["dagsterDaemon"]["enabled"] is True
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True
    assert coordinator["type"] == instance["run_coordinator"]["class"]
    assert values["dagsterDaemon"]["runRetries"] == {
        "enabled": instance["run_retries"]["enabled"],
        "maxRetries": instance["run_retries"]["max_retries"],
    }
    runs, pools = values["concurrency"]["runs"], values["concurrency"]["pools"]
    assert runs["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert pools["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    assert values["postgresql"]["service"]["port"] == 5432
    secret = instance["run_launcher"]["config"]["postgres_password_secret"]
    assert values["global"]["postgresqlSecretName"] == secret
    assert values["telemetry"] == {"enabled": False}


def test_step_logs_go_to_the_store_in_every_instance() -> None:
    values = load("values.yaml")
    store = values["dagster-user-deployments"]["deployments"][0]["env"]["ROBUST_DATA_STORE"]
    assert read_env_file(CELERY / "worker.env.example")["ROBUST_DATA_STORE"] == store
    bucket, _, prefix = store.removeprefix("s3://").partition("/")
    expected = {"bucket": bucket, "prefix": f"{prefix}/compute_logs"}
    for name in ("dagster.yaml", "celery/dagster.yaml"):
        block = load(name)["compute_logs"]
        assert block["module"] == "dagster_aws.s3.compute_log_manager"
        assert block["class"] == "S3ComputeLogManager"
        assert block["config"] == expected, name
    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"
    assert values["computeLogManager"]["config"] == {"s3ComputeLogManager": expected}
    s3 = pytest.importorskip("dagster_aws.s3.compute_log_manager")
    assert process_config(s3.S3ComputeLogManager.config_type(), expected).success


def test_dagster_home_is_the_same_in_image_chart_and_run_launcher() -> None:
    env = " ".join(value for name, value in dockerfile_instructions() if name == "ENV")
    image_home = dict(word.split("=", 1) for word in shlex.split(env))["DAGSTER_HOME"]
    assert load("values.yaml")["global"]["dagsterHome"] == image_home
    assert load("dagster.yaml")["run_launcher"]["config"]["dagster_home"] == image_home


# --- the image: deploy/Dockerfile -----------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_image_starts_the_code_server_with_a_command_dagster_accepts() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    # CMD, never ENTRYPOINT: dagster-k8s and the chart pass their own container args.
    assert "ENTRYPOINT" not in {name for name, _ in instructions}
    cmd = json.loads(next(value for name, value in instructions if name == "CMD"))
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert cmd[cmd.index("-m") + 1] == "pipelines.definitions"
    # The installed dagster knows the command and every flag (--help parses them, runs nothing).
    dagster = Path(sys.executable).parent / "dagster"  # the console script of this environment
    result = subprocess.run(
        [str(dagster), *cmd[1:], "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def pinned_versions() -> dict[str, str]:
    """``constraints.txt``: package name (lower case) -> the exact version installed."""
    lines = (PROJECT / "constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    assert all(len(pin) == 2 for pin in pins), "every constraints.txt line is NAME==VERSION"
    return {name.lower(): version for name, version in pins}


def test_constraints_pin_every_dependency_inside_its_range() -> None:
    pyproject = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    pins = pinned_versions()
    extras = pyproject["project"]["optional-dependencies"]
    declared = pyproject["project"]["dependencies"] + [r for e in extras.values() for r in e]
    for requirement in map(Requirement, declared):
        assert requirement.name.lower() in pins, f"constraints.txt does not pin {requirement.name}"
        version = pins[requirement.name.lower()]
        assert requirement.specifier.contains(version), f"{requirement.name}=={version}"
        assert requirement.specifier != SpecifierSet(f"=={version}"), "a range, not a pin"


def test_image_installs_the_libraries_released_with_the_pinned_dagster() -> None:
    major, minor, patch = (int(part) for part in pinned_versions()["dagster"].split("."))
    assert major == 1
    library = f"0.{minor + 16}.{patch}"  # dagster 1.X.Y ships its libraries as 0.(X+16).Y
    runs = " ".join(value for name, value in dockerfile_instructions() if name == "RUN")
    words = shlex.split(runs)
    assert words[words.index("install") - 1 :][:5] == [
        "pip", "install", "-c", "constraints.txt", ".[cluster,k8s]",
    ]  # fmt: skip
    assert not [word for word in words if word.startswith("dagster")], "pinned by hand"
    # the extras' Dagster libraries, pinned by constraints.txt to the same release
    extras = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    requirements = map(Requirement, extras["cluster"] + extras["k8s"])
    libraries = {r.name.lower() for r in requirements if r.name.lower().startswith("dagster-")}
    pins = pinned_versions()
    assert {"dagster-postgres", "dagster-celery", "dagster-k8s"} <= libraries
    assert {name: pins[name] for name in libraries} == dict.fromkeys(libraries, library)


def test_image_copies_every_package_pyproject_installs() -> None:
    pyproject = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    sources = {
        source.rstrip("/")
        for name, value in dockerfile_instructions()
        if name == "COPY"
        for source in value.split()[:-1]  # the last word is the destination
    }
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in sources, f"the image misses {pattern.rstrip('*')}/"
    assert {"pyproject.toml", "constraints.txt", pyproject["project"]["readme"]} <= sources


# --- the Celery example: deploy/celery/ -----------------------------------------------------


@pytest.fixture
def celery_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in CELERY_ENV.items():
        monkeypatch.setenv(name, value)
    return CELERY_ENV


def test_celery_config_loads_with_the_workers_own_loader(celery_env: dict[str, str]) -> None:
    # What `dagster-celery worker start -y celery.yaml` does with the file.
    from dagster_celery.cli import get_validated_config

    config = get_validated_config(str(CELERY / "celery.yaml"))
    assert config["broker"] == celery_env["CELERY_BROKER_URL"]
    assert config["backend"] == celery_env["CELERY_RESULT_BACKEND"]


def test_celery_config_reads_the_broker_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagster_celery import celery_executor

    raw = yaml.safe_load((CELERY / "celery.yaml").read_text())
    assert list(raw) == ["execution"] and list(raw["execution"]) == ["config"]
    assert env_names(raw) == set(CELERY_ENV)
    for name in CELERY_ENV:
        monkeypatch.delenv(name, raising=False)
    config_type = celery_executor.config_schema.config_type
    assert not process_config(config_type, raw["execution"]["config"]).success


@pytest.fixture
def celery_definitions(
    celery_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv(EXECUTOR_ENV, "celery")
    yield


@pytest.mark.usefixtures("celery_definitions")
def test_celery_example_run_config_validates_against_the_celery_job() -> None:
    # `dagster job execute -c celery.yaml -c scoring-2-shards.yaml`, ROBUST_DATA_EXECUTOR=celery.
    from dagster_celery import celery_executor

    scoring_job = build_definitions().resolve_job_def("scoring_job")
    assert scoring_job.executor_def is celery_executor  # unconfigured: run config sets it
    run_config = {
        **yaml.safe_load((CELERY / "celery.yaml").read_text()),
        **yaml.safe_load((CELERY / "scoring-2-shards.yaml").read_text()),
    }
    resolved = validate_run_config(scoring_job, run_config)
    assert resolved["execution"]["celery"]["broker"] == CELERY_ENV["CELERY_BROKER_URL"]
    assert resolved["ops"]["rpr_scores.plan_rpr_shards"]["config"]["shards"] == 2


def test_celery_instance_is_postgres_with_the_deployed_storage_block() -> None:
    config, custom_instance_class = dagster_instance_config(str(CELERY))
    assert custom_instance_class is None
    # no run launcher, no coordinator: the process that starts a run executes it
    assert "run_launcher" not in config and "run_coordinator" not in config
    for block in ("storage", "compute_logs"):
        assert load("celery/dagster.yaml")[block] == load("dagster.yaml")[block], block


def test_worker_env_example_sets_every_variable_the_workers_read() -> None:
    env = read_env_file(CELERY / "worker.env.example")
    assert env[EXECUTOR_ENV] == "celery"
    assert Settings.from_environ(env).executor == "celery"
    assert env["DAGSTER_HOME"] == f"{env['ROBUST_DATA_HOME']}/dagster"  # robust-data's own layout
    assert env["ROBUST_DATA_STORE"].startswith("s3://")
    aws = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    assert aws <= set(env)
    assert "AWS_ENDPOINT_URL" in (CELERY / "worker.env.example").read_text()  # optional
    # every env: entry of the instance file and of the Celery config
    read = env_names(load("celery/dagster.yaml")) | env_names(load("celery/celery.yaml"))
    assert read <= set(env), f"worker.env.example lacks {sorted(read - set(env))}"


def distributed_test_strings() -> set[str]:
    """Every string constant of tests/pipelines/test_distributed.py (its worker command too)."""
    tree = ast.parse((PROJECT / "tests" / "pipelines" / "test_distributed.py").read_text())
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def test_start_workers_runs_the_command_of_the_distributed_test(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(CELERY / "start-workers.sh")]).returncode == 0
    env_file = tmp_path / "worker.env"
    env_file.write_text((CELERY / "worker.env.example").read_text())
    result = subprocess.run(
        ["bash", str(CELERY / "start-workers.sh"), "2", str(env_file)],
        env={"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DRY_RUN": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    config = str(CELERY / "celery.yaml")
    assert commands == [
        ["dagster-celery", "worker", "start", "-A", "dagster_celery.app", "-y", config,
         "-n", f"w{i}", "--", "--concurrency=1"]
        for i in range(2)
    ]  # fmt: skip
    # the words of the test's command, apart from the path and the name it fills in
    constants = {word for word in commands[0][1:] if word not in (config, "w0")}
    assert constants <= distributed_test_strings(), constants - distributed_test_strings()


def test_start_workers_refuses_a_bad_count(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(CELERY / "start-workers.sh"), "zero", str(tmp_path / "none.env")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "whole number" in result.stderr


def load_reexecute() -> Any:
    spec = importlib.util.spec_from_file_location("reexecute", CELERY / "reexecute.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reexecute_script_usage_and_unknown_run() -> None:
    reexecute = load_reexecute()
    assert reexecute.main([]) == 2
    with DagsterInstance.ephemeral() as instance, pytest.raises(ValueError, match="no run"):
        reexecute.reexecute_from_failure("0" * 36, instance)


@pytest.mark.slow
def test_reexecute_script_reruns_a_failed_run_from_failure(isolated_home: Path) -> None:
    # scoring_job without stored raw_samples: reference_model fails, the shards never start.
    # (The failed run runs in this process; the script re-executes with the environment's job.)
    from dagster import build_reconstructable_job

    from assets.partitions import DATASETS
    from robust_data.store.store import Store

    store = Store.open(isolated_home)
    target = build_reconstructable_job(
        "pipelines.definitions",
        "in_process_job",
        reconstructable_args=("scoring_job", str(store.home), store.tables_root),
    )
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(DATASETS.name, ["digits"])
        failed = execute_job(
            target,
            instance=instance,
            tags={"dagster/partition": "digits"},
            run_config={"ops": {"rpr_scores": {"config": {"shards": 2}}}},
        )
        assert not failed.success
        again = load_reexecute().reexecute_from_failure(failed.run_id, instance)
        run = instance.get_run_by_id(again.run_id)
    assert run is not None and run.parent_run_id == failed.run_id
    assert run.tags["dagster/partition"] == "digits"  # execute_job alone would drop it
    assert run.run_config["ops"] == {"rpr_scores": {"config": {"shards": 2}}}
    assert "reference_model" in (run.step_keys_to_execute or [])
    assert "rpr_scores.plan_rpr_shards" not in (run.step_keys_to_execute or [])  # it succeeded


# --- README.md: "Running on a cluster" ------------------------------------------------------


def test_cluster_section_gives_the_install_and_worker_commands() -> None:
    section = cluster_section()
    assert "pip install -c constraints.txt '.[cluster]'" in section
    assert "deploy/celery/start-workers.sh" in section
    assert "deploy/celery/reexecute.py" in section
    assert "deploy/README.md" in section
    for name in ("ROBUST_DATA_STORE", "AWS_ENDPOINT_URL", "DAGSTER_HOME", "CELERY_BROKER_URL"):
        assert name in section


def shell_commands(text: str) -> list[list[str]]:
    """Each command of the ```bash blocks (continuation lines joined, comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


def test_cluster_section_commands_exist_in_the_installed_clis() -> None:
    # Every `dagster ...` and `dagster-celery ...` command shown names a real subcommand and
    # only options it has (checked with --help: nothing runs). Dagster 1.13 has no re-execute
    # command: the section must not invent one.
    import click
    from click.testing import CliRunner
    from dagster._cli import cli as dagster_cli
    from dagster_celery.cli import main as dagster_celery_cli

    clis: dict[str, click.Command] = {"dagster": dagster_cli, "dagster-celery": dagster_celery_cli}
    seen = []
    for words in shell_commands(cluster_section()):
        if not words or words[0] not in clis:
            continue
        command, path = clis[words[0]], []
        for word in words[1:]:
            if not isinstance(command, click.Group) or word not in command.commands:
                break
            command = command.commands[word]
            path.append(word)
        assert not isinstance(command, click.Group), f"{' '.join(words)}: not a command"
        result = CliRunner().invoke(clis[words[0]], [*path, "--help"])
        assert result.exit_code == 0, f"{' '.join(words)}: {result.output}"
        ours = words[: words.index("--")] if "--" in words else words  # after --: celery's own
        options = {word.split("=")[0] for word in ours if word.startswith("-")}
        names = {name for param in command.params for name in getattr(param, "opts", [])}
        assert options <= names, f"{' '.join(words)}: no option {sorted(options - names)}"
        seen.append([words[0], *path])
    assert ["dagster", "job", "execute"] in seen
    assert ["dagster", "instance", "concurrency", "set"] in seen
