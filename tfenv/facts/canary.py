"""What a rollout measures on one container, in one command: :class:`CanaryCheck`.

On the host (with sudo), for the container NAME:

- its Docker state and health, waiting while it is ``starting`` (up to a timeout);
- its image (``Config.Image``) and tfenv's rollout labels;
- with ``health``: the in-container health probe of the deploy (sshd, Jupyter
  with the token only, GPUs, a TF op), a write into the checkpoint mount as
  the container's user, and the log lines since it started that name a
  missing op kernel or a Python traceback;
- with ``metrics``: the canary probe (tfenv's own, :mod:`tfenv.rollout.probe`,
  fed on stdin; or the declared command), whose last JSON line is kept.

Parsing is pure (:func:`parse`) and tested with captured output.
"""

from __future__ import annotations

import json
from pathlib import Path

from pyinfra.api import FactBase, QuoteString, StringCommand

from tfenv.containers.docker_up import wait_for_docker
from tfenv.layout import ROLLOUT_LABELS, ROLLOUT_LOCK_DIR
from tfenv.operations.container_health import PROBE

PROBE_SCRIPT = Path(__file__).resolve().parent.parent / "rollout" / "probe.py"
LOG_PATTERN = "No registered '.*' OpKernel|Traceback"
END = "TFENV_PROBE_EOF"


def _metrics(name: QuoteString, model: str, inferences: int, probe: tuple[str, ...]) -> list:
    if probe:
        return ["docker", "exec", name, *(QuoteString(arg) for arg in probe), "2>&1", "|",
                "tail", "-n", "20", "|", "sed", "-n", "'s/^\\({.*}\\)$/TFENV-METRICS \\1/p'",
                "|", "tail", "-n", "1;"]  # fmt: skip
    script = PROBE_SCRIPT.read_text()
    if END in script:  # never: the heredoc would end early
        raise ValueError(f"{PROBE_SCRIPT} contains {END}")
    return ["docker", "exec", "-i", name, "python3", "-", QuoteString(model), str(inferences),
            "2>&1", "<<'" + END + "'\n" + script + END + "\n"]  # fmt: skip


class CanaryCheck(FactBase):
    """A rollout's reading of one container (see the module). Run it with sudo."""

    def command(
        self,
        container: str,
        health: bool = True,
        metrics: bool = False,
        checkpoints: str | None = None,
        model: str | None = None,
        inferences: int = 500,
        probe: tuple[str, ...] = (),
        timeout: int = 180,
    ) -> StringCommand:
        name = QuoteString(container)
        fmt = (
            "'{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
            "\t{{.Config.Image}}\t{{.State.StartedAt}}\t{{json .Config.Labels}}'"
        )
        parts: list = [
            wait_for_docker(fail=False), ";",
            # Docker's health polled every 0.5 s, for up to ``timeout`` seconds.
            f"for i in $(seq {timeout * 2}); do",
            "s=$(docker inspect --format", fmt, name, "2>&1);",
            'case "$s" in *starting*) sleep 0.5;; *) break;; esac; done;',
            'printf "TFENV-STATE %s\\n" "$s";',
        ]  # fmt: skip
        if health:
            parts += ["docker", "exec", name, "python3", "-c", QuoteString(PROBE), "deep",
                      "2>&1", "|", "grep", "'^TFENV-PROBE ';"]  # fmt: skip
            if checkpoints:
                test = (
                    f'f={checkpoints}/.tfenv-canary-write-$$; echo ok > "$f" && '
                    'cat "$f" && rm -f "$f"'
                )
                parts += ["echo", "TFENV-CKPT", "$(docker exec", name, "sh", "-c",
                          QuoteString(test), "2>&1 | tail -n 1);"]  # fmt: skip
            parts += [
                "since=$(docker inspect --format '{{.State.StartedAt}}'", name, "2>/dev/null);",
                'docker logs --since "$since"', name, "2>&1", "|", "grep", "-E",
                QuoteString(LOG_PATTERN), "|", "head", "-n", "5", "|", "sed", "'s/^/TFENV-LOG /';",
            ]  # fmt: skip
        if metrics:
            parts += _metrics(name, model or "", inferences, probe)
        parts.append("true")
        return StringCommand(*parts)

    def process(self, output: list[str]) -> dict:
        return parse(output)


def parse(output: list[str]) -> dict:
    """The fact's lines as a dict: state, image, labels (tfenv's rollout ones),
    health (the in-container probe), checkpoints, log_lines, metrics, output."""
    result: dict = {"state": "", "image": "", "labels": {}, "health": None, "log_lines": [],
                    "metrics": None, "output": output[-5:]}  # fmt: skip
    for line in output:
        if line.startswith("TFENV-STATE "):
            state, _, rest = line[len("TFENV-STATE ") :].partition("\t")
            result["state"] = state.strip()
            image, _, rest = rest.partition("\t")
            result["image"] = image.strip()
            result["started"], _, labels = rest.partition("\t")
            try:
                every = json.loads(labels) or {}
            except json.JSONDecodeError:
                every = {}
            every = every if isinstance(every, dict) else {}
            result["labels"] = {k: v for k, v in every.items() if k in ROLLOUT_LABELS}
        elif line.startswith("TFENV-PROBE "):
            result["health"] = _json(line[len("TFENV-PROBE ") :])
        elif line.startswith("TFENV-CKPT "):
            result["checkpoints"] = line[len("TFENV-CKPT ") :].strip()
        elif line.startswith("TFENV-LOG "):
            result["log_lines"].append(line[len("TFENV-LOG ") :])
        elif line.startswith("TFENV-METRICS "):
            result["metrics"] = _json(line[len("TFENV-METRICS ") :]) or {
                "error": "unreadable metrics line"
            }
    if "No such object" in result["state"] or "No such container" in result["state"]:
        result["state"] = "absent"
    return result


def _json(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class RolloutLocks(FactBase):
    """The rollout lock files on a host: path -> its text (JSON, see rollout_lock)."""

    command = (
        f'for f in {ROLLOUT_LOCK_DIR}/*.lock; do [ -f "$f" ] || continue; '
        'echo "TFENV-LOCK $f"; head -c 1048576 "$f"; echo; done; true'
    )

    def process(self, output: list[str]) -> dict[str, str]:
        locks: dict[str, str] = {}
        current = None
        for line in output:
            if line.startswith("TFENV-LOCK "):
                current = line[len("TFENV-LOCK ") :].strip()
                locks[current] = ""
            elif current is not None:
                locks[current] += line
        return locks
