"""The launchpad's ``reference_model`` config takes your own model (``model``), not with ``arch``.

The asset is invoked directly (no Dagster run): its config refuses both in one line before
anything is written, and a factory in ``model`` trains and is recorded in its row.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetCheckResult, Output, build_asset_context

from assets.resources import ComputeResource, HomeResource
from assets.scoring.reference_model import ReferenceModelConfig, reference_model
from robust_data.errors import RobustDataError
from robust_data.ingest.build import ingest
from tests.scoring.test_own_model import FACTORIES, MODULE


def test_reference_model_config_takes_your_model(
    isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    description = ReferenceModelConfig.model_fields["model"].description or ""
    assert "package.module:function" in description and "TorchScript" in description
    (tmp_path / f"{MODULE}.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    samples = ingest("digits", name="digits").samples
    home = tmp_path / "launchpad"

    def run(config: ReferenceModelConfig) -> list:
        context = build_asset_context(partition_key="digits")
        resources = {"home": HomeResource(path=str(home)), "compute": ComputeResource(device="cpu")}
        return list(reference_model(context, config=config, raw_samples=samples, **resources))

    with pytest.raises(RobustDataError, match=r"^expected `model` or `arch`, not both; found"):
        run(ReferenceModelConfig(model=f"{MODULE}:mlp", arch="resnet"))
    assert not home.exists()
    output, check = run(ReferenceModelConfig(model=f"{MODULE}:mlp", epochs=1))
    assert isinstance(output, Output) and isinstance(check, AssetCheckResult) and check.passed
    row = output.value.to_pylist()[0]
    assert (row["model_kind"], row["model_source"]) == ("factory", f"{MODULE}:mlp")
    assert Path(row["path"]).is_file() and str(home) in row["path"]
