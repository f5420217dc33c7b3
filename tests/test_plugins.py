"""Collector plugins found through real entry points; broken ones are reported, and the run goes on."""

import json
import os
import textwrap

from conftest import SCRIPTS, install_plugin as _install_plugin, run_advisor

PLUGIN = textwrap.dedent('''
    from advisor.collectors.base import Availability, Collector
    from advisor.hookspecs import hookimpl


    class FailsToStart(Collector):
        name = "fails_to_start"

        def start(self, context):
            raise RuntimeError("cannot attach")


    class CheckRaises(Collector):
        name = "check_raises"

        def check(self):
            raise OSError("probe exploded")


    class Honest(Collector):
        name = "honest"

        def check(self):
            return Availability(False, "needs a TPU")


    @hookimpl
    def advisor_collectors(config):
        return [FailsToStart(), CheckRaises(), Honest()]
''')


def _run(tmp_path, *args, env_extra=None):
    site = tmp_path / "site"
    if not site.exists():
        site.mkdir()
        _install_plugin(site, "odd_collectors", PLUGIN)
        _install_plugin(site, "raising_plugin", "from advisor.hookspecs import hookimpl\n\n@hookimpl\n"
                                                "def advisor_collectors(config):\n    raise ValueError('bad')\n")
    env = {**os.environ, "PYTHONPATH": str(site), **(env_extra or {})}
    out = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    proc = run_advisor("profile", "--warmup", "1", "--steps", "2", "--no-measure", "--out", out, *args,
                       SCRIPTS / "tiny_mlp_infer.py", env=env)
    return proc, json.loads((out / "meta.json").read_text())["collectors"]


def test_broken_collector_plugins_are_reported_and_skipped(tmp_path):
    proc, collectors = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert collectors["fails_to_start"] == {"available": False, "reason": "failed to start: cannot attach"}
    assert collectors["check_raises"]["reason"] == "broken collector: OSError: probe exploded"
    assert collectors["honest"] == {"available": False, "reason": "needs a TPU"}
    assert collectors["raising_plugin"]["reason"] == "broken plugin: ValueError: bad"
    assert collectors["psutil"]["available"] is True


def test_block_a_plugin_and_switch_autoload_off(tmp_path):
    _, collectors = _run(tmp_path, "-p", "no:odd_collectors")
    assert "honest" not in collectors and "raising_plugin" in collectors
    _, collectors = _run(tmp_path, env_extra={"ADVISOR_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert "honest" not in collectors and "raising_plugin" not in collectors and "psutil" in collectors
    _, collectors = _run(tmp_path, "-p", "no:collectors_perf")
    assert "perf" not in collectors and "psutil" in collectors and "nvml" in collectors
    _, collectors = _run(tmp_path, "-p", "no:collectors_psutil", "-p", "no:collectors_nvml", "-p", "no:collectors_perf")
    assert "psutil" not in collectors and "nvml" not in collectors and "torch_profiler" in collectors


def test_bad_block_option(tmp_path):
    proc = run_advisor("profile", "-p", "odd", SCRIPTS / "tiny_mlp_infer.py")
    assert proc.returncode == 2 and "-p takes no:NAME" in proc.stderr


def test_plugins_command_lists_techniques_collectors_and_load_errors(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install_plugin(site, "odd_collectors", PLUGIN)
    _install_plugin(site, "does_not_import", "import no_such_dependency_anywhere\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = run_advisor("plugins", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert plugins["dtype"]["techniques"] == ["dtype: Autocast matmuls and convolutions to bfloat16 / float16"]
    assert plugins["dtype"]["distribution"].startswith("torch-advisor ")
    assert [plugins[f"collectors_{name}"]["collectors"] for name in ("psutil", "nvml", "perf")] == \
        [["psutil"], ["nvml"], ["perf"]]
    assert plugins["odd_collectors"]["collectors"] == ["fails_to_start", "check_raises", "honest"]
    assert plugins["does_not_import"]["status"].startswith("failed to load: ModuleNotFoundError")
    blocked = json.loads(run_advisor("plugins", "--json", "-p", "no:dtype", env=env).stdout)
    assert {p["name"]: p["status"] for p in blocked}["dtype"] == "blocked (-p no:NAME)"
    table = run_advisor("plugins", env=env)
    assert "channels_last" in table.stdout and "failed to load" in table.stdout
