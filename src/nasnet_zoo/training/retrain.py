"""The paper's last search step: retrain the best K children of a search longer and rank them again."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..config import load_config
from ..utils.io import atomic_write_json
from .config import TrainConfig, recipe_path, shortcut_overrides
from .engine import train
from .genotype_source import ranked_genotypes

RANKING_NAME = "ranking.json"
# Network size when neither the recipe nor the budget gives one: the paper's search children have N = 2 cells per
# stack; 32 base filters is nasnet_a_cifar's width.
DEFAULT_CELLS_PER_STACK, DEFAULT_FILTERS = 2, 32


def retrain_top(source: str | Path, k: int, *, output_dir: str | Path | None = None, recipe: str = "cifar",
                overrides: Sequence[str] = (), **budget: Any) -> list[dict[str, Any]]:
    """Retrain the ``k`` best-rewarded genotypes of a search and return them ranked by retrained top-1.

    ``source`` is a search output folder, its ``journal.jsonl`` or ``top_genotypes.json``. ``budget`` takes the
    CLI's short names (``epochs``, ``max_steps``, ``batch_size``, ``lr``, ``data_dir``, ``cells_per_stack``,
    ``num_conv_filters``, ``device``, ...) on top of ``recipe`` (size defaults: 2 cells per stack, 32 filters);
    ``overrides`` are further ``KEY VALUE`` pairs. Each child trains in ``output_dir/rank_<i>`` (resumable; i is
    its search rank, 1 = the report's best); the ranking, also counted from 1, is written to
    ``output_dir/ranking.json``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    source = Path(source)
    entries = ranked_genotypes(source)[:k]
    out = Path(output_dir) if output_dir else (source if source.is_dir() else source.parent) / "retrain"
    rows = []
    for entry in entries:
        search_rank = entry["rank"]
        run_dir = out / f"rank_{search_rank}"
        genotype_file = run_dir / "genotype.json"
        atomic_write_json(genotype_file, {"genotype": entry["genotype"].to_dict(), "reward": entry["reward"]})
        cfg = load_config(TrainConfig(), recipe_path(recipe), [
            *shortcut_overrides(budget), *overrides, "model.genotype", str(genotype_file), "model.rank", "1",
            "output_dir", str(run_dir)])
        cfg.model.cells_per_stack = cfg.model.cells_per_stack or DEFAULT_CELLS_PER_STACK
        cfg.model.num_conv_filters = cfg.model.num_conv_filters or DEFAULT_FILTERS
        result = train(cfg, resume=True)
        rows.append({"search_rank": search_rank, "search_reward": entry["reward"], "top1": result["top1"],
                     "params": result["params"], "output_dir": str(run_dir),
                     "genotype": entry["genotype"].to_dict()})
    rows.sort(key=lambda r: (-r["top1"], r["search_rank"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    atomic_write_json(out / RANKING_NAME, rows)
    return rows


def format_ranking(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``retrain_top``'s result that ends by naming the winning cell."""
    def reward(r: dict[str, Any]) -> str:
        return "-" if r["search_reward"] is None else f"{r['search_reward']:.4f}"
    lines = [f"{'rank':>4}  {'search rank':>11}  {'search reward':>13}  {'retrained top-1':>15}  {'params':>9}  run",
             *(f"{r['rank']:>4}  {r['search_rank']:>11}  {reward(r):>13}  {r['top1']:>14.2f}%  "
               f"{r['params']:>9,}  {r['output_dir']}" for r in rows)]
    best = rows[0]
    lines.append(f"winner: the search's rank-{best['search_rank']} cell (reward {reward(best)}) "
                 f"retrains to {best['top1']:.2f}% top-1 ({best['output_dir']})")
    return "\n".join(lines)
