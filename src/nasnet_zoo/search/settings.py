"""Every setting of a search (``SearchConfig``), its validation and the strategy it asks for.

Kept apart from the search loop (``runner.SearchRun``) and the rewards, so that all of them read the same settings
without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .backends import BACKENDS, check_ray_address
from .child import SEARCH_DATASETS, ChildConfig, check_search_data
from .evolution import EvolutionConfig, EvolutionStrategy
from .latency import LatencyConfig
from .ppo import PPOConfig, PPOStrategy
from .random_search import RandomStrategy
from .spaces import SPACES, SearchSpace, build_space
from .strategy import SearchStrategy
from .supernet import SharedConfig
from .table import TableConfig, load_table_reward

STRATEGIES = ("ppo", "random", "evolution")
REWARDS = ("proxy", "oracle", "shared", "table")
#: Rewards that train NASNet children, so they search the NASNet space only (shared weights exist for both).
NASNET_REWARDS = ("proxy",)
CONFIG_NAME = "config.yaml"


@dataclass
class ControllerConfig:
    """The controller and the NASNet space it samples: blocks per cell, op vocabulary, combiners."""

    num_blocks: int = 5
    ops: str = "nasnet"            # the paper's 13 ops; "enas" = ENAS's 5; or op names separated by commas
    combiners: str = "add,concat"  # "add" alone keeps every state F channels wide (weight sharing, docs/search.md)
    hidden_size: int = 100
    init_range: float = 0.1


@dataclass
class SearchConfig:
    """Every knob of a search; YAML files and ``KEY VALUE`` overrides address these by dotted name."""

    strategy: str = "ppo"
    reward: str = "proxy"
    space: str = "nasnet"        # "nasnet" (the paper's) or "nasbench201" (NAS-Bench-201's cell, for the table)
    data_dir: str = ""
    dataset: str = "cifar10"     # "cifar10" (python pickle layout) or "folder" (train/<class>/*.jpg, val/<class>/)
    children: int = 20000
    seed: int = 0
    backend: str = ""            # "" = the reward's own: local workers (proxy, oracle), this process (shared, table)
    workers: int = 0             # children at once; 0 = one per GPU (local GPUs or the Ray cluster's), else 2
    worker_threads: int = 0      # torch threads per local worker (0 = CPU cores / workers)
    ray_address: str = "local"
    output_dir: str = "runs/search"
    top_k: int = 10
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    table: TableConfig = field(default_factory=TableConfig)
    child: ChildConfig = field(default_factory=ChildConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    shared: SharedConfig = field(default_factory=SharedConfig)


class SearchConfigError(ValueError):
    """A search setting that cannot work; raised before any child is trained."""


def _one_of(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise SearchConfigError(f"unknown {name} {value!r}; expected one of {', '.join(valid)}")


def validate_config(cfg: SearchConfig) -> None:
    """Check everything a search needs (including the data folder and the Ray address) up front."""
    _one_of("strategy", cfg.strategy, STRATEGIES)
    _one_of("reward", cfg.reward, REWARDS)
    _one_of("space", cfg.space, SPACES)
    if cfg.space != "nasnet" and (cfg.reward in NASNET_REWARDS or cfg.latency.enabled):
        what = f"reward {cfg.reward!r}" if cfg.reward in NASNET_REWARDS else "a latency target"
        raise SearchConfigError(f"{what} trains or times NASNet children, so it searches the nasnet space, not "
                                f"{cfg.space!r}: use --space nasnet, or --reward table / oracle / shared with {cfg.space}")
    _one_of("dataset", cfg.dataset, SEARCH_DATASETS)
    if cfg.backend:
        _one_of("backend", cfg.backend, BACKENDS)
    if cfg.reward == "shared" and cfg.backend in ("local", "ray"):
        raise SearchConfigError(f"--reward shared does not use --backend {cfg.backend}: its children share one "
                                "supernet, trained in this process (or data-parallel across torchrun processes), "
                                "so there are no independent children to hand to a work queue; leave --backend out")
    if cfg.children < 1 or cfg.top_k < 1 or cfg.workers < 0 or cfg.worker_threads < 0:
        raise SearchConfigError(f"children and top_k must be >= 1, workers and worker_threads >= 0 (0 = automatic); "
                                f"got {cfg.children}, {cfg.top_k}, {cfg.workers}, {cfg.worker_threads}")
    try:
        space = build_space(cfg.space, cfg.controller.num_blocks, cfg.controller.ops, cfg.controller.combiners)
        cfg.ppo.validate()
        cfg.evolution.validate()
        cfg.child.validate()
        cfg.latency.validate()
        cfg.shared.validate()
        if cfg.reward in ("proxy", "shared"):
            check_search_data(cfg.dataset, cfg.data_dir)
        if cfg.reward == "table":
            load_table_reward(cfg.table, space)
    except ValueError as err:
        raise SearchConfigError(str(err)) from None
    if cfg.backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise SearchConfigError("--backend ray needs the ray package: pip install 'nasnet-zoo[ray]'") from None
        check_ray_address(cfg.ray_address)


def refuse_unless_resume(folder: Path, children: int, resume: bool) -> None:
    """A folder whose journal holds children is continued with ``--resume``, never started over."""
    if children and not resume:
        raise SearchConfigError(f"{folder} already holds a search ({children} children); continue it with "
                                "--resume or choose another --output-dir")


def search_space(cfg: SearchConfig) -> SearchSpace:
    return build_space(cfg.space, cfg.controller.num_blocks, cfg.controller.ops, cfg.controller.combiners)


def build_strategy(cfg: SearchConfig) -> SearchStrategy:
    space = search_space(cfg)
    if cfg.strategy == "random":
        return RandomStrategy(space, cfg.seed)
    if cfg.strategy == "evolution":
        return EvolutionStrategy(space, cfg.evolution, cfg.seed)
    return PPOStrategy(space, cfg.ppo, hidden_size=cfg.controller.hidden_size,
                       init_range=cfg.controller.init_range, seed=cfg.seed)
