"""tfenv's default canary probe. It runs INSIDE a dev container, as its user:

    docker exec -i CONTAINER python3 - MODEL INFERENCES < probe.py

It loads the reference SavedModel at MODEL (its ``serving_default``
signature), calls it INFERENCES times on fixed inputs (the same on every run,
every host, every image), and prints one line::

    TFENV-METRICS {"p50_ms": .., "p99_ms": .., "errors": .., "inferences": ..,
                   "cpu_ms": .., "gpu_memory_mib": .., "outputs": [..]}

``outputs`` is the mean of the first output over the batch: for a classifier,
its mean class distribution, which the KL gate compares with the baseline.
``cpu_ms`` times a fixed piece of CPU work between inferences: how fast this
host's CPU was for the probe (a gate may compare p99 relative to it).
The container's Python and TensorFlow run it; nothing here is imported by
tfenv itself except to read this file's text (and its tests call the pure
helpers). Standard library only at import time.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

BATCH = 8
WARMUP = 10
ROUNDS = 10  # p50/p99 are those of the best round: noise comes and goes, a regression stays
SEED = 20261127
CPU_WORK_EVERY = 5  # inferences between two timings of cpu_work()
CPU_WORK_STEPS = 20000


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def best_round(values: list[float], share: float) -> float:
    """The ``share`` percentile of the best of ROUNDS consecutive rounds of ``values``."""
    size = max(1, len(values) // ROUNDS)
    rounds = [values[i : i + size] for i in range(0, len(values), size)][:ROUNDS]
    return round(min(percentile(r, share) for r in rounds), 4)


def cpu_work() -> int:
    """A fixed piece of single-threaded CPU work (about a millisecond), timed beside the
    model: how fast the host's CPU is for this container right now (``cpu_ms``)."""
    value = 1
    for _ in range(CPU_WORK_STEPS):
        value = (value * 31 + 7) % 1_000_003
    return value


def gpu_memory_mib() -> float | None:
    """Memory in use on the GPUs this container sees, as nvidia-smi reports it (MiB)."""
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        return float(sum(float(line) for line in smi.stdout.split() if line.strip()))
    except ValueError:
        return None


def main(argv: list[str]) -> int:
    model_path, count = argv[1], int(argv[2])
    result: dict = {"inferences": count, "errors": 0}
    try:
        import numpy as np
        import tensorflow as tf

        # One CPU thread per op and between ops: the old and the new container are
        # compared under the same conditions, and a shared host's scheduling noise
        # (which otherwise dominates p99) stays out of the numbers.
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        model = tf.saved_model.load(model_path)
        function = model.signatures["serving_default"]
        _, specs = function.structured_input_signature
        rng = np.random.default_rng(SEED)
        inputs = {
            name: tf.constant(
                rng.normal(size=[BATCH if d is None else d for d in spec.shape]),
                dtype=spec.dtype,
            )
            for name, spec in sorted(specs.items())
        }
        for _ in range(WARMUP):
            function(**inputs)
    except Exception as exc:  # the probe reports; the gate decides
        result["error"] = f"{type(exc).__name__}: {exc}"[:300]
        print("TFENV-METRICS " + json.dumps(result))
        return 0
    latencies, cpu, total = [], [], None
    for index in range(count):
        if index % CPU_WORK_EVERY == 0:
            start = time.perf_counter()
            cpu_work()
            cpu.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        try:
            outputs = function(**inputs)
            first = outputs[sorted(outputs)[0]].numpy()
        except Exception:
            result["errors"] += 1
            continue
        latencies.append((time.perf_counter() - start) * 1000)
        mean = first.reshape(-1, first.shape[-1]).mean(axis=0)
        total = mean if total is None else total + mean
    if latencies:
        result["p50_ms"] = best_round(latencies, 0.50)
        result["p99_ms"] = best_round(latencies, 0.99)
    if cpu:  # the same statistic as p50: the median of the best round
        result["cpu_ms"] = best_round(cpu, 0.50)
    if total is not None:
        result["outputs"] = [round(float(v) / len(latencies), 8) for v in total]
    result["gpu_memory_mib"] = gpu_memory_mib()
    print("TFENV-METRICS " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
