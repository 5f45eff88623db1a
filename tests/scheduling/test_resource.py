"""SharedResource's options: what a process may grant while its store is down, checked when it is built."""

from __future__ import annotations

from typing import Any

import pytest

from proctor import ConfigurationError, SharedResource


@pytest.mark.parametrize(
    ("capacity", "processes", "share"), [(3, 1, 3), (3, 2, 1), (3, 3, 1), (8, 3, 2), (10, 10, 1)]
)
def test_each_process_grants_capacity_over_processes_while_the_store_is_down(
    capacity: int, processes: int, share: int
) -> None:
    resource = SharedResource("llm_api", capacity, on_store_error="local_share", processes=processes)
    assert resource.local_share == share
    assert share * processes <= capacity


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"on_store_error": "local_share"}, r"needs processes=N.*got None"),
        ({"on_store_error": "local_share", "processes": 0}, r"needs processes=N.*got 0"),
        ({"on_store_error": "local_share", "processes": True}, r"needs processes=N.*got True"),
        ({"on_store_error": "local_share", "processes": 4}, r"capacity of 3 shared by 4 processes leaves"),
        ({"processes": 2}, r"goes with on_store_error='local_share'"),
        ({"on_store_error": "open"}, r"on_store_error must be one of 'closed', 'local_share'"),
    ],
)
def test_options_that_cannot_work_are_refused_saying_why(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        SharedResource("llm_api", 3, **options)


def test_a_closed_resource_grants_nothing_without_its_store() -> None:
    assert SharedResource("llm_api", 3).local_share == 0
