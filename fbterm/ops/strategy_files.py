"""Where a hot update may load code and configs from, checked before anything is imported.

A hot update names code as ``package.module:Class``. Importing a module runs it, so the module
is first found *without* importing it (``importlib.machinery.PathFinder``, which reads the file
system only; not even its parent packages run) and must be

* a ``.py`` file inside a strategy folder: fbterm's built-in strategies, the folder of the
  running config file, or a folder that already holds one of the configured strategies (where
  the operator keeps strategy code). The standard library, installed packages and the rest of
  fbterm are never strategy folders, so ``--code os:system`` is refused, not run;
* a file whose source defines a top-level ``class Class`` (read with :mod:`ast`, not run).

A config file given to an update must sit in the running config's folder (or, for an engine
running on the built-in defaults, in fbterm's own folder).
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fbterm.config import Config

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SourceError(ValueError):
    """The code or config an update names is not one it may load; the message says why."""


def find_module_file(module: str) -> Path:
    """The source file of ``module``, found on ``sys.path`` without importing anything."""
    if not _MODULE.fullmatch(module):
        raise SourceError(f"{module!r} is not a module name")
    search: list[str] | None = None
    spec = None
    parts = module.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        spec = importlib.machinery.PathFinder.find_spec(name, search)
        if spec is None and i == 0 and name not in sys.builtin_module_names:
            # An editable install maps fbterm outside sys.path: ask every finder (find_spec
            # imports nothing for a top-level name).
            spec = importlib.util.find_spec(name)
        if spec is None:
            if name in sys.builtin_module_names:
                raise SourceError(f"module {name!r} is built into Python: no strategy file")
            raise SourceError(f"module {name!r} not found")
        if i < len(parts) - 1:
            if spec.submodule_search_locations is None:
                raise SourceError(f"{name!r} is not a package")
            search = list(spec.submodule_search_locations)
    assert spec is not None
    if spec.origin is None or not spec.origin.endswith(".py"):
        raise SourceError(f"module {module!r} has no Python source file")
    return Path(spec.origin).resolve()


def strategy_folders(config: Config | None) -> list[Path]:
    """The folders hot updates may load strategy code from (see the module docstring)."""
    # Located, not imported: ops sits below the strategies in the layers.
    builtin = importlib.util.find_spec("fbterm.strategies")
    assert builtin is not None and builtin.origin is not None
    folders = [Path(builtin.origin).resolve().parent]
    if config is not None:
        folder = config_folder(config)
        if folder is not None:
            folders.append(folder)
        for sc in config.strategies:
            mod, sep, _cls = sc.cls.partition(":")
            if not sep:
                continue
            try:
                folders.append(find_module_file(mod).parent)
            except SourceError:
                continue  # the start-up checks report a configured strategy that is missing
    return _unique(folders)


def config_folder(config: Config) -> Path | None:
    """The running config file's folder; fbterm's own folder for the built-in defaults; None
    for a config that came from no file (built in code)."""
    from fbterm.config import user_dir

    if config.source == "<defaults>":
        return user_dir().expanduser().resolve()
    if config.source.startswith("<"):
        return None
    return Path(config.source).expanduser().resolve().parent


def check_strategy_code(spec: str, folders: Iterable[Path]) -> Path:
    """The file ``package.module:Class`` lives in, once it is known to be a strategy file in a
    strategy folder that defines that class; SourceError otherwise. Nothing is imported."""
    mod, sep, cls = spec.partition(":")
    if not sep or not mod or not _NAME.fullmatch(cls):
        raise SourceError(f"{spec!r}: expected 'package.module:ClassName'")
    path = find_module_file(mod)
    allowed = list(folders)
    if not any(path.is_relative_to(f) for f in allowed):
        where = ", ".join(str(f) for f in allowed)
        raise SourceError(f"{spec}: {path} is not in a strategy folder ({where})")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{spec}: cannot read {path}: {e}") from None
    except SyntaxError as e:
        raise SourceError(f"{spec}: SyntaxError in {path}, line {e.lineno}: {e.msg}") from None
    if not any(isinstance(n, ast.ClassDef) and n.name == cls for n in tree.body):
        raise SourceError(f"{spec}: {path} defines no class {cls!r}")
    return path


def check_update_config(path: Path | str, running: Config | None) -> Path:
    """``path`` resolved, once it is known to be a file in the running config's folder."""
    p = Path(path).expanduser().resolve()
    folder = config_folder(running) if running is not None else None
    if folder is None:
        raise SourceError(
            f"{p}: this engine's config came from no file, so no config file may update it"
        )
    if p.parent != folder:
        raise SourceError(
            f"{p}: an update's config must be in the running config's folder {folder}"
        )
    if not p.is_file():
        raise SourceError(f"{p}: file not found")
    return p


def _unique(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p not in out:
            out.append(p)
    return out


__all__ = [
    "SourceError",
    "check_strategy_code",
    "check_update_config",
    "config_folder",
    "find_module_file",
    "strategy_folders",
]
