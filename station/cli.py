"""The station's command line: station, demo, replay, clips, check-config, decode and friends."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import station
from station.cliargs import EXIT_ERROR, EXIT_USAGE, add_config, add_data
from station.errors import ConfigError, StationError
from station.proof import cli as proof_cli

Handler = Callable[[argparse.Namespace], int]


def _command(name: str) -> Handler:
    """The handler ``station.commands.<name>``, imported when its command runs (pip's command
    table): `packcam --help` and the light commands do not load the recording stack. The one
    import made at run time besides the optional hardware and fleet libraries
    (tests/test_import_graph.py)."""

    def run(args: argparse.Namespace) -> int:
        handler: Handler = getattr(importlib.import_module("station.commands"), name)
        return handler(args)

    run.__name__ = run.__qualname__ = name
    return run


Registrar = Callable[[Any], None]

# The long-running commands: they log at INFO and stop on SIGTERM by a handler of their own.
SERVICES = frozenset({"station", "demo", "web"})


def build_parser(groups: Sequence[Registrar] | None = None) -> argparse.ArgumentParser:
    """The station's commands plus the subcommand ``groups`` (each adds its subparsers):
    by default the proof commands; packcam.cli adds the web and central ones."""
    parser = argparse.ArgumentParser(
        prog="packcam",
        description="Packing-station video recorder: one hashed, indexed H.264 clip per order.",
    )
    parser.add_argument("--version", action="version", version=f"packcam {station.__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "demo",
        help="run a station on the simulated camera (and the web site) until stopped",
        description="Run a station on the synthetic camera with scripted orders: the first order "
        "is scanned within 3 s, then a new one every 15-20 s, exercising every stop rule. "
        "Serves the web site too and prints its URL, a demo account and the station screen's "
        "URL; a packer signs in with a badge, and a few seconds later another on the station "
        "screen ([screen] packers); sounds go to <data>/sounds.log and webhooks to a receiver "
        "the demo starts (unless the config sets [feedback] / [webhooks]). Stop with Ctrl-C.",
    )
    add_config(p)
    add_data(p)
    p.add_argument("--port", type=int, help="web port (default: web.port of the config, 8080)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--no-web", action="store_true", help="run the station only")
    p.set_defaults(func=_command("cmd_demo"))

    p = sub.add_parser(
        "station",
        help="run the packing station (camera, scanners, recorder) until SIGTERM",
        description="Run the station as configured: capture, decode, record and index clips.",
    )
    add_config(p, required=True)
    add_data(p)
    p.set_defaults(func=_command("cmd_station"))

    p = sub.add_parser(
        "replay",
        help="run the whole station pipeline over a video file and exit",
        description="Use VIDEO as the camera and run the full station pipeline over it as fast as "
        "possible, keeping the video's own timeline (pre-roll, timeouts and durations come out as "
        "they would live). Prints the clips it wrote.",
    )
    p.add_argument("video", metavar="VIDEO", help="video file to use as the camera")
    add_data(p, required=True)
    add_config(p)
    p.add_argument(
        "--start",
        metavar="ISO8601",
        help="wall-clock time of the video's first frame (default: file mtime minus duration)",
    )
    p.set_defaults(func=_command("cmd_replay"))

    p = sub.add_parser(
        "clips",
        help="list indexed clips",
        description="List the clips in a data directory's index, oldest first.",
    )
    add_data(p, required=True)
    add_config(p)
    p.add_argument("--order", metavar="ID", help="only the clips of this order ID")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON array of clips (order_id, waybill, finish_reason, started_at, "
        "ended_at, duration_s, path (absolute), rel_path, sha256, events, ...)",
    )
    p.set_defaults(func=_command("cmd_clips"))

    p = sub.add_parser(
        "check-config",
        help="validate a config file and exit",
        description="Load and validate FILE against the config schema (docs/configuration.md);"
        " exit 0 when valid and list the keys that differ from the defaults, 2 with the reason"
        " when not.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--show",
        action="store_true",
        help="print the whole effective config as TOML (defaults filled in, secrets masked)",
    )
    p.set_defaults(func=_command("cmd_check_config"))

    p = sub.add_parser(
        "decode",
        help="read barcodes from still images with the station's own pipeline",
        description="Run exactly the station's barcode pipeline on each IMAGE, so a warehouse "
        "can test its labels.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument(
        "--json", action="store_true", help='one JSON line per image: {"file": ..., "texts": [...]}'
    )
    p.set_defaults(func=_command("cmd_decode"))

    p = sub.add_parser(
        "recover",
        help="finalise unfinished recordings and reconcile the index with the disk",
        description="What the station does at every start, on demand (refused while a station "
        "runs on the data dir): unfinished clips in tmp/ are finalised and indexed as "
        "'interrupted' (never deleted; undecodable ones go to quarantine/), clips without an "
        "index row are indexed, rows whose file is missing are reported and raise an alarm. "
        "Exit 0 when index and disk agree afterwards, 1 when evidence is missing.",
    )
    add_data(p, required=True)
    add_config(p)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=_command("cmd_recover"))

    p = sub.add_parser(
        "hold",
        help="put an order on legal hold (retention never deletes its clips) or release it",
        description="Legal hold for ORDER: its clips, present and future, are never deleted by "
        "retention until released; clips retention deleted before the hold are named, not "
        "brought back. Every change is logged with who made it.",
    )
    p.add_argument("order", metavar="ORDER")
    p.add_argument("--release", action="store_true", help="release the hold")
    p.add_argument("--by", metavar="NAME", help="who decides (default: cli:<user>)")
    p.add_argument("--note", metavar="TEXT", help="why (e.g. a dispute or case number)")
    add_data(p, required=True)
    add_config(p)
    p.set_defaults(func=_command("cmd_hold"))

    p = sub.add_parser(
        "retention",
        help="show what retention would delete now and why the rest is kept (dry run)",
        description="Free space, the floor, the clips retention would delete now (oldest "
        "first), how many are kept and why (legal hold, younger than min_age_days, not "
        "archived), the legal holds and active alarms. Deletes nothing. Exit 1 when the floor "
        "cannot be reached (the station then refuses new clips).",
    )
    add_data(p, required=True)
    add_config(p)
    p.set_defaults(func=_command("cmd_retention"))

    p = sub.add_parser(
        "doctor",
        help="check camera, scanner, pedal, encoder, disk, clock, keys and network; exit 1 on FAIL",
        description="A self-check to run on a station (as its service user, with the station "
        "stopped: the camera and scanner can be held by one program only) and paste into a "
        "support request. Each line is OK, WARN or FAIL with a fix: camera frames at the "
        "configured size and rate, scanner devices and permissions, pedal pin, the encoder "
        "(hardware or software: measured fps headroom and key-frame interval), disk and a "
        "retention forecast, clock sync, signing key and certificate, TSA, web port, "
        "archive and central reachability. Exit 0 without FAIL, 1 with one.",
    )
    add_config(p)
    add_data(p)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument(
        "--skip", action="append", default=[], metavar="CHECK", help="leave out a check (repeat)"
    )
    p.set_defaults(func=_command("cmd_doctor"))

    p = sub.add_parser(
        "sounds",
        help="render the station's sounds (and spoken prompts) to WAV; optionally play them",
        description="Write the feedback sounds of [feedback] (tones; with a voice also the "
        "spoken prompts, rendered once by espeak-ng) into the sounds directory, e.g. when "
        "building a station image, so the station needs no espeak-ng; --play tests the speaker.",
    )
    add_config(p)
    add_data(p)
    p.add_argument("--out", metavar="DIR", help="where to write them (default: [feedback])")
    p.add_argument("--voice", choices=("none", "en", "zh"), help="override [feedback] voice")
    p.add_argument("--play", metavar="NAME", help="play one sound through aplay, or 'all'")
    p.add_argument("--device", help="ALSA device for --play (default: [feedback] device)")
    p.set_defaults(func=_command("cmd_sounds"))

    for register in (proof_cli.register,) if groups is None else groups:
        register(sub)
    return parser


def main(
    argv: Sequence[str] | None = None, *, parser: argparse.ArgumentParser | None = None
) -> int:
    """Run one command; ``parser`` defaults to ``build_parser()`` (the station's own)."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    if args.command in SERVICES:
        level = min(level, logging.INFO)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    previous = None if args.command in SERVICES else _exit_on_sigterm()
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"packcam: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StationError as exc:
        print(f"packcam: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _exit_on_sigterm() -> Any:
    """Make SIGTERM (``kill``, systemd, a shell's timeout) end a command as Ctrl-C does, by an
    exception that unwinds, with the status 128 + 15: a file being written (an export's
    ``<out>.part``) is removed, where SIGTERM's default action would leave it in the user's
    folder. The handler it replaced, to put back afterwards, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None  # only the main thread may set handlers (a test calling main in a thread)
    return signal.signal(signal.SIGTERM, _sigterm)


if __name__ == "__main__":
    sys.exit(main())
