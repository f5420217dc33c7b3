"""The findings block of the terminal summary: the few mistakes that put the most of the step at stake."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

SHOWN = 5


def render_findings(summary: dict, shown: int = SHOWN) -> Group | None:
    """The top ``shown`` findings (severity, title, evidence, first line of the fix), and broken findings plugins."""
    findings = summary.get("findings") or []
    broken = summary.get("broken_plugins") or []
    if not findings and not broken:
        return Text("Findings: none of the known mistakes seen in this run") if "findings" in summary else None
    parts = []
    if findings:
        table = Table(title="Findings", title_justify="left", box=None, pad_edge=False, show_header=False,
                      padding=(0, 1, 0, 0))
        table.add_column("at stake", justify="right", no_wrap=True, min_width=4)
        table.add_column("finding", overflow="fold")
        for f in findings[:shown]:
            fix = (f.get("fix") or "").splitlines()
            # Text, not markup: the evidence quotes the user's code and op names as they are
            body = Text.assemble((f["title"], "bold"), f"  [{f['id']}]\n", f.get("evidence") or "")
            if fix:
                body.append(f"\nfix: {fix[0]}" + (" …" if len(fix) > 1 else ""), style="green")
            table.add_row(f"{100 * f.get('severity', 0):.0f}%", body)
        parts.append(table)
        more = len(findings) - shown
        parts.append(Text(("" if more <= 0 else f"{more} more; ") + "`--json` has every finding with its whole fix; "
                          "`--no-finding ID` leaves one out.", style="grey50"))
    for b in broken:
        parts.append(Text(f"findings plugin {b['plugin']} is broken: {b['error']}", style="yellow"))
    return Group(*parts)
