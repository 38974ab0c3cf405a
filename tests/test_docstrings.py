"""Every public class, function and method of ``wskit`` and ``wskit.asgi`` has a docstring with
an ``Args:`` section naming (most of) its arguments and a ``Returns:`` section when it returns
a value (Google style, which the documentation site renders: docs/api/)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wskit
import wskit.asgi

#: Modules whose public names (``__all__``) are the documented API.
MODULES = (wskit, wskit.asgi)


def _public() -> Iterator[tuple[str, Any]]:
    seen: set[int] = set()
    for module in MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            yield name, obj
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    fn = value.fget if isinstance(value, property) else value
                    if isinstance(fn, (staticmethod, classmethod)):
                        fn = fn.__func__
                    if inspect.isfunction(fn):
                        yield f"{name}.{attr}", fn


def _parameters(obj: Any) -> list[str]:
    target: Callable[..., Any] = obj
    if inspect.isclass(obj):
        if issubclass(obj, BaseException) or "__init__" not in vars(obj):
            return []
        target = obj.__init__
    params = inspect.signature(target).parameters.values()
    return [p.name for p in params
            if p.name not in ("self", "cls") and not p.name.startswith("_")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _returns_value(obj: Any) -> bool:
    if not inspect.isfunction(obj):
        return False
    annotation = inspect.signature(obj).return_annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return text not in ("None", "NoReturn", "", "_empty") and not isinstance(obj, property)


PUBLIC = list(_public())


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=[name for name, _ in PUBLIC])
def test_docstring(name: str, obj: Any) -> None:
    doc = inspect.getdoc(obj)
    assert doc, f"{name} has no docstring"
    params = _parameters(obj)
    if params:
        assert "\nArgs:\n" in f"\n{doc}", f"{name}: no 'Args:' section for {params}"
        section = doc.split("Args:", 1)[1]
        described = [p for p in params if re.search(rf"^\s+{p}( \(.*\))?:", section, re.M)]
        # Most arguments named: an option added since is not a failure of the whole suite,
        # but an undocumented function is.
        assert len(described) * 2 >= len(params), f"{name}: 'Args:' misses most of {params}"
    is_property = any(isinstance(vars(cls).get(name.rpartition(".")[2]), property)
                      for cls in (getattr(wskit, name.partition(".")[0], None),)
                      if inspect.isclass(cls))
    if _returns_value(obj) and not is_property and not obj.__name__.startswith("__"):
        assert re.search(r"^(Returns|Yields):", doc, re.M), f"{name}: no 'Returns:' section"
