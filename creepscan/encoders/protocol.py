"""What every encoder backend may ask of an encoder, importable by the backends without the
``encoders`` package's factory (which imports them)."""
from __future__ import annotations

__all__ = ["has_text"]


def has_text(encoder) -> bool:
    """Whether ``encoder`` has a text tower (zero-shot can run). A plug-in says so itself; any
    other encoder has one when it has ``encode_text``."""
    from .plugin import PluginEncoder

    if isinstance(encoder, PluginEncoder):
        return encoder.has_text
    return callable(getattr(encoder, "encode_text", None))
