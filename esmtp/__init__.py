"""esmtp: a user-configurable, relay-only MTA with a sendmail-compatible command line, built on pluggy hooks.

Plugins write ``from esmtp import hookimpl``. Importing this package loads nothing else: pluggy is imported only when
a plugin asks for ``hookimpl``.
"""

__version__ = "2.0.0.dev0"

TYPE_CHECKING = False  # importing `typing` would cost `esmtp --version` milliseconds
if TYPE_CHECKING:
    from pluggy import HookimplMarker

    hookimpl: HookimplMarker

__all__ = ["__version__", "hookimpl"]


def __getattr__(name: str) -> object:
    # Lazy: `esmtp --version` must not pay for pluggy.
    if name == "hookimpl":
        from pluggy import HookimplMarker

        marker = HookimplMarker("esmtp")
        globals()["hookimpl"] = marker
        return marker
    raise AttributeError(name)
