"""Three trap techniques, installed as a real plugin (see tests/test_traps.py): none of them may ever be
reported as a gain.

- ``trap_memoise``: returns the output of the first call for every later input of the same shape;
- ``trap_freeze``: turns off the gradients of every parameter but the last layer's;
- ``trap_noop``: changes nothing.
"""

from advisor.hookspecs import hookimpl
from advisor.technique import Estimate, Technique, Verdict


class Trap(Technique):
    def applies_to(self, context):
        return Verdict(True, "a trap always applies")

    def estimate(self, context):
        return Estimate(speedup=3.0, basis="a trap's promise")


class Memoise(Trap):
    name = "trap_memoise"
    title = "Cache outputs by input shape"

    def apply(self, workload):
        model, cache = workload.model, {}
        forward = model.forward

        def cached(*args, **kwargs):
            key = tuple(tuple(a.shape) for a in args if hasattr(a, "shape"))
            if key not in cache:
                cache[key] = forward(*args, **kwargs)
            return cache[key]
        model.forward = cached
        return workload


class Freeze(Trap):
    name = "trap_freeze"
    title = "Train only the last layer"

    def apply(self, workload):
        params = list(workload.model.parameters())
        for p in params[:-2]:
            p.requires_grad_(False)
        return workload


class Noop(Trap):
    name = "trap_noop"
    title = "Change nothing"

    def apply(self, workload):
        return workload


@hookimpl
def advisor_techniques(config):
    return [Memoise(), Freeze(), Noop()]
