"""tfenv.reconcile.report: statuses, exit codes, totals, the exact JSON form,
reading it back (defaults included) and merging shard reports."""

from __future__ import annotations

import re
from dataclasses import asdict

import pytest

from tfenv.reconcile.report import (
    ACTIONS,
    AREAS,
    EXIT_BAD_INPUT,
    EXIT_CLEAN,
    EXIT_DRIFT,
    EXIT_UNCHECKED,
    SCHEMA,
    STATUSES,
    HostResult,
    Item,
    Report,
    merge,
    merged_shard,
    now_iso,
)

DRIFT = Item("containers", "dev.restart", "unless-stopped", "no")
PERSON = Item("undeclared", "stray", "absent (not declared)", "running", "person", "docker rm -f")
ROLLOUT = Item(
    "driver", "nvidia-driver.version", "550", "535", "rollout", "tfenv rollout status r1"
)
NFS = Item("nfs", "ckpt.mounted", "yes", "no", first_seen="2026-11-01T00:00:00Z")


def host(name: str, *items: Item, checked: bool = True, **kw: str) -> HostResult:
    return HostResult(name, checked, items=list(items), **kw)


def report(*hosts: HostResult, **kw: object) -> Report:
    return Report(
        inventory="inv.py",
        started="2026-11-27T02:30:00Z",
        finished="2026-11-27T02:31:00Z",
        hosts={h.name: h for h in hosts},
        **kw,  # type: ignore[arg-type]
    )


def test_constants() -> None:
    assert SCHEMA == "tfenv.reconcile/1"
    assert (EXIT_CLEAN, EXIT_UNCHECKED, EXIT_DRIFT, EXIT_BAD_INPUT) == (0, 1, 2, 3)
    assert ACTIONS == ("apply", "person", "rollout")
    assert STATUSES[0] == "unreachable" and STATUSES[-1] == "clean"
    assert AREAS[0] == "clock" and AREAS[-1] == "other" and len(AREAS) == 13


def test_now_iso_is_utc_to_the_second() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", now_iso())


def test_item_defaults_and_key() -> None:
    item = Item("nfs", "x", "a", "b")
    assert (item.action, item.command, item.first_seen) == ("apply", "", None)
    assert item.key == ("nfs", "x")


@pytest.mark.parametrize(
    ("items", "status"),
    [
        ([], "clean"),
        ([ROLLOUT], "rollout-in-progress"),
        ([ROLLOUT, DRIFT], "drift"),
        ([DRIFT], "drift"),
        ([PERSON], "needs-a-person"),
        ([DRIFT, PERSON, ROLLOUT], "needs-a-person"),
        ([ROLLOUT, PERSON], "needs-a-person"),
    ],
)
def test_host_status_is_the_worst_item(items: list[Item], status: str) -> None:
    assert host("a", *items).status == status


def test_area_status_looks_at_that_area_only() -> None:
    h = host("a", DRIFT, PERSON, ROLLOUT)
    assert h.area_status("containers") == "drift"
    assert h.area_status("undeclared") == "needs-a-person"
    assert h.area_status("driver") == "rollout-in-progress"
    assert h.area_status("nfs") == "clean"
    down = host("b", DRIFT, checked=False)
    assert down.status == "unreachable"
    assert down.area_status("nfs") == "unreachable"
    assert down.area_status("containers") == "unreachable"


def test_exit_codes() -> None:
    assert report().exit_code == EXIT_CLEAN
    assert report(host("a")).exit_code == EXIT_CLEAN
    assert report(host("a", ROLLOUT)).exit_code == EXIT_CLEAN  # a rollout is not drift
    assert report(host("a", ROLLOUT), host("b", PERSON)).exit_code == EXIT_DRIFT
    assert report(host("a", DRIFT)).exit_code == EXIT_DRIFT
    assert report(host("a", DRIFT), host("b", checked=False)).exit_code == EXIT_UNCHECKED
    assert report(host("b", checked=False)).exit_code == EXIT_UNCHECKED


def test_totals_count_each_status_and_the_non_rollout_items() -> None:
    r = report(
        host("a"),
        host("b", DRIFT, NFS),
        host("c", PERSON, DRIFT, ROLLOUT),
        host("d", checked=False, error="down"),
        host("e", ROLLOUT),
        host("f"),
    )
    assert r.totals == {
        "hosts": 6,
        "checked": 5,
        "clean": 2,
        "drift": 1,
        "needs_a_person": 1,
        "unreachable": 1,
        "rollout_in_progress": 1,
        "items": 4,
    }


def test_the_json_form_exactly() -> None:
    r = report(
        host("b", DRIFT, ROLLOUT, applied="applied"),
        host("a", checked=False, error="could not connect"),
        shard="2/3",
        apply=True,
        deep=True,
        duration_s=12.34567,
    )
    every_area_clean = {area: "clean" for area in AREAS}
    assert r.to_json() == {
        "schema": "tfenv.reconcile/1",
        "inventory": "inv.py",
        "started": "2026-11-27T02:30:00Z",
        "finished": "2026-11-27T02:31:00Z",
        "duration_s": 12.346,
        "shard": "2/3",
        "apply": True,
        "deep": True,
        "exit_code": 1,
        "totals": {
            "hosts": 2,
            "checked": 1,
            "clean": 0,
            "drift": 1,
            "needs_a_person": 0,
            "unreachable": 1,
            "rollout_in_progress": 0,
            "items": 1,
        },
        "areas": list(AREAS),
        "hosts": {
            "a": {
                "status": "unreachable",
                "checked": False,
                "error": "could not connect",
                "applied": None,
                "areas": {area: "unreachable" for area in AREAS},
                "items": [],
            },
            "b": {
                "status": "drift",
                "checked": True,
                "error": None,
                "applied": "applied",
                "areas": {
                    **every_area_clean,
                    "containers": "drift",
                    "driver": "rollout-in-progress",
                },
                "items": [
                    {
                        "area": "containers",
                        "field": "dev.restart",
                        "declared": "unless-stopped",
                        "observed": "no",
                        "action": "apply",
                        "command": "",
                        "first_seen": None,
                    },
                    {
                        "area": "driver",
                        "field": "nvidia-driver.version",
                        "declared": "550",
                        "observed": "535",
                        "action": "rollout",
                        "command": "tfenv rollout status r1",
                        "first_seen": None,
                    },
                ],
            },
        },
    }
    assert list(r.to_json()["hosts"]) == ["a", "b"]  # sorted by name


def test_json_defaults() -> None:
    data = report().to_json()
    assert (data["shard"], data["apply"], data["deep"], data["duration_s"]) == (
        None,
        False,
        False,
        0.0,
    )
    assert data["hosts"] == {} and data["exit_code"] == 0


def test_from_json_reads_every_field() -> None:
    data = {
        "schema": SCHEMA,
        "inventory": "inv.py",
        "started": "S",
        "finished": "F",
        "duration_s": "2.5",
        "shard": "1/2",
        "apply": 1,
        "deep": "yes",
        "hosts": {
            "a": {"checked": True, "error": None, "applied": "failed: x", "items": [asdict(NFS)]},
            "b": {"checked": False, "error": "refused"},
        },
    }
    r = Report.from_json(data)
    assert (r.inventory, r.started, r.finished, r.shard) == ("inv.py", "S", "F", "1/2")
    assert r.duration_s == 2.5 and isinstance(r.duration_s, float)
    assert r.apply is True and r.deep is True
    assert list(r.hosts) == ["a", "b"]
    a, b = r.hosts["a"], r.hosts["b"]
    assert (a.name, a.checked, a.error, a.applied, a.items) == ("a", True, None, "failed: x", [NFS])
    assert (b.name, b.checked, b.error, b.applied, b.items) == ("b", False, "refused", None, [])


def test_from_json_defaults() -> None:
    r = Report.from_json({"schema": SCHEMA, "inventory": "i", "started": "s"})
    assert (r.finished, r.duration_s, r.shard, r.apply, r.deep, r.hosts) == (
        "",
        0.0,
        None,
        False,
        False,
        {},
    )
    assert isinstance(r.duration_s, float)
    r = Report.from_json(
        {"schema": SCHEMA, "inventory": "i", "started": "s", "hosts": {"h": {"checked": True}}}
    )
    h = r.hosts["h"]
    assert (h.name, h.checked, h.error, h.applied, h.items) == ("h", True, None, None, [])
    assert r.apply is False and r.deep is False


def test_a_round_trip_keeps_everything() -> None:
    r = report(
        host("b", DRIFT, NFS, applied="applied"), host("a", checked=False, error="x"), shard="1/1"
    )
    back = Report.from_json(r.to_json())
    assert back == Report(
        inventory=r.inventory,
        started=r.started,
        finished=r.finished,
        shard="1/1",
        hosts={"a": r.hosts["a"], "b": r.hosts["b"]},
    )


@pytest.mark.parametrize("schema", ["other", None, "tfenv.reconcile/2"])
def test_from_json_refuses_another_schema(schema: str | None) -> None:
    data = {"inventory": "i", "started": "s"} | ({"schema": schema} if schema else {})
    with pytest.raises(ValueError) as caught:
        Report.from_json(data)
    assert str(caught.value) == f"not a tfenv.reconcile/1 report (schema: {schema!r})"


def test_merge_joins_the_shards() -> None:
    one = report(host("a"), shard="1/3", duration_s=5.0, apply=False, deep=True)
    one.started, one.finished = "2026-11-27T02:30:05Z", "2026-11-27T02:35:00Z"
    two = report(host("b", DRIFT), shard="2/3", duration_s=9.0, apply=True, deep=True)
    two.started, two.finished = "2026-11-27T02:30:01Z", "2026-11-27T02:33:00Z"
    three = report(shard="3/3", duration_s=1.0, apply=False, deep=False)
    three.started, three.finished = "2026-11-27T02:30:09Z", "2026-11-27T02:31:00Z"
    three.inventory = "other.py"
    merged = merge([one, two, three])
    assert merged.inventory == "inv.py"  # the first report's
    assert merged.started == "2026-11-27T02:30:01Z"
    assert merged.finished == "2026-11-27T02:35:00Z"
    assert merged.duration_s == 9.0
    assert merged.apply is True  # any
    assert merged.deep is False  # all
    assert merged.shard is None
    assert merged.hosts == {"a": one.hosts["a"], "b": two.hosts["b"]}
    assert merged.hosts["b"] is two.hosts["b"]
    assert merge([one, two]).deep is True
    solo = merge([three])
    assert (solo.apply, solo.deep, solo.inventory) == (False, False, "other.py")


def test_merge_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError) as caught:
        merge([])
    assert str(caught.value) == "no reports to merge"


def test_a_host_in_two_shards_names_them() -> None:
    one = report(host("a"), host("x"), shard="1/3")
    two = report(host("b"), shard="2/3")
    three = report(host("a"), shard="3/3")
    assert merged_shard([one, two, three], "a") == "1/3, 3/3"
    assert merged_shard([one, two, three], "b") == "2/3"
    assert merged_shard([one, two, three], "z") == ""
    with pytest.raises(ValueError) as caught:
        merge([one, two, three])
    assert str(caught.value) == (
        "host a is in two reports (shards 1/3, 3/3): merge the reports of one sharded run"
    )
    assert merged_shard([report(host("a")), report(host("a"))], "a") == "None, None"
