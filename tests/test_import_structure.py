"""The project's import structure: no module imports itself through others (function-level imports included), no two
folders import each other, nothing outside tests/ imports a test module or a tool, no script edits sys.path (the project is
installed editable: pyproject.toml lists every module), and a tool runs from any folder."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIPPED = {".git", ".venv", "__pycache__", "build"}


def python_files(under: Path | None = None) -> list[Path]:
    return sorted(p for p in (under or REPO).rglob("*.py") if not SKIPPED & set(p.relative_to(REPO).parts))


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module outside tests/ (a package by its __init__.py)."""
    modules = {}
    for path in python_files():
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[0] == "tests":
            continue
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_names(path: Path) -> set[str]:
    """Every absolute import of `path`, anywhere in it, as dotted names (`from a import b` gives a.b and a)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (the longest dotted prefix that is a module)."""
    modules = project_modules()

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        return next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in modules), None)

    return {name: {m for n in imported_names(path) if (m := resolve(n)) and m != name}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while component[-1:] != [node]:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def folder_of(module: str, modules: dict[str, Path]) -> str:
    """A module's folder (`sgm/modules/encoders`); a module at the root stands for itself."""
    relative = modules[module].relative_to(REPO)
    return str(relative.parent) if len(relative.parts) > 1 else module


def test_no_module_imports_itself_through_others():
    assert cycles(import_graph()) == []


def test_no_two_folders_import_each_other():
    modules = project_modules()
    folders: dict[str, set[str]] = {}
    for module, imports in import_graph().items():
        here = folder_of(module, modules)
        folders.setdefault(here, set()).update(f for m in imports if (f := folder_of(m, modules)) != here)
    assert cycles(folders) == []


def test_only_tests_import_test_modules():
    test_modules = {path.stem for path in python_files(REPO / "tests")}
    offenders = {str(path.relative_to(REPO)): sorted(names & test_modules)
                 for name, path in project_modules().items()
                 if (names := {n.split(".")[0] for n in imported_names(path)}) & test_modules}
    assert offenders == {}


def test_tools_are_command_lines_nothing_else_imports():
    """tools/ holds command-line scripts over the library: no library module, benchmark or other tool imports one
    (the tests do, to run them)."""
    offenders = {str(path.relative_to(REPO)): sorted(n for n in names if n.split(".")[0] == "tools")
                 for name, path in project_modules().items() if name != "tools"
                 if (names := imported_names(path)) and any(n.split(".")[0] == "tools" for n in names)}
    assert offenders == {}


def test_no_script_edits_the_import_path():
    edits = [f"{path.relative_to(REPO)}:{number}" for path in python_files() if path.name != Path(__file__).name
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"sys\.path\.(insert|append)|[\"']PYTHONPATH[\"']", line)]
    assert edits == []


def test_pyproject_lists_every_module_and_package():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    at_root = sorted(p.stem for p in REPO.glob("*.py"))
    packages = sorted(".".join(p.parent.relative_to(REPO).parts) for p in python_files() if p.name == "__init__.py")
    assert sorted(setuptools["py-modules"]) == at_root
    assert sorted(setuptools["packages"]) == packages


@pytest.mark.slow
def test_a_tool_runs_from_another_folder(tmp_path):
    """`python tools/make_tiny_weights.py` from the repository root, and by its path from elsewhere."""
    for cwd, script in ((REPO, "tools/make_tiny_weights.py"), (tmp_path, str(REPO / "tools/make_tiny_weights.py"))):
        done = subprocess.run([sys.executable, script, "--help"], cwd=cwd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: make_tiny_weights.py")
