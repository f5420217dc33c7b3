"""advisor: a plugin-based profiler and optimization advisor for PyTorch."""

from advisor.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "step", "__version__"]


def step() -> None:
    """Mark the end of one step of the script.

    Under ``advisor profile`` this overrides the automatic step detection (optimizer steps, backward
    passes or outermost module calls); run without advisor it does nothing, so the call can stay in a script.
    """
    import sys

    runner_module = sys.modules.get("advisor.runner.run")
    runner = getattr(runner_module, "active", None)
    if runner is not None:
        runner.detector.explicit_step()
