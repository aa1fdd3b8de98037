"""Scheduled retraining: load the config file (its data source holds the latest data) and run
the customization flow as a subflow. The `retrain` deployment runs this on a cron schedule."""

from __future__ import annotations

from prefect import flow

from flows.customize import customize_model
from tasks.config import load_config


@flow(name="retrain", log_prints=True)
def retrain(config_path: str = "examples/banking77.yaml", runs_dir: str | None = None) -> dict:
    """Retrain on the latest data.

    Args:
        config_path: Pipeline config YAML, relative to the worker's working directory.
        runs_dir: Folder for run manifests and reports; empty: the worker's FORGE_RUNS_DIR, else "runs".
    """
    return customize_model(config=load_config(config_path), runs_dir=runs_dir)
