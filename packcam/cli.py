"""The `packcam` command: the station's commands with the web, proof and central groups wired in."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from central import cli as central_cli
from central.site import CentralSite
from station import cli as station_cli
from station.proof import cli as proof_cli
from web import cli as web_cli


def _web(subparsers: Any) -> None:
    # `packcam web --central` serves the fleet's central site: web/ gets its backends from here.
    web_cli.register(subparsers, central_site=CentralSite)


GROUPS: tuple[station_cli.Registrar, ...] = (_web, proof_cli.register, central_cli.register)


def build_parser() -> argparse.ArgumentParser:
    parser = station_cli.build_parser(GROUPS)
    # `packcam demo` serves the web site beside the synthetic station.
    parser.set_defaults(start_web=web_cli.start_demo_site)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return station_cli.main(argv, parser=build_parser())


__all__ = ["GROUPS", "build_parser", "main"]
