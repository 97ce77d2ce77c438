"""The Ray engine (``pip install "creepscan[ray]"``, Ray >= 2.50): embeddings with Ray Data, attacks as
Ray tasks, on a local Ray (started here, stopped at ``close()``) or an existing cluster (``address``).

Embeddings. For each probe, the images the cache lacks become a Ray Dataset (``ray.data.from_items``
of their paths); ``map_batches`` sends them through an actor pool (``ActorPoolStrategy``; one GPU per
actor where the run's device is CUDA). Each actor builds each encoder once, from its MODEL spec and
weights (an encoder need not pickle), checks that the weights' fingerprint is the one this process
loaded, decodes with the same reference path as ``features`` (PIL and the encoder's own
``preprocess``) and calls the encoder's own ``encode_images``. Its rows come back here and are
written into the same content-addressed cache, model by model, under the claims of
``cache.EmbeddingCache`` (so another process on the same cache waits instead of repeating the
work); the pipeline then reads every embedding as a cache hit.

Identical numbers. A row's embedding depends (by a float rounding or two) on the other images in its
batch and on the thread count, so the dataset is laid out in exactly the batches the local engine
would form: each batch is one block of ``B`` rows (padded; pads are never decoded), ``map_batches``
runs with ``batch_size=B``, and the actors and attack tasks use this process's thread counts (torch,
BLAS and OpenMP). Images a worker cannot decode are recorded with the same reason as here.

Attacks. Each distinct set of weights on a probe is one Ray task running ``evaluation.evaluate_encoder``
on its arrays; a zero-shot text tower is run here first and its outputs replayed in the task.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache import CHUNK_ROWS
from ..errors import EngineError
from .local import LocalEngine, embedding_waves

__all__ = ["RayEngine", "EncoderRecipe", "MIN_RAY", "arithmetic_threads", "apply_arithmetic_threads"]

MIN_RAY = (2, 50)
INSTALL_HINT = 'pip install "creepscan[ray]"'
MAX_BUILT_ENCODERS = 3     # per actor: a model, its floor and the next model of a sweep


def import_ray():
    """``ray`` (with Ray Data), or ``EngineError`` saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise EngineError(f"--engine ray needs Ray (>= {'.'.join(map(str, MIN_RAY))}), which is not installed: "
                          f"{INSTALL_HINT}") from None
    if _version(ray) < MIN_RAY:
        raise EngineError(f"--engine ray needs Ray >= {'.'.join(map(str, MIN_RAY))}, found {ray.__version__}: "
                          f"{INSTALL_HINT} --upgrade")
    return ray


def _version(ray) -> tuple[int, ...]:
    return tuple(int(p) for p in ray.__version__.split(".")[:2] if p.isdigit())


# ---------------------------------------------------------------------------------------------
# Joining a cluster: checked before any work, answered within seconds
# ---------------------------------------------------------------------------------------------

CONNECT_TIMEOUT_S = 3.0    # a TCP connection to the head
JOIN_TIMEOUT_S = 20.0      # a trial ray.init in a child process: Ray itself retries for minutes
ADDRESS_FORMS = "auto, HOST:PORT (the head's GCS, e.g. 10.0.0.5:6379) or ray://HOST:10001 (Ray Client)"
AUTH_HINT = ("if the cluster uses token authentication, export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or "
             "RAY_AUTH_TOKEN_PATH) with its token (`ray get-auth-token` on the head)")


def parse_address(address: str, origin: str = "--ray-address") -> tuple[str, str, int]:
    """``(kind, host, port)`` of a cluster address: kind ``gcs`` (``HOST:PORT``) or ``client``
    (``ray://HOST[:PORT]``, port 10001 by default). Raises EngineError, naming the fix, for anything
    else: a dashboard URL (which ``ray job submit`` takes, not a driver), or no address at all."""
    text = address.strip()
    lowered = text.lower()
    if lowered.startswith(("http://", "https://")):
        raise EngineError(f"{origin} {address} is a dashboard (job submission) address; either submit the sweep as a "
                          f"job: `ray job submit --address {text} -- creepscan sweep ... --engine ray` (ray job "
                          "submit needs pip install \"ray[default]\"), or give the cluster's address: "
                          f"{ADDRESS_FORMS}")
    kind = "client" if lowered.startswith("ray://") else "gcs"
    rest = text[len("ray://"):] if kind == "client" else text
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = rest, ("10001" if kind == "client" else "")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host or " " in host:
        raise EngineError(f"{origin} {address!r} is not a Ray cluster address: give {ADDRESS_FORMS}")
    return kind, host, int(port)


def _auto_address(origin: str) -> str:
    """The address ``auto`` stands for: RAY_ADDRESS, else the cluster ``ray start`` left on this
    machine; EngineError when there is none."""
    try:
        from ray._private.services import get_ray_address_from_environment

        found = get_ray_address_from_environment("auto", None)
    except (ImportError, ConnectionError, RuntimeError, ValueError):  # "could not find any running Ray instance"
        found = None
    if not found:
        raise EngineError(f"{origin} auto: no running Ray cluster was found on this machine; start one (`ray start "
                          "--head`), give its address, or drop --ray-address to start a Ray for this run")
    return found


def _reachable(host: str, port: int, origin: str, address: str) -> None:
    import socket

    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise EngineError(f"{origin} {address}: nothing answers at {host}:{port} ({why}); start the cluster "
                          f"(`ray start --head`) or check the address ({ADDRESS_FORMS})") from None


def _trial_join(address: str, origin: str) -> None:
    """``ray.init(address)`` in a child process, killed after ``JOIN_TIMEOUT_S``: a port that answers
    but is not a Ray head, or a cluster that refuses us (authentication), makes Ray retry for
    minutes with warnings; the child's failure becomes one line here."""
    import subprocess

    code = ("import logging, sys, ray\n"
            "ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, "
            "logging_level=logging.ERROR)\nray.shutdown()\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True,
                              timeout=JOIN_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise EngineError(f"{origin} {address}: the address answers but Ray could not join it within "
                          f"{JOIN_TIMEOUT_S:.0f} s (is it a Ray head's GCS port?); {AUTH_HINT}") from None
    if proc.returncode != 0:
        raise EngineError(f"{origin} {address}: Ray could not join the cluster ({_last_error(proc.stderr)})"
                          f"{'; ' + AUTH_HINT if _mentions_auth(proc.stderr) else ''}")


def _last_error(stderr: str) -> str:
    """The most telling line of a failed ``ray.init``: its exception, else the last line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.split(":", 1)[0].endswith(("Error", "Exception"))]
    return (errors or lines or ["no output"])[-1][:300]


def _mentions_auth(text: str) -> bool:
    lowered = text.lower()
    return any(w in lowered for w in ("auth", "token", "unauthenticated", "permission denied"))


def preflight(address: str | None, origin: str = "--ray-address") -> None:
    """Check, before any work and within ``CONNECT_TIMEOUT_S + JOIN_TIMEOUT_S`` seconds, that Ray can
    join ``address``; raise EngineError (exit 2) naming the fix otherwise. ``ray://`` needs Ray
    Client (grpcio: ``pip install "ray[client]"``, which the ``ray`` extra installs)."""
    if address is None:
        return
    text = address.strip()
    if text.lower() == "auto":
        text = _auto_address(origin)
        if text.lower().startswith(("http://", "https://", "ray://")) or ":" not in text:
            return preflight(text, "RAY_ADDRESS")
    kind, host, port = parse_address(text, origin)
    if kind == "client":
        try:
            import grpc  # noqa: F401  (what ray[client] adds)
        except ImportError:
            raise EngineError(f"{origin} {address}: a ray:// address needs Ray Client, which is not installed: "
                              'pip install "ray[client]" (or pip install "creepscan[ray]" again)') from None
    _reachable(host, port, origin, address)
    _trial_join(address.strip(), origin)


# ---------------------------------------------------------------------------------------------
# Arithmetic: the same thread counts in every process
# ---------------------------------------------------------------------------------------------

def arithmetic_threads() -> dict:
    """This process's thread counts: ``{"torch": n, "libs": {library prefix: n}}`` (BLAS and OpenMP
    libraries, as threadpoolctl sees them)."""
    import torch
    from threadpoolctl import threadpool_info

    libs: dict[str, int] = {}
    for info in threadpool_info():
        libs[info["prefix"]] = max(libs.get(info["prefix"], 0), int(info["num_threads"]))
    return {"torch": int(torch.get_num_threads()), "libs": libs}


def apply_arithmetic_threads(threads: dict, attacks: bool = True) -> None:
    """Give this (worker) process the thread counts of ``arithmetic_threads()`` from the driver: a
    reduction split over another number of threads rounds differently. Ray starts its workers with
    one thread. With ``attacks`` the attacks' libraries (scipy, scikit-learn) are loaded first so that
    the limits reach them; an embedding actor needs only torch's."""
    import torch
    from threadpoolctl import threadpool_limits

    if attacks:
        import creepscan.evaluation  # noqa: F401  (loads numpy, scipy and scikit-learn's libraries)

    torch.set_num_threads(int(threads["torch"]))
    threadpool_limits(limits=dict(threads["libs"]))


# ---------------------------------------------------------------------------------------------
# Rebuilding an encoder on a worker
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncoderRecipe:
    """How a worker rebuilds an encoder this process loaded: MODEL ``spec`` with ``weights`` (an
    absolute path, or None), or its floor; the ``precision`` this process settled on (open_clip
    models; None for plug-ins) and ``compile``; the driver's working folder ``cwd`` (where a
    ``py:`` plug-in module is found). ``pickled`` holds an encoder made in code instead."""

    spec: str
    weights: str | None
    floor: bool
    fingerprint: str
    precision: str | None
    compile: bool
    cwd: str
    pickled: bytes | None = None

    def build(self, device: str):
        """The encoder on ``device``; raises RuntimeError if its weights are not the ones recorded
        (a weights file that differs on this worker would otherwise give other numbers silently)."""
        if self.pickled is not None:
            import pickle

            return pickle.loads(self.pickled)
        if self.cwd and os.path.isdir(self.cwd):
            if self.cwd not in sys.path:
                sys.path.insert(0, self.cwd)
            os.chdir(self.cwd)  # a py:path/to/module.py plug-in is relative to the driver's folder
        from ..encoders import resolve_encoder

        encoder = resolve_encoder(self.spec, weights=self.weights, device=device)
        if self.floor:
            encoder = encoder.floor
        if self.precision and hasattr(encoder, "configure"):
            encoder.configure(precision=self.precision, compile=self.compile)
        if encoder.fingerprint != self.fingerprint:
            raise RuntimeError(f"worker built {self.spec}{' (floor)' if self.floor else ''} with fingerprint "
                               f"{encoder.fingerprint}, not the driver's {self.fingerprint}: the weights file "
                               f"differs on this worker")
        return encoder


class EmbedActor:
    """Ray Data ``map_batches`` actor: builds encoders on first use (at most ``MAX_BUILT_ENCODERS``
    kept) and embeds batches laid out by ``RayEngine._items``.

    A batch (numpy format) has columns ``b`` (the local engine's batch it belongs to), ``lead`` (the
    recipe whose ``preprocess`` decodes it), ``path``, ``digest`` and ``targets`` (comma-separated
    recipe ids that need the image; empty on pad rows). Returns one row per (image, target):
    ``recipe``, ``digest``, ``emb`` (float32 bytes), ``dim`` and ``reason`` (why the image could not
    be used, else empty)."""

    def __init__(self, recipes: list, device: str, threads: dict):
        apply_arithmetic_threads(threads, attacks=False)
        self.recipes, self.device = recipes, device
        self.built: dict[int, object] = {}

    def encoder(self, r: int):
        if r not in self.built:
            while len(self.built) >= MAX_BUILT_ENCODERS:
                self.built.pop(next(iter(self.built)))
            self.built[r] = self.recipes[r].build(self.device)
        return self.built[r]

    def __call__(self, batch: dict) -> dict:
        import torch

        from ..features import preprocess_image  # the local engine's own decode + preprocess of one image

        out = {"recipe": [], "digest": [], "emb": [], "dim": [], "reason": []}

        def emit(r, digest, row, reason=""):
            out["recipe"].append(r)
            out["digest"].append(digest)
            out["emb"].append(b"" if row is None else row.tobytes())
            out["dim"].append(0 if row is None else row.shape[0])
            out["reason"].append(reason)

        rows = [i for i in range(len(batch["path"])) if batch["targets"][i]]
        for b in dict.fromkeys(int(batch["b"][i]) for i in rows):
            mine = [i for i in rows if int(batch["b"][i]) == b]
            preprocess = self.encoder(int(batch["lead"][mine[0]])).preprocess
            ok, tensors, failed = [], [], []
            for i in mine:
                tensor, reason = preprocess_image(Path(str(batch["path"][i])), preprocess)
                if tensor is None:
                    failed.append((i, reason))
                else:
                    ok.append(i)
                    tensors.append(torch.as_tensor(tensor))
            x = torch.stack(tensors) if tensors else None
            targets = {i: [int(t) for t in str(batch["targets"][i]).split(",")] for i in mine}
            # Recipe ids follow the local engine's order of encoders, which stateful encoders can see.
            for r in sorted({t for ts in targets.values() for t in ts}):
                want = [j for j, i in enumerate(ok) if r in targets[i]]
                if want:
                    sub = x if len(want) == len(ok) else x[want]
                    feats = np.asarray(self.encoder(r).encode_images(sub), dtype=np.float32)
                    for j, row in zip(want, feats):
                        emit(r, str(batch["digest"][ok[j]]), row)
                for i, reason in failed:
                    if r in targets[i]:
                        emit(r, str(batch["digest"][i]), None, reason)
        return {"recipe": np.asarray(out["recipe"], dtype=np.int64), "digest": np.asarray(out["digest"], dtype=object),
                "emb": np.asarray(out["emb"], dtype=object), "dim": np.asarray(out["dim"], dtype=np.int64),
                "reason": np.asarray(out["reason"], dtype=object)}


# ---------------------------------------------------------------------------------------------
# Attacks in a task
# ---------------------------------------------------------------------------------------------

class TextReplay:
    """Stands in for an encoder inside an attack task: ``name``, ``fingerprint`` and, where the
    probe runs zero-shot, ``encode_text`` answering the prompts recorded from the real text tower."""

    def __init__(self, name: str, fingerprint: str, texts: dict | None):
        self.name, self.fingerprint, self._texts = name, fingerprint, texts
        if texts is not None:
            self.encode_text = self._replay

    def _replay(self, texts):
        key = tuple(texts)
        if key not in self._texts:
            raise RuntimeError("the ray engine's recorded prompts differ from those the attacks ask for "
                               "(creepscan.engines.ray.record_text is out of step with evaluation.evaluate_encoder)")
        return self._texts[key]

    @classmethod
    def record(cls, encoder, labelled, probe) -> "TextReplay":
        """Run ``encoder``'s text tower here on the prompts ``evaluation.evaluate_encoder`` will ask for."""
        from ..attacks.zero_shot import class_text_embeddings
        from ..evaluation import zero_shot_names

        names = zero_shot_names(probe, encoder, labelled.classes)
        if names is None:
            return cls(encoder.name, encoder.fingerprint, None)
        texts: dict[tuple, object] = {}

        def recording(prompts):
            out = encoder.encode_text(prompts)
            texts[tuple(prompts)] = out
            return out

        class_text_embeddings(recording, names, probe.templates)
        return cls(encoder.name, encoder.fingerprint, texts)


def task_name(job) -> str:
    """A Ray task's name: ``attacks <probe> <model>`` (the model's display name)."""
    return f"attacks {job.probe.id} {getattr(job.encoder, 'name', '?')}"[:200]


def run_attacks(text_encoder, X, labelled, splits, probe, options, groups, threads):
    """The body of one attack task: ``evaluation.evaluate_encoder`` with the driver's thread counts."""
    apply_arithmetic_threads(threads)
    from ..evaluation import evaluate_encoder

    return evaluate_encoder(text_encoder, X, labelled, splits, probe, options, groups)


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------

class RayEngine(LocalEngine):
    """Embeddings on a Ray Data actor pool, attacks as Ray tasks (see the module docstring).

    ``address``: an existing cluster (``auto``, ``ray://HOST:10001``); None joins the cluster of
    ``RAY_ADDRESS`` where it is set (as in a ``ray job submit`` job), else starts a local Ray with
    ``num_cpus`` CPUs (default: the CPUs this process may use) at first use, stopped by ``close()``.
    Ray must be importable when the engine is made (else ``EngineError``)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.ray = import_ray()
        if address:
            preflight(address)
        elif os.environ.get("RAY_ADDRESS"):  # inside `ray job submit`, or set by hand
            preflight(os.environ["RAY_ADDRESS"], "RAY_ADDRESS")
        self.address = address
        self.num_cpus = num_cpus
        self._owns = False
        self._local = False  # a Ray started here, on this machine alone
        self._sources: dict[str, tuple] = {}   # model fingerprint -> (spec, weights, compile)
        self._models: dict[str, object] = {}   # model fingerprint -> encoder (its floor is found there)
        self._stats = {"embed_actors": 0, "images_embedded": 0, "attack_tasks": 0, "start_s": 0.0}

    # -- setup ------------------------------------------------------------------------------------

    def remember(self, encoder, spec: str, weights, options) -> None:
        self._sources[encoder.fingerprint] = (spec, str(Path(weights).resolve()) if weights else None, options.compile)
        self._models[encoder.fingerprint] = encoder

    def recipe(self, encoder) -> EncoderRecipe:
        """How a worker rebuilds ``encoder`` (a model loaded by ``load_encoder``, or its floor); an
        encoder made in code is pickled instead, or refused with EngineError if it cannot be."""
        def precision_of(enc):
            return getattr(enc, "precision", None) if hasattr(enc, "configure") else None

        fp = encoder.fingerprint
        if fp in self._sources:
            spec, weights, compile_ = self._sources[fp]
            return EncoderRecipe(spec, weights, False, fp, precision_of(encoder), compile_, os.getcwd())
        for mfp, model in self._models.items():
            floor = model.floor
            if floor is not None and floor.fingerprint == fp:
                spec, weights, compile_ = self._sources[mfp]
                return EncoderRecipe(spec, weights, True, fp, precision_of(encoder), compile_, os.getcwd())
        import pickle

        try:
            blob = pickle.dumps(encoder)
        except Exception as exc:
            raise EngineError(f"--engine ray rebuilds each encoder on its workers from its MODEL spec; {encoder.name} "
                              f"was not loaded through the engine (engine.load_encoder) and cannot be pickled "
                              f"({type(exc).__name__}: {exc})") from None
        return EncoderRecipe(getattr(encoder, "spec", encoder.name), None, False, fp, None, False, os.getcwd(), blob)

    def start(self):
        """Connect to the cluster, or start the local Ray, once; quietly (no dashboard, no worker logs
        on this terminal, Ray Data without progress bars). Returns the ``ray`` module."""
        ray = self.ray
        if not ray.is_initialized():
            t0 = time.perf_counter()
            kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
            try:
                if self.address:
                    ray.init(address=self.address, **kwargs)
                elif os.environ.get("RAY_ADDRESS"):  # inside `ray job submit`: the job's cluster
                    ray.init(**kwargs)
                else:
                    from ..cpu import usable_cpus

                    ray.init(num_cpus=self.num_cpus or len(usable_cpus()), **kwargs)
                    self._local = True
            except (ConnectionError, TimeoutError, RuntimeError) as exc:  # what ray.init raises on a bad cluster
                where = self.address or os.environ.get("RAY_ADDRESS") or "a local Ray"
                hint = f"; {AUTH_HINT}" if _mentions_auth(str(exc)) else ""
                raise EngineError(f"--engine ray: could not start or join {where} ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:300] if str(exc) else 'no message'}){hint}") from None
            self._owns = True
            self._stats["start_s"] = round(time.perf_counter() - t0, 3)
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Ray Data's own, on its first context
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            # Rows come back in dataset order, so each model's chunk is written as soon as it is complete.
            ctx.execution_options.preserve_order = True
        return ray

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
        self._owns = self._local = False

    def describe(self) -> dict:
        return {"name": self.name, "address": self.address or os.environ.get("RAY_ADDRESS") or "local",
                "ray_version": self.ray.__version__,
                "decode": "pil: workers decode with PIL and the encoder's own preprocess", **self._stats}

    def _cluster(self) -> tuple[float, float]:
        res = self.ray.cluster_resources()
        return float(res.get("CPU", 1.0)), float(res.get("GPU", 0.0))

    # -- embeddings ---------------------------------------------------------------------------------

    def embed(self, roles: list, pd, options) -> dict:
        """Features of each role's encoder (``LocalEngine.embed``), the images missing from the cache
        embedded on the actor pool first."""
        from ..cache import EmbeddingCache, encoder_cache_key, wait_for

        waves = embedding_waves(roles)
        keys = [k for wave in waves for k in wave]
        caches = {k: EmbeddingCache(Path(options.cache_dir), encoder_cache_key(k.encoder, "")) for k in keys}
        done: dict[str, int] = {}
        waits = []
        try:
            mine = {}
            for k in keys:
                # Claimed as features.extract_many would: images wanted in order, each content once.
                wanted = list(dict.fromkeys(d for d in pd.hashes if d is not None))
                mine[k], others = caches[k].claim(wanted, CHUNK_ROWS)
                waits += others
            if any(mine.values()):
                done = self._embed_on_ray(waves, mine, caches, pd, options)
        finally:
            for cache in caches.values():
                cache.release_claims()
        try:
            wait_for(waits, options.progress)
        finally:
            for c in waits:
                c.close()
        # Everything is in the cache now (anything still missing, e.g. a dead process's claim, is
        # embedded here), read exactly as the local engine reads it.
        feats = self._embed(roles, pd, options, decode="pil")
        seen = set()
        for key, f in feats.items():
            n = done.get(key.fingerprint, 0)
            if n and id(f) not in seen:
                seen.add(id(f))
                f.stats["n_embedded"] += n
                f.stats["n_cache_hits"] -= n
        return feats

    def _items(self, waves, mine, options):
        """The recipes, their roles (in recipe-id order) and the dataset's batches, laid out as the
        local engine forms them: per wave, per decoding group (same preprocessing), the group's
        images in the order ``features`` merges them, cut at its batch size; ``width`` is the widest
        batch, to which every batch is padded."""
        recipes, keys, rid, batches = [], [], {}, []
        for wave in waves:
            groups: dict[tuple, list[str]] = {}
            for i, k in enumerate(wave):
                if mine[k]:
                    groups.setdefault((getattr(k.encoder, "preprocess_id", "") or f"#{i}",), []).append(k)
            for members in groups.values():
                for k in members:
                    rid[k] = len(recipes)
                    recipes.append(self.recipe(k.encoder))
                    keys.append(k)
                merged = list(dict.fromkeys(d for k in members for d in mine[k]))
                wanted = {k: set(mine[k]) for k in members}
                size = options.batch_size or min(getattr(k.encoder, "batch_size", None) or 64 for k in members)
                for start in range(0, len(merged), size):
                    rows = [(d, ",".join(str(rid[k]) for k in members if d in wanted[k]))
                            for d in merged[start:start + size]]
                    batches.append((rid[members[0]], rows))
        width = max(len(rows) for _, rows in batches)
        return recipes, keys, batches, width

    def _embed_on_ray(self, waves, mine, caches, pd, options) -> dict[str, int]:
        """Embed the claimed images (``mine``: role -> digests) on the actor pool and write them into
        ``caches``. Returns {fingerprint: images embedded}."""
        ray = self.start()
        path_of = {d: str(p) for p, d in zip(pd.images.paths, pd.hashes) if d is not None}
        recipes, keys, batches, width = self._items(waves, mine, options)
        items = []
        for b, (lead, rows) in enumerate(batches):
            items += [{"b": b, "lead": lead, "path": path_of[d], "digest": d, "targets": t} for d, t in rows]
            items += [{"b": b, "lead": lead, "path": "", "digest": "", "targets": ""}] * (width - len(rows))
        threads = arithmetic_threads()
        cpus, gpus = self._cluster()
        gpu = options.device == "cuda" and gpus >= 1
        if gpu:
            n_actors, resources = int(gpus), {"num_gpus": 1, "num_cpus": 1}
        else:
            per_actor = max(1, min(threads["torch"], int(cpus)))
            n_actors, resources = max(1, int(cpus) // per_actor), {"num_cpus": per_actor}
        n_actors = max(1, min(n_actors, len(batches)))
        if self._local and _version(ray) < (2, 64):
            # A local Ray has no node to lose: no restarts, and so no line on stderr that a restart
            # could not find the actors' constructor arguments. (Ray 2.64 drops these extra
            # arguments; from then on the line is printed.)
            resources["max_restarts"] = 0
        self._stats["embed_actors"] = max(self._stats["embed_actors"], n_actors)
        # One block per batch: map_batches then hands each actor exactly the local engine's batches.
        with warnings.catch_warnings():
            # Ray's own deprecations (max_restarts as an extra remote argument, DataContext fields
            # Ray Data reads while it runs) are not the user's to act on.
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ray.data.from_items(items, override_num_blocks=len(batches)).map_batches(
                EmbedActor, batch_size=width, batch_format="numpy", zero_copy_batch=False,
                fn_constructor_kwargs={"recipes": recipes, "device": options.device if gpu else "cpu",
                                       "threads": threads},
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n_actors), **resources)
            return self._write_rows(ds, keys, mine, caches)

    def _write_rows(self, ds, keys, mine, caches) -> dict[str, int]:
        """Consume the dataset in order; write each encoder's rows into its cache as soon as they are
        complete (or a chunk is full). Returns {fingerprint: images embedded}."""
        key_of = dict(enumerate(keys))
        expected = {r: len(mine[key_of[r]]) for r in key_of}
        pending = {r: ([], [], []) for r in expected}
        written = {r: 0 for r in expected}
        dims: dict[int, int] = {}

        def flush(r):
            hashes, embs, reasons = pending[r]
            if hashes:
                caches[key_of[r]].put_rows(hashes, embs, reasons, dims.get(r))
                written[r] += len(hashes)
            pending[r] = ([], [], [])

        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for r, digest, emb, dim, reason in zip(out["recipe"], out["digest"], out["emb"], out["dim"], out["reason"]):
                r = int(r)
                row = np.frombuffer(emb, dtype=np.float32).copy() if dim else None
                if row is not None:
                    dims[r] = row.shape[0]
                hashes, embs, reasons = pending[r]
                hashes.append(str(digest))
                embs.append(row)
                reasons.append(str(reason))
                if len(hashes) >= CHUNK_ROWS or written[r] + len(hashes) == expected[r]:
                    flush(r)
        for r in expected:
            flush(r)
        self._stats["images_embedded"] += sum(written.values())
        return {key_of[r].fingerprint: written[r] for r in expected}

    # -- attacks ------------------------------------------------------------------------------------

    def evaluate(self, jobs: list, options) -> list:
        """One Ray task per job, all submitted before any is awaited; results in job order."""
        ray = self.start()
        threads = arithmetic_threads()
        cpus, gpus = self._cluster()
        resources = {"num_cpus": max(1, min(threads["torch"], int(cpus))), "max_retries": 0}
        if options.device == "cuda" and gpus >= 1:
            resources["num_gpus"] = 1
        task = ray.remote(run_attacks)
        # Named by probe and model, so the dashboard and `ray list tasks` say which is which.
        refs = [task.options(name=task_name(j), **resources).remote(
                    TextReplay.record(j.encoder, j.labelled, j.probe), j.X, j.labelled, j.splits, j.probe, options,
                    j.groups, threads) for j in jobs]
        self._stats["attack_tasks"] += len(refs)
        return ray.get(refs)
