"""The config object: fvcore's CfgNode with clearer errors and fewshot_det's checks.

What this adds to fvcore/yacs:
- errors name the file and the key (yacs says "Non-existent config key: X" with no file);
- a key whose settings live under another node (``MOVED_KEYS``) is refused with the key
  to use instead;
- an integer where a float is declared is accepted (``BASE_LR: 1``), as users expect;
- a ``_BASE_`` cycle is one error naming its files;
- a file YAML cannot parse (a tab in the indentation, an unclosed bracket) is one error
  naming the file, the line and the column; an empty file, or one whose top level is not
  a mapping of keys (a list, a string), is refused by name;
- ``validate_cfg`` runs the cross-field checks before a config is frozen.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, List

import yaml
from fvcore.common.config import CfgNode as _FvCfgNode


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


# Nodes whose keys are declared under another name: (prefix set by the config, prefix to
# use). Any key under the left prefix is refused with the same key under the right one.
MOVED_KEYS = (
    ("MODEL.BACKBONE.CROP_PRETRAIN", "PRETRAIN"),  # the crop warm-up is its own node
)


class CfgNode(_FvCfgNode):
    """fvcore ``CfgNode`` whose merges report the offending key and file."""

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        if not os.path.isfile(cfg_filename):
            raise ConfigError(f"config file not found: {cfg_filename}")
        _check_base_files(cfg_filename, [])  # before fvcore: its errors name no file
        try:
            loaded = self.load_yaml_with_base(cfg_filename, allow_unsafe=allow_unsafe)
        except (OSError, ValueError, AssertionError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read config file {cfg_filename}: {e}") from e
        _check_moved(_leaf_keys(loaded), cfg_filename)
        _coerce_ints_to_floats(loaded, self)
        try:
            self.merge_from_other_cfg(type(self)(loaded))
        except (KeyError, ValueError, AssertionError) as e:
            raise ConfigError(f"{cfg_filename}: {_clean(e)}") from e

    def merge_from_list(self, cfg_list: List[str]) -> None:
        if len(cfg_list) % 2 != 0:
            raise ConfigError(
                f"overrides must be KEY VALUE pairs, got an odd number: {cfg_list}"
            )
        _check_moved(cfg_list[0::2], "command-line override")
        try:
            super().merge_from_list(_coerce_override_list(cfg_list, self))
        except (KeyError, ValueError, AssertionError) as e:
            raise ConfigError(f"command-line override: {_clean(e)}") from e


def read_yaml_mapping(filename: str) -> dict:
    """The top-level mapping of the YAML file ``filename``.

    Raises:
        ConfigError: naming the file: unreadable, not YAML (with yaml's line and column,
            1-based), empty, or not a mapping at the top level.
    """
    try:
        with open(filename, encoding="utf-8") as f:
            loaded = yaml.safe_load(f)
    except yaml.MarkedYAMLError as e:
        raise ConfigError(_yaml_error(filename, e)) from None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {filename}: {e}") from None
    if loaded is None:
        raise ConfigError(f"{filename} is empty: a config file sets keys (KEY: value lines) "
                          f"or inherits them (_BASE_: other.yaml)")
    if not isinstance(loaded, dict):
        raise ConfigError(f"{filename}: the top level must be a mapping of keys (KEY: value "
                          f"lines), got a {type(loaded).__name__} ({str(loaded)[:60]!r})")
    return loaded


def _yaml_error(filename: str, e: "yaml.MarkedYAMLError") -> str:
    """"FILE line L, column C: problem" from yaml's error (its marks count from 0)."""
    mark = e.problem_mark or e.context_mark
    where = f"{filename} line {mark.line + 1}, column {mark.column + 1}" if mark else filename
    problem = e.problem or e.context or str(e)
    if "\\t" in problem or "\t" in problem:
        return f"{where}: YAML does not allow tabs for indentation; use spaces ({problem})"
    context = f" ({e.context})" if e.context and e.problem else ""
    return f"{where}: {problem}{context}"


def _base_files(filename: str, loaded: dict) -> List[str]:
    """The ``_BASE_`` paths of one config file, resolved as fvcore resolves them."""
    bases = loaded.get("_BASE_", [])
    out = []
    for base in [bases] if isinstance(bases, str) else bases:
        base = os.path.expanduser(str(base))
        if not base.startswith(("/", "https://", "http://")):
            base = os.path.join(os.path.dirname(filename), base)
        out.append(base)
    return out


def _check_base_files(filename: str, chain: List[str]) -> None:
    """Every file of the ``_BASE_`` inheritance is a readable YAML mapping
    (``read_yaml_mapping``), exists, and takes no part in a cycle; ``ConfigError`` naming
    the files otherwise."""
    real = os.path.realpath(filename)
    seen = [os.path.realpath(f) for f in chain]
    if real in seen:
        loop = chain[seen.index(real):] + [filename]
        raise ConfigError(f"_BASE_ cycle: {' -> '.join(loop)}")
    for base in _base_files(filename, read_yaml_mapping(filename)):
        if base.startswith(("https://", "http://")):
            continue  # fvcore's business
        if not os.path.isfile(base):
            raise ConfigError(f"{filename}: _BASE_ file not found: {base}")
        _check_base_files(base, chain + [filename])


def _leaf_keys(loaded: dict, prefix: str = "") -> Iterator[str]:
    """Dotted names of the values a loaded YAML mapping sets (an empty mapping counts)."""
    for key, value in loaded.items():
        if isinstance(value, dict) and value:
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _check_moved(keys, where: str) -> None:
    for key in keys:
        for old, new in MOVED_KEYS:
            if key == old or str(key).startswith(old + "."):
                raise ConfigError(f"{where}: {key} is not a key; set {new}{key[len(old):]}")


def _clean(e: BaseException) -> str:
    # KeyError wraps its message in quotes; show the bare text.
    return str(e.args[0]) if e.args else str(e)


def _coerce_ints_to_floats(loaded: dict, defaults: _FvCfgNode, prefix: str = "") -> None:
    """Turn ints into floats where the declared default is a float (in place)."""
    for key, value in loaded.items():
        if key not in defaults:
            continue  # yacs reports unknown keys with their full name
        default = defaults[key]
        if isinstance(value, dict) and isinstance(default, _FvCfgNode):
            _coerce_ints_to_floats(value, default, prefix + key + ".")
        elif isinstance(default, float) and type(value) is int:
            loaded[key] = float(value)


def _coerce_override_list(cfg_list: List[str], cfg: _FvCfgNode) -> List[Any]:
    out: List[Any] = []
    for key, value in zip(cfg_list[0::2], cfg_list[1::2]):
        node: Any = cfg
        for part in key.split("."):
            node = node[part] if isinstance(node, _FvCfgNode) and part in node else None
        if isinstance(node, float) and isinstance(value, str):
            try:
                value = repr(float(value))
            except ValueError:
                pass  # let yacs report the type mismatch with the key's name
        out += [key, value]
    return out
