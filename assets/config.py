"""Run config derived from the core's dataclasses: one source for names, defaults and docs.

Each step's Dagster ``Config`` is a :class:`CoreConfig` naming the core options dataclass it
fills (``class ReferenceModelConfig(CoreConfig, core=ModelOptions)``). It gets that dataclass's
fields, every one optional: a field left unset takes the core's default (or what the step puts
in its place, such as the compute resource's device or a curation preset's value), which its
description, read from the dataclass's ``Attributes`` docstring, names. The launchpad therefore
shows no magic values, and a new core field appears in the run config without being declared
twice. Fields a step adds of its own (``device`` where the core takes none, the shard count,
the dataset source) are declared in the class body as usual and come after the core's.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

from dagster import Config
from pydantic import Field

#: What an unset ``device`` or ``precision`` takes in every step that runs a model.
FROM_COMPUTE = {
    "device": "the compute resource's device",
    "precision": "the compute resource's precision",
}


def device_field() -> Any:
    """The ``device`` field of a step whose core options take none (it is an argument)."""
    return Field(
        default=None, description="auto, cpu or cuda (unset: the compute resource's device)"
    )


class CoreConfig(Config):
    """A step's run config: the fields of a core options dataclass, then the step's own.

    Subclass it with class keywords: ``core`` (the dataclass), optionally ``omit`` (core fields
    the step fills itself, from an upstream table say) and ``unset`` (what an unset field takes,
    for the descriptions: one phrase for every field, or one per field; a field it does not
    name takes, and names, the core's default).

    Attributes
    ----------
    core : type
        The core dataclass (a class attribute).
    core_fields : tuple of str
        Its fields this config offers, in order; the class's other fields are the step's own
        (a class attribute).
    """

    core: ClassVar[type] = object
    core_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(
        cls,
        core: type | None = None,
        omit: Collection[str] = (),
        unset: str | Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        # Runs before pydantic collects the fields, so the ones added here are fields too.
        if core is not None:
            derived = derived_fields(core, omit, unset)
            own = inspect.get_annotations(cls)
            for name, (_, field) in derived.items():
                setattr(cls, name, field)
            cls.__annotations__ = {**{k: kind for k, (kind, _) in derived.items()}, **own}
            cls.core, cls.core_fields = core, tuple(derived)
        super().__init_subclass__(**kwargs)

    def options(self, **fallback: Any) -> Any:
        """The core dataclass from the fields this config sets.

        A field left unset takes its ``fallback`` value when one is given (for example the
        compute resource's device), else the core's default.
        """
        return self.core(**{**fallback, **set_fields(self)})


def derived_fields(
    source: type, omit: Collection[str] = (), unset: str | Mapping[str, str] | None = None
) -> dict[str, tuple[Any, Any]]:
    """Field name -> (run-config type, pydantic field) of ``source``'s fields, each optional.

    Raises
    ------
    ValueError
        When ``omit`` or ``unset`` names a field ``source`` does not have.
    """
    hints = typing.get_type_hints(source)
    docs = attribute_docs(source)
    known = [f.name for f in dataclasses.fields(source)]
    notes = dict.fromkeys(known, unset) if isinstance(unset, str) else dict(unset or {})
    unknown = sorted((set(omit) | set(notes)) - set(known))
    if unknown:
        raise ValueError(f"expected fields of {source.__name__}; found {unknown}")
    fields: dict[str, tuple[Any, Any]] = {}
    for field in dataclasses.fields(source):
        if field.name in omit:
            continue
        note = notes.get(field.name) or repr(core_default(field))
        described = f"{docs.get(field.name, '')} (unset: {note})".strip()
        kind = config_type(hints[field.name]) | None
        fields[field.name] = (kind, Field(default=None, description=described))
    return fields


def attribute_docs(source: type) -> dict[str, str]:
    """Field name -> description, from the ``Attributes`` section of a NumPy-style docstring.

    An entry naming several fields (``a, b : bool``) gives each the same description.
    """
    lines = (inspect.getdoc(source) or "").splitlines()
    if "Attributes" not in lines:
        return {}
    docs: dict[str, str] = {}
    names: list[str] = []
    text: list[str] = []
    start = lines.index("Attributes") + 2  # past the underline
    for i, line in enumerate(lines[start:], start):
        if line.strip() and not line.startswith(" "):
            if i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
                break  # the next section
            docs.update(dict.fromkeys(names, " ".join(text)))
            names, text = [n.strip() for n in line.split(" : ")[0].split(",")], []
        elif line.strip():
            text.append(line.strip())
    docs.update(dict.fromkeys(names, " ".join(text)))
    return docs


def config_type(hint: Any) -> Any:
    """The run-config type of a core field's type: ``tuple[X, ...]`` becomes ``list[X]``.

    Dagster's config holds lists, not tuples; :func:`set_fields` turns them back.
    """
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return list[args[0]]  # type: ignore[valid-type]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.Union[tuple(config_type(arg) for arg in args)]  # noqa: UP007
    return hint


def core_default(field: dataclasses.Field[Any]) -> Any:
    """The default value of a core dataclass field (its factory called)."""
    if field.default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def set_fields(config: CoreConfig) -> dict[str, Any]:
    """The core fields ``config`` sets (not None), ready for ``config.core(**...)``.

    Lists (the run config's form of a tuple field) come back as tuples.
    """
    dumped = config.model_dump()
    return {
        name: tuple(dumped[name]) if isinstance(dumped[name], list) else dumped[name]
        for name in config.core_fields
        if dumped[name] is not None
    }
