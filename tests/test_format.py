"""The numbers every view writes the same way (advisor.format), and who imports what."""

import subprocess
import sys

import pytest

from advisor.format import gain, human_bytes, measured_gain, ms, pct, peak_memory, relative, short_source, spread


def test_numbers():
    assert (gain(1.234), gain(None)) == ("1.23x", "-")
    assert (spread(0.24), spread(0.068, 1)) == ("±12%", "±3.4%")
    assert (relative(0.00031), relative(0.0), relative(None)) == ("3e-04", "0e+00", "-")
    assert (ms(12.345), ms(None), pct(0.1234), pct(None)) == ("12.35", "-", "12.3%", "-")
    assert short_source("C:\\work\\train.py:12") == short_source("/work/train.py:12") == "train.py:12"


@pytest.mark.parametrize("measured, shown", [({"speedup": 1.5, "spread": 0.2}, "1.50x ±10%"),
                                             ({"speedup": 1.5, "spread": None}, "1.50x"),
                                             ({"speedup": 1.5, "spread": 0.0}, "1.50x"),
                                             ({"speedup": None, "spread": 0.2}, "-"), ({}, "-")])
def test_measured_gain(measured, shown):
    assert measured_gain(measured) == shown


@pytest.mark.parametrize("n, shown", [(None, "-"), (0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                      (5 * 2**30, "5.0 GiB"), (3 * 2**50, "3072.0 TiB")])
def test_human_bytes(n, shown):
    assert human_bytes(n) == shown


@pytest.mark.parametrize("measured, shown", [({"peak_bytes": 3 * 2**20, "baseline_peak_bytes": 4 * 2**20},
                                              "3.0 MiB -25%"),
                                             ({"peak_bytes": 2048, "baseline_peak_bytes": None}, "2.0 KiB"),
                                             ({"peak_bytes": None}, "-"), ({}, "-")])
def test_peak_memory(measured, shown):
    assert peak_memory(measured) == shown


def test_the_report_and_the_tui_do_without_the_terminal_views():
    code = ("import sys, advisor.format; assert not {'rich', 'torch'} & set(sys.modules), 'format'; "
            "import advisor.report.markdown, advisor.tui.app; "
            "print(sorted(m for m in sys.modules if m.startswith('advisor.views')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
