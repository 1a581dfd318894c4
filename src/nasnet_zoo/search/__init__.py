"""Cell search: spaces as data, the controller with PPO, random search and regularized evolution, rewards (oracle,
benchmark table, stand-alone children, shared weights), work queues, one journal and resume."""
from __future__ import annotations

from .controller import Controller, ControllerOutput
from .evolution import EvolutionConfig, EvolutionStrategy
from .ppo import PPOConfig, PPOStrategy, PPOTrainer
from .random_search import RandomStrategy
from .rewards import ChildResult, OracleReward
from .runner import SearchRun, make_search, run_search
from .settings import SearchConfig, SearchConfigError, validate_config
from .spaces import NASBench201Cell, NASBench201Space, NASNetSpace, SearchSpace, build_space, genotype_from_dict
from .strategy import Proposal, SearchStrategy
from .table import BenchmarkTable, TableConfig, TableError, TableReward, load_table_reward

__all__ = [
    "BenchmarkTable", "ChildResult", "Controller", "ControllerOutput", "EvolutionConfig", "EvolutionStrategy",
    "NASBench201Cell", "NASBench201Space", "NASNetSpace", "OracleReward", "PPOConfig", "PPOStrategy", "PPOTrainer",
    "Proposal", "RandomStrategy", "SearchConfig", "SearchConfigError", "SearchRun", "SearchSpace",
    "SearchStrategy", "TableConfig", "TableError", "TableReward", "build_space", "genotype_from_dict",
    "load_table_reward", "make_search", "run_search", "validate_config",
]
