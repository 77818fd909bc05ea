"""docs/design.md stays true to the code: every dotted `pipeline.*` name it writes in
backticks resolves (an importable module, or an attribute of one), and every module of the
import-linter layer contracts in pyproject.toml is named in it."""

from __future__ import annotations

import importlib
import importlib.util
import re
import tomllib

import pytest

from tests.helpers import ROOT

DOC = ROOT / "docs" / "design.md"
# `...` spans and ``` fenced blocks; inside them, names such as pipeline.batch.store.Store.open
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
DOTTED = re.compile(r"(?<![\w.])pipeline(?:\.[A-Za-z_]\w*)+")


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _dotted_names(text: str) -> list[str]:
    names = {m.group(0) for span in CODE.findall(text) for m in DOTTED.finditer(span)}
    return sorted(names)


def _resolve(name: str) -> None:
    """Walk `name` from the package down: a part that is a sub-module of a package is
    imported, any other part is an attribute (AttributeError when there is none). An error
    raised while importing a module that exists propagates as it is."""
    first, *rest = name.split(".")
    obj = importlib.import_module(first)
    path = first
    for part in rest:
        path = f"{path}.{part}"
        if hasattr(obj, "__path__") and importlib.util.find_spec(path) is not None:
            obj = importlib.import_module(path)
        else:
            obj = getattr(obj, part)


def _contracts() -> list[dict]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]["contracts"]


def _layer_modules(contract: dict) -> list[str]:
    """The modules of a layers contract, each with its container (``pipeline.cli``)."""
    (container,) = contract["containers"]
    out = []
    for layer in contract["layers"]:
        for tail in re.split(r"[:|]", layer):
            out.append(f"{container}.{tail.strip().strip('()')}")
    return out


def test_the_document_names_pipeline_objects():
    assert len(_dotted_names(_doc())) > 20


def test_every_dotted_name_in_backticks_resolves():
    unresolved = []
    for name in _dotted_names(_doc()):
        try:
            _resolve(name)
        except (AttributeError, ModuleNotFoundError) as exc:
            unresolved.append(f"{name}: {type(exc).__name__}: {exc}")
    assert unresolved == []


def test_every_module_of_the_package_layers_is_described():
    package = [c for c in _contracts() if c.get("containers") == ["pipeline"]]
    assert len(package) == 1, "pyproject.toml has no layers contract over the pipeline package"
    text = _doc()
    modules = _layer_modules(package[0])
    assert len(modules) > 10
    missing = [m for m in modules if not re.search(rf"(?<![\w.]){re.escape(m)}(?!\w)", text)]
    assert missing == []


@pytest.mark.parametrize("contract", [c["name"] for c in _contracts()
                                      if c.get("containers") != ["pipeline"]])
def test_every_module_of_the_other_layer_contracts_is_described(contract):
    (c,) = [c for c in _contracts() if c["name"] == contract]
    text = _doc()
    missing = [m for m in _layer_modules(c)
               if not re.search(rf"(?<![\w.]){re.escape(m)}(?!\w)", text)]
    assert missing == []
