"""The arrows of docs/architecture.md, checked on the source: which folder may import what.

Every ``import`` / ``from ... import`` in a module counts, at module level or inside a function (a lazy
import is still an arrow). Relative imports are resolved against the module's package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

PACKAGES = ("tasks", "flows", "forge", "emulator", "scenarios")


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, mod: str | None = None) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import in ``path`` (module ``mod``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    mod = mod or _module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    top_level = {id(n) for n in tree.body}
    out: list[tuple[str, int, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((name, node.lineno, id(node) in top_level))
            # `from tasks import upload` imports the module tasks.upload
            out += [(f"{name}.{a.name}", node.lineno, id(node) in top_level) for a in node.names]
    return out


def _sources(*roots: str) -> list[Path]:
    files: list[Path] = []
    for root in roots:
        p = REPO_ROOT / root
        files += [p] if p.suffix == ".py" else sorted(p.rglob("*.py"))
    return files


def _violations(roots: tuple[str, ...], forbidden: tuple[str, ...], *, allow: dict[str, set[str]] | None = None,
                module_level_only: bool = False) -> list[str]:
    bad = []
    for path in _sources(*roots):
        mod = _module_name(path)
        for name, line, top in _imports(path):
            if module_level_only and not top:
                continue
            hit = next((f for f in forbidden if name == f or name.startswith(f + ".")), None)
            if hit and name not in (allow or {}).get(mod, set()):
                bad.append(f"{path.relative_to(REPO_ROOT)}:{line}: imports {name}")
    return sorted(set(bad))


def test_the_pipeline_imports_no_composer():
    assert _violations(("tasks",), ("flows", "forge", "scenarios", "bench", "tests")) == []


def test_aws_access_knows_no_stage():
    tasks_modules = sorted(
        _module_name(p) for p in _sources("tasks") if not _module_name(p).startswith(("tasks.aws", "tasks.config"))
    )
    forbidden = tuple(m for m in tasks_modules if m != "tasks")
    # tasks.config is allowed (AwsConfig); everything else under tasks/ is a stage or a library above aws
    assert _violations(("tasks/aws",), forbidden) == []


def test_config_does_not_depend_on_data_preparation():
    assert _violations(("tasks/config", "tasks/catalog"), ("tasks.data", "tasks.prepare")) == []


@pytest.mark.parametrize("root", ["tasks/data", "tasks/config", "tasks/catalog", "tasks/estimate.py", "tasks/run"])
def test_libraries_and_the_cost_guard_never_import_prefect(root):
    assert _violations((root,), ("prefect",)) == []


@pytest.mark.parametrize("root", ["tasks/aws", "tasks/evaluation"])
def test_aws_and_evaluation_import_prefect_only_inside_the_functions_that_publish_or_wrap(root):
    """tasks/aws/retry.py builds the @task wrappers, tasks/evaluation/report.py publishes artifacts: lazily."""
    assert _violations((root,), ("prefect",), module_level_only=True) == []


def test_the_emulator_never_imports_the_pipeline():
    """The emulator reads its own facts (emulator/facts.py); issue "Today's Bedrock" removed the catalog reads."""
    assert _violations(("emulator",), ("tasks", "flows", "forge", "scenarios")) == []


def _catalog_symbols() -> set[str]:
    tree = ast.parse((REPO_ROOT / "tasks" / "catalog" / "__init__.py").read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def test_tests_never_import_other_test_modules():
    bad = []
    for path in _sources("tests"):
        for name, line, _ in _imports(path):
            leaf = name.rpartition(".")[2]
            if leaf.startswith("test_") or name.startswith("conftest") or ".conftest" in name:
                bad.append(f"{path.relative_to(REPO_ROOT)}:{line}: imports {name}")
    assert bad == []


def test_the_data_verbs_and_the_estimate_start_without_prefect():
    """Measured in a fresh interpreter: what `forge validate` / `forge prepare` / `forge estimate` import."""
    code = ("import sys; import forge.cli, forge.commands.data, tasks.estimate, tasks.data.validate; "
            "from tasks.config import load_config; "
            "tasks.estimate.estimate_from_config(load_config('examples/banking77.yaml')); "
            "print(sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_walker_sees_lazy_relative_and_from_imports(tmp_path):
    """The checks above cannot pass by not seeing imports: the walker finds each kind."""
    src = tmp_path / "probe.py"
    src.write_text("import json\nfrom tasks import upload\n\ndef f():\n    from . import serve\n    import prefect\n")
    found = {(n, top) for n, _, top in _imports(src, "tasks.probe")}
    assert ("tasks.upload", True) in found
    assert ("tasks.serve", False) in found
    assert ("prefect", False) in found
