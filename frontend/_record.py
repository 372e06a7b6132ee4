"""``record``: a frozen, slotted dataclass whose methods are shared instead of generated.

``@dataclass(frozen=True)`` compiles ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__`` and ``__delattr__`` from source text for every class, ~0.1 ms each: for the spec's
44 classes that was ~18 ms of every command's start-up, more than evaluating a build file. A
``record`` is still a dataclass (``dataclasses.fields``, ``replace``, ``asdict``, ``__match_args__``,
``__slots__``) with the same behaviour -- immutable, compared and hashed by value, keyword or
positional construction with defaults and factories -- from one generic implementation of each method.
"""

from __future__ import annotations

from dataclasses import MISSING, FrozenInstanceError, dataclass, fields
from operator import attrgetter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, overload

    from typing_extensions import dataclass_transform

    _C = TypeVar("_C", bound=type)

    @overload
    @dataclass_transform(frozen_default=True)
    def record(cls: _C, /) -> _C: ...
    @overload
    def record(*, eq: bool = True) -> Callable[[_C], _C]: ...


def _make_init(cls: type, names: tuple[str, ...], defaults: dict[str, Any], factories: dict[str, Callable[[], Any]]) -> Callable[..., None]:
    n = len(names)
    where = f"{cls.__qualname__}.__init__()"
    set_ = object.__setattr__
    post_init = getattr(cls, "__post_init__", None)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > n:
            raise TypeError(f"{where} takes {n + 1} positional arguments but {len(args) + 1} were given")
        for name, value in zip(names, args):
            set_(self, name, value)
        for name in names[len(args) :]:
            if name in kwargs:
                value = kwargs.pop(name)
            elif name in defaults:
                value = defaults[name]
            elif name in factories:
                value = factories[name]()
            else:
                raise TypeError(f"{where} missing 1 required argument: '{name}'")
            set_(self, name, value)
        if kwargs:
            key = next(iter(kwargs))
            reason = "multiple values for argument" if key in names else "an unexpected keyword argument"
            raise TypeError(f"{where} got {reason} '{key}'")
        if post_init is not None:
            post_init(self)

    return __init__


def _frozen(self: Any, name: str, *_: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, f.name) for f in fields(self)]


def _setstate(self: Any, state: list[Any]) -> None:
    for f, value in zip(fields(self), state):
        object.__setattr__(self, f.name, value)


def record(cls: type | None = None, /, *, eq: bool = True) -> Any:  # type: ignore[no-redef]
    """``@record`` or ``@record(eq=False)`` (identity comparison, like ``dataclass(eq=False)``);
    methods the class body defines itself are kept, as dataclass does."""
    if cls is None:
        return lambda c: _record(c, eq)
    return _record(cls, eq)


def _record(cls: type, eq: bool) -> type:
    own = set(cls.__dict__)
    if cls.__doc__ is None:  # else dataclass builds one with inspect.signature, ~0.1 ms a class
        cls.__doc__ = f"{cls.__name__}({', '.join(cls.__dict__.get('__annotations__', ()))})"
    cls = dataclass(init=False, repr=False, eq=False, slots=True)(cls)
    all_fields = fields(cls)
    names = tuple(f.name for f in all_fields)
    shown = tuple(f.name for f in all_fields if f.repr)
    qualname = cls.__qualname__

    def __repr__(self: Any) -> str:
        return f"{qualname}({', '.join(f'{n}={getattr(self, n)!r}' for n in shown)})"

    methods: dict[str, Any] = {
        "__init__": _make_init(
            cls,
            names,
            {f.name: f.default for f in all_fields if f.default is not MISSING},
            {f.name: f.default_factory for f in all_fields if f.default_factory is not MISSING},
        ),
        "__repr__": __repr__,
        "__setattr__": _frozen,
        "__delattr__": _frozen,
        "__getstate__": _getstate,
        "__setstate__": _setstate,
    }
    if eq:
        compared = tuple(f.name for f in all_fields if f.compare)
        values = _getter(compared)
        hashed = _getter(tuple(f.name for f in all_fields if (f.compare if f.hash is None else f.hash)))

        def __eq__(self: Any, other: object) -> bool:
            if other.__class__ is self.__class__:
                return values(self) == values(other)  # type: ignore[no-any-return]
            return NotImplemented

        def __hash__(self: Any) -> int:
            return hash(hashed(self))

        methods["__eq__"] = __eq__
        methods["__hash__"] = __hash__
    for name, method in methods.items():
        if name not in own:
            setattr(cls, name, method)
    return cls


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        name = names[0]
        return lambda self: (getattr(self, name),)
    return lambda self: ()
