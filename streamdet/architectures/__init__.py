"""The registry of CM architectures, by the name manifests and experiment configs carry.

One module per architecture declares everything about it (``spec.Architecture``); the lines at the
bottom register the built-in ones. Code that must tell architectures apart asks ``get(name)`` for
the relevant property instead of testing names.

Adding an architecture: its backend module in ``streamdet/models/``; a module here declaring
``ARCHITECTURE = Architecture(...)`` with a front-end kind from ``frontends`` (or a new ``Frontend``);
one ``register`` line below. ``tests/streamdet/architectures/toy_arch.py`` is a complete example
that the tests register, run through every generic path, and unregister.
"""

from __future__ import annotations

from streamdet.architectures.spec import Architecture, Frontend
from streamdet.errors import ManifestError

__all__ = ["Architecture", "Frontend", "get", "names", "register", "unregister"]

_REGISTRY: dict[str, Architecture] = {}


def register(architecture: Architecture) -> Architecture:
    """Make ``architecture`` known by its name; a name is registered once."""
    if architecture.name in _REGISTRY:
        raise ValueError(f"architecture {architecture.name!r} is already registered")
    _REGISTRY[architecture.name] = architecture
    return architecture


def unregister(name: str) -> None:
    """Forget an architecture (tests that register their own undo it with this)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> Architecture:
    """The registered architecture called ``name``; a ManifestError naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ManifestError(f"unknown architecture {name!r}; known: {', '.join(names())}") from None


def names() -> tuple[str, ...]:
    """The registered names, sorted."""
    return tuple(sorted(_REGISTRY))


from streamdet.architectures import logmel_cnn, mel_lcnn, w2v2_aasist, w2v2_lcnn  # noqa: E402  (they import spec only)

register(mel_lcnn.ARCHITECTURE)
register(w2v2_lcnn.ARCHITECTURE)
register(w2v2_aasist.ARCHITECTURE)
register(logmel_cnn.ARCHITECTURE)
