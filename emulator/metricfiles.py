"""The metric files a finished emulated job writes to its output prefix (docs/bedrock-facts.md §6).

docs/bedrock-facts.md. File names and columns (docs/bedrock-facts.md §6, docs):

- ``training_artifacts/step_wise_training_metrics.csv``: ``step_number`` (from 0), ``epoch_number``,
  ``training_loss``, ``perplexity``
- ``validation_artifacts/post_fine_tuning_validation/validation_metrics.csv`` (only with a
  validation set): the same with ``validation_loss`` in place of ``training_loss``.

The numbers are synthetic — an emulator stand-in, not a training run — but follow a documented,
plausible model so that curves, summaries and over-fitting checks downstream have realistic
input. ``epoch_number`` counts from 0 like ``step_number``.

Model (x = epochs of data seen so far, warm-up included):

- steps per epoch = ceil(n_train / batchSize) (batchSize absent, e.g. Nova: 1); steps = epochs × that.
- learning-rate speed ``s = clip(lr / 1e-5, 0.01, 100) ** 0.35`` (``learningRateMultiplier`` is used
  as the ratio directly for Claude); warm-up ramps the per-step progress linearly over
  ``learningRateWarmupSteps`` steps.
- expected training loss ``L(x) = floor + (L0 - floor) · exp(-s · x / 0.6)`` with ``L0 = 2.6`` and
  ``floor = 0.2 + 0.6 · n/(n + 1000)`` (small sets are memorised further).
- logged training loss = ``L(x) · exp(ε)``, ``ε ~ N(0, 0.15 / sqrt(batchSize))`` (+ a little more
  noise at learning rates above 1e-5): per-batch losses are noisy, smaller batches more so.
- validation loss (4 evaluations per epoch, fewer when an epoch has fewer steps) =
  ``vfloor + (L0 - vfloor) · exp(-s · x / 0.6) + over-fitting`` with ``vfloor = floor + 0.35 ·
  sqrt(1000 / (n + 1000))`` and over-fitting ``0.04 · s · 1000/(n + 1000) · max(0, x - x_opt)``,
  ``x_opt = 1 + log10(1 + n / 500)`` epochs: small data trained for many epochs shows a rising
  validation loss, as real fine-tuning does. Noise N(0, 0.02).
- perplexity = exp(loss). At most about 2,000 training rows are written (every k-th step beyond
  that, plus the final step).
- Early stopping (Claude / Cohere ``earlyStopping*``) is not modelled.

Seeded with ``seed`` only: the same inputs give byte-identical files.
"""

from __future__ import annotations

import io
import math

import numpy as np

MAX_TRAINING_ROWS = 2000
L0 = 2.6
TAU_EPOCHS = 0.6
REFERENCE_LR = 1e-5
TRAIN_COLUMNS = ("step_number", "epoch_number", "training_loss", "perplexity")
VALIDATION_COLUMNS = ("step_number", "epoch_number", "validation_loss", "perplexity")


def _hp(hyperparameters: dict[str, str], key: str, default: float) -> float:
    try:
        v = float(hyperparameters[key])
    except (KeyError, TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def metric_csvs(n_train_records: int, n_validation_records: int, hyperparameters: dict[str, str],
                seed: int) -> tuple[str, str | None]:
    """(step_wise_training_metrics.csv text, validation_metrics.csv text or None without validation)."""
    hp = hyperparameters or {}
    n = max(0, int(n_train_records))
    epochs = max(1, int(_hp(hp, "epochCount", 2)))
    batch = max(1, int(_hp(hp, "batchSize", 1)))
    if "learningRateMultiplier" in hp:
        lr_ratio = _hp(hp, "learningRateMultiplier", 1.0)
    else:
        lr_ratio = _hp(hp, "learningRate", REFERENCE_LR) / REFERENCE_LR
    lr_ratio = min(100.0, max(0.01, lr_ratio))
    speed = lr_ratio ** 0.35
    warmup = max(0, int(_hp(hp, "learningRateWarmupSteps", 0)))

    steps_per_epoch = max(1, math.ceil(n / batch)) if n else 1
    total = epochs * steps_per_epoch
    steps = np.arange(total)
    # progress in epochs, each step scaled by the warm-up ramp
    ramp = np.minimum(1.0, (steps + 1) / (warmup + 1)) if warmup else np.ones(total)
    x = np.cumsum(ramp) / steps_per_epoch
    decay = np.exp(-speed * x / TAU_EPOCHS)

    rng = np.random.default_rng(seed)
    floor = 0.2 + 0.6 * n / (n + 1000)
    sigma = 0.15 / math.sqrt(batch) * (1 + 0.3 * max(0.0, math.log10(lr_ratio)))
    train_loss = (floor + (L0 - floor) * decay) * np.exp(rng.normal(0.0, sigma, total))

    stride = max(1, math.ceil(total / MAX_TRAINING_ROWS))
    logged = list(steps[::stride])
    if logged[-1] != total - 1:
        logged.append(total - 1)            # always log the final step
    out = io.StringIO()
    out.write(",".join(TRAIN_COLUMNS) + "\n")
    for s in logged:
        loss = float(train_loss[s])
        out.write(f"{s},{s // steps_per_epoch},{loss:.6f},{math.exp(loss):.6f}\n")
    train_csv = out.getvalue()

    if n_validation_records <= 0:
        return train_csv, None
    evals = min(4, steps_per_epoch)
    eval_steps = sorted({e * steps_per_epoch + max(0, round((k + 1) * steps_per_epoch / evals) - 1)
                         for e in range(epochs) for k in range(evals)})
    vfloor = floor + 0.35 * math.sqrt(1000 / (n + 1000))
    x_opt = 1 + math.log10(1 + n / 500)
    over = 0.04 * speed * 1000 / (n + 1000)
    vout = io.StringIO()
    vout.write(",".join(VALIDATION_COLUMNS) + "\n")
    for s in eval_steps:
        xe = float(x[s])
        loss = vfloor + (L0 - vfloor) * float(decay[s]) + over * max(0.0, xe - x_opt)
        loss = max(0.01, loss + float(rng.normal(0.0, 0.02)))
        vout.write(f"{s},{s // steps_per_epoch},{loss:.6f},{math.exp(loss):.6f}\n")
    return train_csv, vout.getvalue()
