"""torch.distributed runs: examples/ddp_train.py on 2 ranks (DDP over gloo) under torchrun's own launcher, profiled
through the real CLI; every rank recorded, the straggler found where one rank is made slower and nowhere else,
a rank killed mid-run reported by its rank while the other's recording is kept."""

import asyncio
import json
import os
import sys

import pytest
from textual.widgets import DataTable, TabbedContent

from advisor import launcher
from advisor.errors import UsageError
from advisor.tui import make_app
from advisor.tui.widgets.rank_timeline import RankTimeline
from conftest import CORES, EXAMPLES, no_advisor_traceback, profile_json, run_advisor

DDP = EXAMPLES / "ddp_train.py"
RANK_FIELDS = ("rank", "steps", "breakdown", "comm_ms", "comm_wait_ms")


def _findings(summary) -> set[str]:
    return {f["id"] for f in summary["findings"]}


@pytest.fixture(scope="module")
def even(tmp_path_factory):
    """Both ranks alike; the gradients (5.7 MB) in DDP's one default bucket (25 MB). Its own temporary folder,
    to see what the run leaves there."""
    tmp = tmp_path_factory.mktemp("even")
    (tmp / "tmp").mkdir()
    proc, summary = profile_json("--nproc-per-node", "2", DDP, "--steps", "5", tmp_path=tmp,
                                 env={**os.environ, "TMPDIR": str(tmp / "tmp")})
    assert proc.returncode == 0, proc.stderr
    summary["test_temp_left"] = sorted(p.name for p in (tmp / "tmp").iterdir())
    return summary


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """Rank 1 50 ms slower in each forward; 4 MB buckets."""
    proc, summary = profile_json("--nproc-per-node", "2", "--warmup", "3", "--steps", "5", DDP, "--",
                                 "--slow-rank", "1", "--slow-ms", "50", "--bucket-cap-mb", "4",
                                 tmp_path=tmp_path_factory.mktemp("slow"))
    assert proc.returncode == 0, proc.stderr
    return summary


@pytest.mark.timing  # the runs of `even` and `slow` compare ranks' times: run alone (see Makefile)
def test_every_rank_is_recorded_with_its_communication(even):
    d = even["distributed"]
    assert (d["world_size"], d["backend"]) == (2, "gloo")
    assert [r["rank"] for r in d["ranks"]] == [0, 1]
    for rank in d["ranks"]:
        assert all(field in rank for field in RANK_FIELDS)
        assert rank["steps"]["count"] == 5 and rank["steps"]["median_ms"] > 0
        assert rank["breakdown"]["backward"]["ms"] > 0
        assert 0 < rank["comm_wait_ms"] + rank["comm_ms"] and rank["comm_wait_ms"] <= rank["comm_ms"]
        assert rank["ddp"]["backend_name"] == "gloo"  # DDP's own counters
    assert 0 <= d["overlap"] <= 1
    assert d["launcher"]["omp_num_threads_set_by_torchrun"]
    timeline = {(row["rank"], row["step"]) for row in d["timeline"]}
    assert timeline == {(r, s) for r in (0, 1) for s in range(5, 10)}  # the same steps on both ranks


@pytest.mark.timing
def test_the_progress_relay_leaves_no_named_pipe_behind(even):
    assert not [name for name in even["test_temp_left"] if name.startswith("advisor-progress-")]


@pytest.mark.timing
def test_no_straggler_between_equal_ranks(even):
    assert even["distributed"]["straggler"] is None
    assert "rank_straggler" not in _findings(even)


@pytest.mark.timing
def test_the_slowed_rank_is_the_straggler_in_its_forward(slow):
    straggler = slow["distributed"]["straggler"]
    assert straggler["rank"] == 1 and straggler["phase"] == "forward"
    assert straggler["slower_by"] >= 0.15 and straggler["slower_by_ms"] > 10  # of the ~50 ms it sleeps
    waits = {r["rank"]: r["comm_wait_ms"] for r in slow["distributed"]["ranks"]}
    assert waits[0] > waits[1]  # rank 0 waits for it in the all-reduce
    assert "rank_straggler" in _findings(slow)


@pytest.mark.timing
def test_one_bucket_is_found_and_smaller_buckets_are_not(even, slow):
    finding = next(f for f in even["findings"] if f["id"] == "ddp_bucket_size")
    assert "one bucket" in finding["evidence"] and "bucket_cap_mb=" in finding["fix"]
    assert "ddp_bucket_size" not in _findings(slow)


@pytest.mark.timing
def test_no_communication_bound_finding_where_computing_takes_most_of_the_step(slow):
    """The all-reduce of 5.7 MB against a step that rank 1's 50 ms make long. (No positive here: whether the
    all-reduce takes a quarter of a short step depends on how loaded the machine's cores are.)"""
    assert "ddp_communication_bound" not in _findings(slow)


@pytest.mark.timing
def test_show_prints_the_ranks(even):
    proc = run_advisor("show", even["run_dir"])
    assert proc.returncode == 0, proc.stderr
    assert "Ranks" in proc.stdout and "gloo, 2 ranks" in proc.stdout


@pytest.mark.timing
def test_tui_ranks_pane_marks_the_straggler_and_draws_every_rank(slow):
    app = make_app(slow["run_dir"])

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("6")
            await pilot.pause()
            assert app.screen.query_one(TabbedContent).active == "ranks"
            table = app.screen.query_one("#ranks-table", DataTable)
            rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
            assert [row[0] for row in rows] == ["0", "1"] and "straggler" in rows[1][-1] and not rows[0][-1]
            drawn = str(app.screen.query_one(RankTimeline).render())
            assert "rank 0" in drawn and "rank 1 ◀" in drawn and "░" in drawn

    asyncio.run(scenario())


def test_a_killed_rank_is_reported_by_rank_and_the_other_keeps_its_recording(tmp_path):
    """Rank 1 kills itself with SIGKILL in the window; the user's own torchrun command, wrapped. Two micro-batches
    per step without no_sync(), and as many threads per rank as the machine has cores: rank 0's steps show both.
    Rank 1 dies at the start of step 4 (steps 2-4 recorded): it has taken part in step 3's all-reduce, so rank 0 has
    reached step 3 and passed the first recorded step's boundary before torchrun stops it (at 3 it sometimes had not)."""
    out = tmp_path / "run"
    proc = run_advisor("profile", "--out", out, "--warmup", "2", "--steps", "3", "--", sys.executable, "-m",
                       "torch.distributed.run", "--nproc-per-node", "2", DDP, "--crash-rank", "1", "--crash-at", "4",
                       "--accumulate", "2", env={**os.environ, "OMP_NUM_THREADS": str(CORES)})
    assert proc.returncode == 6, proc.stderr
    assert no_advisor_traceback(proc.stderr)
    assert "advisor: error: rank 1 was killed by SIGKILL" in proc.stderr.strip().splitlines()[-1]
    meta = json.loads((out / "meta.json").read_text())
    ranks = {r["rank"]: r for r in meta["distributed"]["ranks"]}
    assert ranks[1]["outcome"] == "killed" and ranks[0]["recorded_steps"] >= 1
    assert (out / "trace" / "worker0.pt.trace.json").exists() and not (out / "ranks" / "1" / "runner.json").exists()
    summary = json.loads(run_advisor("show", "--json", out).stdout)
    shown = summary["distributed"]
    assert shown["ranks"][0]["steps"]["count"] >= 1
    assert "SIGKILL" in shown["ranks"][1]["error"] and not shown["ranks"][1]["recorded"]
    assert {"ddp_accumulation_without_no_sync", "threads_oversubscribed"} <= _findings(summary)
    assert not shown["launcher"]["omp_num_threads_set_by_torchrun"]


@pytest.mark.timing
def test_accumulation_without_no_sync_is_not_found_without_it(even):
    assert "ddp_accumulation_without_no_sync" not in _findings(even)


@pytest.mark.timing
@pytest.mark.skipif(CORES < 2, reason="one core: two ranks of one thread each are already more threads than cores")
def test_one_thread_per_rank_as_torchrun_sets_is_not_oversubscribed(even):
    assert "threads_oversubscribed" not in _findings(even)


def test_a_users_torchrun_command_is_read_by_torchrun_s_own_parser():
    launch = launcher.wrapped(["torchrun", "--nnodes", "1", "--nproc-per-node", "4", "-m", "pkg.train", "--lr", "1"])
    assert (launch.target, launch.is_module, launch.args) == ("pkg.train", True, ["--lr", "1"])
    assert launch.launcher_args == ["--nnodes", "1", "--nproc-per-node", "4"] and launch.nproc_per_node == "4"
    with pytest.raises(UsageError, match="--no-python"):
        launcher.wrapped(["torchrun", "--no-python", "bash", "x.sh"])


@pytest.mark.parametrize("args, message", [
    (("--nproc-per-node", "2", "--apply", "dtype", DDP), "--apply runs one process"),
    (("--nproc-per-node", "2", "--", "torchrun", "--nproc-per-node", "2", DDP), "goes into the torchrun command"),
])
def test_distributed_usage_errors(args, message):
    proc = run_advisor("profile", *args)
    assert proc.returncode == 2 and message in proc.stderr and no_advisor_traceback(proc.stderr)
