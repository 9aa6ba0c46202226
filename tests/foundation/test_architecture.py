"""The structure rules of docs/architecture.md, checked on the source (issue 13).

- no function in `fusionseg/` over 80 lines (signature and docstring included) unless it is a numbered
  port of a reference algorithm, listed below with the spec section it follows;
- no module over 600 lines;
- `fusionseg/cli/` imports only `fusionseg.api`, `fusionseg.config`, `fusionseg.errors` and its own
  modules (plus `fusionseg.__version__`);
- imports run one way: nothing imports `cli`, `workflows` does not import `api`, the engine does not
  import the workflows, and `modalities` does not import torch at module level.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fusionseg"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 600
# numbered ports of reference algorithms: "module::function" -> the spec it follows step by step
PORTS = {
    "modalities/completion.py::fill_in_multiscale": "reference/modalities.md §1.5 (ip_basic, numbered steps)",
}
CLI_ALLOWED = ("fusionseg.api", "fusionseg.config", "fusionseg.errors", "fusionseg.cli")


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def imported_modules(tree: ast.AST, path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at module level) of every import; relative imports resolved."""
    out = []
    parent_parts = ["fusionseg", *path.relative_to(PACKAGE).parent.parts]
    top_level = {id(node) for node in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parent_parts[: len(parent_parts) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            names = [f"{name}.{a.name}" if name == "fusionseg" else name for a in node.names]
            out += [(n, node.lineno, id(node) in top_level) for n in names]
    return out


def test_functions_fit_on_a_screen() -> None:
    long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and f"{rel(path)}::{node.name}" not in PORTS:
                    long.append(f"{rel(path)}::{node.name} ({lines} lines)")
    assert not long, long


def test_ports_are_still_long_and_cite_their_spec() -> None:
    """An exemption that no longer applies must be removed, and each cites the spec it ports."""
    for key, spec in PORTS.items():
        module, name = key.split("::")
        tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
        (node,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
        assert node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES, key
        assert spec.split(" ")[0].removeprefix("reference/") in (ast.get_docstring(node) or ""), key


def test_modules_stay_under_600_lines() -> None:
    big = [
        f"{rel(p)} ({n} lines)"
        for p in modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not big, big


@pytest.mark.parametrize("path", sorted((PACKAGE / "cli").glob("*.py")), ids=lambda p: p.name)
def test_cli_imports_only_the_api_layer(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = [
        f"line {line}: {name}"
        for name, line, _ in imported_modules(tree, path)
        if name.startswith("fusionseg")
        and name not in ("fusionseg", "fusionseg.__version__")
        and not any(name == ok or name.startswith(ok + ".") for ok in CLI_ALLOWED)
    ]
    assert not bad, bad


def test_imports_run_one_way() -> None:
    bad = []
    for path in modules():
        here = rel(path)
        for name, line, top in imported_modules(ast.parse(path.read_text(encoding="utf-8")), path):
            where = f"{here}:{line} imports {name}"
            if name.startswith("fusionseg.cli") and not here.startswith("cli/") and here != "__main__.py":
                bad.append(where)
            if name.startswith("fusionseg.api") and not here.startswith("cli/") and here != "api.py":
                bad.append(where)
            if name.startswith("fusionseg.workflows") and here.split("/")[0] in ("engine", "data", "models"):
                bad.append(where)
            if here.startswith("modalities/") and top and name.split(".")[0] == "torch":
                # the torch back-ends (HHA, ip_basic completion), imported only when asked for
                if here not in ("modalities/hha_torch.py", "modalities/completion_torch.py"):
                    bad.append(where)
    assert not bad, bad
