"""Which model a dataset is scored and retrained with: a built-in, your factory, or your file.

A :class:`ModelSpec` names one of three kinds of model:

``builtin``      ``simple_cnn`` or ``resnet`` (robust_data.scoring.models), trained by the
                 reference recipe.
``factory``      ``package.module:function``: an importable function called as
                 ``function(num_classes, in_shape)`` (``in_shape`` = (C, H, W) ints) that
                 returns an untrained ``torch.nn.Module`` mapping (N, C, H, W) float32 images in
                 [0, 1] to (N, num_classes) logits. The reference recipe trains it (the
                 reference model, the label-quality fold models, the report's retrained
                 models). It is called under a copy of PyTorch's global RNG seeded with the
                 recipe's seed (``torch.random.fork_rng``; the caller's RNG state is restored),
                 so its default initialisation is the same for the same seed.
``torchscript``  the path of a file written by ``torch.jit.save``: a *trained* model, which
                 the reference model is as is (no training; RPR scoring uses it unchanged).
                 Where a model must be trained from scratch (the label-quality fold models, the
                 report's retrained models), a copy of it is re-initialised from the recipe's
                 seed, layer by layer (Conv/Linear as the built-ins, norm layers to ones and
                 zeros); a module with parameters of another kind is refused with a one-line
                 error saying to pass a factory.

:meth:`ModelSpec.parse` reads the text form (a built-in name, an import path or a file path);
:meth:`ModelSpec.from_flags` the two front-end options (``model`` and ``arch``, at most one).
Nothing here imports a factory or reads a file until asked (:func:`load_factory`,
:func:`load_scripted`, :func:`build_user_model`, :func:`check_model`).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import io
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robust_data.errors import DatasetError, RobustDataError

ARCHS = ("simple_cnn", "resnet")
KINDS = ("builtin", "factory", "torchscript")
#: ``package.module:function`` (dotted module, one attribute).
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
#: The fix of every error about a TorchScript file.
SCRIPT_FIX = "save it with torch.jit.save(torch.jit.script(model), PATH), or pass a factory"
#: Module types (``original_name`` of a scripted submodule) a TorchScript copy can be
#: re-initialised for training: Kaiming-uniform weights and uniform biases like the built-ins.
_SCALED = ("Conv1d", "Conv2d", "Conv3d", "Linear")
#: Norm layers: weight one, bias zero, running statistics reset.
_NORMS = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm")


@dataclass(frozen=True)
class ModelSpec:
    """A model to score and retrain with.

    Attributes
    ----------
    kind : str
        ``builtin``, ``factory`` or ``torchscript`` (see the module docs).
    source : str
        The built-in's name, the factory's ``package.module:function``, or the TorchScript
        file's path.
    """

    kind: str = "builtin"
    source: str = "simple_cnn"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"expected a kind in {KINDS}; found {self.kind!r}")

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """The spec ``text`` names: a built-in name, ``package.module:function`` (when no file
        of that name exists), else a TorchScript file's path. Nothing is imported or read.

        Raises
        ------
        RobustDataError
            When ``text`` is empty.
        """
        text = str(text).strip()
        if not text:
            raise RobustDataError(
                "a model: simple_cnn, resnet, `package.module:function` or a TorchScript file",
                "an empty string",
                "pass `model=my_models:make` or `model=model.pt`",
                options=("model",),
            )
        if text in ARCHS:
            return cls("builtin", text)
        if IMPORT_PATH.match(text) and not Path(text).exists():
            return cls("factory", text)
        return cls("torchscript", text)

    @classmethod
    def from_flags(cls, model: str | None, arch: str | None) -> ModelSpec | None:
        """The spec of a front end's two options: ``model`` (any text form) or ``arch`` (a
        built-in); None when neither is set.

        Raises
        ------
        RobustDataError
            When both are set, or ``arch`` is not a built-in.
        """
        if model is not None and arch is not None:
            raise RobustDataError(
                "`model` or `arch`, not both",
                f"model {model!r} and arch {arch!r}",
                "drop one (`arch` names a built-in, `model` your own)",
                options=("model", "arch"),
            )
        if arch is not None:
            if arch not in ARCHS:
                raise RobustDataError(
                    f"arch in {ARCHS}",
                    repr(arch),
                    "pass one of those, or your own as `model`",
                    options=("arch",),
                )
            return cls("builtin", arch)
        return None if model is None else cls.parse(model)

    def fields(self) -> dict[str, str]:
        """The :class:`~robust_data.scoring.models.ModelOptions` field that names this model,
        which is also the ``reference_model`` run config's: ``{"arch": name}`` for a
        built-in, else ``{"model": source}`` (``replace(ModelOptions(), **spec.fields())``)."""
        return {"arch": self.source} if self.kind == "builtin" else {"model": self.source}

    @property
    def label(self) -> str:
        """One short line: ``simple_cnn``, ``factory pkg.mod:make``, ``torchscript model.pt``."""
        return self.source if self.kind == "builtin" else f"{self.kind} {self.source}"

    def check(self) -> str | None:
        """Load what the spec names without building a model: import the factory, load the
        TorchScript file. Returns the file's sha256 (None for the other kinds).

        Raises
        ------
        DatasetError
            One line: the module, function or file is missing or not what it should be.
        """
        if self.kind == "factory":
            load_factory(self.source)
        elif self.kind == "torchscript":
            return load_scripted(self.source)[1]
        return None


def load_factory(source: str) -> Callable[..., Any]:
    """The function ``package.module:function`` names (imported, not called).

    Raises
    ------
    DatasetError
        When the module does not import or has no such callable.
    """
    module_name, _, name = source.partition(":")
    fix = "check the spelling, and that its folder is on PYTHONPATH (or pass a TorchScript file)"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DatasetError(
            f"an importable factory `package.module:function` for {source}",
            f"module {module_name!r} does not import ({_first_line(exc)})",
            fix,
            options=("model",),
        ) from None
    factory = getattr(module, name, None)
    if not callable(factory):
        found = "nothing" if factory is None else f"a value of type {type(factory).__name__}"
        raise DatasetError(
            f"a function {name!r} in module {module_name!r} for {source}",
            f"{found} of that name",
            fix,
            options=("model",),
        )
    return factory


ZIP_MAGIC = b"PK\x03\x04"
"""The first bytes of every archive torch.jit.save writes (a zip file)."""


def check_archive(path: str | Path) -> Path:
    """``path`` as a local regular file that starts like a zip archive (what torch.jit.save
    and torch.save write), checked from its first bytes, before the whole file is read.

    Raises
    ------
    DatasetError
        One line for a missing file, a folder, a device or pipe, or other content.
    """
    where = Path(path)
    if not where.is_file():
        found = "no such file" if not where.exists() else "a folder"
        if where.exists() and not where.is_dir():
            found = "not a regular file (a device or a pipe)"
        raise DatasetError(
            f"a TorchScript file at {path}",
            found,
            f"check the path ({SCRIPT_FIX})",
            options=("model",),
        )
    with where.open("rb") as handle:
        head = handle.read(4)
    if head != ZIP_MAGIC:
        raise DatasetError(
            f"a TorchScript file (torch.jit.save, a zip archive) at {path}",
            f"a file starting with {head!r}",
            SCRIPT_FIX,
            options=("model",),
        )
    return where


def load_scripted(path: str | Path) -> tuple[torch.jit.ScriptModule, str]:
    """The TorchScript module saved at ``path`` (on the CPU, eval mode) and its file's sha256.

    Raises
    ------
    DatasetError
        When the file is missing or is not a TorchScript archive.
    """
    where = check_archive(path)
    data = where.read_bytes()
    return scripted_from_bytes(data, str(path)), hashlib.sha256(data).hexdigest()


def scripted_from_bytes(
    data: bytes, path: str, extra_files: dict[str, Any] | None = None
) -> torch.jit.ScriptModule:
    """A TorchScript archive's module from its bytes (``extra_files`` filled as torch does)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            module = torch.jit.load(
                io.BytesIO(data), map_location="cpu", _extra_files=extra_files or {}
            )
    except Exception as exc:  # torch raises several types for a file that is not its format
        raise DatasetError(
            f"a TorchScript file (torch.jit.save) at {path}",
            f"unreadable content ({_first_line(exc)})",
            SCRIPT_FIX,
            options=("model",),
        ) from None
    return module.eval()


def copy_module(model: nn.Module) -> nn.Module:
    """A deep copy of ``model``; a TorchScript module through its archive bytes (its
    ``deepcopy`` gives parameters that warn when moved)."""
    if not isinstance(model, torch.jit.ScriptModule):
        return copy.deepcopy(model)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        torch.jit.save(model, buffer)
    return scripted_from_bytes(buffer.getvalue(), "(a copy)").train(model.training)


def is_torchscript(data: bytes) -> bool:
    """Whether ``data`` is a TorchScript archive (a zip holding compiled ``code/``)."""
    import zipfile

    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except zipfile.BadZipFile:
        return False
    return any("/code/" in name or name.endswith("/constants.pkl") for name in names)


def build_user_model(
    spec: ModelSpec, in_shape: tuple[int, int, int], num_classes: int, seed: int
) -> nn.Module:
    """An untrained model of a ``factory`` or ``torchscript`` spec, the same for the same seed.

    A factory is called as ``function(num_classes, in_shape)`` under a forked global RNG seeded
    with ``seed`` (restored afterwards); a TorchScript file is loaded and re-initialised from
    ``seed`` (:func:`reinitialise`).

    Raises
    ------
    DatasetError
        When the factory fails or returns no ``nn.Module``, or the file cannot be loaded or
        re-initialised.
    """
    if spec.kind == "torchscript":
        module, _ = load_scripted(spec.source)
        return reinitialise(module, seed, spec.source)
    if spec.kind != "factory":
        raise ValueError(f"expected a factory or torchscript spec; found {spec}")
    factory = load_factory(spec.source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            module = factory(num_classes, tuple(in_shape))
        except Exception as exc:  # the user's code: any error, reported as one line
            raise DatasetError(
                f"factory {spec.source}({num_classes}, {tuple(in_shape)}) to build a model",
                f"{type(exc).__name__}: {_first_line(exc)}",
                "fix the factory; it is called as function(num_classes, (C, H, W))",
                options=("model",),
            ) from None
    if not isinstance(module, nn.Module):
        raise DatasetError(
            f"factory {spec.source} to return a torch.nn.Module",
            f"a {type(module).__name__}",
            "return the module instance (e.g. `return nn.Sequential(...)`)",
            options=("model",),
        )
    return module


def reinitialise(module: torch.jit.ScriptModule, seed: int, source: str) -> nn.Module:
    """``module``'s parameters drawn afresh from ``seed`` (a local generator), in place.

    Conv and Linear layers as :func:`robust_data.scoring.models.build_model` draws them
    (Kaiming-uniform weights, uniform biases), norm layers to weight one and bias zero with
    their running statistics reset.

    Raises
    ------
    DatasetError
        When a parameter belongs to a module of another type (its initialisation is unknown).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, sub in module.named_modules():
            kind = getattr(sub, "original_name", type(sub).__name__)
            own = dict(sub.named_parameters(recurse=False))
            if not own:
                continue
            if kind in _SCALED:
                weight = own["weight"]
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
                if own.get("bias") is not None:
                    bound = 1 / math.sqrt(weight[0].numel())
                    nn.init.uniform_(own["bias"], -bound, bound, generator=generator)
            elif kind in _NORMS:
                _reset_norm(sub, own)
            else:
                raise DatasetError(
                    "a TorchScript model of Conv, Linear and norm layers to re-initialise for "
                    "retraining",
                    f"parameters {sorted(own)} in {name or 'the top module'} ({kind}) of {source}",
                    "pass a factory `package.module:function` that builds the untrained model",
                    options=("model",),
                )
    return module


def _reset_norm(sub: nn.Module, own: dict[str, nn.Parameter]) -> None:
    """Weight one, bias zero; a batch norm's running mean zero, variance one, count zero."""
    if "weight" in own:
        own["weight"].fill_(1.0)
    if "bias" in own:
        own["bias"].zero_()
    buffers = dict(sub.named_buffers(recurse=False))
    if "running_mean" in buffers:
        buffers["running_mean"].zero_()
        buffers["running_var"].fill_(1.0)
    if "num_batches_tracked" in buffers:
        buffers["num_batches_tracked"].zero_()


def check_model(model: nn.Module, sample: torch.Tensor, num_classes: int, source: str) -> None:
    """One forward pass of ``sample`` (n, C, H, W) in eval mode: the output must be
    (n, num_classes) logits. The model is left in eval mode.

    Raises
    ------
    DatasetError
        When the model rejects the images or its output has another shape.
    """
    model.eval()
    try:
        with torch.no_grad():
            out = model(sample)
    except Exception as exc:  # the user's module: any error, reported as one line
        raise DatasetError(
            f"model {source} to accept images of shape {tuple(sample.shape[1:])}",
            f"{type(exc).__name__}: {_first_line(exc)}",
            "build it for the dataset's (C, H, W) (a factory gets in_shape)",
            options=("model",),
        ) from None
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (len(sample), num_classes):
        raise DatasetError(
            f"model {source} to output ({len(sample)}, {num_classes}) logits "
            f"for {len(sample)} images of {num_classes} classes",
            f"{shape}",
            f"give its last layer {num_classes} outputs (a factory gets num_classes)",
            options=("model",),
        )
    bad = int((~torch.isfinite(out)).any(dim=1).sum())
    if bad:
        raise DatasetError(
            f"model {source} to output finite logits",
            f"NaN or infinite logits for {bad} of {len(sample)} images",
            "check its layers and initialisation (a factory's untrained model, a file's weights)",
            options=("model",),
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
