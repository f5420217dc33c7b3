"""The TUI driven through its pilot on real runs: every pane, sorting, filtering, selecting, comparing,
a measurement started from the UI and its result arriving, and runs that have nothing to show."""

import asyncio
import io
import json
import os
import threading

import pytest
from rich.console import Console
from textual.widgets import DataTable, TabbedContent

from advisor.imported import import_traces
from advisor.tui import make_app
from advisor.tui.widgets.roofline_plot import RooflinePlot
from advisor.tui.widgets.share_bar import ShareBar
from conftest import WEIRD_NAME, SCRIPTS, copy_recorded_run, profile_run, record_with_trace_handler, with_findings

SIZE = (80, 24)


def drive(app, scenario) -> None:
    """Run ``app`` headless at 80x24 and ``await scenario(pilot)`` in it."""
    async def main():
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await scenario(pilot)
    asyncio.run(main())


def shown(app, selector: str) -> str:
    """The plain text a Static shows."""
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(app.screen.query_one(selector).content)
    return console.export_text()


def column(table: DataTable, index: int) -> list[str]:
    return [str(table.get_row_at(row)[index]) for row in range(table.row_count)]


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """A run store: the committed recorded run, and a newer real run with channels_last estimated only."""
    root = tmp_path_factory.mktemp("store")
    recorded = copy_recorded_run(root)
    os.utime(recorded, (1, 1))
    fresh = profile_run(root / "fresh_tiny_cnn", SCRIPTS / "tiny_cnn_train.py", "--warmup", "2", "--steps", "3",
                        "--techniques", "channels_last", "--no-measure")
    return root, recorded, fresh


def test_overview_and_help(store):
    root, _, fresh = store
    app = make_app(store=root)

    async def scenario(pilot):
        assert app.summary["run_dir"] == str(fresh)  # the newest run by default
        assert "fresh_tiny_cnn" in shown(app, "#banner")
        steps = shown(app, "#overview-steps")
        assert "median" in steps and "found by optimizer" in steps
        assert [s.label for s in app.screen.query_one("#overview-breakdown", ShareBar).segments][:3] == \
            ["data", "forward", "backward"]
        assert "peak RSS" in app.screen.query_one("#overview-memory", ShareBar).segments[0].label
        assert "psutil" in shown(app, "#overview-collectors")
        findings = shown(app, "#overview-findings")  # the real findings of this run, or a line saying so
        titles = [f["title"] for f in app.summary.get("findings") or []][:5]
        assert all(title in findings for title in titles) if titles else "no findings recorded" in findings
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        assert type(app.screen).__name__ == "MainScreen"
        await pilot.press("q")

    drive(app, scenario)
    assert app.return_code == 0


def test_hot_ops_sort_filter_select(store):
    app = make_app(store[1])

    async def scenario(pilot):
        await pilot.press("2")
        assert app.screen.query_one(TabbedContent).active == "hot-ops"
        table = app.screen.query_one("#ops-table", DataTable)
        self_ms = [float(x) for x in column(table, 1)]
        assert len(self_ms) > 15 and self_ms == sorted(self_ms, reverse=True)  # all ops, hottest first
        await pilot.press("s")  # next sort column: calls, most first
        calls = [int(x) for x in column(table, 3)]
        assert calls == sorted(calls, reverse=True)
        await pilot.press("r")
        assert [int(x) for x in column(table, 3)] == sorted(calls)
        await pilot.click("#ops-table", offset=(3, 0))  # the op column's title: by name
        names = column(table, 0)
        assert names == sorted(names)
        await pilot.press("slash", *"conv")
        assert app.screen.focused.id == "ops-filter"
        names = column(table, 0)
        assert names and all("conv" in n.lower() for n in names)
        await pilot.press("escape")
        assert app.screen.focused is table
        await pilot.press("slash", "enter", "down")
        assert app.screen.focused is table
        details = shown(app, "#op-details")
        assert names[1] in details and "calls" in details
        # recorded elsewhere: the script is not at the recorded path
        assert "not on this machine" in shown(app, "#op-source")

    drive(app, scenario)


def test_hot_ops_roofline(store):
    """The fresh run has the machine's peaks: roof and bound per op, and the roofline plot with the selected op."""
    app = make_app(store[2])

    async def scenario(pilot):
        await pilot.press("2")
        table = app.screen.query_one("#ops-table", DataTable)
        keys = [c.key.value for c in table.ordered_columns]
        bounds = column(table, keys.index("bound"))
        assert set(bounds) <= {"compute", "memory", "overhead", ""} and "compute" in bounds
        await pilot.press("slash", *"mkldnn_conv", "enter")
        details = shown(app, "#op-details")
        assert "-bound" in details and "FLOP/byte" in details, details
        plot = app.screen.query_one(RooflinePlot)
        assert plot.display and plot.selected == column(table, 0)[0]
        assert any(op["name"] == plot.selected for op in plot.data.ops)
        drawn = plot.render().plain
        assert "roofs" in drawn and "GB/s" in drawn and "FLOP/byte" in drawn and "■" in drawn, drawn

    drive(app, scenario)


def test_a_run_without_peaks_shows_no_roofline_plot(store):
    app = make_app(store[1])  # recorded before advisor measured peaks

    async def scenario(pilot):
        await pilot.press("2")
        assert not app.screen.query_one(RooflinePlot).display

    drive(app, scenario)


def test_hot_op_source_lines(store):
    app = make_app(store[2])

    async def scenario(pilot):
        await pilot.press("2")
        source = shown(app, "#op-source")
        site = column(app.screen.query_one("#ops-table", DataTable), 4)[0]
        line = int(site.rpartition(":")[2])
        assert str(line) in source and (SCRIPTS / "tiny_cnn_train.py").read_text().splitlines()[line - 1].strip() \
            in source

    drive(app, scenario)


def test_memory_pane(store):
    app = make_app(store[1])

    async def scenario(pilot):
        await pilot.press("3")
        assert "Peak RSS" in shown(app, "#memory-facts")
        plot = app.screen.query_one("MemoryPlot")
        assert not plot.timeline.empty and plot.timeline["in_window"].any()
        allocators = app.screen.query_one("#allocators", DataTable)
        assert allocators.row_count == len(app.summary["memory"]["top_allocators"]) > 0

    drive(app, scenario)


def test_runs_open_and_compare(store):
    root, recorded, fresh = store
    app = make_app(store=root)

    async def scenario(pilot):
        await pilot.press("5")
        table = app.screen.query_one("#runs-table", DataTable)
        assert column(table, 1) == ["fresh_tiny_cnn", recorded.name]
        await pilot.press("down", "c")
        comparison = shown(app, "#comparison")
        assert "B/A" in comparison and "ops that moved most" in comparison and "forward" in comparison
        await pilot.press("enter")
        await pilot.pause()
        assert app.summary["run_dir"] == str(recorded)
        assert app.screen.query_one(TabbedContent).active == "overview"
        assert recorded.name in shown(app, "#banner")

    drive(app, scenario)


def test_measure_from_the_ui(store):
    """Pressing m runs the script again in a worker; the UI stays live; the result lands in the run."""
    fresh = store[2]
    app = make_app(fresh)

    async def scenario(pilot):
        await pilot.press("4")
        table = app.screen.query_one("#techniques", DataTable)
        assert column(table, 0) == ["channels_last"] and column(table, 6) == ["not measured"]
        assert column(table, 4) == ["-"], "no peak memory before a measurement"
        await pilot.press("m")
        await pilot.pause(0.5)
        assert app.screen.query_one("#measure-status").display
        await pilot.press("1")  # the UI answers while the script runs
        await pilot.pause()
        assert app.screen.query_one(TabbedContent).active == "overview"
        assert any(worker.is_running for worker in app.workers), "the tab switched while the measurement runs"
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("4")
        verdict = json.loads((fresh / "trials.json").read_text())["techniques"][0]["verdict"]
        assert column(table, 6) == [verdict], "a measurement shows its verdict (gain, no gain, ...)"
        assert "x" in column(table, 2)[0] and "iB" in column(table, 4)[0], "its gain and its peak memory"
        assert not app.screen.query_one("#measure-status").display

    drive(app, scenario)
    record = json.loads((fresh / "trials.json").read_text())["techniques"][0]
    assert record["status"] == "measured" and record["measured"]["speedup"] > 0 and record["measured_at"]
    assert record["measured"]["peak_bytes"] > 0 and record["measured"]["baseline_peak_bytes"] > 0
    summary = json.loads((fresh / "summary.json").read_text())
    assert summary["recommendations"][0]["measured"] == record["measured"]


def test_measure_when_the_script_is_gone(store, tmp_path):
    run = copy_recorded_run(tmp_path)  # its script's path does not exist here
    app = make_app(run)

    async def scenario(pilot):
        await pilot.press("4")
        await pilot.press("m")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert any("no longer exists" in str(n.message) for n in app._notifications)

    drive(app, scenario)


@pytest.fixture(scope="session")
def odd_runs(tmp_path_factory):
    """A run that found no steps and one whose script raised before the window ended."""
    root = tmp_path_factory.mktemp("odd")
    return (profile_run(root / "no_steps", SCRIPTS / "never_steps.py", "--no-measure"),
            profile_run(root / "failed", SCRIPTS / "raises.py", "--no-measure", "--steps", "10"))


def test_empty_store(tmp_path):
    app = make_app(store=tmp_path)

    async def scenario(pilot):
        assert "no runs in" in shown(app, "#overview-steps")
        for pane in "2345":
            await pilot.press(pane)
        assert "No runs in" in shown(app, "#comparison")
        assert "no runs in" in shown(app, "#technique-details")

    drive(app, scenario)


def test_run_without_steps(odd_runs):
    app = make_app(odd_runs[0])

    async def scenario(pilot):
        assert "No steps found" in shown(app, "#overview-steps")
        assert not app.screen.query_one("#overview-breakdown", ShareBar).segments
        await pilot.press("2")
        assert app.screen.query_one("#ops-table", DataTable).row_count > 0
        await pilot.press("4")
        assert "No technique was asked" in shown(app, "#technique-details")

    drive(app, scenario)


def test_run_of_a_failed_script(odd_runs):
    app = make_app(odd_runs[1])

    async def scenario(pilot):
        text = shown(app, "#overview-steps")
        assert "The script ended as raised" in text and "boom at step 9" in text
        for pane in "2345":
            await pilot.press(pane)

    drive(app, scenario)


def test_tui_command_refuses_a_broken_run(tmp_path, capsys):
    from advisor.cli import main

    assert main(["tui", str(tmp_path / "nope")]) == 10
    assert capsys.readouterr().err.startswith("advisor: error: ")



def test_overview_findings(tmp_path):
    app = make_app(with_findings(tmp_path))

    async def scenario(pilot):
        text = shown(app, "#overview-findings")
        assert " 61% Convolutions take most of the step" in text and " 20% The batch is small" in text
        assert text.index("Convolutions") < text.index("batch is small")

    drive(app, scenario)


def test_names_from_the_script_shown_as_text(weird_run):
    """Op and file names with Rich markup (an unbalanced closing tag: parsed, it raises), HTML and markdown
    in them are shown as they are."""
    app = make_app(weird_run)

    async def scenario(pilot):
        await pilot.press("2")
        table = app.screen.query_one("#ops-table", DataTable)
        assert f"{WEIRD_NAME}Backward" in column(table, 0)
        await pilot.press("slash", *"alert", "enter")
        assert all("alert" in name for name in column(table, 0))
        assert WEIRD_NAME in shown(app, "#op-details")
        await pilot.press("3", "5")

    drive(app, scenario)


def test_a_comparison_run_of_profile_apply(tmp_path):
    """``advisor profile --apply`` makes a run of another kind: listed, and opened with a message."""
    run = profile_run(tmp_path / "apply", SCRIPTS / "tiny_cnn_train.py", "--apply", "channels_last", "--warmup", "2",
                      "--steps", "3", summary=False)
    app = make_app(store=tmp_path)

    async def scenario(pilot):
        assert "not a profiled run" in shown(app, "#overview-steps")
        await pilot.press("5")
        assert column(app.screen.query_one("#runs-table", DataTable), 3) == ["--apply"]
        await pilot.press("enter", "2", "3", "4")

    drive(app, scenario)
    assert run.exists()


def test_an_imported_run_is_analysed_off_the_ui_thread(tmp_path):
    """The run's trace is a named pipe that the test fills only after checking the screen: while the analysis
    waits on it in its worker, the panes show a loading indicator and the keys still work."""
    record_with_trace_handler(tmp_path / "traces", "worker", steps=3)
    run = import_traces([tmp_path / "traces"], tmp_path / "run")
    trace = run / "trace" / "worker0.pt.trace.json"
    data = trace.read_bytes()
    trace.unlink()
    os.mkfifo(trace)
    app = make_app(run)

    def fill():
        with open(trace, "wb") as pipe:
            pipe.write(data)

    writer = threading.Thread(target=fill, daemon=True)

    async def scenario(pilot):
        try:
            assert app.analysing == run and app.summary is None
            assert app.screen.query_one(TabbedContent).loading
            assert "analysing" in shown(app, "#banner")
            await pilot.press("question_mark")
            assert type(app.screen).__name__ == "HelpScreen", "the UI answers while the analysis runs"
            await pilot.press("escape")
        finally:
            writer.start()  # the worker never waits forever, even when a check above failed
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.analysing is None and not app.screen.query_one(TabbedContent).loading
        assert app.summary["outcome"] == "imported" and app.summary["steps"]["count"] == 3
        assert "imported" in shown(app, "#banner")

    drive(app, scenario)
