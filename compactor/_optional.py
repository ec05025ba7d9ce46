"""Optional dependencies, imported lazily: a missing one is one line naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from ._errors import ConfigError

#: The distribution name, for the install hint.
DIST = "agent-context-compactor"


class MissingExtraError(ConfigError):
    """An optional dependency is not installed. The message names the extra to install
    (``pip install 'agent-context-compactor[EXTRA]'``); the CLI prints it as one line and
    exits 2.

    Attributes:
        module: the module that could not be imported (e.g. ``"langchain_core"``).
        extra: the extra that installs it (e.g. ``"bench"``).
    """

    def __init__(self, module: str, extra: str, what: str) -> None:
        super().__init__(f"{what} needs {module.split('.')[0]}, which is not installed; fix: "
                         f"pip install '{DIST}[{extra}]'", field=extra)
        self.module = module
        self.extra = extra


def require(module: str, *, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``.

    Args:
        module: dotted module name.
        extra: the ``pyproject`` extra that installs it.
        what: the feature that needs it, for the message ("the bench command").

    Raises:
        MissingExtraError: the module (or one it imports) is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise MissingExtraError(e.name or module, extra, what) from None
