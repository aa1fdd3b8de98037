"""The customize run form as an operator sees it, in a real browser, on a PostgreSQL-backed server (issue 18).

Debian's chromium, headless, opens the Prefect UI's "Custom run" page of the ``customize`` deployment (the default
UI, ui-v2: ``/v2/deployments/deployment/<id>/run``), lets it render, and the test reads the rendered DOM: the
form's field labels come in the pydantic models' field order — top level and inside a section — although JSONB
stored the schema's keys re-sorted. A screenshot of the form is written too (``FORGE_FORM_SCREENSHOT=PATH`` keeps
it; docs/img/customize-form-postgres.png was made that way).

Needs chromium and the postgresql binaries (``apt-get install -y chromium postgresql``); skips, saying which, when
one is missing.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from forge import stack
from forge.postgres import find_bin_dir, start_postgres
from tasks.config import DataConfig, PipelineConfig

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(300),
              pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: apt-get install -y chromium"),
              pytest.mark.skipif(find_bin_dir() is None,
                                 reason="PostgreSQL not installed: apt-get update && apt-get install -y postgresql")]


@pytest.fixture(scope="module")
def ui():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from forge.commands.deploy import deploy_all

    tmp = Path(tempfile.mkdtemp(prefix="forge-ui-test-"))
    tmp.chmod(0o755)                      # the postgres user must reach its data folder (tests run as root)
    started: list[stack.Service] = []
    try:
        pg = start_postgres(tmp / "postgres", log_dir=tmp / "logs")
        started.append(pg)
        server = stack.start_server(tmp / "prefect-home", ui=True, log_dir=tmp / "logs",
                                    database_url=pg.database_url, timeout=150)
        started.append(server)
        with temporary_settings(updates={PREFECT_API_URL: server.url}):
            ids = deploy_all(only=["customize"], echo=lambda *_: None)
        base = server.url.removesuffix("/api")
        yield {"api": server.url, "form": f"{base}/v2/deployments/deployment/{ids['customize']}/run", "tmp": tmp}
    finally:
        for svc in reversed(started):
            svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _chromium(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    """Headless chromium with a throwaway profile; --virtual-time-budget lets the single-page app fetch the
    deployment and render before the DOM is read."""
    profile = tempfile.mkdtemp(prefix="forge-chromium-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             f"--user-data-dir={profile}", "--window-size=1400,4200", "--virtual-time-budget=20000", *args],
            capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _labels(dom: str) -> list[str]:
    """The form's field labels, in document order, without the UI's " (Optional)"."""
    out = []
    for raw in re.findall(r"<label\b[^>]*>(.*?)</label>", dom, re.S):
        text = html.unescape(re.sub(r"<[^>]+>", "", raw)).strip()
        out.append(text.removesuffix(" (Optional)").strip())
    return out


def _label_of(prop: dict, defs: dict) -> str | None:
    """The label the UI gives a property: its title, else the title of the model it refers to."""
    if prop.get("title"):
        return prop["title"]
    refs = [prop.get("$ref")] + [p.get("$ref") for p in prop.get("anyOf", [])]
    for ref in filter(None, refs):
        return defs[ref.rsplit("/", 1)[-1]].get("title")
    return None


def _in_order(seen: list[str], expected: list[str]) -> list[str]:
    """``expected`` as a subsequence of ``seen``: the labels found, in order (the first one missing stops it)."""
    found, i = [], 0
    for label in expected:
        try:
            i = seen.index(label, i) + 1
        except ValueError:
            break
        found.append(label)
    return found


def test_the_rendered_form_keeps_the_model_order_on_postgresql(ui):
    schema = httpx.get(ui["form"].split("/v2/")[0] + "/api/deployments/name/customize-model/customize",
                       timeout=10).json()["parameter_openapi_schema"]
    defs = schema["definitions"]
    t0 = time.monotonic()
    done = _chromium("--dump-dom", ui["form"])
    dom_s = time.monotonic() - t0
    assert done.returncode == 0, done.stderr[-2000:]
    labels = _labels(done.stdout)
    pc, data = defs["PipelineConfig"]["properties"], defs["DataConfig"]["properties"]
    top = [_label_of(pc[f], defs) for f in PipelineConfig.model_fields]
    inner = [_label_of(data[f], defs) for f in DataConfig.model_fields]
    assert None not in top and None not in inner
    assert "Name" in labels, f"the form did not render in {dom_s:.0f} s: {labels[:20]}"
    assert _in_order(labels, top) == top, labels
    assert _in_order(labels, inner) == inner, labels
    # the stored order (JSONB) would have put Aws first: the page does not follow it
    stored = [_label_of(p, defs) for p in pc.values()]
    assert stored != top and _in_order(labels, stored) != stored
    print(f"chromium --dump-dom {dom_s:.1f} s, {len(labels)} labels")


def test_a_screenshot_of_the_form(ui):
    out = Path(os.environ.get("FORGE_FORM_SCREENSHOT") or ui["tmp"] / "customize-form.png").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _chromium(f"--screenshot={out}", ui["form"])
    assert done.returncode == 0 and out.is_file(), done.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000   # a page, not a blank
