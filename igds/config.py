"""Shared machinery for the per-stage frozen config dataclasses.

Every stage has one ``@dataclass(frozen=True, kw_only=True)`` config. A config whose stage needs torch lives in
its package's ``config`` module, which imports no torch (``ExtractConfig`` in ``igds/method/config.py``,
``ModelSpec`` in ``igds/modeling/config.py``, ...; the stage module re-exports it), so importing a config stays
cheap; the others live next to their stage's code. They inherit from :class:`ConfigBase`, which gives JSON
round-trips, a content-hash ``stage_key`` for caching, and the per-field help text that both the CLI
flags and the dashboard widgets show.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any, TypeVar

from igds.constants import STAGE_KEY_VERSION

C = TypeVar("C", bound="ConfigBase")


class ConfigBase:
    """Mixin for frozen stage configs: ``to_dict``/``from_dict``/``stage_key``."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of all fields (nested configs become dicts).

        A field added after a config's first release (``metadata={"added": True}``) is left out while it holds
        its default, so the stage keys of runs made before it existed stay the same.
        """
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.metadata.get("added") and f.default is not dataclasses.MISSING and v == f.default:
                continue
            out[f.name] = v.to_dict() if isinstance(v, ConfigBase) else (list(v) if isinstance(v, tuple) else v)
        return out

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build from a dict; unknown keys raise, missing keys take defaults."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for k, v in data.items():
            t = hints.get(k)
            if isinstance(t, type) and issubclass(t, ConfigBase) and isinstance(v, dict):
                v = t.from_dict(v)
            elif isinstance(v, list):
                v = tuple(v)
            kwargs[k] = v
        return cls(**kwargs)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) used for hashing and storage."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def stage_key(self, *upstream: str) -> str:
        """Content hash of this config chained with upstream keys and STAGE_KEY_VERSION."""
        h = hashlib.sha256()
        for part in (type(self).__name__, self.to_json(), *upstream, str(STAGE_KEY_VERSION)):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()[:16]


def field_help(cls: type, name: str) -> str:
    """The ``help`` metadata of one config field (shown as CLI help and UI tooltips)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def _base_type(t):
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return _base_type(args[0])
    if origin is tuple:
        return tuple
    return t


def add_config_arguments(parser, cls: type, prefix: str = "") -> None:
    """Add one ``--flag`` per field of a config dataclass to an argparse parser."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = _base_type(hints[f.name])
        if isinstance(t, type) and issubclass(t, ConfigBase):
            continue
        flag = "--" + (prefix + f.name).replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        helptext = f"{f.metadata.get('help', '')} (default: {default})"
        dest = prefix + f.name
        if t is bool:
            parser.add_argument(flag, dest=dest, default=None, help=helptext,
                                type=lambda s: s.lower() in ("1", "true", "yes", "on"), metavar="BOOL")
        elif t is tuple:
            parser.add_argument(flag, dest=dest, default=None, help=helptext, nargs="+")
        else:
            parser.add_argument(flag, dest=dest, default=None, help=helptext, type=t if t in (int, float) else str)


def config_from_arguments(cls: type[C], args, prefix: str = "", base: C | None = None, **overrides) -> C:
    """Build a config from parsed argparse flags added by :func:`add_config_arguments`.

    Fields start from ``base`` (e.g. a method preset's config) when given, then ``overrides``; flags given
    on the command line win.
    """
    kwargs = {f.name: getattr(base, f.name) for f in dataclasses.fields(cls)} if base is not None else {}
    kwargs.update(overrides)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        v = getattr(args, prefix + f.name, None)
        if v is None:
            continue
        if _base_type(hints[f.name]) is tuple:
            v = tuple(type(f.default[0])(x) if f.default else x for x in v)
        kwargs[f.name] = v
    return cls(**kwargs)
