"""Package attributes imported on first use (PEP 562), so `import autolabel.models` stays cheap."""

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `exports[name]` (a module path) and returns its `name`.

    Args:
        package: The package's `__name__`, for the error message.
        exports: Public name -> module that defines it.
    """

    def module_getattr(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return module_getattr
