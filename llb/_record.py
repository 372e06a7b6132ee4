"""``record``: a frozen, slotted value class, made without the ``dataclasses`` module.

``@dataclass(frozen=True, slots=True)`` costs every command ~8 ms to import ``dataclasses`` (it
pulls in ``inspect``, ``ast``, ``dis`` and ``tokenize``) and ~0.3 ms per class to compile methods
from source text: for the ~80 classes on the way to ``envbuild debug llb`` that was a third of the
command's time. A ``record`` behaves the same -- immutable, compared and hashed by value, keyword or
positional construction with defaults and factories, ``__match_args__``, ``__slots__``, pickling --
with one shared implementation of each method. ``fields``/``replace`` here are the cheap helpers;
``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` also work on records (the
dataclass view is built on first use, so it costs nothing until something asks for it).
(``frontend`` has the same helper: the two packages share no code by design.)
"""

from __future__ import annotations

import sys
from operator import attrgetter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, overload

    from typing_extensions import dataclass_transform

    _C = TypeVar("_C", bound=type)


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Field:
    """One field of a record: what ``field()`` returns and ``fields()`` lists."""

    __slots__ = ("name", "default", "default_factory", "repr", "compare", "hash")

    def __init__(
        self,
        default: Any = MISSING,
        default_factory: Any = MISSING,
        repr: bool = True,  # noqa: A002 - dataclasses' names
        compare: bool = True,
        hash: bool | None = None,  # noqa: A002
    ) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare
        self.hash = hash

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r}, default_factory={self.default_factory!r})"


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | Any = MISSING,
    repr: bool = True,  # noqa: A002
    compare: bool = True,
    hash: bool | None = None,  # noqa: A002
) -> Any:
    """Like ``dataclasses.field`` (the options records support)."""
    return Field(default, default_factory, repr, compare, hash)


def fields(class_or_instance: Any) -> tuple[Field, ...]:
    try:
        return class_or_instance.__record_fields__  # type: ignore[no-any-return]
    except AttributeError:
        raise TypeError(f"{class_or_instance!r} is not a record") from None


def is_record(obj: Any) -> bool:
    return hasattr(type(obj) if not isinstance(obj, type) else obj, "__record_fields__")


def replace(obj: Any, /, **changes: Any) -> Any:
    """A copy of ``obj`` with ``changes`` (``dataclasses.replace`` for records)."""
    for f in obj.__record_fields__:
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)


def _as_field(value: Any) -> Field:
    dc = sys.modules.get("dataclasses")
    if dc is not None and isinstance(value, dc.Field):
        default = MISSING if value.default is dc.MISSING else value.default
        factory = MISSING if value.default_factory is dc.MISSING else value.default_factory
        return Field(default, factory, value.repr, value.compare, value.hash)
    if isinstance(value, Field):
        return value
    return Field(value)


def _make_init(cls: type, all_fields: tuple[Field, ...]) -> Callable[..., None]:
    names = tuple(f.name for f in all_fields)
    defaults = {f.name: f.default for f in all_fields if f.default is not MISSING}
    factories = {f.name: f.default_factory for f in all_fields if f.default_factory is not MISSING}
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
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, f.name) for f in self.__record_fields__]


def _setstate(self: Any, state: list[Any]) -> None:
    for f, value in zip(self.__record_fields__, state):
        object.__setattr__(self, f.name, value)


class _DataclassView:
    """``__dataclass_fields__`` on demand: a throw-away dataclass with the same fields lends its
    ``Field`` objects, so the ``dataclasses`` helpers work without anyone importing it up front."""

    def __get__(self, obj: Any, cls: type | None = None) -> dict[str, Any]:
        owner = cls if cls is not None else type(obj)
        view = owner.__dict__.get("__record_dataclass_fields__")
        if view is None:
            import dataclasses

            ns: dict[str, Any] = {"__annotations__": {}}
            for f in owner.__record_fields__:
                ns["__annotations__"][f.name] = "Any"
                ns[f.name] = dataclasses.field(
                    default=dataclasses.MISSING if f.default is MISSING else f.default,
                    default_factory=dataclasses.MISSING if f.default_factory is MISSING else f.default_factory,
                    repr=f.repr,
                    compare=f.compare,
                    hash=f.hash,
                )
            shadow = dataclasses.dataclass(init=False, repr=False, eq=False)(type(owner.__name__, (), ns))
            view = shadow.__dataclass_fields__
            type.__setattr__(owner, "__record_dataclass_fields__", view)
        return view  # type: ignore[no-any-return]


_DATACLASS_VIEW = _DataclassView()


if TYPE_CHECKING:

    @overload
    @dataclass_transform(frozen_default=True, field_specifiers=(field,))
    def record(cls: _C, /) -> _C: ...
    @overload
    def record(*, eq: bool = True) -> Callable[[_C], _C]: ...


def record(cls: type | None = None, /, *, eq: bool = True) -> Any:  # type: ignore[no-redef]
    """``@record`` or ``@record(eq=False)`` (identity comparison, like ``dataclass(eq=False)``);
    methods the class body defines itself are kept, as dataclass does."""
    if cls is None:
        return lambda c: _record(c, eq)
    return _record(cls, eq)


def _record(cls: type, eq: bool) -> type:
    ns = dict(cls.__dict__)
    bases = cls.__bases__
    merged: dict[str, Field] = {}
    slotted: set[str] = set()
    if bases != (object,):
        for base in reversed(cls.__mro__[1:]):
            bd = base.__dict__
            for f in bd.get("__record_fields__", ()):
                merged[f.name] = f
            slotted.update(bd.get("__slots__", ()))
    own = []
    for name, annotation in ns.get("__annotations__", {}).items():
        text = annotation if annotation.__class__ is str else getattr(annotation, "__name__", "")
        if text.startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = ns.pop(name, MISSING)
        f = value if value.__class__ is Field else _as_field(value)
        f.name = name
        merged[name] = f
        if name not in slotted:
            own.append(name)
    all_fields = tuple(merged.values())
    names = tuple(merged)
    ns.pop("__dict__", None)
    ns.pop("__weakref__", None)
    ns["__slots__"] = tuple(own)
    if ns.get("__doc__") is None:
        ns["__doc__"] = f"{cls.__name__}({', '.join(names)})"
    explicit_hash = "__hash__" in ns and not (ns["__hash__"] is None and "__eq__" in ns)
    shown = tuple(f.name for f in all_fields if f.repr)
    qualname = cls.__qualname__

    def __repr__(self: Any) -> str:
        return f"{qualname}({', '.join(f'{n}={getattr(self, n)!r}' for n in shown)})"

    methods: dict[str, Any] = {
        "__match_args__": names,
        "__init__": _make_init(cls, all_fields),
        "__repr__": __repr__,
        "__setattr__": _frozen,
        "__delattr__": _frozen,
        "__getstate__": _getstate,
        "__setstate__": _setstate,
    }
    if eq:
        values = _getter(tuple(f.name for f in all_fields if f.compare))
        hashed = _getter(tuple(f.name for f in all_fields if (f.compare if f.hash is None else f.hash)))

        def __eq__(self: Any, other: object) -> bool:
            if other.__class__ is self.__class__:
                return values(self) == values(other)  # type: ignore[no-any-return]
            return NotImplemented

        def __hash__(self: Any) -> int:
            return hash(hashed(self))

        methods["__eq__"] = __eq__
        if not explicit_hash:
            ns.pop("__hash__", None)
            methods["__hash__"] = __hash__
    for name, method in methods.items():
        if name not in ns:
            ns[name] = method
    ns["__record_fields__"] = all_fields
    ns["__dataclass_fields__"] = _DATACLASS_VIEW
    ns["__qualname__"] = qualname
    return type(cls)(cls.__name__, bases, ns)  # one class creation: setting attributes later costs more


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        name = names[0]
        return lambda self: (getattr(self, name),)
    return lambda self: ()
