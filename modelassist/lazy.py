"""The PyTorch model module, imported on first use.

Importing torch and MONAI takes seconds; web processes that never run a model (most requests)
and every first request of a fresh process should not pay for it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


network: Any = LazyModule("modelassist.network")
classifier_net: Any = LazyModule("modelassist.classifier.network")
