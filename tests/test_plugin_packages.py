"""The packages under plugins/, installed with pip (`make test` does), found and measured through the real CLI."""

import json

import pytest

from conftest import EXAMPLES, ONE_THREAD, profile_json, run_advisor

PACKAGES = {"int8": ("advisor-int8", ["int8_dynamic"]), "lowrank": ("advisor-lowrank", ["lowrank_10", "lowrank_25"])}


@pytest.fixture(scope="module")
def installed():
    listed = {p["name"]: p for p in json.loads(run_advisor("plugins", "--json").stdout)}
    missing = [dist for name, (dist, _) in PACKAGES.items() if name not in listed]
    assert not missing, f"{missing} not installed: `make test` installs every package under plugins/"
    return listed


def test_advisor_plugins_lists_them(installed):
    for name, (dist, techniques) in PACKAGES.items():
        assert installed[name]["distribution"].startswith(f"{dist} ") and installed[name]["status"] == "loaded"
        assert [t.split(":")[0] for t in installed[name]["techniques"]] == techniques


def test_profile_of_the_mlp_example_carries_measured_results_of_both(installed, tmp_path):
    names = [t for _, techniques in PACKAGES.values() for t in techniques]
    proc, summary = profile_json("--warmup", "2", "--steps", "2", "--techniques", ",".join(names), "--pairs", "none",
                                 EXAMPLES / "mlp_infer.py", "--", "--steps", "6", tmp_path=tmp_path,
                                 env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    records = {r["technique"]: r for r in summary["recommendations"]}
    for name in names:
        assert records[name]["status"] == "measured", records[name]
        assert records[name]["measured"]["speedup"] > 0 and records[name]["measured"]["quality"]["output_rel_error"] > 0
