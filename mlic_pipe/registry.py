"""`Registry`: one named table per user choice (mixers, heads, losses, optimizers, schedules).

A choice is written once, as an entry here, and everything else reads it: the factory functions
(`create_mixer`, `build_head`, `create_loss`, ...), the config validation and the CLI's
``choices=`` lists and help. Adding a head is one `register` call; nothing else retypes its name.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> factories of one kind of thing, each with a line of help.

    Args:
        kind: what the entries are, for messages ("mixer", "head", ...).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, factory: Callable[..., T], help: str = "") -> Callable[..., T]:
        if name in self._factories:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._factories[name] = factory
        self._help[name] = help or (factory.__doc__ or "").strip().split("\n")[0]
        return factory

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._factories)

    def help(self, name: str) -> str:
        return self._help[self.check(name)]

    def check(self, name: str) -> str:
        """`name` if it is registered, else a ValueError that lists the choices."""
        if name not in self._factories:
            raise ValueError(f"{self.kind} must be one of {', '.join(self._factories)}; got {name!r}")
        return name

    def get(self, name: str) -> Callable[..., T]:
        return self._factories[self.check(name)]

    def create(self, name: str, *args, **kwargs) -> T:
        """Call the factory registered as `name`."""
        return self.get(name)(*args, **kwargs)
