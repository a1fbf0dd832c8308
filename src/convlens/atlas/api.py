"""``convlens.atlas.atlas(folder, model, ...)``: a whole atlas run, from a folder to OUT."""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from convlens.errors import ConvlensError
from convlens.atlas.engine import ModelSpec, Plan, calibrate, list_images, load_spec, run_local
from convlens.atlas.state import State

__all__ = ["atlas", "AtlasResult", "Engine"]

Engine = Literal["local", "dask"]


@dataclass
class AtlasResult:
    """What :func:`atlas` made: ``data`` is the content of ``atlas.json``."""

    data: dict[str, Any]
    state: State
    plan: Plan
    out: Path | None

    def __repr__(self) -> str:
        return (f"AtlasResult({self.data['images']} images, stages "
                f"{[s['name'] for s in self.data['stages']]}, k={self.plan.k}, out={self.out})")


def _as_spec(model: Any, net: str | None, backend: str, seed: int, weights: str,
             size: tuple[int, int] | None) -> ModelSpec | None:
    if isinstance(model, ModelSpec):
        return model
    if net is not None or isinstance(model, (str, os.PathLike)):
        in_shape = (3, *size) if (net is not None and size) else None
        return ModelSpec(model=None if net is not None else os.fspath(model), net=net,
                         backend=backend, seed=seed, weights=weights, in_shape=in_shape)
    return None


def atlas(folder: str | os.PathLike[str], model: Any = None,
          stages: str | Sequence[str] | None = None, k: int = 9, *,
          net: str | None = None, backend: str = "torch", seed: int = 0,
          weights: str = "trained", batch: int = 32, size: tuple[int, int] | None = None,
          engine: Engine = "local", workers: int = 2, scheduler: str | None = None,
          client: Any = None, out: str | os.PathLike[str] | None = None, resume: bool = False,
          checkpoint_every: int | None = None, shard_batches: int | None = None,
          pages: bool = True, page_channels: int | None = 256, progress: bool = True,
          on_batch: Callable[[int, State], None] | None = None,
          _crash_marker: str | None = None) -> AtlasResult:
    """The atlas of ``model`` over every image under ``folder`` (recursively).

    ``model``: a model file or ``zoo:NAME`` (or a :class:`~convlens.atlas.ModelSpec`, a
    :class:`~convlens.LoadedModel`, or a torch/keras model object); or ``net=SPEC`` for a
    toy network (``seed``).  ``weights="random"``: a zoo model untrained.  ``stages``:
    names, kinds or globs (default: :func:`~convlens.atlas.default_stages`).  ``k``: images
    kept per channel.  Images are resized to ``size`` (default: the model's input size,
    else the first image's) and preprocessed as the model expects.

    ``engine="local"`` runs in this process; ``"dask"`` on a ``LocalCluster`` of
    ``workers`` processes, on the scheduler at ``scheduler``, or on ``client`` (a
    ``distributed.Client`` you started).  With ``out``, the running state is checkpointed
    there (every ``checkpoint_every`` batches locally, default 20; shards with Dask,
    default 4) and ``resume=True`` continues an interrupted run; ``atlas.json``, the crops
    and the pages (``pages=True``; ``page_channels`` channels per page, None for all) are
    written there.  ``on_batch(i, state)`` (local engine) runs after each batch.
    """
    from convlens import __version__
    from convlens.capture.files import LoadedModel

    if engine not in ("local", "dask"):
        from convlens.cli.common import did_you_mean

        raise ConvlensError(f"engine {engine!r} is not one of local, dask"
                            f"{did_you_mean(str(engine), ['local', 'dask'])}")
    started = time.time()
    t0 = time.perf_counter()
    root = Path(folder).resolve()
    paths = list_images(root)
    spec = _as_spec(model, net, backend, seed, weights, size)
    if spec is None and model is None:
        raise ConvlensError("atlas() needs a model: a file, zoo:NAME, a LoadedModel, a model "
                            "object, or net=SPEC")
    loaded: tuple[Any, Any] | None = None
    if spec is not None:
        description = spec.describe()
    elif isinstance(model, LoadedModel):
        loaded, description = (model.model, model.preprocess), model.name
    else:
        loaded, description = (model, None), type(model).__name__
    out_dir = Path(out) if out is not None else None
    run: dict[str, Any] = {"engine": engine, "batch": batch, "folder": str(root),
                           "host": platform.node(), "convlens": __version__,
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started))}
    if engine == "local":
        if loaded is None:
            loaded = load_spec(spec)  # type: ignore[arg-type]
        plan = calibrate(*loaded, root, paths, stages, k, batch, size, description)
        t_run = time.perf_counter()
        state = run_local(*loaded, plan, out=out_dir, resume=resume,
                          checkpoint_every=20 if checkpoint_every is None else checkpoint_every,
                          progress=progress, on_batch=on_batch)
        run.update(workers=1)
    else:
        from convlens.atlas.dask_engine import Cluster, calibrate_on, run_dask, ship, start_cluster

        if client is not None:
            cluster = Cluster(client)
            own = False
        else:
            scratch = out_dir / "dask-scratch" if out_dir is not None else None
            cluster = start_cluster(workers, scheduler, local_directory=scratch)
            own = True
        try:
            run.update(cluster_start_s=round(cluster.started_s, 3),
                       scheduler=scheduler or ("client" if not own else "LocalCluster"))
            ref: Any = spec if spec is not None else ship(cluster.client, *loaded)
            plan = calibrate_on(cluster, ref, root, paths, stages, k, batch, size, description)
            t_run = time.perf_counter()
            state, info = run_dask(cluster, ref, plan, out=out_dir, resume=resume,
                                   shard_batches=shard_batches,
                                   checkpoint_every=4 if checkpoint_every is None else checkpoint_every,
                                   progress=progress, crash_marker=_crash_marker)
            run.update(info)
        finally:
            if own:
                cluster.close()
    seconds = time.perf_counter() - t_run
    run.update(seconds=round(seconds, 3), total_seconds=round(time.perf_counter() - t0, 3),
               images_per_s=round(state.images / seconds, 2) if seconds > 0 else None)
    from convlens.atlas.pages import atlas_data, write_crops, write_json, write_pages

    data = atlas_data(state, plan, run)
    if out_dir is not None:
        write_json(data, out_dir)
        if pages:
            if loaded is None:
                loaded = load_spec(spec)  # type: ignore[arg-type]
            crops = write_crops(state, plan, *loaded, out_dir, page_channels)
            write_pages(data, crops, out_dir, page_channels)
    return AtlasResult(data, state, plan, out_dir)
