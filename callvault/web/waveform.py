"""A recording's waveform as inline SVG: one lane per channel (caller, agent), decimated to peaks.

Only called after ``recordings.service.authorize_content`` allowed the caller's purpose (the waveform
shows when people spoke, so it is content). Nothing decoded is kept or written anywhere.
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from callvault.transcription import audio as taudio

BUCKETS = 480
LANE_HEIGHT = 56
MAX_DECODE_BYTES = 64 * 1024 * 1024
"""Above this the page skips the waveform rather than decode a very long call in the request."""


def peaks(data: np.ndarray[Any, np.dtype[np.float32]], buckets: int = BUCKETS) -> list[np.ndarray[Any, Any]]:
    """Per channel, (min, max) of each of ``buckets`` equal slices of the samples."""
    frames = int(data.shape[0])
    out = []
    n = max(1, min(buckets, frames))
    edges = np.linspace(0, frames, n + 1).astype(int)
    for ch in range(int(data.shape[1])):
        x = data[:, ch]
        lo = np.minimum.reduceat(x, edges[:-1]) if frames else np.zeros(1)
        hi = np.maximum.reduceat(x, edges[:-1]) if frames else np.zeros(1)
        out.append(np.stack([lo, hi], axis=1))
    return out


def svg(raw: bytes, *, duration: float, controls: tuple[tuple[float, float, str], ...] = ()) -> str:
    """Inline SVG for the decoded audio ``raw``; ``controls``: (start s, end s, label) spans to shade."""
    decoded = taudio.decode(raw)
    lanes = peaks(decoded.data)
    width = BUCKETS
    height = LANE_HEIGHT * len(lanes)
    names = [decoded.speaker(i) for i in range(len(lanes))]
    parts = [f'<svg class="waveform" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
             f'aria-label="Waveform of the call, one lane per channel: {escape(", ".join(names))}" '
             f'data-duration="{duration:.3f}" xmlns="http://www.w3.org/2000/svg">']
    for start, end, label in controls:
        if duration > 0:
            x0, x1 = width * max(0.0, start) / duration, width * min(duration, end) / duration
            parts.append(f'<rect class="span" x="{x0:.1f}" y="0" width="{max(1.0, x1 - x0):.1f}" height="{height}">'
                         f'<title>{escape(label)}</title></rect>')
    for i, (lane, name) in enumerate(zip(lanes, names, strict=True)):
        mid = LANE_HEIGHT * i + LANE_HEIGHT / 2
        half = LANE_HEIGHT / 2 - 4
        scale = width / max(1, len(lane))
        top = " ".join(f"{j * scale:.1f},{mid - half * float(hi):.1f}" for j, (_, hi) in enumerate(lane))
        bottom = " ".join(f"{j * scale:.1f},{mid - half * float(lo):.1f}"
                          for j, (lo, _) in reversed(list(enumerate(lane))))
        parts.append(f'<g class="lane lane-{i}"><title>{escape(name)}</title>'
                     f'<polygon points="{top} {bottom}"/>'
                     f'<text x="4" y="{LANE_HEIGHT * i + 14}">{escape(name)}</text></g>')
    parts.append(f'<line class="cursor" x1="0" x2="0" y1="0" y2="{height}"/></svg>')
    return "".join(parts)
