"""Scenario library: the real pipeline driven from outside, with faults injected into the local Bedrock
emulator, and the verdict read from the emulator's ledger. Test and benchmark code, not pipeline code
(nothing under tasks/, flows/ or forge/ imports it).

- ``scenarios.faults``: the fault matrix (issue 9): ``SCENARIOS``, ``run_scenario`` -> ``Outcome``.
- ``scenarios.ledger``: the judge over the ledger (``duplicates``, ``injected``, ``calls``, ``alive_serving``).
- ``scenarios.harness``: running the flow the way a user would (``aws_env``, ``run_flow``, ``manifest_of``,
  ``data_intact``, ``small_config``).

Imported by ``tests/flows/test_fault_matrix.py`` (one test per scenario) and ``bench/faults.py`` (runs every
scenario and writes ``bench/faults.md``), so the tests and the published table run the same code.
"""
