"""`advisor new-plugin NAME`: a skeleton that installs, is discovered, and passes its own tests as generated."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from advisor.cli import main
from conftest import run_advisor


def test_bad_names_and_existing_folders_are_one_line_errors(tmp_path, capsys):
    assert main(["new-plugin", "Bad Name", "--dir", str(tmp_path)]) == 2
    assert main(["new-plugin", "ok", "--dir", str(tmp_path)]) == 0
    assert main(["new-plugin", "ok", "--dir", str(tmp_path)]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and "is not a plugin name" in errors[0] and errors[1].endswith("ok already exists")


@pytest.mark.timeout(300)
def test_generated_plugin_installs_lists_and_passes_its_tests(tmp_path):
    proc = run_advisor("new-plugin", "demo", cwd=tmp_path)
    assert proc.returncode == 0 and "pip install" in proc.stdout, proc.stderr
    site = tmp_path / "site"  # installed apart, so that the project's environment stays as it is
    offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []  # else pip fetches it
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *offline, "--target", site,
                    tmp_path / "demo"], check=True, capture_output=True, timeout=240)
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = {p["name"]: p for p in json.loads(run_advisor("plugins", "--json", env=env).stdout)}
    assert listed["demo"]["distribution"] == "advisor-demo 0.1.0" and listed["demo"]["status"] == "loaded"
    assert listed["demo"]["techniques"][0].startswith("demo: Run inference under torch.inference_mode()")
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                           cwd=tmp_path / "demo", env=env, capture_output=True, text=True, timeout=240)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout
