"""The ranks of a torch.distributed run in the terminal: one row per rank, the straggler marked."""

from __future__ import annotations

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from advisor.format import ms, pct

STRAGGLER_MARK = "◀ straggler"


def ranks_headline(distributed: dict) -> str:
    """One line: backend and world size, communication, overlap, the straggler."""
    parts = [f"{distributed.get('backend') or 'unknown backend'}, {distributed.get('world_size')} ranks"]
    if distributed.get("comm_share") is not None:
        parts.append(f"collectives {pct(distributed['comm_share'])} of a step "
                     f"(waiting {pct(distributed.get('wait_share'))})")
    if distributed.get("overlap") is not None:
        parts.append(f"{pct(distributed['overlap'])} of it overlaps computation")
    slow = distributed.get("straggler")
    parts.append(f"straggler: rank {slow['rank']}, busy {ms(slow['slower_by_ms'])} ms ({pct(slow['slower_by'])} of a "
                 f"step) longer than the others, in {slow['phase']}" if slow else "no straggler")
    return " · ".join(parts)


def rank_notes(distributed: dict) -> list[str]:
    """What the launcher set, and each rank that did not end as asked."""
    notes = []
    if (distributed.get("launcher") or {}).get("omp_num_threads_set_by_torchrun"):
        notes.append("torchrun set OMP_NUM_THREADS=1 in every rank (more than one process per node): "
                     "each rank computes on one thread unless the script sets its own")
    notes += [r["error"] for r in distributed.get("ranks") or [] if r.get("error")]
    return notes


def rank_row(rank: dict, straggler: int | None) -> list[str]:
    """The cells of one rank: step median, phases, collectives, waiting, overlap, and the straggler mark."""
    steps, parts = rank.get("steps") or {}, rank.get("breakdown") or {}
    if not rank.get("recorded"):
        return [str(rank["rank"]), "–", "", "", "", "", "", "", "", f"no steps ({rank.get('outcome')})"]
    overlap = rank.get("overlap")
    return [str(rank["rank"]), ms(steps.get("median_ms")),
            *(ms((parts.get(p) or {}).get("ms")) for p in ("data", "forward", "backward", "optimizer")),
            ms(rank.get("comm_ms")), ms(rank.get("comm_wait_ms")), pct(overlap) if overlap is not None else "",
            STRAGGLER_MARK if rank["rank"] == straggler else ""]


RANK_COLUMNS = ("rank", "step", "data", "fwd", "bwd", "opt", "comm", "wait", "overlap", "")


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
