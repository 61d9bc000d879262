"""Run config derived from the core's dataclasses: one source for names, defaults and docs.

Each step's Dagster ``Config`` lists the fields of the core dataclass it fills (for example
:class:`robust_data.scoring.models.ModelOptions`), every one optional: a field left unset takes the
core's default (or, for a curation preset, the preset's value), which its description names.
The launchpad therefore shows no magic values, and a new core field appears in the run
config without being declared twice.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

from dagster import Config
from pydantic import Field, create_model


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


def core_config(
    source: type,
    name: str,
    doc: str,
    module: str,
    unset: str = "the default",
    **extra: tuple[Any, Any, str],
) -> type[Config]:
    """A Dagster ``Config`` class with ``source``'s fields, each optional (None: unset).

    Parameters
    ----------
    source : type
        A dataclass of the core library.
    name, doc : str
        The class name and docstring (shown in the launchpad).
    module : str
        The defining module's ``__name__`` (the class's ``__module__``).
    unset : str
        What an unset field takes, for the descriptions ("the default" adds its value).
    **extra : (type, default, description)
        Step-only fields (for example ``device``), declared as given.
    """
    hints = typing.get_type_hints(source)
    docs = attribute_docs(source)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(source):
        default = field.default
        if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        note = f"unset: {default!r}" if unset == "the default" else f"unset: {unset}"
        described = f"{docs.get(field.name, '')} ({note})".strip()
        fields[field.name] = (hints[field.name] | None, Field(default=None, description=described))
    for key, (kind, default, described) in extra.items():
        fields[key] = (kind, Field(default=default, description=described))
    model = create_model(name, __base__=Config, __module__=module, **fields)
    model.__doc__ = doc
    return model


def set_fields(config: Config, source: type) -> dict[str, Any]:
    """The fields of ``source`` that ``config`` sets (not None), ready for ``source(**...)``."""
    names = {f.name for f in dataclasses.fields(source)}
    return {k: v for k, v in config.model_dump().items() if k in names and v is not None}
