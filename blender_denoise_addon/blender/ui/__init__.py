"""Blender-facing modules. Each owns a ``classes`` tuple and register()/unregister();
this package registers them in order and unregisters them in reverse."""

from __future__ import annotations

import importlib
from types import ModuleType

# Registration order; unregistered in reverse. Sub-panels come after their parent.
MODULES: tuple[str, ...] = ("properties", "preferences", "operators", "hook", "panel")


def _modules() -> list[ModuleType]:
    return [importlib.import_module(f".{name}", __name__) for name in MODULES]


def register() -> None:
    for mod in _modules():
        mod.register()


def unregister() -> None:
    for mod in reversed(_modules()):
        mod.unregister()
