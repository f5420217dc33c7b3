"""The ranks of a torch.distributed run in the terminal: one row per rank, the straggler marked."""

from __future__ import annotations

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from advisor.format import RANK_COLUMNS, rank_notes, rank_row, ranks_headline

def render_ranks(summary: dict) -> Group | None:
    """The ranks table of a distributed run, or None for one process."""
    distributed = summary.get("distributed")
    if not distributed:
        return None
    straggler = (distributed.get("straggler") or {}).get("rank")
    table = Table(title="Ranks (ms per step; comm: a collective in flight, wait: for another rank)",
                  title_justify="left", box=None, pad_edge=False)
    for header in RANK_COLUMNS:
        table.add_column(header, justify="left" if header in ("", "rank") else "right", no_wrap=True)
    for rank in distributed.get("ranks") or []:
        table.add_row(*map(escape, rank_row(rank, straggler)), style="bold red" if rank["rank"] == straggler else "")
    lines = [Text.assemble(("Distributed ", "bold"), ranks_headline(distributed)), table]
    lines += [Text(note, style="yellow") for note in rank_notes(distributed)]
    return Group(*lines)
