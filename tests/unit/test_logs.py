"""What a replay worker process is told about logging: what the entry point configured."""

import logging

import pytest

from adapters import logs


@pytest.fixture
def root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("level, json", [("WARNING", False), ("INFO", True), ("DEBUG", True)])
def test_chosen_is_what_configure_set(root_logger, level, json):
    logs.configure(level, json)
    assert logs.chosen() == (level, json)
