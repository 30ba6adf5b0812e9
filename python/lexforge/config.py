"""Configuration objects that round-trip to the JSON and TOML the ``lexforge`` CLI reads.

Each class stands for one Rust configuration type and converts through it, so a config saved
here is parsed by exactly the serde types and TOML reader of ``lexforge ... --config``:

- :class:`LmConfig`: ``lm::LmRunConfig``, ``lexforge lm train CONFIG.toml``;
- :class:`DataConfig`: ``data::PrepareConfig``, ``lexforge prepare --config``;
- :class:`MatcherConfig`: ``lexforge::matcher::MatcherTrainConfig``, ``lexforge matcher train
  --config``;
- :class:`SemanticConfig`: ``semantic::SemanticTrainConfig``, ``lexforge semantic train
  --config``;
- :class:`GeneratorConfig`: ``semantic::WordGeneratorConfig``, the word generator.

Fields are attributes (``cfg.epochs``, ``cfg.optimizer.lr``; tab completion lists them) and
every assignment is checked at once: an unknown field raises :class:`AttributeError` naming
the known ones, a value of the wrong type raises :class:`~lexforge.InvalidInputError` and
leaves the config unchanged. A config is also a mutable mapping (``cfg["epochs"]``, the same
checks), and every pipeline function that takes a config dict takes these objects too.

>>> cfg = MatcherConfig(max_seq_length=64)
>>> cfg.max_seq_length
64
>>> MatcherConfig.from_toml(cfg.to_toml()) == cfg
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Union

from lexforge import _native

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "Config",
    "ConfigSection",
    "DataConfig",
    "GeneratorConfig",
    "LmConfig",
    "MatcherConfig",
    "SemanticConfig",
    "as_dict",
]

PathLike = Union[str, "os.PathLike[str]"]


def _get(data: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node = data
    for part in path:
        node = node[part]
    return node


class _Fields(MutableMapping[str, Any]):
    """Attribute access over one nested dict of a :class:`Config` (shared by sections)."""

    _root: Config
    _path: tuple[str, ...]

    def _node(self) -> dict[str, Any]:
        return _get(self._root._data, self._path)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(self._unknown(name, self._node())) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        try:
            self[name] = value
        except KeyError:
            raise AttributeError(self._unknown(name, self._node())) from None

    def __getitem__(self, key: str) -> Any:
        value = self._node()[key]
        if isinstance(value, dict):
            return ConfigSection(self._root, (*self._path, key))
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        node = self._node()
        if key not in node:
            raise KeyError(self._unknown(key, node))
        before = json.dumps(self._root._data)
        node[key] = json.loads(json.dumps(value, default=_json_default))
        try:
            self._root._data = self._root._normalized(self._root._data)
        except BaseException:
            self._root._data = json.loads(before)
            raise

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"config fields cannot be removed (assign a value to {key!r} instead)")

    def __iter__(self) -> Iterator[str]:
        return iter(self._node())

    def __len__(self) -> int:
        return len(self._node())

    def _unknown(self, name: str, node: Mapping[str, Any]) -> str:
        where = ".".join((type(self._root).__name__, *self._path))
        return f"{where} has no field {name!r}; fields: {', '.join(sorted(node))}"

    def __dir__(self) -> list[str]:
        return sorted({*self._node(), *super().__dir__()})

    def fields(self) -> list[str]:
        """The names of the fields at this level, in schema order."""
        return list(self._node())

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of this level as plain JSON values."""
        copy: dict[str, Any] = json.loads(json.dumps(self._node()))
        return copy

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Fields):
            return self._node() == other._node()
        if isinstance(other, Mapping):
            return self._node() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class ConfigSection(_Fields):
    """A nested table of a :class:`Config` (``cfg.optimizer``): a live view, so assigning
    ``cfg.optimizer.lr = 1e-3`` changes ``cfg`` (and is checked the same way)."""

    def __init__(self, root: Config, path: tuple[str, ...]) -> None:
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "_path", path)

    def __repr__(self) -> str:
        return f"ConfigSection({'.'.join(self._path)}={self._node()!r})"


class Config(_Fields):
    """Base of the configuration classes: a validated nested config (see the module doc).

    ``Config(values, **fields)`` starts from the defaults (the Rust ``Default``), overlays the
    dict ``values`` and then the top-level ``fields``; missing fields take their defaults, so
    ``to_dict()`` is always complete. Raises :class:`~lexforge.InvalidInputError` for a field
    that does not parse (unknown keys included) and names it.
    """

    kind: ClassVar[str] = ""
    """The native config kind this class converts through."""

    _data: dict[str, Any]

    def __init__(self, values: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        object.__setattr__(self, "_root", self)
        object.__setattr__(self, "_path", ())
        data: dict[str, Any] = {} if values is None else as_dict(values)
        data.update(json.loads(json.dumps(fields, default=_json_default)))
        object.__setattr__(self, "_data", self._normalized(data))

    @classmethod
    def default(cls) -> Self:
        """The defaults."""
        return cls()

    def _normalized(self, data: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(_native.config_normalize(self.kind, json.dumps(data)))
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """A config from a nested dict (the JSON form)."""
        return cls(values)

    @classmethod
    def from_json(cls, text: str) -> Self:
        """A config from JSON text (the form in a run's ``manifest.json`` and events)."""
        values: dict[str, Any] = json.loads(text)
        return cls(values)

    @classmethod
    def from_toml(cls, text: str) -> Self:
        """A config from TOML text, parsed by the CLI's reader."""
        values: dict[str, Any] = json.loads(_native.config_from_toml(cls.kind, text))
        return cls(values)

    @classmethod
    def load(cls, path: PathLike) -> Self:
        """Read a ``.toml`` file (as the CLI does) or, for any other suffix, JSON. Raises
        :class:`~lexforge.InvalidInputError` naming the file when it does not parse."""
        p = Path(path)
        text = p.read_text(encoding="utf-8")
        try:
            if p.suffix == ".toml":
                return cls.from_toml(text)
            return cls.from_json(text)
        except ValueError as e:
            raise type(e)(f"{p}: {e}") from e

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON form."""
        return json.dumps(self._data, indent=indent)

    def to_toml(self) -> str:
        """The TOML form, as ``lexforge ... --config`` reads it (``None`` fields are left
        out: TOML has no null, and they parse back as ``None``)."""
        return _native.config_to_toml(self.kind, json.dumps(self._data))

    def save(self, path: PathLike) -> Path:
        """Write TOML (``.toml``) or JSON (any other suffix) atomically: a temporary file in
        the same directory, fsynced, then renamed over ``path``. Returns the path."""
        p = Path(path)
        text = self.to_toml() if p.suffix == ".toml" else self.to_json() + "\n"
        tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)
        return p

    def replace(self, **changes: Any) -> Self:
        """A copy with top-level ``changes`` (like :func:`dataclasses.replace`)."""
        return type(self)(self._data, **changes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"


def as_dict(config: Mapping[str, Any] | _Fields) -> dict[str, Any]:
    """A deep, plain-JSON copy of a config object or nested dict (what the pipelines send to
    Rust)."""
    if isinstance(config, _Fields):
        return config.to_dict()
    out: dict[str, Any] = json.loads(json.dumps(dict(config), default=_json_default))
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, _Fields):
        return value.to_dict()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not a config value")


class LmConfig(Config):
    """A language-model run (``lm::LmRunConfig``; ``lexforge lm train CONFIG.toml``).

    It has required fields (``name``, ``corpus``, ``tokenizer``, ``model``), so there are no
    defaults: build it from a dict, :meth:`load` a TOML file, or take a run's config."""

    kind = "lm"

    def __init__(self, values: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        if values is None and not fields:
            raise TypeError(
                "LmConfig has required fields (name, corpus, tokenizer, model): "
                "pass a dict or use LmConfig.load(path)"
            )
        super().__init__(values, **fields)


class DataConfig(Config):
    """Data preparation (``data::PrepareConfig``; ``lexforge prepare --config``)."""

    kind = "data"


class MatcherConfig(Config):
    """Matcher training (``lexforge::matcher::MatcherTrainConfig``; ``lexforge matcher train
    --config``)."""

    kind = "matcher"


class SemanticConfig(Config):
    """Semantic-ID training (``semantic::SemanticTrainConfig``; ``lexforge semantic train
    --config``)."""

    kind = "semantic"


class GeneratorConfig(Config):
    """The word generator (``semantic::WordGeneratorConfig``)."""

    kind = "generator"
