"""tfenv.reconcile.run and tfenv.reconcile.files without pyinfra: one reconcile
run (check, apply, check again, --deep) with the pyinfra steps replaced by
fakes, redaction, the rendered files, the summary, atomic writes and locks."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tfenv.reconcile import files, run
from tfenv.reconcile.check import PyinfraRun
from tfenv.reconcile.files import _fsync_dir, hold_exclusive, write_atomic
from tfenv.reconcile.html import render_html
from tfenv.reconcile.prom import render_prom
from tfenv.reconcile.report import HostResult, Item, Report
from tfenv.reconcile.run import (
    BUSY_COMMAND,
    LOG_NAME,
    REDACTED,
    Run,
    _in_use,
    reconcile,
    redact,
    render_all,
    summary,
    write_reports,
)

DRIFT = Item("containers", "dev.restart", "unless-stopped", "no")
NFS = Item("nfs", "ckpt.options", "hard", "soft")
PERSON = Item("undeclared", "stray", "absent (not declared)", "running", "person", "docker rm -f")
ROLLOUT = Item("driver", "nvidia-driver.version", "550", "535", "rollout", "tfenv rollout status r")


def report(*hosts: HostResult) -> Report:
    return Report(
        inventory="inv.py",
        started="2026-11-27T02:30:00Z",
        finished="2026-11-27T02:31:00Z",
        hosts={h.name: h for h in hosts},
    )


# -- one run, with fakes for pyinfra ---------------------------------------------


class Fleet:
    """What each pyinfra step would have found, and every call made."""

    def __init__(
        self,
        first: dict[str, HostResult],
        again: dict[str, HostResult] | None = None,
        outcome: dict[str, str] | None = None,
        probes: dict[str, list[Item]] | None = None,
    ) -> None:
        self.first, self.again = first, again or {}
        self.outcome, self.probes = outcome or {}, probes or {}
        self.calls: list[tuple[Any, ...]] = []

    def check_hosts(
        self,
        inventory: str,
        deploy: str,
        hosts: list[str],
        progress: Any,
        deep: bool,
        data: list[str],
    ) -> tuple[dict[str, HostResult], str]:
        n = sum(1 for c in self.calls if c[0] == "check")
        self.calls.append(("check", inventory, deploy, list(hosts), progress, deep, data))
        source = self.first if n == 0 else self.again
        return {name: source[name] for name in hosts}, f"check output {n}"

    def apply_hosts(
        self, inventory: str, deploy: str, hosts: list[str], batch: int, force_busy: bool, say: Any
    ) -> tuple[dict[str, str], str]:
        self.calls.append(("apply", inventory, deploy, list(hosts), batch, force_busy))
        return {name: self.outcome.get(name, "applied") for name in hosts}, "apply output"

    def probe_hosts(self, inventory: str, hosts: list[str]) -> tuple[dict[str, list[Item]], str]:
        self.calls.append(("probe", inventory, list(hosts)))
        return {name: list(self.probes.get(name, [])) for name in hosts}, "probe output"


@pytest.fixture
def fleet_of(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(fleet: Fleet) -> Fleet:
        monkeypatch.setattr(run, "check_hosts", fleet.check_hosts)
        monkeypatch.setattr(run, "apply_hosts", fleet.apply_hosts)
        monkeypatch.setattr(run, "probe_hosts", fleet.probe_hosts)
        return fleet

    return install


def test_a_check_only_run(fleet_of: Any, tmp_path: Path) -> None:
    fleet = fleet_of(
        Fleet({"a": HostResult("a", True, items=[DRIFT]), "b": HostResult("b", False, error="x")})
    )
    said: list[str] = []
    checked: list[Report] = []
    log = tmp_path / LOG_NAME
    got = reconcile(
        Run("inv.py", shard="1/2", log=log), ["a", "b"], said.append, None, checked.append
    )
    assert fleet.calls == [("check", "inv.py", "deploys/tf_node.py", ["a", "b"], None, False, [])]
    assert said == [] and checked == []
    assert (got.inventory, got.shard, got.apply, got.deep) == ("inv.py", "1/2", False, False)
    assert got.hosts["a"].items == [DRIFT] and got.hosts["a"].applied is None
    assert got.exit_code == 1
    assert got.started <= got.finished and 0 <= got.duration_s < 60
    assert log.read_text() == "check output 0"
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_no_log_without_a_log_path(
    fleet_of: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet_of(Fleet({"a": HostResult("a", True)}))
    written: list[Path] = []
    monkeypatch.setattr(run, "write_atomic", lambda path, text, mode=0o644: written.append(path))
    got = reconcile(Run("inv.py"), ["a"])
    assert written == [] and got.exit_code == 0


def test_apply_fixes_the_fixable_and_checks_them_again(fleet_of: Any, tmp_path: Path) -> None:
    first = {
        "c": HostResult("c", True, items=[NFS]),
        "a": HostResult("a", True, items=[DRIFT, PERSON]),
        "p": HostResult("p", True, items=[PERSON]),
        "r": HostResult("r", True, items=[ROLLOUT]),
        "d": HostResult("d", False, error="down"),
        "busy": HostResult("busy", True, items=[DRIFT]),
    }
    again = {
        "a": HostResult("a", True, items=[PERSON]),
        "c": HostResult("c", True),
        "busy": HostResult("busy", True, items=[DRIFT, NFS, PERSON]),
    }
    outcome = {"busy": "applied; replacement pending: in use", "c": "failed: boom"}
    fleet = fleet_of(Fleet(first, again, outcome))
    said: list[str] = []
    checked: list[Report] = []
    log = tmp_path / "log"
    got = reconcile(
        Run("inv.py", "d.py", apply=True, batch=2, force_busy=True, log=log),
        list(first),
        said.append,
        checked=checked.append,
    )
    fixable = ["a", "busy", "c"]  # sorted, only hosts with an "apply" item
    assert fleet.calls == [
        ("check", "inv.py", "d.py", list(first), None, False, ["force_busy=true"]),
        ("apply", "inv.py", "d.py", fixable, 2, True),
        ("check", "inv.py", "d.py", fixable, None, False, ["force_busy=true"]),
    ]
    assert said == ["checking the 3 applied host(s) again"]
    # The check's own report, before anything was applied:
    [before] = checked
    assert before.apply is False and before.hosts["c"].items == [NFS]
    assert before.hosts["busy"].applied is None
    assert got.apply is True
    assert got.hosts["a"].items == [PERSON] and got.hosts["a"].applied == "applied"
    assert got.hosts["c"].items == [] and got.hosts["c"].applied == "failed: boom"
    # Held off as in use: its container changes need a person now; others stay.
    held = Item("containers", "dev.restart", "unless-stopped", "no", "person", BUSY_COMMAND)
    assert got.hosts["busy"].items == [held, NFS, PERSON]
    assert got.hosts["p"].items == [PERSON] and got.hosts["p"].applied is None
    assert got.hosts["r"].applied is None and got.hosts["d"].checked is False
    assert log.read_text() == "check output 0\napply output\ncheck output 1"


def test_apply_with_nothing_to_fix_says_so(fleet_of: Any) -> None:
    fleet = fleet_of(Fleet({"p": HostResult("p", True, items=[PERSON, ROLLOUT])}))
    said: list[str] = []
    checked: list[Report] = []
    got = reconcile(Run("inv.py", apply=True), ["p"], said.append, checked=checked.append)
    assert said == ["nothing to apply: no host has drift a deploy fixes unattended"]
    assert checked == [] and [c[0] for c in fleet.calls] == ["check"]
    assert got.apply is True and got.hosts["p"].applied is None


def test_apply_without_a_checked_callback(fleet_of: Any) -> None:
    fleet = fleet_of(
        Fleet({"a": HostResult("a", True, items=[DRIFT])}, {"a": HostResult("a", True)})
    )
    got = reconcile(Run("inv.py", apply=True), ["a"])
    assert [c[0] for c in fleet.calls] == ["check", "apply", "check"]
    assert got.hosts["a"].applied == "applied" and got.exit_code == 0


def test_deep_probes_the_checked_hosts(fleet_of: Any, tmp_path: Path) -> None:
    failed = Item("containers", "health probe", "passes", "oom", "person", "see the log")
    first = {
        "b": HostResult("b", True, items=[NFS]),
        "a": HostResult("a", True),
        "down": HostResult("down", False, error="x"),
    }
    fleet = fleet_of(Fleet(first, probes={"a": [failed]}))
    said: list[str] = []
    log = tmp_path / "log"
    got = reconcile(Run("inv.py", deep=True, log=log), ["b", "a", "down"], said.append)
    assert fleet.calls == [
        ("check", "inv.py", "deploys/tf_node.py", ["b", "a", "down"], None, True, []),
        ("probe", "inv.py", ["a", "b"]),
    ]
    assert said == ["--deep: health probe of every container on 2 host(s)"]
    assert got.deep is True
    assert got.hosts["a"].items == [failed] and got.hosts["b"].items == [NFS]
    assert log.read_text() == "check output 0\nprobe output"


def test_a_released_first_check_is_used_instead_of_a_new_one(fleet_of: Any) -> None:
    fleet = fleet_of(Fleet({}))
    lines = [
        {"host": "a", "items": [{"area": "nfs", "field": "f", "declared": "x", "observed": "y"}]}
    ]

    class First:
        def finish(self, hosts: list[str], progress: Any) -> PyinfraRun:
            assert (hosts, progress) == (["a", "b"], None)
            return PyinfraRun(1, "[b] Could not connect (refused)\n", lines)

    got = reconcile(Run("inv.py"), ["a", "b"], first=First())  # type: ignore[arg-type]
    assert fleet.calls == []
    assert got.hosts["a"].items == [Item("nfs", "f", "x", "y")]
    assert got.hosts["b"].error == "Could not connect (refused)"


def test_the_report_holds_copies_of_the_item_lists(fleet_of: Any) -> None:
    result = HostResult("a", True, items=[NFS])
    fleet_of(Fleet({"a": result}))
    got = reconcile(Run("inv.py"), ["a"])
    got.hosts["a"].items.append(DRIFT)
    assert result.items == [NFS]


def test_in_use_only_turns_container_apply_items() -> None:
    assert _in_use(DRIFT) == Item(
        "containers", "dev.restart", "unless-stopped", "no", "person", BUSY_COMMAND
    )
    rollout = Item("containers", "dev.image", "a", "b", "rollout", "tfenv rollout status r")
    assert _in_use(rollout) is rollout
    assert _in_use(NFS) is NFS
    assert (
        BUSY_COMMAND
        == "in use: wait until it is idle, or now: tfenv reconcile --apply --force-busy"
    )


# -- redaction and rendering -----------------------------------------------------


def test_redact_longest_secret_first_and_only_4_characters_or_more() -> None:
    assert redact("abcdezzzz and zzzz", ["zzzz", "abcdezzzz"]) == f"{REDACTED} and {REDACTED}"
    assert redact("abcd abc", ["abcd", "abc"]) == f"{REDACTED} abc"
    assert redact("xyz", ["xyz", "", "xy"]) == "xyz"
    assert redact("nothing", []) == "nothing"
    assert REDACTED == "(redacted)"


def test_render_all_exactly() -> None:
    r = report(HostResult("a", True, items=[Item("containers", "dev.env", "s3cr3t", "x")]))
    texts = render_all(r, iter(["s3cr3t"]))  # any iterable, read once
    assert list(texts) == ["report.json", "report.html", "tfenv.prom"]
    assert (
        texts["report.json"] == json.dumps(r.to_json(), indent=1).replace("s3cr3t", REDACTED) + "\n"
    )
    assert texts["report.html"] == render_html(r).replace("s3cr3t", REDACTED)
    assert texts["tfenv.prom"] == render_prom(r)
    assert render_all(r)["report.json"] == json.dumps(r.to_json(), indent=1) + "\n"


def test_write_reports_makes_the_directory_and_replaces_old_files(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    write_reports(directory, {"x.json": "1", "y.html": "é"})
    write_reports(directory, {"x.json": "2"})
    assert sorted(p.name for p in directory.iterdir()) == ["x.json", "y.html"]
    assert (directory / "x.json").read_text() == "2"
    assert (directory / "y.html").read_bytes() == "é".encode()


def test_the_summary_exactly() -> None:
    seen = Item("nfs", "ckpt.options", "hard", "soft", first_seen="2026-11-01T00:00:00Z")
    r = report(
        HostResult("c", False, error="could not connect"),
        HostResult("b", True, items=[DRIFT, PERSON], applied="failed: boom"),
        HostResult("a", True),
        HostResult("d", True, items=[seen], applied=""),
    )
    assert summary(r) == (
        "a: clean\n"
        "b: needs-a-person (failed: boom)\n"
        "    containers dev.restart: declared unless-stopped, observed no\n"
        "    undeclared stray: declared absent (not declared), observed running\n"
        "      needs a person: docker rm -f\n"
        "c: NOT CHECKED: could not connect\n"
        "d: drift\n"
        "    nfs ckpt.options: declared hard, observed soft since 2026-11-01T00:00:00Z\n"
        "4 host(s): 1 clean, 1 with drift, 1 needing a person, 1 not checked, "
        "0 in a rollout; 3 drift item(s); exit 1"
    )
    assert summary(report()) == (
        "0 host(s): 0 clean, 0 with drift, 0 needing a person, 0 not checked, "
        "0 in a rollout; 0 drift item(s); exit 0"
    )


# -- files -----------------------------------------------------------------------


def test_write_atomic_renames_a_utf8_temporary_beside_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed: list[tuple[str, str]] = []
    encodings: list[str] = []
    real_replace, real_fdopen = os.replace, os.fdopen

    def replace(src: str, dst: str) -> None:
        renamed.append((src, str(dst)))
        real_replace(src, dst)

    def fdopen(fd: int, mode: str, **kw: Any) -> Any:
        encodings.append(codecs.lookup(kw["encoding"]).name)
        return real_fdopen(fd, mode, **kw)

    monkeypatch.setattr(files.os, "replace", replace)
    monkeypatch.setattr(files.os, "fdopen", fdopen)
    target = tmp_path / "report.json"
    write_atomic(target, "héllo")
    [(src, dst)] = renamed
    assert dst == str(target)
    assert Path(src).parent == tmp_path
    assert Path(src).name.startswith(".report.json.") and src.endswith(".tmp")
    assert encodings == ["utf-8"]
    assert target.read_bytes() == "héllo".encode()
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_write_atomic_mode_and_replacing(tmp_path: Path) -> None:
    target = tmp_path / "log"
    target.write_text("old")
    write_atomic(target, "new", mode=0o600)
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) == "0o600"


def test_a_failed_write_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "x", "text")
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_already_gone_is_no_second_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def vanishing(src: str, dst: str) -> None:
        os.unlink(src)
        raise OSError("gone")

    monkeypatch.setattr(files.os, "replace", vanishing)
    with pytest.raises(OSError, match="gone"):
        write_atomic(tmp_path / "x", "text")
    assert list(tmp_path.iterdir()) == []


def test_fsync_dir_is_best_effort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fsync_dir(tmp_path / "missing")  # cannot open: nothing to do
    synced: list[int] = []

    def failing(fd: int) -> None:
        synced.append(fd)
        raise OSError("not supported")

    monkeypatch.setattr(files.os, "fsync", failing)
    _fsync_dir(tmp_path)
    assert len(synced) == 1


def test_a_lock_taken_over_holds_only_its_own_pid(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    lock.write_text("pid 99999999 of an earlier run\n")
    handle, holder = hold_exclusive(lock)
    assert handle is not None and holder == ""
    try:
        assert lock.read_text() == f"pid {os.getpid()}\n"
    finally:
        handle.close()
