"""The GPUs a container asks for: every declared form, its Docker argument and
its words, and the clear error for anything else."""

from __future__ import annotations

import pytest

from tfenv.model.gpus import NO_GPUS, Gpus, describe_device_requests

SHAPE = "'all', a GPU count (1 or more) or a list of GPU indices such as [0, 1]"


def test_declared_forms() -> None:
    assert Gpus.parse(None) is NO_GPUS
    assert Gpus.parse("all") == Gpus("all")
    assert Gpus.parse(1) == Gpus("count", count=1)
    assert Gpus.parse(3) == Gpus("count", count=3)
    assert Gpus.parse([0]) == Gpus("devices", devices=(0,))
    assert Gpus.parse((2, 0)) == Gpus("devices", devices=(2, 0))
    already = Gpus("count", count=2)
    assert Gpus.parse(already) is already


@pytest.mark.parametrize(
    "value",
    [0, -1, True, False, 1.5, "2", "ALL", [], (), [-1], [0, -1], [True], [0, False], ["0"], {0: 1}],
)
def test_anything_else_is_one_clear_error(value: object) -> None:
    with pytest.raises(ValueError) as info:
        Gpus.parse(value)
    assert str(info.value) == SHAPE


def test_an_index_twice_is_its_own_error() -> None:
    with pytest.raises(ValueError) as info:
        Gpus.parse([0, 1, 0])
    assert str(info.value) == "GPU indices without repeats"


@pytest.mark.parametrize(
    ("gpus", "argument", "words", "visible", "highest"),
    [
        (NO_GPUS, None, "none", None, None),
        (Gpus("all"), "all", "all", 8, None),
        (Gpus("count", count=1), "1", "count 1", 1, 0),
        (Gpus("count", count=4), "4", "count 4", 4, 3),
        (Gpus("devices", devices=(3,)), '"device=3"', "devices 3", 1, 3),
        (Gpus("devices", devices=(2, 0, 5)), '"device=2,0,5"', "devices 2,0,5", 3, 5),
    ],
)
def test_renderings(
    gpus: Gpus, argument: str | None, words: str, visible: int | None, highest: int | None
) -> None:
    assert gpus.argument() == argument
    assert gpus.describe() == words
    assert gpus.visible(8) == visible
    assert gpus.highest_index() == highest


def test_all_gpus_are_as_many_as_the_host_has_or_unknown() -> None:
    assert Gpus("all").visible(2) == 2
    assert Gpus("all").visible(None) is None
    assert NO_GPUS.visible(4) is None
    assert Gpus("count", count=2).visible(None) == 2
    assert Gpus("devices", devices=(0, 1)).visible(None) == 2


def test_device_requests_read_back_in_the_same_words() -> None:
    assert describe_device_requests([]) == "none"
    assert describe_device_requests([{"Driver": "", "Count": 0, "Capabilities": None}]) == "none"
    assert describe_device_requests([{"Capabilities": [["compute"]], "Count": -1}]) == "none"
    assert describe_device_requests([{"Capabilities": [["gpu"]], "Count": -1}]) == "all"
    assert describe_device_requests([{"Capabilities": [["gpu"]], "Count": 2}]) == "count 2"
    assert (
        describe_device_requests(
            [
                {"Capabilities": [["compute"]], "Count": 1},
                {"Capabilities": [["gpu"]], "DeviceIDs": ["0", "2"], "Count": 0},
            ]
        )
        == "devices 0,2"
    )
