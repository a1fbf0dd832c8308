"""The atlas on Dask distributed: the same shard function, many worker processes.

:func:`start_cluster` starts a ``LocalCluster`` (worker processes, one thread each) or
connects to a scheduler (``tcp://host:8786``); :func:`run_dask` cuts the run's batches into
shards, submits :func:`~convlens.atlas.engine.run_shard` for each and merges the shard
states as they complete (``as_completed``), with progress from the futures and a
checkpoint every few shards (the same file as the local engine's, so either engine
resumes the other's run).

Pitfalls handled:

* **One torch thread per worker process.**  A worker plugin calls
  ``torch.set_num_threads`` in each worker process (cores / workers on a local cluster,
  1 on a remote one by default), never in the client.
* **glibc's heap trimming.**  Dask's nanny starts workers with
  ``MALLOC_TRIM_THRESHOLD_=65536``, which hands freed memory back to the OS at once, so
  every forward pass faults in fresh pages again (measured 10-15 % slower in torch).  A
  local cluster's workers get ``MALLOC_TRIM_THRESHOLD_`` 256 MiB and
  ``MALLOC_MMAP_THRESHOLD_`` 64 MiB instead (convlens' own ``retain_freed_memory``
  policy).  These must be in the environment before a worker process starts; Dask sets
  them in the nanny's (the client's) ``os.environ`` to spawn the workers, so they are put
  back as they were when the cluster closes.  Variables the user set win.
* **The workers' scratch folder** is set explicitly (``local_directory``: a temporary
  folder, removed at the end, unless one is given).
* **The model is loaded once per worker**, not per task: a :class:`ModelSpec` is loaded
  inside the worker and cached by spec in a module-level dict of that worker process; a
  model object is sent to every worker once, and so is the plan (the file list), each
  by a worker plugin (:func:`ship`) that the scheduler also installs in a worker that
  joins or is restarted later, and that is removed at the end of the run.  (Not by
  ``scatter(broadcast=True)``: Dask's active memory manager drops the extra copies of
  scattered data within seconds, and a lost worker holding the last one loses it for
  good — the run then fails with "lost scattered data".)
* **Images are read by the workers** from the plan's folder: on a real cluster it must
  be a path every worker sees (a shared or network file system mounted at the same
  place).
* **A lost worker's shard is run again** by Dask on another worker; each shard's state
  is merged exactly once (by shard id), and :func:`~convlens.atlas.state.merge` refuses
  to count a batch twice.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from convlens.errors import ConvlensError
from convlens.atlas.engine import (
    CHECKPOINT, ModelSpec, Plan, Progress, _images_in, _runs, load_spec, resume_state, run_shard,
)
from convlens.atlas.state import State, merge, save_state

__all__ = ["start_cluster", "run_dask", "WORKER_ENV", "import_distributed", "ship", "unship",
           "Shipped"]

WORKER_ENV = {"MALLOC_TRIM_THRESHOLD_": str(256 << 20), "MALLOC_MMAP_THRESHOLD_": str(64 << 20)}
"""glibc settings a local cluster's worker processes start with (see module docs)."""

_MODELS: dict[ModelSpec, tuple[Any, Any]] = {}
"""In a worker process: the models loaded there, by spec (loaded once per worker)."""


def import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConvlensError("engine 'dask' needs Dask distributed, which is not installed; "
                            "install it with pip install 'convlens[dask]'") from None
    return distributed


class _TorchThreads:
    """A worker plugin: ``torch.set_num_threads(n)`` in each worker process."""

    name = "convlens-torch-threads"

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def setup(self, worker: Any) -> None:
        try:
            import torch
        except ImportError:
            return
        torch.set_num_threads(self.n)

    def teardown(self, worker: Any) -> None:
        pass


def _plugin(n: int) -> Any:
    from distributed.diagnostics.plugin import WorkerPlugin

    class TorchThreads(_TorchThreads, WorkerPlugin):
        pass

    return TorchThreads(n)


@contextlib.contextmanager
def _spawn_env(env: dict[str, str]) -> Iterator[None]:
    """Dask's ``pre-spawn-environ`` for the workers started in this block; the client's
    ``os.environ`` is put back afterwards (the nanny writes it there to spawn)."""
    import dask

    names = set(env) | set(dask.config.get("distributed.nanny.pre-spawn-environ") or {})
    saved = {k: os.environ.get(k) for k in names}
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": {
                **(dask.config.get("distributed.nanny.pre-spawn-environ") or {}), **env}}):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Cluster:
    """A client with what it takes to close it: :func:`start_cluster`'s result."""

    def __init__(self, client: Any, cluster: Any = None, scratch: Any = None,
                 env: contextlib.ExitStack | None = None, started_s: float = 0.0) -> None:
        self.client, self.cluster, self.scratch, self._env = client, cluster, scratch, env
        self.started_s = started_s

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"]) if _takes_n_workers() \
            else len(self.client.scheduler_info()["workers"])

    def close(self) -> None:
        try:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()
        finally:
            if self._env is not None:
                self._env.close()
            if self.scratch is not None:
                self.scratch.cleanup()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _takes_n_workers() -> bool:
    import inspect

    from distributed import Client

    return "n_workers" in inspect.signature(Client.scheduler_info).parameters


def start_cluster(workers: int = 2, scheduler: str | None = None, *,
                  local_directory: str | os.PathLike[str] | None = None,
                  torch_threads: int | None = None) -> Cluster:
    """A Dask client: a ``LocalCluster`` of ``workers`` processes (one thread each) when
    ``scheduler`` is None, else a connection to ``scheduler`` (``tcp://host:8786``).  Each
    worker process runs ``torch_threads`` torch threads (default: cores / workers locally,
    1 on a remote cluster)."""
    distributed = import_distributed()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConvlensError(f"workers={workers!r} is not valid; expected a positive number of "
                            "worker processes, e.g. 2")
    t0 = time.perf_counter()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConvlensError(f"cannot reach the Dask scheduler at {scheduler} ({exc}); "
                                "expected an address like tcp://host:8786 of a running "
                                "dask scheduler") from None
        out = Cluster(client, started_s=time.perf_counter() - t0)
        client.register_plugin(_plugin(torch_threads or 1))
        return out
    threads = torch_threads or max(1, (os.cpu_count() or 1) // workers)
    scratch = None
    if local_directory is None:
        scratch = tempfile.TemporaryDirectory(prefix="convlens-dask-")
        local_directory = scratch.name
    Path(local_directory).mkdir(parents=True, exist_ok=True)
    env = contextlib.ExitStack()
    env.enter_context(_spawn_env({**WORKER_ENV, "OMP_NUM_THREADS": str(threads),
                                  "MKL_NUM_THREADS": str(threads)}))
    try:
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True,
            local_directory=str(local_directory), dashboard_address=None,
            silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
        client.register_plugin(_plugin(threads))
    except BaseException:
        env.close()
        if scratch is not None:
            scratch.cleanup()
        raise
    return Cluster(client, cluster, scratch, env, time.perf_counter() - t0)


_SHIPPED: dict[str, Any] = {}
"""In a worker process: the objects shipped to it (:func:`ship`), by token."""


@dataclass(frozen=True)
class Shipped:
    """What a task is given instead of an object shipped to every worker: its token."""

    token: str


class _Carrier:
    """A worker plugin that puts one object into :data:`_SHIPPED` of each worker process
    (and takes it out again when unregistered)."""

    def __init__(self, token: str, payload: Any) -> None:
        self.name, self.payload = token, payload

    def setup(self, worker: Any) -> None:
        _SHIPPED[self.name] = self.payload

    def teardown(self, worker: Any) -> None:
        _SHIPPED.pop(self.name, None)


def ship(client: Any, payload: Any, what: str = "model") -> Shipped:
    """``payload`` on every worker of ``client`` (now and joining later), once; pass the
    returned :class:`Shipped` to the tasks and :func:`unship` it at the end."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class Carrier(_Carrier, WorkerPlugin):
        pass

    token = f"convlens-atlas-{what}-{uuid.uuid4().hex}"
    client.register_plugin(Carrier(token, payload), name=token)
    return Shipped(token)


def unship(client: Any, ref: Any) -> None:
    """Remove what :func:`ship` put on the workers (nothing for anything else)."""
    if isinstance(ref, Shipped):
        with contextlib.suppress(Exception):  # a closing cluster: nothing left to clean
            client.unregister_worker_plugin(ref.token)


def _received(ref: Any) -> Any:
    if isinstance(ref, Shipped):
        if ref.token not in _SHIPPED:
            raise ConvlensError(f"{ref.token} is not on this Dask worker; expected it to be "
                                "installed by the run's worker plugin")
        return _SHIPPED[ref.token]
    return ref


def _worker_model(ref: Any) -> tuple[Any, Any]:
    if isinstance(ref, ModelSpec):
        if ref not in _MODELS:
            _MODELS[ref] = load_spec(ref)
        return _MODELS[ref]
    return _received(ref)


def _shard_task(ref: Any, plan: Any, start: int, stop: int,
                crash_marker: str | None = None) -> State:
    """What a worker runs: one shard.  ``crash_marker`` (tests only): the first worker
    to run a shard while the file does not exist creates it and dies."""
    model, preprocess = _worker_model(ref)
    plan = _received(plan)
    if crash_marker is not None and not os.path.exists(crash_marker):
        Path(crash_marker).touch()
        os._exit(1)
    return run_shard(model, preprocess, plan, start, stop)


def _calibrate_task(ref: Any, *args: Any, **kwargs: Any) -> Plan:
    from convlens.atlas.engine import calibrate

    model, preprocess = _worker_model(ref)
    return calibrate(model, preprocess, *args, **kwargs)


def shards_of(plan: Plan, state: State, shard_batches: int) -> list[tuple[int, int]]:
    """The batches ``state`` does not cover, cut into shards of ``shard_batches``."""
    todo = [i for i in range(plan.batches) if not state.covers(i)]
    out = []
    for a, b in _runs(todo):
        out.extend((s, min(s + shard_batches, b)) for s in range(a, b, shard_batches))
    return out


def run_dask(cluster: Cluster, ref: Any, plan: Plan, *, out: str | os.PathLike[str] | None = None,
             resume: bool = False, shard_batches: int | None = None, checkpoint_every: int = 4,
             progress: bool = True, crash_marker: str | None = None) -> tuple[State, dict[str, Any]]:
    """Run ``plan`` on ``cluster``: ``ref`` is a :class:`ModelSpec` (loaded in each worker)
    or a ``(model, preprocess)`` pair (sent to each worker once).  Returns the merged state
    and facts about the run (workers, shards)."""
    from distributed import as_completed

    client = cluster.client
    workers = max(1, cluster.workers)
    state = resume_state(plan, out, resume) or plan.empty()
    left = plan.batches - state.batches_done()
    if shard_batches is None:
        shard_batches = max(1, min(64, -(-left // (4 * workers))))
    shards = shards_of(plan, state, shard_batches)
    shipped = []
    if isinstance(ref, tuple):  # (model, preprocess): sent to every worker once
        ref = ship(client, ref)
        shipped.append(ref)
    plan_ref = ship(client, plan, "plan")
    shipped.append(plan_ref)
    futures = {}
    for a, b in shards:
        f = client.submit(_shard_task, ref, plan_ref, a, b, crash_marker,
                          key=f"convlens-atlas-{plan.run_id}-{a}-{b}", pure=False)
        futures[f.key] = (f, (a, b))
    bar = Progress(len(plan.paths), _images_in(plan, state), progress)
    ckpt = Path(out, CHECKPOINT) if out is not None else None
    merged: set[tuple[int, int]] = set()
    since = 0
    try:
        for f in as_completed([f for f, _ in futures.values()]):
            shard = futures[f.key][1]
            result = f.result()  # a shard's error is raised here, in the client
            f.release()
            if shard in merged:  # merged once per shard id, whatever Dask re-ran
                continue
            state = merge(state, result)
            merged.add(shard)
            bar.update(_images_in(plan, state))
            since += 1
            if ckpt is not None and checkpoint_every and since >= checkpoint_every:
                save_state(state, ckpt)
                since = 0
    except BaseException:
        for f, _ in futures.values():
            f.cancel()
        if ckpt is not None:
            save_state(state, ckpt)
        raise
    finally:
        bar.close()
        for r in shipped:
            unship(client, r)
    if ckpt is not None:
        save_state(state, ckpt)
    return state, {"workers": workers, "shards": len(shards), "shard_batches": shard_batches}


def calibrate_on(cluster: Cluster, ref: Any, *args: Any, **kwargs: Any) -> Plan:
    """:func:`~convlens.atlas.engine.calibrate` run on a worker (the model is loaded there,
    and stays for the shards)."""
    return cluster.client.submit(_calibrate_task, ref, *args, pure=False, **kwargs).result()
