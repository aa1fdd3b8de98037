"""Data preparation library: readers, per-format record rules, format conversion, on-disk keys, split.
Plain functions only (no Prefect), so ``forge validate`` / ``forge prepare`` start fast; the stage's
``@task`` is ``tasks/prepare.py``."""
