"""The in-process engine: embeddings through ``features.extract_many`` and attacks through
``evaluation.evaluate_encoder``, here, one after the other (the code path audit and compare always had).
"""
from __future__ import annotations

import re

from ..evaluation import evaluate_encoder
from ..features import Features, extract_many
from ..options import configure_encoder

__all__ = ["LocalEngine", "LOCAL", "embedding_waves"]

_NUMBERED = re.compile(r"(.*?)(\d+)")


def embedding_waves(encoders: dict) -> list[list[str]]:
    """The keys of ``encoders`` (name -> encoder) to embed, wave by wave.

    A model and its floor (``model3`` and ``floor3``: keys ending in the same number) form one wave,
    waves in the order of that number, keys without a number last, one wave each. Each fingerprint is
    embedded once, by its first key; a later key with the same weights joins no wave. Embedding wave
    by wave puts each model's embeddings in the cache before the next model starts, so a sweep killed
    part-way resumes with every finished model served from the cache."""
    def wave_of(item):
        pos, key = item
        m = _NUMBERED.fullmatch(key)
        return (0, int(m.group(2)), 0) if m else (1, 0, pos)

    seen: set[str] = set()
    waves: dict[tuple, list[str]] = {}
    for pos, key in sorted(enumerate(encoders), key=wave_of):
        fp = encoders[key].fingerprint
        if fp in seen:
            continue
        seen.add(fp)
        waves.setdefault(wave_of((pos, key)), []).append(key)
    return list(waves.values())


class LocalEngine:
    """Everything in this process. ``load_encoder`` resolves and configures a MODEL; ``embed`` and
    ``evaluate`` are the pipeline's embedding and attack steps."""

    name = "local"

    def load_encoder(self, spec: str, weights, options, *, cache_dir=None):
        """Resolve MODEL ``spec`` (with local ``weights``, if any) on ``options.device`` and apply
        the speed options (``options.configure_encoder``). Returns the encoder."""
        from ..encoders import resolve_encoder

        encoder = configure_encoder(resolve_encoder(spec, weights=weights, device=options.device, cache_dir=cache_dir),
                                    options)
        self.remember(encoder, spec, weights, options)
        base = getattr(encoder, "base", None)
        if base is not None:  # an adapted model's base runs too: its spec (a folder, hf:, an alias) rebuilds it
            self.remember(base, base.spec, None, options)
        return encoder

    def remember(self, encoder, spec: str, weights, options) -> None:
        """How to rebuild ``encoder`` elsewhere; this engine never needs to."""

    def embed(self, encoders: dict, pd, options) -> dict[str, Features]:
        """Features of each named encoder (see ``pipeline.embed``): the same ``Features`` object for
        keys with the same weights; wave by wave (``embedding_waves``), a model and its floor sharing
        one decoding pass where their preprocessing is the same."""
        return self._embed(encoders, pd, options, decode=options.decode)

    def _embed(self, encoders: dict, pd, options, decode: str) -> dict[str, Features]:
        by_fp: dict[str, Features] = {}
        for wave in embedding_waves(encoders):
            feats = extract_many([encoders[k] for k in wave], pd.images, cache_dir=options.cache_dir, hashes=pd.hashes,
                                 progress=options.progress, batch_size=options.batch_size,
                                 num_workers=options.num_workers, normalize=True, decode=decode)
            for key, f in zip(wave, feats):
                by_fp[encoders[key].fingerprint] = f
        return {key: by_fp[enc.fingerprint] for key, enc in encoders.items()}

    def evaluate(self, jobs: list, options) -> list:
        """The probe's attacks for each ``AttackJob``, in order: a list of ``attacks.Metrics``."""
        return [evaluate_encoder(j.encoder, j.X, j.labelled, j.splits, j.probe, options, j.groups) for j in jobs]

    def describe(self) -> dict:
        """Where the work ran, for the report's ``timings``."""
        return {"name": self.name}

    def close(self) -> None:
        """Nothing to release here."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


LOCAL = LocalEngine()
