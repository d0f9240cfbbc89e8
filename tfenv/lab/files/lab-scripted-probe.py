# tfenv lab: SCRIPTED canary readings (a probe that measures nothing). Lab only.
#
# Declared as a container's `canary.probe` by the rollout lab tests, whose subject
# is the rollout (waves, pause, rollback, resume, audit), not the lab's timing:
# it prints fixed metrics by the lab release this image is (/etc/tfenv-lab-release),
# so each gate's decision is the same on every run, whatever the shared CPUs do.
# Latency and output drift are regressions no gate can miss (lab4-slow: p99 x100;
# lab5-drift: outputs moved far past the KL limit); every other release reads the
# same as every other. tfenv's own probe (real TensorFlow, real timings) is tested
# in its own lab case, on the one gate that is deterministic there (KL).
import json

with open("/etc/tfenv-lab-release") as file:
    release = file.read().strip()
reading = {
    "inferences": 300,  # what the lab declares (group_data/lab.py)
    "errors": 0,
    "p50_ms": 2.0,
    "p99_ms": 3.0,
    "cpu_ms": 1.0,
    "outputs": [0.1] * 10,
    "gpu_memory_mib": None,
    "scripted": release,
}
if release.endswith("lab4-slow"):
    reading.update(p50_ms=200.0, p99_ms=300.0)
if release.endswith("lab5-drift"):
    reading["outputs"] = [0.91] + [0.01] * 9
print(json.dumps(reading))
