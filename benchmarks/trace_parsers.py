"""Which JSON parser for the trace loader: candidates side by side on one real trace, each in its own process.

Every candidate turns the same trace into the same kept events (the categories and fields advisor's
analyses read); the rounds are interleaved (A B C ... then reversed) so that the machine's load falls on
all alike. Reported: median wall seconds and median peak RSS of the process (interpreter included).

- ``json.load + DataFrame``: the whole file into Python objects, every event into a frame (no filter);
- ``ijson (C backend)``: a stream of event dicts, filtered (advisor's loader before msgspec);
- ``orjson, whole file``: one ``orjson.loads``, then the same filter;
- ``msgspec typed, whole file``: structs of only the used fields, decoded in one call;
- ``advisor (msgspec typed, 1 MB batches)``: :func:`advisor.analysis.trace.load_trace`.

    python benchmarks/trace_parsers.py TRACE.json [--rounds 3]   (pip install '.[bench]' for ijson and orjson)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trace_scale import ROOT, measured  # noqa: E402

_KEEP = """
KEPT = {"cpu_op", "user_annotation", "gpu_user_annotation", "kernel", "gpu_memcpy", "gpu_memset", "cuda_runtime",
        "cuda_driver"}
FIELDS = ("Input Dims", "Input type", "Concrete Inputs", "Bytes", "Total Allocated", "Device Type", "Device Id",
          "correlation", "External id")

def frame(events):
    import pandas as pd
    rows = []
    for e in events:
        if (e.get("ph") == "X" and e.get("cat") in KEPT) or (e.get("ph") == "i" and e.get("name") == "[memory]"):
            args = e.get("args") or {}
            rows.append((e.get("cat"), e.get("name"), e.get("ph"), str(e.get("pid")), str(e.get("tid")),
                         float(e.get("ts", 0)), float(e.get("dur", 0)), *(args.get(k) for k in FIELDS)))
    return pd.DataFrame(rows)
"""

CANDIDATES = {
    "json.load + DataFrame": "import json, sys, pandas as pd\n"
                             "print(len(pd.DataFrame(json.load(open(sys.argv[1], 'rb'))['traceEvents'])))",
    "ijson (C backend)": _KEEP + "import ijson, sys\nassert ijson.backend in ('yajl2_c', 'yajl2_cffi'), ijson.backend\n"
                                 "print(len(frame(ijson.items(open(sys.argv[1], 'rb'), 'traceEvents.item', "
                                 "use_float=True))))",
    "orjson, whole file": _KEEP + "import orjson, sys\n"
                                  "print(len(frame(orjson.loads(open(sys.argv[1], 'rb').read())['traceEvents'])))",
    "msgspec typed, whole file": "import sys\nfrom advisor.analysis import trace as t, trace_decode as d\n"
                                 "c = d.Columns()\nc.add_events(d._WHOLE.decode(open(sys.argv[1], 'rb').read())"
                                 ".traceEvents)\nprint(len(t._frame(c)))",
    "advisor (msgspec typed, 1 MB batches)": "import sys\nfrom advisor.analysis.trace import load_trace\n"
                                             "print(len(load_trace(sys.argv[1]).events))",
    "advisor, 2 processes": "import sys\nfrom advisor.analysis.trace import load_trace\n"
                            "print(len(load_trace(sys.argv[1], workers=2).events))",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    names = list(CANDIDATES)
    results: dict[str, list[tuple[float, int]]] = {n: [] for n in names}
    notes: dict[str, str] = {}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            wall, peak, last = measured([sys.executable, "-c", CANDIDATES[name], str(args.trace)], ROOT)
            if peak < 0:
                notes[name] = last
            else:
                results[name].append((wall, peak))
    size = args.trace.stat().st_size
    print(f"{args.trace.name}: {size / 1e6:.0f} MB, {args.rounds} interleaved rounds\n")
    print(f"{'candidate':<40} {'wall s':>7} {'peak MB':>8} {'RSS/file':>9}")
    for name in names:
        if not results[name]:
            print(f"{name:<40} {notes.get(name, 'no result')}")
            continue
        wall = statistics.median(w for w, _ in results[name])
        peak = statistics.median(p for _, p in results[name])
        print(f"{name:<40} {wall:>7.2f} {peak / 1e6:>8.0f} {peak / size:>9.2f}")


if __name__ == "__main__":
    main()
