"""The core's layout: every module imports on its own, no import cycles at run time, and only ``esmtp.smtp`` talks to
aiosmtplib (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"esmtp": ROOT / "esmtp", "esmtp_plugins": ROOT / "plugins" / "esmtp_plugins"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, directory in SOURCES.items():
        for path in sorted(directory.rglob("*.py")):
            parts = [package, *path.relative_to(directory).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def _imported(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The project modules ``node`` imports (``from a import b`` imports ``a.b`` when that is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, *([base] if base else [])])
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]


def _run_time_imports(module: str) -> set[str]:
    """Project modules that importing ``module`` imports at once (module level, outside ``if TYPE_CHECKING``),
    with the packages that contain them."""
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, ast.Import | ast.ImportFrom):
                for name in _imported(module, statement):
                    parts = name.split(".")
                    prefixes = (".".join(parts[:n]) for n in range(1, len(parts) + 1))
                    found.update(prefix for prefix in prefixes if prefix in MODULES)
            elif isinstance(statement, ast.If) and not _is_type_checking(statement.test):
                visit(statement.body)
                visit(statement.orelse)
            elif isinstance(statement, ast.Try):
                visit(statement.body)
                for handler in statement.handlers:
                    visit(handler.body)

    visit(tree.body)
    found.discard(module)
    return found


def test_no_import_cycles_at_run_time() -> None:
    graph = {module: _run_time_imports(module) for module in MODULES}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if target == module.rsplit(".", 1)[0] or module.startswith(target + "."):
                continue  # a module's own packages are imported before it: not a cycle
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target] if target in path else [*path, target])
            elif target not in state:
                walk(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, "import cycles at run time:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_every_module_imports_on_its_own() -> None:
    """Each module imported first, in a fresh interpreter of its own (a cycle or a missing import fails there)."""
    script = (
        "import importlib, os, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            importlib.import_module(name)\n"
        "        except BaseException as error:\n"
        "            print(f'{name}: {type(error).__name__}: {error}', flush=True)\n"
        "            os._exit(1)\n"
        "        os._exit(0)\n"
        "    if os.waitpid(pid, 0)[1]:\n"
        "        failed.append(name)\n"
        "sys.exit(1 if failed else 0)\n"
    )
    modules = [name for name in MODULES if not name.endswith("__main__")]  # that one runs the program
    result = subprocess.run([sys.executable, "-c", script, *modules], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_smtp_package_imports_aiosmtplib(module: str) -> None:
    if module == "esmtp.smtp" or module.startswith("esmtp.smtp."):
        return
    tree = ast.parse(MODULES[module].read_text())
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level]
    assert not [name for name in names if name.split(".")[0] == "aiosmtplib"], f"{module} imports aiosmtplib"
