"""Colour maps of depth: inverse depth through matplotlib's magma, and the colour bar with depth labels.

`colorize_depth` colours a map, `legend_image` adds the colour bar and a caption with the units.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps

from sa4depth.apps.predict.metric_scale import NETWORK_UNITS


def disparity_range(depth: np.ndarray) -> tuple[float, float]:
    """The 1st-99th percentile range of inverse depth: the colour scale of `colorize_depth`."""
    disp = 1.0 / np.maximum(depth[np.isfinite(depth) & (depth > 0)], 1e-6)
    if disp.size == 0:
        return 0.0, 1.0
    vmin, vmax = float(np.percentile(disp, 1)), float(np.percentile(disp, 99))
    return vmin, max(vmax, vmin + 1e-9)


def colorize_depth(
    depth: np.ndarray, cmap: str = "magma", disp_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Colour-map inverse depth (near = bright): ``H x W`` -> ``H x W x 3`` uint8.

    Args:
        depth: ``H x W`` depth (any units; the colouring is scale-invariant).
        cmap: matplotlib colour map.
        disp_range: inverse-depth values mapped to the ends of the colour map; default the 1-99
            percentile range of this map (`disparity_range`). Fix it to compare maps, e.g. video frames.

    Example:
        >>> colorize_depth(np.array([[1.0, 10.0]])).shape
        (1, 2, 3)
    """
    vmin, vmax = disp_range or disparity_range(depth)
    disp = 1.0 / np.maximum(depth, 1e-6)
    normed = np.clip((disp - vmin) / max(vmax - vmin, 1e-9), 0, 1)
    return (colormaps[cmap](normed)[..., :3] * 255).astype(np.uint8)


def _format_depth(depth: float) -> str:
    """Three significant digits, never an exponent: ``123``, ``4.93``, ``0.0123``."""
    return np.format_float_positional(depth, precision=3, fractional=False, trim="-")


def _depth_ticks(disp_range: tuple[float, float], min_gap: float = 0.08) -> list[tuple[float, str]]:
    """Colour-bar ticks ``(inverse depth, label)``, near end first: both ends and round depths between.

    The bar is linear in inverse depth, so round depths crowd at the far end: a tick is kept only if it
    is at least ``min_gap`` (a fraction of the bar) from every other one, the ends first, then depths
    1, 5, 2 x 10^k (rounder first). The ends are labelled with their depth as ``≤near`` and ``≥far``:
    nearer or farther pixels are clipped to the end colours (see `colorize_depth`); a far end at
    inverse depth 0 is ``∞``.

    Example:
        >>> [label for _, label in _depth_ticks((0.01, 1.0))]
        ['≤1', '2', '5', '10', '≥100']
    """
    from matplotlib.ticker import MaxNLocator

    vmin, vmax = disp_range
    span = vmax - vmin
    d_near, d_far = 1.0 / vmax, (1.0 / vmin if vmin > 0 else math.inf)
    far_finite = d_far if math.isfinite(d_far) else 1.0 / max(vmin + 0.01 * span, 1e-12)
    decades = range(math.floor(math.log10(d_near)), math.ceil(math.log10(far_finite)) + 1)
    # Rounder values first, so that where two would crowd each other the rounder one stays.
    candidates = [m * 10.0**e for m in (1, 5, 2) for e in decades]
    inside = [d for d in candidates if d_near < d < d_far]
    if len(inside) < 2:  # a narrow range (say 4.9 to 5.2 m): evenly spaced round values instead
        locator = MaxNLocator(5, steps=[1, 2, 5, 10])
        inside = [float(d) for d in locator.tick_values(d_near, far_finite) if d_near < d < d_far]
    far = "≥" + _format_depth(d_far) if math.isfinite(d_far) else "∞"  # disparity 0: infinitely far
    ticks = [(float(vmax), "≤" + _format_depth(d_near)), (float(vmin), far)]
    for depth in inside:
        label = _format_depth(depth)
        # A value the labels already show (a nearly constant map: "≤12", "12", "≥12") says nothing new.
        shown = {text.lstrip("≤≥") for _, text in ticks}
        if label not in shown and all(abs(1.0 / depth - pos) >= min_gap * span for pos, _ in ticks):
            ticks.append((1.0 / depth, label))
    return sorted(ticks, reverse=True)


LEGEND_FONT_PT = 8
"""Font size of the colour bar's labels and the caption."""


def _legend_figure(colored: np.ndarray, disp_range: tuple[float, float], units: str, cmap: str = "magma"):
    """The matplotlib figure of `legend_image` (on an Agg canvas), with the colour bar as ``fig.axes[1]``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    H, W = colored.shape[:2]
    width_in = max(6.0, W / 100)
    image_in = width_in * 0.8 * H / W
    fig = Figure(figsize=(width_in, image_in + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    bottom = 0.45 / (image_in + 0.6)
    height = 1 - bottom - 0.08 / (image_in + 0.6)  # room above the bar for half its near-end label
    ax = fig.add_axes((0.01, bottom, 0.8, height))
    ax.imshow(colored)
    ax.axis("off")
    cax = fig.add_axes((0.84, bottom, 0.025, height))
    bar = fig.colorbar(ScalarMappable(Normalize(*disp_range), cmap), cax=cax)
    # Labels at least 1.6 text lines apart, whatever the bar's height in pixels.
    bar_px = height * (image_in + 0.6) * fig.dpi
    min_gap = 1.6 * LEGEND_FONT_PT / 72 * fig.dpi / bar_px
    positions, labels = zip(*_depth_ticks(disp_range, min_gap), strict=True)
    bar.set_ticks(list(positions), labels=list(labels))
    bar.minorticks_off()
    bar.set_label("depth" if units == NETWORK_UNITS else "depth [m]", fontsize=LEGEND_FONT_PT)
    cax.tick_params(labelsize=LEGEND_FONT_PT)
    fig.text(0.01, 0.08 / (image_in + 0.6), f"depth: {units}", fontsize=LEGEND_FONT_PT)
    return fig


def legend_image(colored: np.ndarray, disp_range: tuple[float, float], units: str, cmap: str = "magma"):
    """The colour-mapped depth with a colour bar in depth values and a caption saying the units.

    The bar labels its near and far ends (the depths clipped to the end colours) and round depths
    between, none closer than 1.6 lines of text (`_depth_ticks`).

    Args:
        colored: ``H x W x 3`` output of `colorize_depth` with the same ``disp_range``.
        disp_range: inverse-depth range of the colouring.
        units: `NETWORK_UNITS` or a metric label such as "metric (scaled by camera height 1.65 m)".
        cmap: matplotlib colour map of the bar; the one ``colored`` was made with.

    Returns:
        An RGB uint8 image (larger than ``colored``).
    """
    fig = _legend_figure(colored, disp_range, units, cmap)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
