"""Validating an inventory in-process: every host's problems, the specs of the
valid ones, and data tfenv could not even check reported without its value."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
from conftest import GOOD_DATA

from tfenv.model.inventory import load_inventory, validate_hosts, validate_inventory
from tfenv.model.problems import Problem

pytestmark = pytest.mark.usefixtures("workdir")


def inventory_of(*hosts: tuple[str, dict]):
    from pyinfra.api import Inventory

    return Inventory(([(name, data) for name, data in hosts], {}))


def good() -> dict:
    return copy.deepcopy(GOOD_DATA)


def nested(depth: int) -> list:
    """A list inside a list ``depth`` times: deeper than Python's recursion limit."""
    return functools.reduce(lambda inner, _: [inner], range(depth), [])


def test_every_valid_host_gets_its_spec(workdir: Path) -> None:
    specs, problems = validate_hosts(inventory_of(("a.test", good()), ("b.test", good())), workdir)
    assert problems == []
    assert sorted(specs) == ["a.test", "b.test"]
    assert specs["a.test"].host == "a.test"
    assert specs["b.test"].gpu_count == 4
    # relative paths resolve in base_dir: the lock was read from there
    assert specs["a.test"].image_lock is not None


def test_problems_of_invalid_hosts_name_the_host(workdir: Path) -> None:
    bad = good()
    bad["gpu_count"] = "four"
    specs, problems = validate_hosts(inventory_of(("a.test", good()), ("bad.test", bad)), workdir)
    assert list(specs) == ["a.test"]
    assert [str(p) for p in problems] == [
        "bad.test: gpu_count: expected a valid integer, unable to parse string as an integer, "
        "got 'four'"
    ]


def test_relative_paths_resolve_in_the_base_dir(workdir: Path, tmp_path_factory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    specs, problems = validate_hosts(inventory_of(("a.test", good())), elsewhere)
    assert specs == {}
    assert problems and all(p.host == "a.test" for p in problems)
    assert any(str(elsewhere / "images.lock.yaml") in p.field for p in problems)


def test_data_too_deep_to_check_is_one_problem_without_the_value(workdir: Path) -> None:
    deep = good()
    deep["containers"]["dev-a"]["labels"] = nested(100_000)
    specs, problems = validate_hosts(inventory_of(("deep.test", deep), ("a.test", good())), workdir)
    assert list(specs) == ["a.test"]
    assert problems == [
        Problem(
            "deep.test",
            "(declared data)",
            "data tfenv can read and check",
            "RecursionError while checking it",
        )
    ]
    assert str(problems[0]) == (
        "deep.test: (declared data): expected data tfenv can read and check, "
        "got RecursionError while checking it"
    )


def test_a_path_the_system_refuses_is_one_problem(workdir: Path) -> None:
    data = good()
    data["image_lock"] = "images\0.lock.yaml"  # a NUL byte: no such path can exist
    specs, problems = validate_hosts(inventory_of(("nul.test", data)), workdir)
    assert specs == {}
    assert [str(p) for p in problems] == [
        "nul.test: (declared data): expected data tfenv can read and check, "
        "got ValueError while checking it"
    ]


# --- load_inventory / validate_inventory ------------------------------------

INVENTORY = """\
hosts = [
    ("a.test", {"gpu_count": 4}),
    ("b.test", {}),
]
"""


def write_inventory(directory: Path, text: str = INVENTORY) -> Path:
    path = directory / "inventory.py"
    path.write_text(text)
    return path


def test_an_inventory_gets_group_data_from_the_working_directory(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory
) -> None:
    # The inventory lives elsewhere; group_data comes from cwd, as with `pyinfra` run there.
    inventory = write_inventory(tmp_path_factory.mktemp("inv"))
    (workdir / "group_data").mkdir()
    (workdir / "group_data" / "all.py").write_text("gpu_count = 2\npublish_address = '10.0.0.1'\n")
    monkeypatch.chdir(workdir)
    for loaded in (load_inventory(inventory), load_inventory(str(inventory), cwd=str(workdir))):
        hosts = {host.name: host.data.dict() for host in loaded}
        assert sorted(hosts) == ["a.test", "b.test"]
        assert hosts["a.test"]["gpu_count"] == 4  # host data wins over group data
        assert hosts["b.test"]["gpu_count"] == 2
        assert hosts["b.test"]["publish_address"] == "10.0.0.1"


def test_cwd_names_where_group_data_is_read(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory
) -> None:
    inventory = write_inventory(tmp_path_factory.mktemp("inv"))
    other = tmp_path_factory.mktemp("other")
    (other / "group_data").mkdir()
    (other / "group_data" / "all.py").write_text("gpu_count = 8\n")
    monkeypatch.chdir(workdir)  # no group_data here
    hosts = {h.name: h.data.dict() for h in load_inventory(inventory, cwd=other)}
    assert hosts["b.test"]["gpu_count"] == 8
    hosts = {h.name: h.data.dict() for h in load_inventory(inventory)}
    assert "gpu_count" not in hosts["b.test"]


def test_a_missing_inventory_file(workdir: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_inventory(workdir / "nope.py")
    assert str(info.value) == f"inventory file {workdir / 'nope.py'} not found"
    with pytest.raises(FileNotFoundError):
        load_inventory(workdir)  # a directory is no inventory file either


def test_validate_inventory_lists_every_problem(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory
) -> None:
    inventory = write_inventory(
        tmp_path_factory.mktemp("inv"),
        "hosts = [('a.test', {'gpu_count': -1}), ('b.test', {'gpu_count': 1})]\n",
    )
    expected = ["a.test: gpu_count: expected greater than or equal to 0, got -1"]
    assert [str(p) for p in validate_inventory(inventory, cwd=workdir)] == expected
    monkeypatch.chdir(workdir)
    assert [str(p) for p in validate_inventory(inventory)] == expected


def test_validate_inventory_resolves_paths_in_cwd(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory
) -> None:
    inventory = write_inventory(
        tmp_path_factory.mktemp("inv"), "hosts = [('a.test', {'image_lock': 'images.lock.yaml'})]\n"
    )
    assert validate_inventory(inventory, cwd=workdir) == []
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    problems = [str(p) for p in validate_inventory(inventory)]
    assert len(problems) == 1
    assert problems[0].startswith(f"a.test: image_lock ({elsewhere / 'images.lock.yaml'})")


def test_group_data_sees_the_working_directory_as_pyinfra_state(
    workdir: Path, tmp_path_factory
) -> None:
    # group_data may read files relative to the deploy directory (pyinfra's state.cwd)
    inventory = write_inventory(tmp_path_factory.mktemp("inv"))
    (workdir / "group_data").mkdir()
    (workdir / "group_data" / "all.py").write_text(
        "from pyinfra import state\ndeploy_dir = str(state.cwd)\n"
    )
    hosts = {h.name: h.data.dict() for h in load_inventory(inventory, cwd=workdir)}
    assert hosts["a.test"]["deploy_dir"] == str(workdir.resolve())
