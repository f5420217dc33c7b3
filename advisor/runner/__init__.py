"""The child side of a run: the process that runs the user's script under the profiler."""
