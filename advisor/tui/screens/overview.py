"""Overview: step time and its breakdown, utilisation, memory against the machine, collectors, findings."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static, TabPane

from advisor.format import PHASE_STYLES, human_bytes, spread
from advisor.store import FINE_OUTCOMES
from advisor.tui.widgets.share_bar import Segment, ShareBar

FINDINGS_SHOWN = 5


class OverviewPane(TabPane):
    def __init__(self):
        super().__init__("Overview", id="overview")

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="overview-steps")
            yield ShareBar(id="overview-breakdown")
            yield Static(id="overview-usage")
            yield ShareBar(id="overview-memory")
            yield Static(id="overview-collectors")
            yield Static(id="overview-findings")

    def show(self, summary: dict | None, problem: str | None) -> None:
        steps = self.query_one("#overview-steps", Static)
        if summary is None:
            steps.update(Text(problem or "no run", style="bold yellow"))
            for widget in self.query(ShareBar):
                widget.segments = ()
            for name in ("usage", "collectors", "findings"):
                self.query_one(f"#overview-{name}", Static).update("")
            return
        steps.update(_steps(summary))
        parts = summary.get("breakdown") or {}
        self.query_one("#overview-breakdown", ShareBar).segments = tuple(
            Segment(phase, v["share"], PHASE_STYLES.get(phase, "white"), f"{v['ms']:.1f}ms")
            for phase, v in parts.items())
        self.query_one("#overview-usage", Static).update(_usage(summary))
        mem = summary.get("memory") or {}
        share = mem.get("rss_share_of_system")
        self.query_one("#overview-memory", ShareBar).segments = () if share is None else (
            Segment("peak RSS", share, "red" if share > 0.8 else "cyan",
                    f"{human_bytes(mem.get('peak_rss_bytes'))} of {human_bytes(mem.get('system_memory_bytes'))}"),)
        self.query_one("#overview-collectors", Static).update(_collectors(summary))
        self.query_one("#overview-findings", Static).update(_findings(summary))


def _steps(summary: dict) -> Text:
    text = Text()
    if summary.get("error") or summary.get("outcome") not in FINE_OUTCOMES:
        text.append(f"The script ended as {summary.get('outcome')}", style="bold yellow")
        text.append(f": {summary['error']}" if summary.get("error") else "", style="yellow")
        text.append("; what was recorded before is shown.\n", style="yellow")
    steps = summary.get("steps") or {}
    if not steps.get("count"):
        text.append("No steps found", style="bold yellow")
        text.append(": no step boundary was recorded, so there is no step time or breakdown; the ops cover "
                    "the whole run. Call advisor.step() at the end of each step to mark them.")
        return text
    if steps.get("detection") == "time_slices":
        text.append("No step boundary found within the limit", style="bold yellow")
        text.append(f": {steps['count']} time slices of {steps['median_ms']:.1f} ms; mean slice:")
        return text
    iqr = steps.get("spread")
    text.append("Step ", style="bold")
    text.append(f"{steps['median_ms']:.2f} ms", style="bold")
    text.append(" median" + (f" ({spread(iqr, 1)})" if iqr is not None else "")
                + f" of {steps['count']} steps, found by {steps.get('detection')}; mean step:")
    return text


def _usage(summary: dict) -> Text:
    util = summary.get("utilisation") or {}
    text = Text.assemble(("Utilisation ", "bold"))
    if util.get("process_busy_cores") is not None:
        text.append(f"{util['process_busy_cores']:.2f} of {util.get('cpu_count')} cores busy in the window")
    else:
        text.append("not measured", style="grey50")
    if util.get("gpu"):
        text.append(f" · GPU {util['gpu']['mean_percent']:.0f}% mean")
    text.append("\n")
    text.append("Memory ", style="bold")
    return text


def _collectors(summary: dict) -> Text:
    text = Text.assemble(("Collectors ", "bold"))
    collectors = (summary.get("collectors") or {}).items()
    for name, _ in ((n, s) for n, s in collectors if s.get("available")):
        text.append(f"{name} ✓  ", style="green")
    for name, status in ((n, s) for n, s in collectors if not s.get("available")):
        text.append(f"\n  {name} unavailable: {status.get('reason')}", style="yellow")
    return text


def _findings(summary: dict) -> Text:
    findings = summary.get("findings")
    text = Text.assemble(("Findings ", "bold"))
    if not findings:
        return text.append("no findings recorded", style="grey50")
    for finding in findings[:FINDINGS_SHOWN]:
        text.append(f"\n  {100 * (finding.get('severity') or 0):3.0f}% ", style="bold red")
        text.append(str(finding.get("title", "?")))
    return text
