"""deploy/: the cluster files parse, agree with Dagster's schemas and with the code they run.

Fast and offline. dagster-k8s and dagster-postgres are not installed here: the instance file is
checked against Dagster's own instance schema (which treats the run launcher's config as an
opaque block), and the executor fragment against the field names of dagster-k8s 0.29.27.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import (
    AssetsDefinition,
    DagsterInvalidConfigError,
    GraphDefinition,
    QueuedRunCoordinator,
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

from assets import oof_predictions_asset, reference_model, retrained_model, rpr_scores
from pipelines.definitions import build_definitions

PROJECT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT / "deploy"

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


def op_names(assets_def: AssetsDefinition) -> set[str]:
    """The names of the ops inside an asset (one op, or every leaf op of its graph)."""
    pending, names = [assets_def.node_def], set()
    while pending:
        node = pending.pop()
        if isinstance(node, GraphDefinition):
            pending.extend(child.definition for child in node.nodes)
        else:
            names.add(node.name)
    return names


def gpu_limit(k8s_config: dict[str, Any]) -> str | None:
    return k8s_config["container_config"]["resources"]["limits"].get("nvidia.com/gpu")


# --- every file -----------------------------------------------------------------------------


def test_deploy_holds_the_expected_files() -> None:
    names = {path.name for path in DEPLOY.iterdir()}
    assert {"dagster.yaml", "k8s-executor.yaml", "values.yaml", "Dockerfile", "README.md"} <= names


@pytest.mark.parametrize("path", sorted(DEPLOY.glob("*.yaml")), ids=lambda path: path.name)
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


def test_per_step_config_gives_the_shard_steps_a_gpu() -> None:
    per_step = load("k8s-executor.yaml")["execution"]["config"]["per_step_k8s_config"]
    assert "score_rpr_shard" in per_step
    assert gpu_limit(per_step["score_rpr_shard"]) == "1"


def test_per_step_keys_name_ops_of_the_code() -> None:
    # dagster-k8s looks the override up by op name (score_rpr_shard), not by step key
    # (rpr_scores.score_rpr_shard[shard_0]) nor node path (rpr_scores.score_rpr_shard): a key
    # that names no op is silently ignored and the step runs without its GPU.
    per_step = load("k8s-executor.yaml")["execution"]["config"]["per_step_k8s_config"]
    gpu_assets = (rpr_scores, reference_model, oof_predictions_asset, retrained_model)
    ops = set().union(*(op_names(assets_def) for assets_def in gpu_assets))
    assert "score_rpr_shard" in op_names(rpr_scores)
    assert set(per_step) <= ops, f"keys that match no op: {sorted(set(per_step) - ops)}"


@pytest.mark.parametrize("job_name", ["curation_job", "scoring_job"])
def test_readme_shard_config_plans_eight_shards(job_name: str) -> None:
    # deploy/README.md launches both jobs with ops: {rpr_scores: {config: {shards: 8}}}.
    run_config = {"ops": {"rpr_scores": {"config": {"shards": README_SHARDS}}}}
    resolved = validate_run_config(build_definitions().resolve_job_def(job_name), run_config)
    assert resolved["ops"]["rpr_scores.plan_rpr_shards"]["config"] == {"shards": README_SHARDS}


@pytest.mark.parametrize(
    ("assets_def", "op_name"),
    [
        (rpr_scores, "score_rpr_shard"),
        (reference_model, "reference_model"),
        (oof_predictions_asset, "oof_predictions"),
        (retrained_model, "retrained_model"),
    ],
)
def test_gpu_steps_carry_the_k8s_tag_the_docs_describe(
    assets_def: AssetsDefinition, op_name: str
) -> None:
    node = assets_def.node_def
    if isinstance(node, GraphDefinition):
        node = next(child.definition for child in node.nodes if child.name == op_name)
    assert node.name == op_name
    tag = json.loads(node.tags["dagster-k8s/config"])
    assert gpu_limit(tag) == "1"
    assert tag["container_config"]["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}


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
    declared = (
        pyproject["project"]["dependencies"] + pyproject["project"]["optional-dependencies"]["dev"]
    )
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
    words = [word.strip("\"'") for word in shlex.split(runs)]
    assert f"dagster-k8s=={library}" in words
    assert f"dagster-postgres=={library}" in words
    assert re.search(r"\bpip install -c constraints\.txt \.", runs)


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
