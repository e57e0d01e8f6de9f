"""Environment colours: each environment but `main` gets one, distinct within its project."""

from __future__ import annotations

import colorsys
from collections.abc import Iterable

# Twelve hues far enough apart to tell at a glance, each dark enough to show on white and light
# enough to carry dark text.
PALETTE = (
    "#3b82f6",  # blue
    "#f59e0b",  # amber
    "#22c55e",  # green
    "#ef4444",  # red
    "#a855f7",  # purple
    "#14b8a6",  # teal
    "#f97316",  # orange
    "#ec4899",  # pink
    "#84cc16",  # lime
    "#6366f1",  # indigo
    "#06b6d4",  # cyan
    "#d4a017",  # mustard
)

GOLDEN_ANGLE = 137.50776405


def generated_color(index: int) -> str:
    """The `index`-th colour past the palette.

    Golden-angle hue steps never repeat a hue and keep neighbours far apart; the lightness
    alternates between three bands so that even close hues differ.
    """
    hue = (15.0 + index * GOLDEN_ANGLE) % 360.0
    lightness = (0.50, 0.40, 0.60)[index % 3]
    red, green, blue = colorsys.hls_to_rgb(hue / 360.0, lightness, 0.70)
    return "#{:02x}{:02x}{:02x}".format(round(red * 255), round(green * 255), round(blue * 255))


def next_color(used: Iterable[str]) -> str:
    """The first palette colour not in `used`; past the palette, the first unused generated one."""
    taken = {color.lower() for color in used if color}
    for color in PALETTE:
        if color not in taken:
            return color
    index = 0
    while (color := generated_color(index)) in taken:
        index += 1
    return color


def text_color_on(background: str) -> str:
    """Black or white, whichever reads better on `background` (WCAG relative luminance)."""
    channels = [int(background[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#111827" if luminance > 0.18 else "#ffffff"
