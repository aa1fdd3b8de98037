"""Evaluation library: model invocation, metrics, the report, the evaluation lease. Plain functions; the
stage's tasks are in ``tasks/evaluate.py``."""
