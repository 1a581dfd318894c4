"""Where children are evaluated: in-process, in local worker processes, or on a Ray cluster.

Every backend is an asynchronous work queue: ``submit`` tasks, ``wait`` for whichever finish first. Workers
take the next child as soon as they are free, one child per GPU where GPUs exist. A worker that dies while
evaluating a child gets that child retried once (on a fresh worker); a second death gives reward 0.
"""
from __future__ import annotations

import collections
import multiprocessing as mp
import os
import socket
import time
import traceback
import uuid
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_connections
from typing import Any, Callable, Protocol

import torch

from .rewards import ChildResult
from .spaces import genotype_from_dict

#: ``evaluator(genotype, seed=, device=) -> ChildResult``; must be picklable for process and Ray backends.
Evaluator = Callable[..., ChildResult]
BACKENDS = ("inline", "local", "ray")
MAX_ATTEMPTS = 2  # the first try and one retry after a worker death


@dataclass
class Task:
    task_id: int
    genotype: dict[str, Any]
    seed: int
    attempt: int = 1


@dataclass
class Outcome:
    task_id: int
    result: ChildResult
    worker: str
    attempts: int


class Backend(Protocol):
    capacity: int

    def submit(self, task: Task) -> None: ...

    def wait(self, timeout: float) -> list[Outcome]: ...

    def close(self) -> None: ...


def evaluate_task(evaluator: Evaluator, task: Task, device: str) -> ChildResult:
    """Run one child; a Python error inside it becomes reward 0 with the traceback's last line as the reason."""
    start = time.perf_counter()
    try:
        return evaluator(genotype_from_dict(task.genotype), seed=task.seed, device=device)
    except Exception as err:  # noqa: BLE001 - one broken child must not stop the search
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        return ChildResult(0.0, "error", last, time.perf_counter() - start)


def _died(task: Task, worker: str, why: str) -> Outcome:
    return Outcome(task.task_id, ChildResult(0.0, "worker_died", f"{why} (tried {task.attempt} times)"), worker,
                   task.attempt)


def gpu_devices() -> list[str]:
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


class InlineBackend:
    """Evaluates in the calling process: for the oracle reward, where a child takes microseconds."""

    def __init__(self, evaluator: Evaluator, capacity: int = 20) -> None:
        self.evaluator = evaluator
        self.capacity = capacity
        self.device = (gpu_devices() or ["cpu"])[0]
        self._done: list[Outcome] = []

    def submit(self, task: Task) -> None:
        self._done.append(Outcome(task.task_id, evaluate_task(self.evaluator, task, self.device), "inline", 1))

    def wait(self, timeout: float) -> list[Outcome]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        pass


def _worker_main(name: str, evaluator: Evaluator, tasks: Connection, results: Connection, device: str,
                 threads: int) -> None:
    torch.set_num_threads(threads)
    parent = os.getppid()
    while os.getppid() == parent:  # an orphan exits instead of waiting forever (a dead search also closes tasks)
        if not tasks.poll(1.0):
            continue
        try:
            task = tasks.recv()
        except EOFError:
            return
        if task is None:
            return
        results.send((task.task_id, name, asdict(evaluate_task(evaluator, task, device))))


@dataclass
class _Worker:
    name: str
    process: mp.process.BaseProcess
    tasks: Connection
    results: Connection
    device: str
    task: Task | None = None


class LocalBackend:
    """N worker processes on this machine, each pulling one child at a time (one per GPU when GPUs exist).

    Each worker has its own pipes (no lock shared between processes), so a worker killed at any instant,
    even mid-send, cannot block the others.
    """

    def __init__(self, evaluator: Evaluator, workers: int, threads_per_worker: int | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.evaluator = evaluator
        self.capacity = workers
        self.devices = gpu_devices()
        self.threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        # A fork server that has imported the child code once: fresh workers start in a fraction of a second,
        # and none inherits the parent's threads or CUDA state (which plain fork would).
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["nasnet_zoo.search.child"])
        self._pending: collections.deque[Task] = collections.deque()
        self._workers: list[_Worker] = []
        self._spawned = 0
        for slot in range(workers):
            self._workers.append(self._spawn(slot))

    def _spawn(self, slot: int) -> _Worker:
        name = f"local-{self._spawned}"
        self._spawned += 1
        device = self.devices[slot % len(self.devices)] if self.devices else "cpu"
        task_reader, task_writer = self._ctx.Pipe(duplex=False)
        result_reader, result_writer = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(target=_worker_main, name=name, daemon=True,
                                    args=(name, self.evaluator, task_reader, result_writer, device, self.threads))
        process.start()
        task_reader.close()
        result_writer.close()
        return _Worker(name, process, task_writer, result_reader, device)

    def submit(self, task: Task) -> None:
        self._pending.append(task)
        self._dispatch()

    def _dispatch(self) -> None:
        for worker in self._workers:
            if worker.task is None and self._pending and worker.process.is_alive():
                worker.task = self._pending.popleft()
                worker.tasks.send(worker.task)

    def wait(self, timeout: float) -> list[Outcome]:
        dead = [w for w in self._workers if not w.process.is_alive()]  # before draining: their results are sent
        outcomes = self._drain(timeout if not dead else 0.0)
        for worker in dead:
            slot = self._workers.index(worker)
            task = worker.task
            worker.tasks.close()
            worker.results.close()
            self._workers[slot] = self._spawn(slot)
            if task is None:
                continue
            why = f"worker {worker.name} exited with code {worker.process.exitcode}"
            if task.attempt >= MAX_ATTEMPTS:
                outcomes.append(_died(task, worker.name, why))
            else:
                self._pending.appendleft(Task(task.task_id, task.genotype, task.seed, task.attempt + 1))
        self._dispatch()
        return outcomes

    def _drain(self, timeout: float) -> list[Outcome]:
        outcomes = []
        busy = {w.results: w for w in self._workers if w.task is not None}
        while busy:
            ready = wait_for_connections(list(busy), timeout)
            if not ready:
                break
            for conn in ready:
                worker = busy.pop(conn)
                try:
                    task_id, name, result = conn.recv()
                except EOFError:  # died without an answer: wait() retries its task
                    continue
                outcomes.append(Outcome(task_id, ChildResult(**result), name, worker.task.attempt))
                worker.task = None
            timeout = 0.0
        return outcomes

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.tasks.send(None)
            except OSError:
                pass
        for worker in self._workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join()
            worker.tasks.close()
            worker.results.close()


_RAY_EVALUATORS: dict[str, Evaluator] = {}


def _ray_evaluate(token: str, evaluator: Evaluator, task: Task) -> dict[str, Any]:
    # Keep one evaluator per worker process so that its loaded data serves every later child there.
    cached = _RAY_EVALUATORS.setdefault(token, evaluator)
    import ray
    gpu_ids = ray.get_gpu_ids()
    device = "cuda:0" if gpu_ids and torch.cuda.is_available() else "cpu"
    return asdict(evaluate_task(cached, task, device))


class RayError(RuntimeError):
    """A Ray cluster that cannot be reached."""


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast (before any work) when an explicit ``host:port`` Ray address does not answer."""
    if address in ("", "local", "auto"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayError(f"Ray address {address!r} is not 'host:port', 'ray://host:port', 'auto' or 'local'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise RayError(f"Ray address {address!r} does not answer ({err}); start a cluster with "
                       "'ray start --head' there, or use --ray-address local for a Ray on this machine") from None


class RayBackend:
    """Children as Ray tasks on an existing cluster (``address``) or on a local Ray ('local').

    ``workers`` children run at once; ``None`` means one per GPU of the cluster (2 on a cluster without GPUs).
    """

    def __init__(self, evaluator: Evaluator, workers: int | None, address: str = "local") -> None:
        import ray

        check_ray_address(address)
        self._ray = ray
        if not ray.is_initialized():
            try:
                if address in ("", "local"):
                    ray.init(num_cpus=workers or 2, include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(address=address, log_to_driver=False)
            except ConnectionError as err:
                raise RayError(f"cannot connect to Ray at {address!r}: {err}; start one with 'ray start --head' "
                               "or use --ray-address local") from None
        gpus = int(ray.cluster_resources().get("GPU", 0))
        self.capacity = min(workers or gpus, gpus) if gpus else workers or 2
        self._remote = ray.remote(_ray_evaluate).options(num_cpus=1, num_gpus=1 if gpus else 0, max_retries=0)
        self._evaluator = ray.put(evaluator)
        self._token = uuid.uuid4().hex
        self._running: dict[Any, Task] = {}

    def submit(self, task: Task) -> None:
        self._running[self._remote.remote(self._token, self._evaluator, task)] = task

    def wait(self, timeout: float) -> list[Outcome]:
        ray = self._ray
        if not self._running:
            return []
        first, rest = ray.wait(list(self._running), num_returns=1, timeout=timeout)
        ready = first + (ray.wait(rest, num_returns=len(rest), timeout=0)[0] if first and rest else [])
        outcomes = []
        for ref in ready:
            task = self._running.pop(ref)
            try:
                outcomes.append(Outcome(task.task_id, ChildResult(**ray.get(ref)), "ray", task.attempt))
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.RayTaskError) as err:
                if task.attempt >= MAX_ATTEMPTS:
                    outcomes.append(_died(task, "ray", f"Ray worker failed: {type(err).__name__}"))
                else:
                    self.submit(Task(task.task_id, task.genotype, task.seed, task.attempt + 1))
        return outcomes

    def close(self) -> None:
        for ref in self._running:
            self._ray.cancel(ref, force=True)
        self._running.clear()
        self._ray.shutdown()
