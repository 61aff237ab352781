"""JAX's persistent compilation cache, switched on by the search driver and the CLI.

A search compiles one training program per (space, population size, training
config); with the cache on, the next process on the same machine loads it from disk
instead (compiling a conv-cell program takes seconds to tens of seconds). Only the
driver, the CLI and the benchmarks call this: it sets process-wide JAX options and
touches the disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

ENV = "JAXNAS_COMPILE_CACHE"
OFF = ("off", "0", "false", "no", "none")


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/jaxnas/xla``, or ``~/.cache/jaxnas/xla``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxnas" / "xla"


def resolve(setting: str | os.PathLike | bool | None = None) -> Path | None:
    """Where the cache lives for ``setting``, None when it is off.

    None reads ``$JAXNAS_COMPILE_CACHE`` (a directory, or "off"), else the default
    directory; True means the default directory; False or "off" turn the cache off.
    """
    if setting is None:
        setting = os.environ.get(ENV) or True
    if setting is False or (isinstance(setting, str) and setting.strip().lower() in OFF):
        return None
    if setting is True:
        return default_dir()
    return Path(setting).expanduser()


def enable(setting: str | os.PathLike | bool | None = None) -> Path | None:
    """Points JAX's persistent cache at ``resolve(setting)`` (or turns it off) for every
    later compilation in this process; returns the directory, None when off.

    Every program is cached, however fast it compiled: a search's small programs add
    up. Raises OSError when the directory cannot be created.
    """
    path = resolve(setting)
    current = jax.config.jax_compilation_cache_dir
    wanted = None if path is None else str(path)
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if wanted != current:
        jax.config.update("jax_compilation_cache_dir", wanted)
        # A cache already opened at another directory is only re-read after a reset.
        compilation_cache.reset_cache()
    return path
