"""The NASNet cell search: controller, PPO, random baseline, child training, work queues, journal and resume."""
from __future__ import annotations

from .controller import Controller, ControllerOutput
from .ppo import PPOConfig, PPOStrategy, PPOTrainer
from .random_search import RandomStrategy
from .rewards import ChildResult, OracleReward
from .runner import SearchRun, make_search, run_search
from .settings import SearchConfig, SearchConfigError, validate_config
from .space import SearchSpace
from .strategy import Proposal, SearchStrategy

__all__ = [
    "ChildResult", "Controller", "ControllerOutput", "OracleReward", "PPOConfig", "PPOStrategy", "PPOTrainer",
    "Proposal", "RandomStrategy", "SearchConfig", "SearchConfigError", "SearchRun", "SearchSpace",
    "SearchStrategy", "make_search", "run_search", "validate_config",
]
