"""What a run was asked for, and what it settled on, as two separate objects.

``Options`` holds the CLI's options, validated: built once (``cli.build_options``), frozen, never changed
afterwards, and safe to send to another process (the Ray engine's workers get it as it is).
``RunState`` is what a run decides from them when it starts (``pipeline.start_run``): where the work runs (the
engine) and how many CPU threads it uses. The precision an encoder settled on is the encoder's own
(``encoder.precision``), set once when it is loaded (``configure_encoder``).

This module imports nothing of the pipeline or the engines, so both may import it.
"""
from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .cache import default_cache_dir
from .errors import CreepscanError

__all__ = ["Options", "RunState", "configure_encoder", "LOG_LEVELS"]

LOG_LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3}


@dataclass(frozen=True, kw_only=True)
class Options:
    """What a run was asked for (the CLI's options, validated). Keyword-only and frozen: nothing changes
    an option once the CLI has built it."""

    seed: int = 0
    device: str = "cpu"
    folds: int | None = None     # rotating test folds; None: attacks.splits chooses by probe size
    adversary: str = "frozen"    # "finetune": also adapt the image tower (attacks.finetune), model and floor
    cache_dir: Path = field(default_factory=default_cache_dir)
    data: tuple[tuple[str, str], ...] = ()  # --data ID=PATH, in the order given (a mapping is accepted)
    max_per_class: int | None = None
    download: bool = True
    progress: bool = True
    log_level: str = "info"      # debug | info | warning | error: which progress lines reach stderr
    batch_size: int | None = None
    num_workers: int | None = None
    precision: str = "auto"      # encoders.openclip.PRECISIONS
    decode: str = "auto"         # decode.MODES
    compile: bool = False

    def __post_init__(self):
        # A mapping given for ``data`` is stored as pairs, so the options stay immutable and hashable.
        if isinstance(self.data, Mapping):
            object.__setattr__(self, "data", tuple((str(k), str(v)) for k, v in self.data.items()))

    def data_path(self, probe_id: str) -> str | None:
        """The local data given for ``probe_id`` with --data, or None (its public source is used)."""
        return dict(self.data).get(probe_id)

    def data_ids(self) -> list[str]:
        """The probe ids named by --data, in the order given."""
        return [k for k, _ in self.data]

    def log(self, msg: str, level: str = "info") -> None:
        """A progress line on stderr, unless --quiet or below --log-level. At a terminal the line as is;
        elsewhere (a CI log, a file) with a UTC timestamp, so a long stage shows when it started."""
        if not self.progress or LOG_LEVELS.get(level, 1) < LOG_LEVELS.get(self.log_level, 1):
            return
        if not sys.stderr.isatty():
            msg = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} creepscan {level}: {msg}"
        print(msg, file=sys.stderr, flush=True)


def configure_encoder(encoder, options: Options):
    """Apply the speed options (precision, compile) to an encoder that has them (open_clip, transformers
    and timm models) and return it; a plug-in that lacks them is refused only when a non-default option
    was asked for (CreepscanError, exit 2)."""
    if hasattr(encoder, "configure"):
        kwargs = dict(precision=options.precision, compile=options.compile)
        if "cache_dir" in inspect.signature(encoder.configure).parameters:
            kwargs["cache_dir"] = options.cache_dir  # where the machine's CPU choice (bf16 or not) is kept
        return encoder.configure(**kwargs)
    if options.precision != "auto" or options.compile:
        raise CreepscanError(f"--precision and --compile apply to open_clip models; {encoder.name} "
                             "(a plug-in) runs as its own code chooses: drop those options")
    return encoder


@dataclass(frozen=True)
class RunState:
    """What a run settled on from its ``options`` when it started: the ``engine`` that runs the work
    (``creepscan.engines``) and ``threads``, how many CPU threads and why (None off the CPU)."""

    options: Options
    engine: object
    threads: str | None = None

    def log(self, msg: str, level: str = "info") -> None:
        """``Options.log``."""
        self.options.log(msg, level)

    def execution(self, encoder) -> dict:
        """How ``encoder``'s embeddings were computed (machine-dependent, so reported under timings)."""
        from .features import decode_plan

        o = self.options
        out = {"device": o.device, "precision": getattr(encoder, "precision", "plug-in"),
               "decode": o.decode, "decode_path": decode_plan(encoder, o.decode, o.num_workers),
               "compile": o.compile}
        reason = getattr(encoder, "precision_reason", None)
        if reason:
            out["precision_reason"] = reason
        if self.threads:
            out["threads"] = self.threads
        return out

