"""``make stack`` on PostgreSQL as an operator uses it (issue 18): ``python -m forge.stack --database postgres
--no-emulator`` starts PostgreSQL, a Prefect server on it (with its UI), the deployments and a worker; its banner
names the database; and the customize run form, in a real browser, keeps the models' field order.

Debian's chromium, headless, opens the stack's "Custom run" page of the ``customize`` deployment (the default UI,
ui-v2: ``/v2/deployments/deployment/<id>/run``), lets it render, and the test reads the rendered DOM: the form's
field labels come in the pydantic models' order — top level and inside a section — although JSONB stored the
schema's keys re-sorted. A screenshot of the form is written too (``FORGE_FORM_SCREENSHOT=PATH`` keeps it;
docs/img/customize-form-postgres.png was made that way). Ctrl-C then stops everything, PostgreSQL last.

Needs the postgresql binaries (``apt-get install -y postgresql``) and, for the browser tests, chromium
(``apt-get install -y chromium``); skips, saying which, when one is missing. The tests share one stack and run in
file order; the last one stops it (the fixture kills whatever is left).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from forge import stack
from forge.postgres import find_bin_dir
from tasks.config import DataConfig, PipelineConfig

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: apt-get install -y chromium")

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(300),
              pytest.mark.skipif(find_bin_dir() is None,
                                 reason="PostgreSQL not installed: apt-get update && apt-get install -y postgresql")]


@pytest.fixture(scope="module")
def pg_stack():
    """The stack, up: its process, banner lines, home and API URL."""
    home = Path(tempfile.mkdtemp(prefix="forge-stack-pg-"))
    home.chmod(0o755)            # the postgres user (the server runs as it when the tests run as root) must reach it
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_DATABASE_CONNECTION_URL")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "forge.stack", "--database", "postgres", "--no-emulator", "--home", str(home),
         "--port", str(stack.free_port())],
        cwd=stack.REPO_ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out: list[str] = []
    try:
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(out)
        assert "Ctrl-C stops everything" in text, text[-3000:]
        api = re.search(r"Prefect API\s+(http://\S+/api)", text).group(1)
        yield {"proc": proc, "lines": out, "text": text, "home": home, "api": api}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def test_the_banner_names_postgresql_without_its_password(pg_stack):
    home = pg_stack["home"]
    db_line = next(ln for ln in pg_stack["lines"] if ln.strip().startswith("database"))
    assert "PostgreSQL 1" in db_line and "127.0.0.1:" in db_line and str(home / "postgres") in db_line, db_line
    password = (home / "postgres" / "password").read_text().strip()
    assert len(password) >= 20 and password not in pg_stack["text"]
    assert oct((home / "postgres" / "password").stat().st_mode & 0o777) == "0o600"


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


def _form(pg_stack) -> tuple[str, dict]:
    dep = httpx.get(f"{pg_stack['api']}/deployments/name/customize-model/customize", timeout=10).json()
    return (f"{pg_stack['api'].removesuffix('/api')}/v2/deployments/deployment/{dep['id']}/run",
            dep["parameter_openapi_schema"])


@needs_chromium
def test_the_rendered_form_keeps_the_model_order_on_postgresql(pg_stack):
    url, schema = _form(pg_stack)
    defs = schema["definitions"]
    t0 = time.monotonic()
    done = _chromium("--dump-dom", url)
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


@needs_chromium
def test_a_screenshot_of_the_form(pg_stack):
    url, _ = _form(pg_stack)
    out = Path(os.environ.get("FORGE_FORM_SCREENSHOT") or pg_stack["home"] / "customize-form.png").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _chromium(f"--screenshot={out}", url)
    assert done.returncode == 0 and out.is_file(), done.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000   # a page, not a blank


@pytest.fixture(scope="module")
def finished_run(pg_stack, tmp_path_factory):
    """A whole small run (`forge run` on an emulator) reporting to the PostgreSQL-backed server: its flow run and
    the id of its ``eval-report`` artifact there."""
    import yaml

    from emulator.testing import running_emulator
    from scenarios.harness import small_config

    tmp = tmp_path_factory.mktemp("report-run")
    cfg = tmp / "report.yaml"
    cfg.write_text(yaml.safe_dump(small_config("report-browser")))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "AWS_"))}
    env.update(PREFECT_API_URL=pg_stack["api"], PREFECT_SERVER_ANALYTICS_ENABLED="false")
    with running_emulator(speed=3000.0, state_dir=tmp / "emu") as emu:
        done = subprocess.run([sys.executable, "-m", "forge.cli", "run", str(cfg), "--endpoint", emu.url,
                               "--runs-dir", str(tmp / "runs")], cwd=stack.REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=240)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        arts = httpx.post(f"{pg_stack['api']}/artifacts/filter", timeout=10,
                          json={"artifacts": {"key": {"any_": ["eval-report", "eval-metrics-chart"]}}}).json()
        by_key = {a["key"]: a for a in sorted(arts, key=lambda a: a["created"])}
        assert {"eval-report", "eval-metrics-chart"} <= set(by_key), arts
        yield {"report": by_key["eval-report"], "chart_link": by_key["eval-metrics-chart"], "emulator": emu,
               "tmp": tmp}


@needs_chromium
def test_the_report_artifact_shows_its_charts_in_a_browser(pg_stack, finished_run):
    """Issue 18 Build 2: the UI's page of a finished run's report artifact, rendered by chromium: the charts are
    <img> elements the page itself carries (data:image/png, allowed by the UI's markdown renderer), they decode as
    PNG images, no link points at the worker's disk, and the file links open the S3 copies."""
    import base64
    import io

    from PIL import Image

    art = finished_run["report"]
    url = f"{pg_stack['api'].removesuffix('/api')}/v2/artifacts/artifact/{art['id']}"
    done = _chromium("--dump-dom", url)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    srcs = re.findall(r'<img\b[^>]*\bsrc="(data:image/png;base64,[^"]+)"', dom)
    assert srcs, f"no chart image rendered on {url}: {dom[-2000:]}"
    for src in srcs:
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()
        assert img.format == "PNG" and img.width > 200 and img.height > 100, img.size
    assert "file://" not in dom and "file://" not in art["data"]
    chart = re.search(r"\((http[^)]+)\)", finished_run["chart_link"]["data"]).group(1)
    got = httpx.get(chart, timeout=10)
    assert got.status_code == 200 and got.content[:8] == b"\x89PNG\r\n\x1a\n", (chart, got.status_code)
    out = Path(os.environ.get("FORGE_REPORT_SCREENSHOT") or finished_run["tmp"] / "report-artifact.png").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    shot = _chromium(f"--screenshot={out}", url)
    assert shot.returncode == 0 and out.stat().st_size > 20_000, shot.stderr[-2000:]


def test_ctrl_c_stops_the_stack_postgresql_last(pg_stack):
    """Last in the file: it stops the shared stack."""
    proc, home = pg_stack["proc"], pg_stack["home"]
    pid = int((home / "postgres" / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(pid, 0)                                    # PostgreSQL is running
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=150)[0]
    assert proc.returncode == 0, rest[-3000:]
    assert "stopped: worker, prefect-server, postgres" in rest, rest[-3000:]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
