"""Where a run's work happens: the engines.

The pipeline (``creepscan.pipeline``) says *what* is computed for each probe: the embeddings of every
model and its floor, then the attacks on each distinct set of weights. An engine says *where*:

* ``local`` (the default): in this process, as ``audit`` and ``compare`` always ran;
* ``ray`` (``pip install "creepscan[ray]"``): embedding extraction with Ray Data (an actor pool that
  builds each encoder once per actor from its MODEL spec and weights) and the attacks of each
  (model, probe) as Ray tasks, on a local Ray or an existing cluster (``address``).

Both engines give the same numbers: the Ray engine writes its embeddings into the same
content-addressed cache, in the same batches as the local engine would form them, so the rest of
the pipeline reads them as cache hits; and its workers run the encoder's own ``encode_images`` and
``evaluation.evaluate_encoder`` with this process's thread counts.

An engine has ``name``, ``load_encoder(spec, weights, options)`` (resolve and configure a MODEL,
remembering how to rebuild it elsewhere), ``embed(roles, probe_data, options)`` (``jobs.EncoderRole``s),
``evaluate(jobs, options)`` (``options``: the run's ``creepscan.options.Options``), ``describe()`` (a dict
for the report's ``timings``) and ``close()``;
it is a context manager that closes itself.
"""
from __future__ import annotations

from ..errors import EngineError
from .jobs import ROLES, AttackJob, EncoderRole, encoder_roles

ENGINES = ("local", "ray")

__all__ = ["ENGINES", "ROLES", "EncoderRole", "encoder_roles", "AttackJob", "EngineError", "get_engine",
           "engine_or_local"]


def get_engine(name: str = "local", address: str | None = None, *, num_cpus: int | None = None):
    """The engine called ``name`` (``local`` or ``ray``). ``address`` (ray only) joins an existing
    Ray cluster (``auto``, ``ray://HOST:10001``, ``HOST:6379``); without it the ray engine starts a
    local Ray with ``num_cpus`` CPUs (default: the CPUs this process may use) when first needed and
    stops it at ``close()``. Raises ``EngineError`` for an unknown name, an address given to the
    local engine, or a missing Ray (the message says ``pip install "creepscan[ray]"``)."""
    if name == "local":
        if address:
            raise EngineError(f"--ray-address {address}: the address of a Ray cluster goes with --engine ray")
        from .local import LocalEngine

        return LocalEngine()
    if name == "ray":
        from .ray import RayEngine

        return RayEngine(address=address, num_cpus=num_cpus)
    raise EngineError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")


def engine_or_local(engine=None):
    """``engine``, or the in-process one when a run names none."""
    if engine is None:
        from .local import LOCAL

        return LOCAL
    return engine
