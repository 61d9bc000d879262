"""Run config derived from the core's options dataclasses, and the README's list of it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from dagster import AssetsDefinition

from assets import ALL_ASSETS, CurationConfig, RawSamplesConfig, ReferenceModelConfig
from assets.config import CoreConfig, attribute_docs, set_fields
from pipelines.definitions import build_definitions
from robust_data.curation.policy import CurationPolicy
from robust_data.ingest.build import IngestOptions
from robust_data.scoring.models import ModelOptions
from robust_data.store.store import Store

README = Path(__file__).resolve().parents[2] / "README.md"
#: The first line of the README's table of run-config fields.
TABLE_HEAD = "| step (`ops:` key) | core options | its fields | the step's own |"


def step_configs(home: Path) -> dict[str, type[CoreConfig]]:
    """Op name -> Config class of every configurable step of the main job, upstream first.

    Read from the job's run-config schema (what the launchpad shows), matched to the classes
    by their docstring (the schema's description of the step's config).
    """
    job = build_definitions(Store.open(home)).resolve_job_def("curation_job")
    ops = job.run_config_schema.config_type.fields["ops"].config_type.fields
    classes = {c.__doc__: c for c in CoreConfig.__subclasses__()}
    order = [a.node_def.name for a in ALL_ASSETS if isinstance(a, AssetsDefinition)]
    found: dict[str, type[CoreConfig]] = {}
    for name in sorted(ops, key=order.index):
        config = ops[name].config_type.fields.get("config")
        if config is None:
            continue
        assert config.description in classes, f"{name}: its config is not a CoreConfig"
        found[name] = classes[config.description]
        assert list(config.config_type.fields) == list(found[name].model_fields), name
    return found


def config_table(configs: dict[str, type[CoreConfig]]) -> str:
    """The README's table: per step, its core dataclass, the fields it takes, the step's own."""
    rows = [TABLE_HEAD, "|---|---|---|---|"]
    for name, config in configs.items():
        own = [f for f in config.model_fields if f not in config.core_fields]
        core = f"{config.core.__module__}.{config.core.__qualname__}"
        cells = [name, core, ", ".join(config.core_fields), ", ".join(own)]
        rows.append("| " + " | ".join(f"`{c}`" if c else "" for c in cells) + " |")
    return "\n".join(rows)


def readme_table() -> str:
    """The table as the README has it (from its head to the first line after it)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert TABLE_HEAD in lines, f"README.md has no line {TABLE_HEAD!r}"
    start = lines.index(TABLE_HEAD)
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def test_readme_lists_every_steps_run_config(isolated_home: Path) -> None:
    expected = config_table(step_configs(isolated_home))
    assert readme_table() == expected, f"README.md's run-config table should read:\n{expected}"


def test_every_step_takes_its_core_options_with_their_docs_and_defaults(
    isolated_home: Path,
) -> None:
    configs = step_configs(isolated_home)
    assert len(configs) == 11
    for name, config in configs.items():
        docs = attribute_docs(config.core)
        names = [f.name for f in dataclasses.fields(config.core)]
        assert [f for f in names if f in config.core_fields] == list(config.core_fields), name
        for field in config.core_fields:
            described = config.model_fields[field].description or ""
            assert docs.get(field), f"{config.core.__name__}.{field} has no Attributes entry"
            assert described.startswith(docs[field]) and "(unset: " in described, (name, field)
            assert config.model_fields[field].default is None, (name, field)
        config().options()  # every field unset: the core's defaults are valid options


def test_reference_config_has_every_model_field_unset_by_default() -> None:
    fields = ReferenceModelConfig.model_fields
    assert set(fields) == {f for f in ModelOptions.__dataclass_fields__} | {"device"}
    assert all(field.default is None for field in fields.values())
    assert "Passes over the training data" in fields["epochs"].description
    assert "(unset: 4)" in fields["epochs"].description  # the core's default, named
    assert "(unset: the compute resource's precision)" in fields["precision"].description
    config = ReferenceModelConfig(epochs=2, device="cpu")
    assert set_fields(config) == {"epochs": 2}  # device is the step's own
    assert config.options() == ModelOptions(epochs=2)
    assert config.options(precision="fp32", epochs=9) == ModelOptions(epochs=2, precision="fp32")


def test_a_steps_own_field_of_a_core_name_is_not_passed_to_the_core() -> None:
    config = RawSamplesConfig(resize="28x28", seed=3)
    assert RawSamplesConfig.core_fields == ("seed", "test_fraction", "channels")
    assert set_fields(config) == {"seed": 3}  # resize is text here, (height, width) there
    assert config.options(resize=(28, 28)) == IngestOptions(seed=3, resize=(28, 28))


def test_curation_config_takes_the_preset_for_unset_fields() -> None:
    fields = CurationConfig.model_fields
    assert {f for f in CurationPolicy.__dataclass_fields__} <= set(fields)
    assert fields["preset"].default == "mined"
    assert "(unset: the preset's value)" in fields["per_class"].description
    class_focus = fields["class_focus"]
    assert class_focus.default is None and "Class quotas" in str(class_focus.description)
    assert set_fields(CurationConfig(dedupe=False)) == {"dedupe": False}


def test_tuple_fields_are_lists_in_the_run_config() -> None:
    from assets import CorruptedTestConfig

    config = CorruptedTestConfig(corruptions=["contrast"])
    assert set_fields(config) == {"corruptions": ("contrast",)}
    assert (
        "(unset: every corruption)" in CorruptedTestConfig.model_fields["corruptions"].description
    )


def test_a_config_naming_a_field_its_core_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match=r"expected fields of ModelOptions; found \['epoch'\]"):

        class _Typo(CoreConfig, core=ModelOptions, omit=("epoch",)):
            pass


def test_attribute_docs_reads_shared_entries() -> None:
    docs = attribute_docs(CurationPolicy)
    assert docs["drop_label_issues"] == docs["drop_outliers"]
    assert docs["seed"] == "Seeds the per-class sampling."
