"""``convlens.atlas.atlas(folder, model, ...)``: a whole atlas run, from a folder to OUT."""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from convlens.errors import ConvlensError
from convlens.atlas.engine import ModelSpec, Plan, calibrate, list_images, load_spec, run_local
from convlens.atlas.state import State

__all__ = ["atlas", "load", "AtlasResult", "Engine"]

Engine = Literal["local", "dask"]


@dataclass
class AtlasResult:
    """What :func:`atlas` made (or :func:`load` read back): ``data`` is the content of
    ``atlas.json``; ``state`` the running state (``None`` when a loaded folder has no
    ``atlas-state.npz``); ``plan`` the run's plan (``None`` for a loaded atlas); ``out`` the
    folder written.  In a notebook it shows itself (:meth:`to_html`)."""

    data: dict[str, Any]
    state: State | None
    plan: Plan | None
    out: Path | None
    _memory: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)
    """Pictures kept in memory by their path relative to OUT (a run without ``out``)."""
    _source: Callable[[], tuple[Any, Any]] | None = field(default=None, repr=False, compare=False)
    """Gives ``(model, preprocess)`` to cut crops on demand when none were written."""
    _crops_for: int = field(default=0, repr=False, compare=False)

    def __repr__(self) -> str:
        return (f"AtlasResult({self.data['images']} images, stages "
                f"{[s['name'] for s in self.data['stages']]}, k={self.data['k']}, out={self.out})")

    def picture(self, path: str) -> bytes | None:
        """The PNG bytes of ``path`` relative to OUT (``crops/...``, ``maximize/...``):
        from the folder, else from memory; None when there is none."""
        if self.out is not None:
            f = Path(self.out, path)
            if f.is_file():
                return f.read_bytes()
        return self._memory.get(path)

    def _cut_crops(self, channels: int) -> None:
        """Crops of channels ``0 .. channels - 1`` into memory when no folder has them."""
        if self._source is None or self.state is None or self.plan is None or \
                channels <= self._crops_for:
            return
        from convlens.atlas.pages import crop_path, make_crops
        from convlens.display.embed import png_bytes

        model, preprocess = self._source()
        for key, pic in make_crops(self.state, self.plan, model, preprocess, channels):
            rel = crop_path(*key)
            if self.picture(rel) is None:
                self._memory[rel] = png_bytes(pic)
        self._crops_for = channels

    def to_html(self, first: int = 4, limit: int = 16, thumb: int = 48) -> str:
        """The notebook view: a summary, then per stage the top-k crops of the first
        ``first`` channels (with their activation maximisation, when made) and channels up
        to ``limit`` behind "show all"; pictures shrunk to ``thumb`` px, as ``data:`` URIs."""
        from convlens.atlas.notebook import atlas_html
        from convlens.render.resolve import check_int

        first = check_int(first, "first", 1)
        limit = check_int(limit, "limit", 1)
        thumb = check_int(thumb, "thumb", 8)
        self._cut_crops(limit)
        return atlas_html(self.data, self.picture, first, limit, thumb,
                          source=f"from {self.out}" if self.out is not None else "")

    def _repr_html_(self) -> str:
        return self.to_html()


def load(out: str | os.PathLike[str]) -> AtlasResult:
    """The atlas an earlier run wrote to ``out`` (its ``atlas.json``, crops and
    maximisation images, and its running state when ``atlas-state.npz`` is there), e.g. to
    show in a notebook an atlas computed on a cluster.  ``plan`` is ``None``."""
    import json

    from convlens.atlas.engine import CHECKPOINT
    from convlens.atlas.pages import FORMAT
    from convlens.atlas.state import load_state

    folder = Path(out)
    path = folder / "atlas.json"
    if not path.is_file():
        raise ConvlensError(f"{folder}: no atlas.json there; expected the output folder of "
                            "an atlas run (convlens atlas ... -o OUT)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConvlensError(f"{path}: not readable as JSON ({exc}); expected the atlas.json "
                            "an atlas run wrote") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "stages" not in data:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ConvlensError(f"{path}: atlas format {got!r}; expected {FORMAT} (written by "
                            "this version of convlens) — run the atlas again")
    state = None
    if (folder / CHECKPOINT).is_file():
        st = load_state(folder / CHECKPOINT)
        if list(st.stages) == [s["name"] for s in data["stages"]] and st.k == data["k"]:
            state = st
    return AtlasResult(data, state, None, folder)


def _as_spec(model: Any, net: str | None, backend: str, seed: int, weights: str,
             size: tuple[int, int] | None, changes: tuple[tuple[str, Any], ...],
             weights_file: str | None, trust_model_code: bool) -> ModelSpec | None:
    if isinstance(model, ModelSpec):
        return model
    if net is not None or isinstance(model, (str, os.PathLike)):
        in_shape = (3, *size) if (net is not None and size) else None
        return ModelSpec(model=None if net is not None else os.fspath(model), net=net,
                         backend=backend, seed=seed, weights=weights, in_shape=in_shape,
                         weights_file=os.fspath(weights_file) if weights_file else None,
                         trust_model_code=trust_model_code, preprocess=changes)
    return None


def atlas(folder: str | os.PathLike[str], model: Any = None,
          stages: str | Sequence[str] | None = None, k: int = 9, *,
          net: str | None = None, backend: str = "torch", seed: int = 0,
          weights: str = "trained", batch: int = 32, size: tuple[int, int] | None = None,
          engine: Engine = "local", workers: int = 2, scheduler: str | None = None,
          client: Any = None, out: str | os.PathLike[str] | None = None, resume: bool = False,
          checkpoint_every: int | None = None, shard_batches: int | None = None,
          pages: bool = True, page_channels: int | None = 256, progress: bool = True,
          maximize: bool = False, maximize_steps: int = 64,
          maximize_size: int | tuple[int, int] | None = None,
          preprocess: Mapping[str, Any] | None = None, weights_file: str | os.PathLike[str] | None = None,
          trust_model_code: bool = False,
          on_batch: Callable[[int, State], None] | None = None,
          _crash_marker: str | None = None) -> AtlasResult:
    """The atlas of ``model`` over every image under ``folder`` (recursively).

    ``model``: a model file or ``zoo:NAME`` (or a :class:`~convlens.atlas.ModelSpec`, a
    :class:`~convlens.LoadedModel`, or a torch/keras model object); or ``net=SPEC`` for a
    toy network (``seed``).  ``weights="random"``: a zoo model untrained.  ``stages``:
    names, kinds or globs (default: :func:`~convlens.atlas.default_stages`).  ``k``: images
    kept per channel.  Images are resized to ``size`` (default: the model's input size,
    else the first image's) and preprocessed as the model expects, with ``preprocess``
    (changes such as ``{"preset": "imagenet"}``, as :func:`convlens.pipeline.
    choose_preprocess` takes them) on top.  ``weights_file``: the state dict of a
    ``MODULE:CALLABLE`` model; ``trust_model_code``: allow a pickled model (both as
    :func:`convlens.load_model`).

    ``engine="local"`` runs in this process; ``"dask"`` on a ``LocalCluster`` of
    ``workers`` processes, on the scheduler at ``scheduler``, or on ``client`` (a
    ``distributed.Client`` you started).  With ``out``, the running state is checkpointed
    there (every ``checkpoint_every`` batches locally, default 20; shards with Dask,
    default 4) and ``resume=True`` continues an interrupted run; ``atlas.json``, the crops
    and the pages (``pages=True``; ``page_channels`` channels per page, None for all) are
    written there.  ``on_batch(i, state)`` (local engine) runs after each batch.

    ``maximize=True``: after the run, the activation maximisation of every channel the
    pages show (``page_channels``) — :func:`convlens.attribute.maximize`, ``maximize_steps``
    steps at ``maximize_size`` (default: the size the model sees), seeded with ``seed`` —
    saved as ``OUT/maximize/STAGE/C.png`` (in memory without ``out``), shown beside the
    crops and listed in ``atlas.json``.  It needs a PyTorch or Keras model; for the others
    (ONNX, TorchScript, ``torch.export``) the atlas says so and makes none.
    """
    from convlens import __version__
    from convlens.capture.files import LoadedModel
    from convlens.pipeline import choose_preprocess

    if engine not in ("local", "dask"):
        from convlens.errors import did_you_mean

        raise ConvlensError(f"engine {engine!r} is not one of local, dask"
                            f"{did_you_mean(str(engine), ['local', 'dask'])}")
    if maximize and (isinstance(maximize_steps, bool) or not isinstance(maximize_steps, int)
                     or maximize_steps < 1):
        raise ConvlensError(f"maximize_steps={maximize_steps!r} is not valid; expected a "
                            "positive number of steps, e.g. 64")
    started = time.time()
    t0 = time.perf_counter()
    root = Path(folder).resolve()
    paths = list_images(root)
    changes = tuple(sorted(dict(preprocess or {}).items()))
    spec = _as_spec(model, net, backend, seed, weights, size, changes, weights_file,
                    trust_model_code)
    if spec is None and model is None:
        raise ConvlensError("atlas() needs a model: a file, zoo:NAME, a LoadedModel, a model "
                            "object, or net=SPEC")
    loaded: tuple[Any, Any] | None = None
    if spec is not None:
        description = spec.describe()
    elif isinstance(model, LoadedModel):
        pre = choose_preprocess(model.preprocess, dict(changes) or None, loaded=model)
        loaded, description = (model.model, pre), model.name
    else:
        loaded, description = (model, choose_preprocess(None, dict(changes) or None)), \
            type(model).__name__
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
        from convlens.atlas.dask_engine import (
            Cluster, calibrate_on, run_dask, ship, start_cluster, unship,
        )

        ref: Any = None
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
            ref = spec if spec is not None else ship(cluster.client, loaded)
            plan = calibrate_on(cluster, ref, root, paths, stages, k, batch, size, description)
            t_run = time.perf_counter()
            state, info = run_dask(cluster, ref, plan, out=out_dir, resume=resume,
                                   shard_batches=shard_batches,
                                   checkpoint_every=4 if checkpoint_every is None else checkpoint_every,
                                   progress=progress, crash_marker=_crash_marker)
            run.update(info)
        finally:
            if not own and ref is not None:
                unship(cluster.client, ref)  # the user's cluster: leave nothing behind
            if own:
                cluster.close()
    seconds = time.perf_counter() - t_run
    run.update(seconds=round(seconds, 3), total_seconds=round(time.perf_counter() - t0, 3),
               images_per_s=round(state.images / seconds, 2) if seconds > 0 else None)
    from convlens.atlas.pages import atlas_data, write_crops, write_json, write_pages

    def source() -> tuple[Any, Any]:
        nonlocal loaded
        if loaded is None:
            loaded = load_spec(spec)  # type: ignore[arg-type]
        return loaded

    data = atlas_data(state, plan, run)
    memory: dict[str, bytes] = {}
    if maximize:
        _maximize(data, state, plan, source, out_dir, memory, page_channels, progress,
                  maximize_steps, maximize_size, seed)
    if out_dir is not None:
        write_json(data, out_dir)
        if pages:
            crops = write_crops(state, plan, *source(), out_dir, page_channels)
            write_pages(data, crops, out_dir, page_channels)
    return AtlasResult(data, state, plan, out_dir, memory, source)


def _maximize(data: dict[str, Any], state: State, plan: Plan, source: Callable[[], tuple[Any, Any]],
              out: Path | None, memory: dict[str, bytes], page_channels: int | None,
              progress: bool, steps: int, size: int | tuple[int, int] | None, seed: int) -> None:
    """The activation maximisation of the shown channels into ``data`` (and OUT)."""
    from convlens.atlas.maximize import (
        NEEDS_GRADIENTS, gradient_framework, maximize_stages, picture_path, settings_for,
    )
    from convlens.capture.adapters import adapter_for

    model, preprocess = source()
    if gradient_framework(model) is None:
        try:
            kind = f" (this is a {adapter_for(model).name} model)"
        except ConvlensError:
            kind = ""
        data["maximize"] = {"note": NEEDS_GRADIENTS + kind}
        return
    settings = settings_for(size, steps, seed, preprocess, plan.size)
    todo = [(s.name, s.channels if page_channels is None else min(page_channels, s.channels))
            for s in state.stages.values()]

    def save(stage: str, channel: int, png: bytes) -> None:
        rel = picture_path(stage, channel)
        if out is None:
            memory[rel] = png
        else:
            path = Path(out, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)

    done = maximize_stages(model, preprocess, todo, settings, progress=progress, save=save)
    for st in data["stages"]:
        for c, v in done["stages"].get(st["name"], {}).items():
            st["channels"][c]["maximization"] = {"image": picture_path(st["name"], c), **v}
    data["maximize"] = {"settings": settings.describe(), "notes": done["notes"]}
    data["run"]["maximize_seconds"] = round(done["seconds"], 3)
