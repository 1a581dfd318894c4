"""What a search leaves for people: the best genotypes, reward curves, cell pictures and a printed summary.

Plots need the ``viz`` extra (matplotlib); without it the report keeps the ranking and the summary and says
which pictures it skipped, since a finished search must not fail on its drawings.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..genotypes import NASNET_A, Genotype
from ..utils.extras import MissingExtra, require
from ..utils.io import atomic_path, atomic_write_json, read_jsonl
from ..visualize import draw_genotype
from .journal import JOURNAL_NAME, genotype_key
from .latency import LatencyConfig
from .spaces import genotype_from_dict

TOP_NAME = "top_genotypes.json"
PLOT_NAME = "rewards.png"
PARETO_NAME = "pareto.png"
#: What a latency-aware search journals besides the reward; kept in top_genotypes.json too.
LATENCY_FIELDS = ("accuracy", "latency_ms")


def top_children(records: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The ``k`` best distinct genotypes that trained successfully (duplicates point at their first child).

    A shared-weight search scores a genotype anew (on another validation minibatch) each time it is sampled:
    such a genotype stands at its mean reward over those evaluations (``evaluations``), since its best score
    would favour the genotypes sampled most.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["status"] == "ok":
            groups.setdefault(genotype_key(record["genotype"]), []).append(record)
    distinct = [{**group[0], "reward": float(np.mean([r["reward"] for r in group])), "evaluations": len(group)}
                for group in groups.values()]
    distinct.sort(key=lambda r: (-r["reward"], r["index"]))
    return distinct[:k]


def write_top_genotypes(output_dir: str | Path, records: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """``top_genotypes.json``: a ranked list; each entry's ``genotype`` loads with ``genotype_from_dict``.

    ``info`` keeps what the reward reported beside it (a benchmark table's test accuracy and row, for example).
    """
    top = []
    for rank, record in enumerate(top_children(records, k), start=1):
        genotype = genotype_from_dict({**record["genotype"], "name": f"search-rank{rank}-child{record['index']}"})
        top.append({"rank": rank, "index": record["index"], "reward": record["reward"],
                    **{k: record[k] for k in LATENCY_FIELDS if k in record}, "info": record.get("info", {}),
                    "genotype": genotype.to_dict()})
    atomic_write_json(Path(output_dir) / TOP_NAME, top)
    return top


def _figure(**kwargs: Any) -> Any:
    return require("matplotlib.figure", extra="viz", feature="search plots").Figure(**kwargs)


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    starts = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    return (cumsum[1:] - cumsum[starts]) / (np.arange(1, len(values) + 1) - starts)


def find_runs(root: str | Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every journal under ``root``, labelled by its folder relative to ``root`` and its strategy."""
    root = Path(root)
    runs = []
    for journal in sorted(root.rglob(JOURNAL_NAME)):
        records = read_jsonl(journal)
        if records:
            folder = journal.parent.relative_to(root).as_posix()
            label = f"{records[0].get('strategy', '?')} ({root.resolve().name if folder == '.' else folder})"
            runs.append((label, records))
    return runs


def plot_rewards(root: str | Path, path: str | Path, window: int | None = None) -> Path:
    """Reward against children for every run under ``root``: running mean (solid) and best so far (dashed)."""
    runs = find_runs(root)
    fig = _figure(figsize=(8, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    colors = {}
    for label, records in runs:
        rewards = np.array([r["reward"] for r in records], dtype=float)
        w = window or max(1, min(200, len(rewards) // 10))
        line, = ax.plot(np.arange(1, len(rewards) + 1), running_mean(rewards, w), linewidth=1.6,
                        label=f"{label}: mean of last {w}")
        colors[label] = line.get_color()
        ax.plot(np.arange(1, len(rewards) + 1), np.maximum.accumulate(rewards), linestyle="--", linewidth=1.0,
                color=line.get_color(), label=f"{label}: best so far")
    ax.set_xlabel("children evaluated")
    ax.set_ylabel("reward")
    ax.set_title("Reward against children")
    ax.grid(alpha=0.3)
    if runs:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    return Path(path)


def timed_children(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per distinct genotype with a measured latency: its first child's index and latency, and its
    mean accuracy over its successful evaluations (a shared-weight search scores a genotype again each time
    it is sampled; a proxy search journals repeats as duplicates)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["status"] == "ok" and r.get("latency_ms") is not None:
            groups.setdefault(genotype_key(r["genotype"]), []).append(r)
    return [{**rs[0], "accuracy": float(np.mean([r["accuracy"] for r in rs])), "evaluations": len(rs)}
            for rs in groups.values()]


def pareto_front(latency: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the points no other point dominates (as fast or faster and as accurate or more, one strictly),
    ordered by latency."""
    order = np.lexsort((-accuracy, latency))  # by latency, the most accurate first among equal latencies
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return np.array(front, dtype=int)


def plot_pareto(records: list[dict[str, Any]], path: str | Path, latency: LatencyConfig | None = None) -> Path:
    """Accuracy against measured latency for every timed child, the Pareto front drawn and labelled by child."""
    timed = timed_children(records)
    lat = np.array([r["latency_ms"] for r in timed], dtype=float)
    acc = np.array([r["accuracy"] for r in timed], dtype=float)
    front = pareto_front(lat, acc)
    fig = _figure(figsize=(7, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(lat, acc, s=14, color="0.6", label=f"children ({len(timed)})")
    if len(front):
        ax.step(lat[front], acc[front], where="post", color="tab:red", linewidth=1.2)
        ax.scatter(lat[front], acc[front], s=30, color="tab:red", zorder=3, label=f"Pareto front ({len(front)})")
        for i in front:
            ax.annotate(str(timed[i]["index"]), (lat[i], acc[i]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    if latency is not None and latency.target_ms is not None:
        ax.axvline(latency.target_ms, color="tab:blue", linestyle="--", linewidth=1.0,
                   label=f"target {latency.target_ms:g} ms")
    ax.set_xlabel("latency (ms)" + (f": {latency.conditions()}" if latency is not None else ""), fontsize=8)
    ax.set_ylabel("accuracy (the reward before the latency term)")
    ax.set_title("Accuracy against latency (numbers: child index)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    return Path(path)


def summarize(records: list[dict[str, Any]], top: list[dict[str, Any]]) -> str:
    rewards = np.array([r["reward"] for r in records], dtype=float)
    statuses: dict[str, int] = {}
    for r in records:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    tail = rewards[-min(200, len(rewards)):]
    trained = sum(r["seconds"] for r in records if r["status"] != "duplicate")
    lines = [f"children: {len(records)} ({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))})",
             f"reward: best {rewards.max():.4f}, mean {rewards.mean():.4f}, mean of last {len(tail)} {tail.mean():.4f}",
             f"child time: {trained:.1f} s in total, {trained / max(1, len(records)):.2f} s per child",
             "top genotypes:"]
    lines += [f"  #{t['rank']}: child {t['index']}, reward {t['reward']:.4f}"
              + (f" (accuracy {t['accuracy']:.4f}, {t['latency_ms']:.2f} ms)" if "latency_ms" in t else "")
              + "".join(f", {k} {v:g}" for k, v in t.get("info", {}).items() if isinstance(v, (int, float)))
              + (f": {t['genotype']['arch']}" if "arch" in t["genotype"] else "")
              for t in top[:5]]
    timed = timed_children(records)
    if timed:
        lat = np.array([r["latency_ms"] for r in timed], dtype=float)
        acc = np.array([r["accuracy"] for r in timed], dtype=float)
        front = pareto_front(lat, acc)
        lines.append(f"latency: {lat.min():.2f}-{lat.max():.2f} ms over {len(timed)} children; Pareto front "
                     f"(child: accuracy @ ms): " + ", ".join(f"{timed[i]['index']}: {acc[i]:.4f} @ {lat[i]:.2f}"
                                                            for i in front))
    return "\n".join(lines)


def write_report(output_dir: str | Path, top_k: int = 10, plot_root: str | Path | None = None,
                 latency: LatencyConfig | None = None) -> str:
    """All outputs of a finished (or stopped) search; returns the printed summary.

    ``latency`` (the search's ``latency`` settings) labels the Pareto plot, drawn when children carry latencies.
    """
    out = Path(output_dir)
    records = read_jsonl(out / JOURNAL_NAME)
    if not records:
        raise ValueError(f"{out / JOURNAL_NAME} holds no children yet; nothing to report")
    top = write_top_genotypes(out, records, top_k)
    try:
        plot_rewards(plot_root or out, out / PLOT_NAME)
        if timed_children(records):
            plot_pareto(records, out / PARETO_NAME, latency)
        if top and isinstance(genotype_from_dict(top[0]["genotype"]), Genotype):  # a NAS-Bench-201 cell is its
            for entry in top[:3]:                                                 # arch string in the summary
                draw_genotype(Genotype.from_dict(entry["genotype"]), out / "cells" / f"rank{entry['rank']}.png")
            draw_genotype(NASNET_A, out / "cells" / "nasnet_a.png")
    except MissingExtra as err:
        return f"{summarize(records, top)}\nplots skipped: {err}"
    return summarize(records, top)
