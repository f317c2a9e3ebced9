"""What may travel to an arbiter by name, and the errors for what may not."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from actors.refs import load, portable, reference, resolve
from supervisor import Job, WorkerConfig


def make_state(url: str, handle: Any) -> dict[str, str]:
    return {"url": url}


class Factory:
    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, handle: Any) -> dict[str, str]:
        return {"url": self.url}


@dataclass
class Echo(Job):
    def run(self, state: Any) -> None:
        pass


def test_a_job_class_travels_as_module_and_qualname() -> None:
    ref = reference(Echo, "job class")
    assert ref == "tests.test_refs:Echo"
    assert resolve(ref) is Echo


def test_a_partial_and_an_instance_of_an_importable_class_travel_with_their_data() -> None:
    assert load(portable(functools.partial(make_state, "db://x"), "state"))(None) == {
        "url": "db://x"
    }
    assert load(portable(Factory("db://y"), "state"))(None) == {"url": "db://y"}


def _in_main() -> type[Job]:
    @dataclass
    class Script(Job):
        def run(self, state: Any) -> None:
            pass

    Script.__module__ = "__main__"
    Script.__qualname__ = "Script"
    return Script


def test_a_job_class_of_the_main_script_is_refused_at_register() -> None:
    with pytest.raises(TypeError, match=r"job class Script is defined in the script being run"):
        WorkerConfig().register(_in_main())


def test_a_local_function_is_refused_naming_the_fix() -> None:
    def local(handle: Any) -> None:
        return None

    with pytest.raises(TypeError, match=r"is defined inside a function: define it at the top"):
        portable(local, "state factory")
    with pytest.raises(TypeError, match=r"is defined inside a function"):
        portable(functools.partial(local), "state factory")


def test_a_lambda_is_refused() -> None:
    with pytest.raises(TypeError, match=r"<lambda> is defined inside a function"):
        portable(lambda handle: None, "state factory")


def test_a_factory_whose_data_cannot_be_pickled_is_refused() -> None:
    with pytest.raises(TypeError, match=r"cannot be sent to an arbiter"):
        portable(functools.partial(make_state, threading.Lock()), "state factory")
