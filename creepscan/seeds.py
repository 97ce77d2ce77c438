"""Named random streams: each consumer of randomness draws from ``[seed, STREAM, ...]`` so that two
parts of an audit never share draws by accident, and adding one never shifts another's numbers.

The numbers are the ones the code used before they were named (reports stay byte-identical); the
fine-tuning CI's stream was 3, shared with zero-shot's CI, and is now its own (18). Interval streams
of proportions no longer draw (their Clopper-Pearson bounds are exact) but keep their names, so a
stream is never reused for something else.
"""
from __future__ import annotations

from enum import IntEnum

__all__ = ["Stream", "stream"]


class Stream(IntEnum):
    LINEAR_PROBE_CI = 1
    HEAD_CI = 2
    ZERO_SHOT_CI = 3
    UPLIFT_LINEAR_PROBE = 11
    UPLIFT_ZERO_SHOT = 12
    UPLIFT_FEW_SHOT = 13
    UPLIFT_HEAD = 14
    UPLIFT_VERIFICATION = 15
    UPLIFT_FINETUNE = 16
    UPLIFT_OPEN_SET = 17
    FEW_SHOT_CI = 17           # the last entry of [seed, k, 17]: its own sequence, unlike [seed, 17]
    FINETUNE_CI = 18           # was 3, zero-shot's
    ZERO_SHOT_PERMUTATION = 19  # the label-name permutation test's Monte Carlo draws


def stream(seed, name: Stream, *extra) -> list[int]:
    """The entropy of one stream: ``[seed, name, *extra]`` as plain ints (``numpy.random.default_rng``
    and every ``seed=`` parameter here take it)."""
    return [int(seed), int(name), *(int(x) for x in extra)]
