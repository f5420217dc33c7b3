"""The autograd history that tensors alive between two steps keep: a script that sums its loss tensors across steps
(``total += loss`` instead of ``loss.item()``) keeps every step's graph, and this count grows step over step.

Read twice per run, as the recorded window starts and as it ends (a scan of the garbage collector's objects).
"""

from __future__ import annotations

import gc

import torch

#: graph nodes walked at most per scan (a long history is evident well before)
MAX_NODES = 200_000


def _graph_nodes(root, seen: dict, budget: int) -> int:
    """Nodes reachable from ``root`` not yet in ``seen`` (added to it, by id, held so that ids stay unique),
    walking at most ``budget``."""
    stack, count = [root], 0
    while stack and count < budget:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        count += 1
        stack.extend(next_node for next_node, _ in getattr(node, "next_functions", ()))
    return count


def held_autograd_graph() -> dict:
    """The tensors alive now that carry autograd history (a ``grad_fn``), the graph nodes reachable from them,
    and the one with the most nodes (its ``grad_fn``, shape and nodes)."""
    seen: dict = {}
    tensors, nodes, largest = 0, 0, None
    for obj in gc.get_objects():
        if nodes >= MAX_NODES:
            break
        if not issubclass(type(obj), torch.Tensor) or obj.grad_fn is None:  # type(): no proxy is asked
            continue
        tensors += 1
        root = obj.grad_fn
        found = _graph_nodes(root, seen, MAX_NODES - nodes)
        nodes += found
        if largest is None or found > largest["nodes"]:
            largest = {"grad_fn": type(root).__name__, "shape": list(obj.shape), "nodes": found}
    return {"tensors": tensors, "nodes": nodes, "largest": largest, "capped": nodes >= MAX_NODES}
