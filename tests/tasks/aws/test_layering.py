"""tasks/aws/* is the bottom layer: it imports only the standard library, boto3/botocore, its siblings and
``tasks.config`` (for AwsConfig); importing it has no side effects (no log filter, no Prefect)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT

AWS_DIR = REPO_ROOT / "tasks" / "aws"
ALLOWED_FIRST_PARTY = ("tasks.aws", "tasks.config")
ALLOWED_THIRD_PARTY = ("boto3", "botocore", "prefect")   # prefect: only inside functions (checked below)


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(module, at module level) for every import in a module."""
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, id(node) in top))
    return out


@pytest.mark.parametrize("path", sorted(AWS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_tasks_aws_depends_on_nothing_above_it(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{path.name}: the module docstring says what it holds"
    for module, top_level in _imports(tree):
        root = module.split(".")[0]
        if root in ("tasks", "flows", "forge", "emulator"):
            assert module.startswith(ALLOWED_FIRST_PARTY), f"{path.name} imports {module}"
        elif root in ALLOWED_THIRD_PARTY:
            assert not (root == "prefect" and top_level), f"{path.name}: prefect is imported lazily"
        else:
            assert root in sys.stdlib_module_names or root == "__future__", f"{path.name} imports {module}"


def test_importing_tasks_aws_has_no_side_effects():
    code = ("import logging, sys\n"
            "import tasks.aws, tasks.aws.clients, tasks.aws.errors, tasks.aws.logs, tasks.aws.redact, "
            "tasks.aws.retry, tasks.aws.s3uri, tasks.aws.tags\n"
            "assert 'prefect' not in sys.modules and 'boto3' not in sys.modules\n"
            "from tasks.aws.logs import REDACTED_LOGGERS\n"
            "assert not any(logging.getLogger(n).filters for n in REDACTED_LOGGERS)\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
