"""PNG plots of the benchmarks' timelines (matplotlib, drawn off screen).

    .venv/bin/python -m bench.plots build/bench            # redraw from the JSON there

``make bench`` draws them after the table; this redraws them from the JSON files
a run left (``sync_drain.json``, ``storm.json``) into the same folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"jitter": "#1f6fb4", "no jitter": "#c0392b", "drain": "#1f6fb4", "raw": "#7f8c8d", "e2e": "#27ae60",
           "raw_e2e": "#b0b0b0"}
LABELS = {"drain": "sender: outbox → broker (sent)", "raw": "raw paho publisher (PUBACKed)",
          "e2e": "sender → central → receipt (confirmed)", "raw_e2e": "raw paho publisher → subscriber"}


def drain_plot(report: dict[str, Any], path: Path) -> Path | None:
    """Answers done over time for each kind of run in ``bench.sync_drain --json`` (its last run)."""
    timelines: dict[str, list[list[float]]] = report.get("timelines", {})
    if not timelines:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for key, points in timelines.items():
        if not points:
            continue
        ax.plot([p[0] for p in points], [p[1] for p in points], label=LABELS.get(key, key),
                color=COLOURS.get(key), linewidth=2 if key in ("drain", "e2e") else 1.4,
                linestyle="-" if key in ("drain", "e2e") else "--")
    count = report.get("settings", {}).get("count", 0)
    ax.set_title(f"Draining an outbox of {count:,} answers (last run)")
    ax.set_xlabel("seconds since the start")
    ax.set_ylabel("answers done")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def storm_plot(report: dict[str, Any], path: Path) -> Path | None:
    """Connection attempts and confirmed answers per second around the broker's kill, per mode."""
    runs = [r for r in report.get("runs", []) if r.get("timeline")]
    if not runs:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), dpi=120, sharex=True)
    for run in runs:
        tl = run["timeline"]
        colour = COLOURS.get(run["mode"])
        # Times relative to the kill, so the modes line up.
        xs = [i - tl["kill_s"] for i in range(len(tl["connection_attempts_per_s"]))]
        top.step(xs, tl["connection_attempts_per_s"], where="post", color=colour, label=run["mode"])
        bottom.step(xs[: len(tl["confirmed_per_s"])], tl["confirmed_per_s"], where="post", color=colour,
                    label=run["mode"])
        for ax in (top, bottom):
            ax.axvline(tl["restart_s"] - tl["kill_s"], color=colour, linestyle=":", linewidth=1)
    for ax in (top, bottom):
        ax.axvline(0, color="black", linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    top.set_ylabel("connection attempts / s")
    bottom.set_ylabel("answers confirmed / s")
    bottom.set_xlabel("seconds since the broker was killed (dotted: kill, restarts)")
    top.set_title(f"Reconnect storm: {report.get('kiosks')} kiosks × {report.get('backlog')} answers")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def draw_all(folder: Path) -> list[Path]:
    """Every plot whose JSON is in ``folder``; returns the files written."""
    made: list[Path] = []
    for name, draw in (("sync_drain", drain_plot), ("storm", storm_plot)):
        source = folder / f"{name}.json"
        if source.exists():
            out = draw(json.loads(source.read_text()), folder / f"{name}.png")
            if out is not None:
                made.append(out)
    return made


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args and args[0] in ("-h", "--help") else 2
    for path in draw_all(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
