"""tfenv lab: a SIMULATED ``tensorflow`` module in the scale lab's small dev image
(tfenv lab up --dev-image small). It is NOT TensorFlow: it has only the two ops
tfenv's deep health check calls (matmul, reduce_sum, on nested lists), so that
check runs its real code path in 30 containers without 30 copies of TensorFlow.
The rollout probe and anything else fail on it, by design."""

__version__ = "0.0+tfenv-lab-stub"


def matmul(a, b):
    columns = list(zip(*b, strict=True))
    return [[sum(x * y for x, y in zip(row, col, strict=True)) for col in columns] for row in a]


def reduce_sum(value):
    if isinstance(value, (list, tuple)):
        return sum(reduce_sum(v) for v in value)
    return value
