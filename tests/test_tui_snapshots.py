"""How the TUI's screens look at 80x24, on the committed recorded run (``--snapshot-update`` to accept a change;
the SVGs are in tests/__snapshots__/)."""

import pytest

from advisor.tui import make_app
from conftest import copy_recorded_run


@pytest.fixture
def app(tmp_path):
    copy_recorded_run(tmp_path)
    return make_app(store=tmp_path)


@pytest.mark.parametrize("keys", [(), ("2",), ("3",), ("4",), ("5",), ("question_mark",)],
                         ids=["overview", "hot_ops", "memory", "recommendations", "runs", "help"])
def test_screen(app, keys, snap_compare):
    assert snap_compare(app, press=keys, terminal_size=(80, 24))
