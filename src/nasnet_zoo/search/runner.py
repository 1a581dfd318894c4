"""The one search loop: propose children, hand them to a backend, journal what finishes, update the policy.

Every reward runs here. A reward that trains (the shared-weight supernet, ``shared.SharedWeightEvaluator``) has a
training hook: before each round of children the loop lets it train, then checkpoints its state with the search.

Resume contract: the journal is the record of finished children and the checkpoint records how many of them
the strategy has absorbed; on ``resume`` the rest are replayed. The checkpoint is written after a policy update
at most every ``STATE_PERIOD_S`` seconds (and when the search ends): the replay is exact, so a rarer checkpoint
costs a resume only replay time, while a search whose rewards take milliseconds (a benchmark table) is not
spent writing checkpoints; a training reward's state is checkpointed after each of its rounds too, and training
goes on from there (its journaled rewards are replayed, not recomputed). Children in flight at a kill were never
journaled, so they are simply proposed again: none is lost or counted twice, and the final count is exact.
"""
from __future__ import annotations

import math
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..config import dump_config
from ..utils.metrics import MetricsLogger
from ..utils.run_lock import RunLock, lock_run_folder
from ..utils.distributed import DistInfo, init_distributed
from .backends import Backend, Evaluator, InlineBackend, LocalBackend, RayBackend, Task, gpu_devices
from .child import ProxyData, ProxyReward, check_search_data
from .journal import JOURNAL_NAME, Journal, child_record, genotype_key
from .latency import LatencyObjective
from .rewards import ChildResult, OracleReward
from .settings import (CONFIG_NAME, SearchConfig, SearchConfigError, build_strategy, refuse_unless_resume,
                       search_space, validate_config)
from .shared import SharedWeightEvaluator, supernet_state_of
from .state import STATE_NAME, SearchStateError, load_search_state, rebuild_search_state, save_search_state
from .strategy import Proposal, SearchStrategy
from .table import load_table_reward

#: Seconds between search checkpoints after policy updates (the journal replay covers what lies between).
STATE_PERIOD_S = 10.0


def build_evaluator(cfg: SearchConfig, device: torch.device | str = "cpu", info: DistInfo = DistInfo()) -> Evaluator:
    """The reward of ``cfg``; ``device`` and ``info`` place the shared supernet (the other rewards pick their own)."""
    if cfg.reward == "oracle":
        return OracleReward(search_space(cfg), cfg.seed)
    if cfg.reward == "table":
        return load_table_reward(cfg.table, search_space(cfg))
    data_dir = check_search_data(cfg.dataset, cfg.data_dir)
    if cfg.reward == "shared":
        evaluator = SharedWeightEvaluator(cfg, ProxyData.load(data_dir, cfg.child, dataset=cfg.dataset), device, info)
        if cfg.shared.init_from:
            try:
                evaluator.load_state_dict(supernet_state_of(cfg.shared.init_from), weights_only=True)
            except (ValueError, SearchStateError) as err:
                raise SearchConfigError(f"shared.init_from: {err}") from None
        return evaluator
    return ProxyReward(data_dir, cfg.child, cfg.dataset)


def build_backend(cfg: SearchConfig, evaluator: Evaluator, strategy: SearchStrategy) -> Backend:
    if cfg.backend == "inline" or (not cfg.backend and cfg.reward in ("table", "shared")):
        return InlineBackend(evaluator, capacity=strategy.batch)
    if cfg.backend in ("local", ""):
        return LocalBackend(evaluator, cfg.workers or len(gpu_devices()) or 2, cfg.worker_threads or None)
    return RayBackend(evaluator, cfg.workers or None, cfg.ray_address)


@dataclass
class _InFlight:
    proposal: Proposal
    key: str
    waiters: list[Proposal] = field(default_factory=list)  # the same genotype proposed again meanwhile


class SearchRun:
    """One search in one output folder; ``run()`` goes until the journal holds ``children`` children."""

    def __init__(self, cfg: SearchConfig, resume: bool = False, progress: bool = True,
                 metrics: bool = True) -> None:
        validate_config(cfg)
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        # torchrun: every process runs this loop on the same children; rank 0 alone writes the folder
        self.info, device = init_distributed(cfg.shared.device) if cfg.reward == "shared" else (DistInfo(), "cpu")
        self.progress = progress and self.info.is_main
        self.lock, self.journal = self._lock_and_open_journal(resume)  # the lock is released when run() ends
        try:
            self._open(resume, metrics, device)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, resume: bool, metrics: bool, device: torch.device | str) -> None:
        cfg = self.cfg
        self.strategy = build_strategy(cfg)
        self.evaluator = build_evaluator(cfg, device, self.info)
        self.trainer = self.evaluator if isinstance(self.evaluator, SharedWeightEvaluator) else None
        state = self._resume_state() if resume else None
        self.resumes = state["resumes"] + 1 if state else int(resume)
        if state:
            self.strategy.load_state_dict(state["strategy"])
            self._restore_evaluator(state)
        if self.resumes:  # a fresh sampling stream, so the children lost in flight are not simply re-drawn
            self.strategy.reseed(cfg.seed + 7919 * self.resumes)
        self._replay_from = state["observed"] if state else 0
        # latencies already journaled are reused, so a resumed search measures only new genotypes
        self.latency = LatencyObjective(cfg.latency, self.journal.records) if cfg.latency.enabled else None
        # metrics off: journal and state only
        self.metrics = MetricsLogger(self.out, step_key="child", enabled=metrics and self.info.is_main)
        self._state_saved_at = -math.inf  # the first policy update is checkpointed at once
        if self.info.is_main:
            dump_config(cfg, self.out / CONFIG_NAME)

    def _restore_evaluator(self, state: dict[str, Any]) -> None:
        """Shared weights go on from the checkpoint; a checkpoint of the other kind is refused."""
        if ("evaluator" in state) != (self.trainer is not None):
            held = "a shared-weight search" if "evaluator" in state else "a search without shared weights"
            fix = "resume it with --reward shared" if "evaluator" in state else "start a new --output-dir"
            raise SearchConfigError(f"{self.out} holds {held}; it cannot be resumed with reward "
                                    f"{self.cfg.reward!r}: {fix}")
        if self.trainer is not None:
            try:
                self.trainer.load_state_dict(state["evaluator"])
            except ValueError as err:
                raise SearchConfigError(f"{self.out}: {err}; resume with the search's own settings") from None

    def _save_state(self, observed: int) -> None:
        if self.info.is_main:
            save_search_state(self.out / STATE_NAME, self.strategy.state_dict(), observed, self.resumes,
                              evaluator=self.trainer.state_dict() if self.trainer is not None else None)
        self._state_saved_at = time.monotonic()

    def _lock_and_open_journal(self, resume: bool) -> tuple[RunLock, Journal]:
        """One writer per folder: take the folder's lock (or raise RunFolderBusy) before reading the journal."""
        lock = lock_run_folder(self.out, enabled=self.info.is_main)
        try:
            journal = Journal(self.out / JOURNAL_NAME, write=self.info.is_main)
            refuse_unless_resume(self.out, len(journal), resume)
        except BaseException:
            lock.release()
            raise
        return lock, journal

    def _resume_state(self) -> dict[str, Any] | None:
        """The saved strategy state; when it is missing or unreadable, the state rebuilt from the journal."""
        path = self.out / STATE_NAME
        try:
            state = load_search_state(path)
        except SearchStateError as err:
            problem = str(err)
        else:
            if state is not None or not len(self.journal):
                return state
            problem = f"{path} does not exist"
        state = rebuild_search_state(self.strategy, self.journal.records)
        if self.trainer is not None:  # shared weights cannot be replayed: they start again
            state["evaluator"] = self.trainer.state_dict()
        if self.info.is_main:
            save_search_state(path, state["strategy"], state["observed"], state["resumes"], state.get("evaluator"))
            print(f"--resume: {problem}; rebuilt the search state from the journal instead: replayed its "
                  f"{state['observed']} children into a fresh {self.cfg.strategy} strategy (seed {self.cfg.seed}), "
                  f"{state['updates']} policy updates" + (", shared weights trained again from the start"
                                                          if self.trainer is not None else "")
                  + f", and saved it as {path}", file=sys.stderr, flush=True)
        return state

    def _observe(self, record: dict[str, Any]) -> None:
        start = time.perf_counter()
        stats = self.strategy.observe(tuple(record["decisions"]), record["log_prob"], record["reward"])
        if stats is not None:
            if time.monotonic() - self._state_saved_at >= STATE_PERIOD_S:
                self._save_state(record["index"] + 1)
            self.metrics.log(child=record["index"] + 1, **{f"controller/{k}": v for k, v in stats.items()})
        self.controller_seconds += time.perf_counter() - start

    def _finish(self, proposal: Proposal, key: str, result: ChildResult, *, worker: str, attempts: int,
                duplicate_of: int | None = None, scored: dict[str, Any] | None = None) -> dict[str, Any]:
        if scored is None and self.latency is not None and result.status == "ok":
            tic = time.perf_counter()
            scored = self._latency_score(proposal, result.reward)  # accuracy, latency_ms, reward
            self.latency_seconds += time.perf_counter() - tic
        record = child_record(proposal, result, strategy=self.cfg.strategy, worker=worker, attempts=attempts,
                              session=self.resumes)
        if duplicate_of is not None:
            record["duplicate_of"] = duplicate_of
        if scored:
            record |= scored
        record = self.journal.append(record, key)
        self._observe(record)
        self.best = max(self.best, record["reward"])
        self.metrics.log(child=record["index"] + 1, reward=record["reward"], best_reward=self.best,
                         seconds=record["seconds"], failed=int(record["status"] not in ("ok", "duplicate")))
        self.bar.update(1)
        self.bar.set_postfix(best=f"{self.best:.3f}", last=f"{record['reward']:.3f}")
        return record

    def _latency_score(self, proposal: Proposal, accuracy: float) -> dict[str, float]:
        """Rank 0 times the child (cached per genotype); under torchrun every process gets its numbers."""
        scored = [self.latency.score(proposal.genotype, accuracy) if self.info.is_main else None]  # type: ignore[union-attr]
        if self.info.distributed:
            torch.distributed.broadcast_object_list(scored, src=0)
        return scored[0]  # type: ignore[return-value]

    def _reuse(self, proposal: Proposal, key: str, earlier: dict[str, Any]) -> None:
        result = ChildResult(earlier["reward"], "duplicate", f"same genotype as child {earlier['index']}", 0.0,
                             info=earlier.get("info", {}))
        scored = {k: earlier[k] for k in ("accuracy", "latency_ms") if k in earlier}
        self._finish(proposal, key, result, worker="cache", attempts=0, duplicate_of=earlier["index"], scored=scored)

    def run(self) -> dict[str, Any]:
        """Search until the journal holds ``children`` children; returns timing and the best reward.

        The controller is a 100-unit LSTM: extra intra-op threads only add synchronization (20x slower on a
        busy 2-core machine), so this process uses one thread while it runs (``shared.threads`` when it trains a
        supernet, 0: torch's default). Children train in their workers.
        """
        threads = torch.get_num_threads()
        own = self.cfg.shared.threads if self.trainer is not None else 1
        if own:
            torch.set_num_threads(own)
        try:
            return self._run()
        finally:
            torch.set_num_threads(threads)
            self.lock.release()

    def _run(self) -> dict[str, Any]:
        cfg = self.cfg
        start = time.perf_counter()
        self.controller_seconds = 0.0
        self.latency_seconds = 0.0
        for record in self.journal.records[self._replay_from:]:  # finished after the last checkpoint
            self._observe(record)
        self.best = max((r["reward"] for r in self.journal.records), default=0.0)
        self.bar = tqdm(total=cfg.children, initial=len(self.journal), desc=f"search {cfg.strategy}/{cfg.reward}",
                        disable=not self.progress, unit="child")
        backend = build_backend(cfg, self.evaluator, self.strategy)
        self._in_flight: dict[int, _InFlight] = {}
        self._by_key: dict[str, int] = {}
        self._next_task = 0
        self.train_seconds = 0.0
        try:
            while len(self.journal) < cfg.children:
                if self.trainer is not None and not self._in_flight \
                        and len(self.journal) >= self.trainer.next_round_at():
                    self._train_round()
                tic = time.perf_counter()
                proposals = self.strategy.propose(self._wanted(backend.capacity))
                self.controller_seconds += time.perf_counter() - tic
                for proposal in proposals:
                    self._route(proposal, backend)
                for outcome in backend.wait(timeout=1.0 if self._in_flight else 0.0):
                    flight = self._in_flight.pop(outcome.task_id)
                    del self._by_key[flight.key]
                    first = self._finish(flight.proposal, flight.key, outcome.result, worker=outcome.worker,
                                         attempts=outcome.attempts)
                    for waiter in flight.waiters:
                        self._reuse(waiter, flight.key, first)
        finally:
            backend.close()
            self.bar.close()
        self._save_state(len(self.journal))
        return self._summary(time.perf_counter() - start)

    def _train_round(self) -> None:
        """The training reward's round (shared weights), then a checkpoint: a resume goes on from this round."""
        tic = time.perf_counter()
        stats = self.trainer.train_round(self.strategy)  # type: ignore[union-attr]
        self.train_seconds += time.perf_counter() - tic
        self._save_state(len(self.journal))
        self.metrics.log(child=len(self.journal), **stats)

    def _wanted(self, capacity: int) -> int:
        """How many children to propose now: free backend slots, the search's remaining budget and, with a
        training reward, no child of the next round before its training."""
        pending = sum(1 + len(f.waiters) for f in self._in_flight.values())
        want = min(capacity - len(self._in_flight), self.cfg.children - len(self.journal) - pending)
        if self.trainer is not None:
            want = min(want, self.trainer.next_round_at() - len(self.journal) - pending)
        return max(want, 0)

    def _route(self, proposal: Proposal, backend: Backend) -> None:
        """Reuse a journaled reward that still stands, wait on the same genotype in flight, or submit it."""
        key = genotype_key(proposal.genotype)
        earlier = self.journal.lookup(key)
        if earlier is not None and (self.trainer is None or self.trainer.reusable(earlier)):
            self._reuse(proposal, key, earlier)
        elif key in self._by_key:
            self._in_flight[self._by_key[key]].waiters.append(proposal)
        else:
            seed = zlib.crc32(key.encode()) ^ self.cfg.seed
            backend.submit(Task(self._next_task, proposal.genotype.to_dict(), seed))
            self._in_flight[self._next_task], self._by_key[key] = _InFlight(proposal, key), self._next_task
            self._next_task += 1

    def _summary(self, wall: float) -> dict[str, Any]:
        summary = {"children": len(self.journal), "wall_seconds": wall, "controller_seconds": self.controller_seconds,
                   "controller_overhead_pct": 100.0 * self.controller_seconds / wall if wall else 0.0,
                   "children_per_hour": 3600 * len(self.journal) / wall if wall else 0.0, "best_reward": self.best}
        if self.trainer is not None:
            summary |= {"train_steps": self.trainer.step, "train_seconds": self.train_seconds,
                        "rounds": self.trainer.rounds, "processes": self.info.world_size}
        if self.latency is not None:
            summary |= {"latency_seconds": self.latency_seconds, "latencies_measured": self.latency.measured}
        self.metrics.log(child=len(self.journal), **{f"summary/{k}": v for k, v in summary.items()})
        self.metrics.close()
        return summary


def make_search(cfg: SearchConfig, resume: bool = False, progress: bool = True) -> SearchRun:
    """The search ``cfg`` describes, ready to ``run()``."""
    return SearchRun(cfg, resume=resume, progress=progress)


def run_search(cfg: SearchConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run (or with ``resume`` continue) the search ``cfg`` describes; returns its summary."""
    return make_search(cfg, resume=resume, progress=progress).run()
