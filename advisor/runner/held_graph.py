"""The autograd history that tensors alive between two steps keep: a script that sums its loss tensors across steps
(``total += loss`` instead of ``loss.item()``) keeps every step's graph, and this count grows step over step.

Read twice per run, as the recorded window starts and as it ends, from what the frames on the stack reach cheaply:
their local and global variables, and the items of lists, tuples and dicts among them (a scan of every object the
garbage collector tracks took 0.2 s, too long for a step's boundary).
"""

from __future__ import annotations

import sys

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


def _reachable_tensors():
    """Tensors held by the variables of the frames on the stack, directly or in a list, tuple or dict."""
    namespaces: dict[int, dict] = {}
    frame = sys._getframe(1)
    while frame is not None:
        for namespace in (frame.f_locals, frame.f_globals):
            namespaces.setdefault(id(namespace), namespace)
        frame = frame.f_back
    for namespace in namespaces.values():
        for value in list(namespace.values()):
            kind = type(value)  # type(), not isinstance: no module proxy is asked for its class
            if issubclass(kind, torch.Tensor):
                yield value
            elif kind in (list, tuple, dict):
                items = value.values() if kind is dict else value
                yield from (item for item in items if issubclass(type(item), torch.Tensor))


def held_autograd_graph() -> dict:
    """The tensors reachable from the stack's variables that carry autograd history (a ``grad_fn``), the graph
    nodes reachable from them, and the one with the most nodes (its ``grad_fn``, shape and nodes)."""
    seen: dict = {}
    tensors, nodes, largest = 0, 0, None
    done: set[int] = set()
    for obj in _reachable_tensors():
        if nodes >= MAX_NODES:
            break
        if id(obj) in done or obj.grad_fn is None:
            continue
        done.add(id(obj))
        tensors += 1
        root = obj.grad_fn
        found = _graph_nodes(root, seen, MAX_NODES - nodes)
        nodes += found
        if largest is None or found > largest["nodes"]:
            largest = {"grad_fn": type(root).__name__, "shape": list(obj.shape), "nodes": found}
    return {"tensors": tensors, "nodes": nodes, "largest": largest, "capped": nodes >= MAX_NODES}
