"""The pipeline <-> engine seam as types: which encoders a probe embeds (``EncoderRole``: a model, its
floor, an adapted model's base and the base's floor, by the model's index) and the attacks an engine
runs for one of them (``AttackJob``). Both engines and the pipeline import this module; it imports
none of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ROLES", "EncoderRole", "encoder_roles", "AttackJob"]

ROLES = ("model", "floor", "base", "basefloor")


@dataclass(frozen=True)
class EncoderRole:
    """One encoder a probe embeds, and what it is there for: ``role`` (``model``: the audited model;
    ``floor``: its random-init control; ``base``/``basefloor``: an adapted model's base and the base's
    floor) of the run's model number ``index``. Equal (and hashed) by (role, index) alone, so
    ``EncoderRole.of("floor", 0)`` finds the first model's floor in a dict keyed by roles."""

    role: str
    index: int
    encoder: object = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"unknown encoder role {self.role!r}: one of {', '.join(ROLES)}")

    @classmethod
    def of(cls, role: str, index: int) -> EncoderRole:
        """The key for ``role`` of model ``index`` (no encoder: for looking up a dict keyed by roles)."""
        return cls(role, index)

    @property
    def fingerprint(self) -> str:
        """The encoder's weights: roles with the same fingerprint are embedded and attacked once."""
        return self.encoder.fingerprint


def encoder_roles(encoders: list) -> list[EncoderRole]:
    """Every encoder a probe embeds for the run's ``encoders``, model by model: the model and its floor,
    and for an adapted model (``encoder.base``) its base and the base's floor."""
    roles = []
    for i, enc in enumerate(encoders):
        roles += [EncoderRole("model", i, enc), EncoderRole("floor", i, enc.floor)]
        if getattr(enc, "base", None) is not None:  # an adapted model: its base on the same images and splits
            roles += [EncoderRole("base", i, enc.base), EncoderRole("basefloor", i, enc.base.floor)]
    return roles


@dataclass(frozen=True)
class AttackJob:
    """The attacks of one distinct set of weights on one probe: the ``role`` (its encoder's text tower
    serves zero-shot), its ``features`` with ``rows`` (int64 [n], the rows aligned with ``labelled.y``),
    and the probe's shared ``labelled`` set, ``splits`` and ``groups``."""

    role: EncoderRole
    features: object
    rows: np.ndarray
    labelled: object
    splits: list
    probe: object
    groups: list | None

    @property
    def encoder(self):
        """The encoder whose attacks these are."""
        return self.role.encoder

    @property
    def X(self) -> np.ndarray:
        """float32 [n, d]: the L2-normalised embeddings of the labelled images, in ``labelled.y`` order."""
        return self.features.X[self.rows]
