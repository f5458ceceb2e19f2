"""The exceptions users see, with hints written in the caller's own words.

A training job that dies three hours in on a bad annotation is the failure mode this package
exists to prevent, so data problems are never `KeyError`s or garbage tensors: they are
`MLICDataError`, whose message names the file, says what is wrong and what to do next. A bad
combination of training options is a `ConfigError` naming the config fields.

What to do next depends on who called: a Python user sets ``image_dir=...``, a command-line user
passes ``--images DIR``. So messages refer to options as ``{name}`` (the option itself),
``{name:value}`` (the option set to a value) or ``{name:}`` (the option with a value to fill in),
and `spell_options` writes them for the caller: Python keywords by default (``str(error)``), or
flags through the mapping the CLI passes to `for_cli`.
"""
from __future__ import annotations

import os
import re
from typing import Mapping

__all__ = ["ConfigError", "LoaderStateError", "MLICDataError", "ON_ERROR", "spell_options"]

ON_ERROR = ("raise", "skip")  # what to do with an image that cannot be decoded (loader, trainer, CLI)
_OPTION = re.compile(r"\{(\w+)(?::([^{}]*))?\}")
_LITERAL = re.compile(r"[-+]?[\d.]+(e[-+]?\d+)?|True|False|None")


def spell_options(text: str, flags: Mapping[str, str] | None = None) -> str:
    """`text` with its option references written as Python keywords (`flags` None) or as CLI flags.

    `flags` maps an option name to its flag and metavar (``{"image_dir": "--images DIR"}``); names
    it lacks are spelled ``--name-with-dashes NAME``.
    """
    def python(name: str, value: str | None) -> str:
        if value is None:
            return name
        if value == "":
            return f"{name}=..."
        return f"{name}={value}" if _LITERAL.fullmatch(value) else f"{name}={value!r}"

    def cli(name: str, value: str | None) -> str:
        flag, _, metavar = flags.get(name, f"--{name.replace('_', '-')} {name.upper()}").partition(" ")
        if value is None:
            return flag
        return f"{flag} {value or metavar}".rstrip()

    spell = python if flags is None else cli
    return _OPTION.sub(lambda match: spell(match[1], match[2]), text)


class _Hinted(ValueError):
    """A ValueError whose text may refer to options; `for_cli` respells it for the command line."""

    def _text(self, flags: Mapping[str, str] | None) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self._text(None)

    def for_cli(self, flags: Mapping[str, str]) -> str:
        return self._text(flags)


class MLICDataError(_Hinted):
    """A dataset, annotation or image file cannot be used as it is.

    Subclasses `ValueError` so that code catching bad-value errors keeps working.

    Attributes:
        path: the offending file or directory (may be None when no single file is at fault).
        reason: what is wrong, in words.
        hint: what to do next; may refer to options as ``{name}``, ``{name:value}`` or ``{name:}``.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str, hint: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        self.hint = hint
        super().__init__(self._text(None))

    def _text(self, flags: Mapping[str, str] | None) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        hint = f" ({spell_options(self.hint, flags)})" if self.hint else ""
        return f"{where}{self.reason}{hint}"


class ConfigError(_Hinted):
    """Options that cannot work together (or one that cannot work), found before any work is done.

    Attributes:
        template: the message, referring to the options as ``{name}`` / ``{name:value}``.
    """

    def __init__(self, template: str):
        self.template = template
        super().__init__(self._text(None))

    def _text(self, flags: Mapping[str, str] | None) -> str:
        return spell_options(self.template, flags)


class LoaderStateError(ValueError):
    """A loader state (`MLICLoader.load_state_dict`) that cannot be resumed as it is: damaged, edited, or another run's.

    A state decides which samples the rest of an epoch delivers, so one that is taken on trust loses or
    repeats samples without a word; every field is checked, and the error names the one at fault.

    Attributes:
        field: the state's field at fault (``"batches"``, ``"rows[3]"``, ``"fingerprint"``, ...).
        reason: what is wrong with it.
    """

    def __init__(self, field: str, reason: str, hint: str = "resume from the states the loaders saved, unedited, "
                                                          "with the dataset and settings they were saved with"):
        self.field, self.reason, self.hint = field, reason, hint
        super().__init__(f"loader state: {field}: {reason} ({hint})")
