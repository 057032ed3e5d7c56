"""The `packcam` command line: station, demo, replay, clips, check-config, decode and friends."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import station
from station import config as config_mod
from station.errors import ConfigError, StationError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3


def _load_config(args: argparse.Namespace) -> config_mod.Config:
    cfg = config_mod.load(getattr(args, "config", None))
    data = getattr(args, "data", None)
    if data:
        cfg = cfg.with_data_dir(Path(data))
    return cfg


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# ---- commands -----------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.file)
    print(f"{args.file}: OK (station {cfg.station.name!r}, camera {cfg.camera.backend}, "
          f"data {cfg.station.data_dir})")  # fmt: skip
    return EXIT_OK


def cmd_station(args: argparse.Namespace) -> int:
    from station.service import run_station

    cfg = _load_config(args)
    stop = threading.Event()
    _stop_on_signals(stop)
    run_station(cfg, stop)
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from station.service import replay

    cfg = _load_config(args)
    clips = replay(cfg, Path(args.video), start=args.start)
    print(f"{len(clips)} clip(s) written to {cfg.station.data_dir}")
    for c in clips:
        print(f"  {c.order_id}\t{c.finish_reason}\t{c.duration_s:.1f}s\t{c.path}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from station.service import run_demo
    from station.synthetic import DEMO_SESSION

    cfg = _load_config(args)
    if args.config is None:
        # Short still/timeout limits so a demo shows every stop rule within minutes.
        cfg = cfg.replace("session", **DEMO_SESSION)
        if not args.data:
            cfg = cfg.with_data_dir(Path("demo-data"))
    if args.port is not None:
        cfg = cfg.replace("web", port=args.port)
    stop = threading.Event()
    _stop_on_signals(stop)
    run_demo(cfg, stop, duration=args.duration, web=not args.no_web, out=sys.stdout)
    return EXIT_OK


def cmd_clips(args: argparse.Namespace) -> int:
    from station.ledger import INDEX_NAME, Ledger

    cfg = _load_config(args)
    data_dir = cfg.station.data_dir
    if not (data_dir / INDEX_NAME).is_file():
        raise StationError(f"no clip index in {data_dir} (is that the station's data dir?)")
    ledger = Ledger(data_dir / INDEX_NAME)
    try:
        clips = ledger.clips(args.order)
    finally:
        ledger.close()
    if args.json:
        rows = []
        for c in clips:
            d = c.to_json()
            d["rel_path"] = d["path"]
            d["path"] = str((data_dir / c.path).resolve())
            rows.append(d)
        json.dump(rows, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    if not clips:
        print("no clips" + (f" for order {args.order!r}" if args.order else ""))
        return EXIT_OK
    for c in clips:
        print(f"{c.id}\t{c.order_id}\t{c.waybill or '-'}\t{c.started_at:%Y-%m-%d %H:%M:%S%z}\t"
              f"{c.duration_s:7.1f}s\t{c.finish_reason}\t{c.sha256[:16]}\t{c.path}")  # fmt: skip
    return EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    from station.barcodes import decode_command

    return decode_command(args.images, args.json)


# ---- parser -------------------------------------------------------------------------------


def _add_config(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        required=required,
        help="TOML config file (see config/packcam.example.toml)"
        + ("" if required else "; default: built-in defaults"),
    )


def _add_data(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--data",
        metavar="DIR",
        required=required,
        help="data directory (clips, index, keys); overrides station.data_dir of the config",
    )


Registrar = Callable[[Any], None]


def _plugins() -> list[Registrar]:
    """Subcommand groups that live beside the station core (web site, proofs)."""
    found: list[Registrar] = []
    for module in ("web.cli", "station.proof.cli", "central.cli"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ImportError as exc:
            if exc.name and exc.name.split(".")[0] in {"web", "station"}:
                continue  # that part is not installed in this checkout
            raise
        found.append(mod.register)
    return found


def build_parser() -> argparse.ArgumentParser:
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
        "Serves the web site too and prints its URL and a demo account. Stop with Ctrl-C.",
    )
    _add_config(p)
    _add_data(p)
    p.add_argument("--port", type=int, help="web port (default: web.port of the config, 8080)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--no-web", action="store_true", help="run the station only")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "station",
        help="run the packing station (camera, scanners, recorder) until SIGTERM",
        description="Run the station as configured: capture, decode, record and index clips.",
    )
    _add_config(p, required=True)
    _add_data(p)
    p.set_defaults(func=cmd_station)

    p = sub.add_parser(
        "replay",
        help="run the whole station pipeline over a video file and exit",
        description="Use VIDEO as the camera and run the full station pipeline over it as fast as "
        "possible, keeping the video's own timeline (pre-roll, timeouts and durations come out as "
        "they would live). Prints the clips it wrote.",
    )
    p.add_argument("video", metavar="VIDEO", help="video file to use as the camera")
    _add_data(p, required=True)
    _add_config(p)
    p.add_argument(
        "--start",
        metavar="ISO8601",
        help="wall-clock time of the video's first frame (default: file mtime minus duration)",
    )
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "clips",
        help="list indexed clips",
        description="List the clips in a data directory's index, oldest first.",
    )
    _add_data(p, required=True)
    _add_config(p)
    p.add_argument("--order", metavar="ID", help="only the clips of this order ID")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON array of clips (order_id, waybill, finish_reason, started_at, "
        "ended_at, duration_s, path (absolute), rel_path, sha256, events, ...)",
    )
    p.set_defaults(func=cmd_clips)

    p = sub.add_parser(
        "check-config",
        help="validate a config file and exit",
        description="Load and validate FILE; exit 0 when valid, 2 with the reason when not.",
    )
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_check_config)

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
    p.set_defaults(func=cmd_decode)

    for register in _plugins():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    if args.command in {"station", "demo", "web"}:
        level = min(level, logging.INFO)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
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


if __name__ == "__main__":
    sys.exit(main())
