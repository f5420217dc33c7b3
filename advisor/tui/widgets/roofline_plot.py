"""The roofline: the machine's measured roofs and each op with counted FLOPs as a point under them (plotext)."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from advisor.store import RooflineData

_ROOF_COLORS = ("cyan", "magenta", "blue")
_BOUND_MARKERS = {"compute": "●", "memory": "◆", "overhead": "x"}


class RooflinePlot(PlotextPlot):
    """Log-log: arithmetic intensity (FLOP/byte) against GFLOP/s; the selected op drawn in its own colour."""

    DEFAULT_CSS = """
    RooflinePlot { height: 14; }
    """

    data: RooflineData | None = None
    selected: str | None = None

    def show(self, data: RooflineData | None, selected: str | None = None) -> None:
        self.data, self.selected = data, selected
        self.display = data is not None and bool(data.ops)  # a run without measured peaks: no plot
        self.refresh()

    def render(self):
        # plotext applies its log scale to the data in place at each build: the series are given afresh each time
        self._draw(self.data, self.selected)
        return super().render()

    def _draw(self, data: RooflineData | None, selected: str | None) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if data is None or not data.ops:
            return
        points = [op for op in data.ops if op["intensity"] > 0 and op["flops_per_s"] > 0]
        low = min(op["intensity"] for op in points) / 4 if points else 0.1
        high = max(op["intensity"] for op in points) * 4 if points else 1000.0
        xs = [low * (high / low) ** (i / 60) for i in range(61)]
        for (dtype, peak), color in zip(sorted(data.compute.items(), key=lambda kv: -kv[1]), _ROOF_COLORS):
            plt.plot(xs, [min(peak, x * data.bandwidth) / 1e9 for x in xs], color=color, label=f"roof {dtype}")
        for bound, marker in _BOUND_MARKERS.items():
            mine = [op for op in points if op.get("bound") == bound and op["name"] != selected]
            if mine:
                plt.scatter([op["intensity"] for op in mine], [op["flops_per_s"] / 1e9 for op in mine],
                            marker=marker, color="green", label=f"{bound}-bound ops")
        chosen = [op for op in points if op["name"] == selected]
        if chosen:
            plt.scatter([chosen[0]["intensity"]], [chosen[0]["flops_per_s"] / 1e9], marker="■", color="red",
                        label=selected)
        plt.xscale("log")
        plt.yscale("log")
        plt.xlabel("FLOP/byte")
        plt.ylabel("GFLOP/s")
        plt.title(f"roofs {data.bandwidth / 1e9:.0f} GB/s, "
                  + ", ".join(f"{dtype} {peak / 1e9:.0f}" for dtype, peak in data.compute.items()) + " GFLOP/s")
