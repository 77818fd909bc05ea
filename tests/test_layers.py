"""The package's structure: one-way layers (the import-linter contracts in pyproject.toml),
no cycles, no module taking another's private names, and imports of the package's own
modules at the top of each module, where the graph can be read. The command line alone
imports a command's layers when the command runs, so that `import pipeline.cli` and
`--help` load neither numpy nor the readers (`tests/test_cli.py`)."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.helpers import ROOT

PACKAGE = ROOT / "pipeline"
LAZY_OWN_IMPORTS_ALLOWED = {"cli.py", "cli_common.py", "cli_standards.py"}


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _own_imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "pipeline":
            yield node, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "pipeline":
                    yield node, a.name, []


def test_import_contracts_are_kept():
    """In a process of its own: import-linter configures logging (it disables every logger
    that exists), which would silence the package's loggers for the tests after it."""
    code = ("import sys; from importlinter import cli; sys.exit(cli.lint_imports("
            f"config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True, no_logo=True))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_no_module_imports_another_modules_private_names():
    bad = []
    for path in _modules():
        for node, module, names in _own_imports(ast.parse(path.read_text())):
            bad += [f"{path.relative_to(ROOT)}:{node.lineno} {module}.{n}" for n in names
                    if n.startswith("_") and n != "__version__"]
    assert bad == []


def test_own_modules_are_imported_at_the_top():
    inner = []
    for path in _modules():
        if str(path.relative_to(PACKAGE)) in LAZY_OWN_IMPORTS_ALLOWED:
            continue
        for node, module, _ in _own_imports(ast.parse(path.read_text())):
            if node.col_offset > 0:
                inner.append(f"{path.relative_to(ROOT)}:{node.lineno} {module}")
    assert inner == []


MAX_COMPLEXITY = 20


def test_no_function_above_complexity_20():
    """Small named steps: radon's cyclomatic complexity of every function and method."""
    from radon.complexity import cc_visit

    over = []
    for path in _modules():
        for block in cc_visit(path.read_text()):
            for b in [block, *getattr(block, "methods", [])]:
                if b.complexity > MAX_COMPLEXITY:
                    over.append(f"{path.relative_to(ROOT)}:{b.lineno} {b.name} {b.complexity}")
    assert over == []
