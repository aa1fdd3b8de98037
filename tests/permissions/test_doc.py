"""docs/permissions.md is exactly what scripts/gen_permissions_doc.py makes from tasks/permissions.py (issue 20:
generated from the same code, so it cannot drift), and every policy it shows parses and is the generator's."""

from __future__ import annotations

import importlib.util
import json
import re

from tests.support import REPO_ROOT


def _script():
    spec = importlib.util.spec_from_file_location("gen_permissions_doc", REPO_ROOT / "scripts/gen_permissions_doc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_committed_doc_is_the_generators_output():
    gen = _script()
    committed = (REPO_ROOT / "docs/permissions.md").read_text(encoding="utf-8")
    assert committed == gen.render(), "docs/permissions.md is stale: run python scripts/gen_permissions_doc.py"
    assert gen.main(["--check"]) == 0


def test_every_policy_in_the_doc_is_an_iam_document_of_the_generator():
    from tasks.config import load_config
    from tasks.permissions import ROLES, permission_policy

    text = (REPO_ROOT / "docs/permissions.md").read_text(encoding="utf-8")
    shown = [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", text, re.S)]
    want = [permission_policy(load_config(p), role, account="111122223333").document()
            for p in sorted((REPO_ROOT / "examples").glob("*.yaml")) for role in ROLES]
    assert shown == want


def test_check_fails_on_a_stale_doc(tmp_path, monkeypatch):
    gen = _script()
    stale = tmp_path / "permissions.md"
    stale.write_text("old\n")
    monkeypatch.setattr(gen, "DOC", stale)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0
