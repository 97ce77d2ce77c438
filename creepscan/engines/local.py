"""The in-process engine: embeddings through ``features.extract_many`` and attacks through
``evaluation.evaluate_encoder``, here, one after the other (the code path audit and compare always had).
"""
from __future__ import annotations

from ..evaluation import evaluate_encoder
from ..features import Features, extract_many
from ..options import configure_encoder
from .jobs import EncoderRole

__all__ = ["LocalEngine", "LOCAL", "embedding_waves"]


def embedding_waves(roles: list[EncoderRole]) -> list[list[EncoderRole]]:
    """The ``roles`` to embed, wave by wave: one wave per model index (the model, its floor and, for an
    adapted model, its base and the base's floor), in index order, each wave in the order given. Each
    fingerprint is embedded once, by its first role; a later role with the same weights joins no wave.
    Embedding wave by wave puts each model's embeddings in the cache before the next model starts, so
    a sweep killed part-way resumes with every finished model served from the cache."""
    seen: set[str] = set()
    waves: dict[int, list[EncoderRole]] = {}
    for role in sorted(roles, key=lambda r: r.index):  # stable: the given order within an index
        if role.fingerprint in seen:
            continue
        seen.add(role.fingerprint)
        waves.setdefault(role.index, []).append(role)
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

    def embed(self, roles: list[EncoderRole], pd, options) -> dict[EncoderRole, Features]:
        """Features of each role's encoder (see ``pipeline.embed``): the same ``Features`` object for
        roles with the same weights; wave by wave (``embedding_waves``), a model and its floor sharing
        one decoding pass where their preprocessing is the same."""
        return self._embed(roles, pd, options, decode=options.decode)

    def _embed(self, roles: list[EncoderRole], pd, options, decode: str) -> dict[EncoderRole, Features]:
        by_fp: dict[str, Features] = {}
        for wave in embedding_waves(roles):
            feats = extract_many([r.encoder for r in wave], pd.images, cache_dir=options.cache_dir, hashes=pd.hashes,
                                 progress=options.progress, batch_size=options.batch_size,
                                 num_workers=options.num_workers, normalize=True, decode=decode)
            for role, f in zip(wave, feats):
                by_fp[role.fingerprint] = f
        return {role: by_fp[role.fingerprint] for role in roles}

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
