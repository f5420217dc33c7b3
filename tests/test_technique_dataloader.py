"""DataLoader tuning: new loaders over the script's dataset, timed batch against batch; the script's
loader untouched, worker processes cleaned up, the estimate bound by the machine's cores."""

import json

import psutil
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from advisor.technique import Context, DoesNotApply
from advisor.techniques.dataloader import DataLoaderWorkers, PersistentWorkers, loader_benchmark
from advisor.trials import _measure_benchmark
from conftest import EXAMPLES, SCRIPTS, profile_json

pytestmark = pytest.mark.timing  # measured times and shares: run alone (see Makefile)


class Squares(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        return torch.full((4,), float(i * i)), i


def test_benchmark_compares_the_same_batches_and_stops_its_workers():
    loader = DataLoader(Squares(), batch_size=8, shuffle=True)
    benchmark = loader_benchmark(loader, num_workers=2, persistent_workers=True)
    assert benchmark.quality == {"output_rel_error": 0.0} and benchmark.phases == ("data",)
    assert benchmark.notes["variant"] == {"num_workers": 2, "pin_memory": False, "persistent_workers": True}
    measured = _measure_benchmark(benchmark)
    assert measured["speedup"] > 0 and measured["phases"] == ["data"]
    assert psutil.Process().children() == [], "persistent workers are stopped by close()"
    assert (loader.num_workers, loader.persistent_workers) == (0, False), "the script's loader is unchanged"


def test_own_samplers_are_not_guessed():
    class Evens(Sampler):
        def __iter__(self):
            return iter(range(0, 64, 2))

        def __len__(self):
            return 32

    with pytest.raises(DoesNotApply, match="its own sampler"):
        loader_benchmark(DataLoader(Squares(), batch_size=4, sampler=Evens()), num_workers=2)


def context(busy_cores, cores, workers=0, data=0.8):
    return Context(summary={"breakdown": {"data": {"share": data}, "forward": {"share": 1 - data}},
                            "utilisation": {"process_busy_cores": busy_cores}},
                   workload={"data_loader": {"num_workers": workers, "persistent_workers": False}},
                   hardware={"cpu_cores": cores, "torch_threads": cores})


def test_estimate_counts_the_cores_workers_compete_for():
    waiting, computing = context(busy_cores=0.2, cores=2), context(busy_cores=1.0, cores=2)
    two = DataLoaderWorkers(2)
    assert two.estimate(waiting).speedup > 1.5, "waiting overlaps across workers"
    assert two.estimate(computing).speedup < two.estimate(waiting).speedup
    assert DataLoaderWorkers(4).estimate(context(busy_cores=1.0, cores=1)).speedup == pytest.approx(1.0)
    assert "2 cores" in two.estimate(computing).basis


def test_verdicts():
    assert DataLoaderWorkers(2).applies_to(context(0.5, 2)).applies
    assert "already has 2 workers" in DataLoaderWorkers(2).applies_to(context(0.5, 2, workers=2)).reason
    assert "little to gain" in DataLoaderWorkers(2).applies_to(context(0.5, 2, data=0.01)).reason
    assert not DataLoaderWorkers(2).applies_to(Context({}, {"data_loader": None}, {})).applies
    assert PersistentWorkers().applies_to(context(0.5, 2, workers=2)).applies
    assert not PersistentWorkers().applies_to(context(0.5, 2)).applies


def _trials(tmp_path, script, techniques, *script_args):
    proc, summary = profile_json("--warmup", "2", "--steps", "3", "--techniques", techniques, script, "--",
                                 *script_args, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return summary, json.loads((tmp_path / "run" / "trials.json").read_text())["techniques"]


def test_input_bound_example_measured_and_ranked_by_measured_gain(tmp_path):
    summary, records = _trials(tmp_path, EXAMPLES / "input_bound_train.py",
                               "dataloader_workers_2,dataloader_workers_4,dtype", "--steps", "12")
    measured = [r for r in records if r["status"] == "measured"]
    assert {r["technique"] for r in measured} >= {"dataloader_workers_2", "dataloader_workers_4"}
    gains = [r["measured"]["projected_speedup_low"] for r in measured]
    assert gains == sorted(gains, reverse=True)
    for r in measured:
        if r["technique"].startswith("dataloader"):
            assert r["measured"]["step_share"] == pytest.approx(summary["breakdown"]["data"]["share"], abs=1e-3)
            assert r["measured"]["quality"]["output_rel_error"] == 0.0
    assert psutil.Process().children() == []


def test_slow_loader_with_random_items(tmp_path):
    _, records = _trials(tmp_path, SCRIPTS / "slow_loader_train.py", "dataloader_workers_2")
    record = {r["technique"]: r for r in records}["dataloader_workers_2"]
    assert record["status"] == "measured", record
    assert record["measured"]["quality"]["output_rel_error"] is None
    assert "random" in record["measured"]["quality"]["note"]
