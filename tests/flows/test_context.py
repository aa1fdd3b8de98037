"""flows/context.py: where run folders live (the flow parameter, FORGE_RUNS_DIR, runs)."""


def test_runs_root_is_the_parameter_else_forge_runs_dir_else_runs(monkeypatch):
    from flows.context import runs_root

    monkeypatch.delenv("FORGE_RUNS_DIR", raising=False)
    assert runs_root(None) == "runs"
    monkeypatch.setenv("FORGE_RUNS_DIR", "/srv/forge-runs")
    assert runs_root(None) == "/srv/forge-runs" and runs_root("") == "/srv/forge-runs"
    assert runs_root("mine") == "mine"
