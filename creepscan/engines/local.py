"""The in-process engine: embeddings through ``features.extract_many`` and attacks through
``evaluation.evaluate_encoder``, here, one after the other (the code path audit and compare always had).
"""
from __future__ import annotations

import re

from ..evaluation import evaluate_encoder
from ..features import Features, extract_many

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

    def load_encoder(self, spec: str, weights, settings, *, cache_dir=None):
        """Resolve MODEL ``spec`` (with local ``weights``, if any) on ``settings.device`` and apply
        the speed options (``Settings.configure``). Returns the encoder."""
        from ..encoders import resolve_encoder

        encoder = settings.configure(resolve_encoder(spec, weights=weights, device=settings.device, cache_dir=cache_dir))
        self.remember(encoder, spec, weights, settings)
        base = getattr(encoder, "base", None)
        if base is not None:  # an adapted model's base runs too: its spec (a folder, hf:, an alias) rebuilds it
            self.remember(base, base.spec, None, settings)
        return encoder

    def remember(self, encoder, spec: str, weights, settings) -> None:
        """How to rebuild ``encoder`` elsewhere; this engine never needs to."""

    def embed(self, encoders: dict, pd, settings) -> dict[str, Features]:
        """Features of each named encoder (see ``pipeline.embed``): the same ``Features`` object for
        keys with the same weights; wave by wave (``embedding_waves``), a model and its floor sharing
        one decoding pass where their preprocessing is the same."""
        return self._embed(encoders, pd, settings, decode=settings.decode)

    def _embed(self, encoders: dict, pd, settings, decode: str) -> dict[str, Features]:
        by_fp: dict[str, Features] = {}
        for wave in embedding_waves(encoders):
            feats = extract_many([encoders[k] for k in wave], pd.images, cache_dir=settings.cache_dir, hashes=pd.hashes,
                                 progress=settings.progress, batch_size=settings.batch_size,
                                 num_workers=settings.num_workers, normalize=True, decode=decode)
            for key, f in zip(wave, feats):
                by_fp[encoders[key].fingerprint] = f
        return {key: by_fp[enc.fingerprint] for key, enc in encoders.items()}

    def evaluate(self, jobs: list, settings) -> list:
        """The probe's attacks for each ``AttackJob``, in order: a list of ``attacks.Metrics``."""
        return [evaluate_encoder(j.encoder, j.X, j.labelled, j.splits, j.probe, settings, j.groups) for j in jobs]

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
