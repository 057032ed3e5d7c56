"""What every packcam subcommand shares: exit codes, ``--config``/``--data`` and the config."""

from __future__ import annotations

import argparse

from station import config as config_mod
from station.errors import EXIT_ERROR, EXIT_FAIL, EXIT_OK, EXIT_USAGE


def load_config(args: argparse.Namespace) -> config_mod.Config:
    """The config a subcommand runs with: ``--config`` (or the defaults), ``--data`` over it."""
    return config_mod.load_cli(getattr(args, "config", None), getattr(args, "data", None))


def add_config(
    p: argparse.ArgumentParser, *, required: bool = False, suppress: bool = False
) -> None:
    """``--config FILE``. ``suppress``: no default, so the option may stand both before and
    after a subcommand (argparse would otherwise let the subparser's None win)."""
    p.add_argument(
        "--config",
        metavar="FILE",
        required=required,
        help="TOML config file (see config/packcam.example.toml)"
        + ("" if required else "; default: built-in defaults"),
        **({"default": argparse.SUPPRESS} if suppress else {}),
    )


def add_data(p: argparse.ArgumentParser, *, required: bool = False, suppress: bool = False) -> None:
    """``--data DIR`` (over ``station.data_dir``); ``suppress`` as for ``add_config``."""
    p.add_argument(
        "--data",
        metavar="DIR",
        required=required,
        help="data directory (clips, index, keys); overrides station.data_dir of the config",
        **({"default": argparse.SUPPRESS} if suppress else {}),
    )


__all__ = [
    "EXIT_ERROR",
    "EXIT_FAIL",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_config",
    "add_data",
    "load_config",
]
