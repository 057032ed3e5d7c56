"""The station's command line: station, demo, replay, clips, check-config, decode and friends."""

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
from station.cliargs import (
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    add_config,
    add_data,
    load_config,
)
from station.errors import ConfigError, StationError
from station.proof import cli as proof_cli

log = logging.getLogger(__name__)


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

    cfg = load_config(args)
    stop = threading.Event()
    _stop_on_signals(stop)
    from station.doctor import startup_checks

    startup_checks(cfg)  # `packcam doctor` without the camera, logged in the background
    run_station(cfg, stop)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from station.doctor import CHECK_NAMES, FAIL, render_text, report_dict, run_checks

    unknown = sorted(set(args.skip) - set(CHECK_NAMES))
    if unknown:
        print(f"packcam doctor: unknown check(s) {', '.join(unknown)}; the checks are "
              f"{', '.join(CHECK_NAMES)}", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    cfg = load_config(args)
    checks = run_checks(cfg, skip=args.skip)
    if args.json:
        print(json.dumps(report_dict(cfg, checks), ensure_ascii=False, indent=2))
    else:
        print(render_text(cfg, checks))
    return EXIT_FAIL if any(c.status == FAIL for c in checks) else EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from station.service import replay

    cfg = load_config(args)
    clips = replay(cfg, Path(args.video), start=args.start)
    print(f"{len(clips)} clip(s) written to {cfg.station.data_dir}")
    for c in clips:
        print(f"  {c.order_id}\t{c.finish_reason}\t{c.duration_s:.1f}s\t{c.path}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from station.service import run_demo
    from station.synthetic import DEMO_SESSION

    cfg = load_config(args)
    if args.config is None:
        # Short still/timeout limits so a demo shows every stop rule within minutes.
        cfg = cfg.replace("session", **DEMO_SESSION)
        if not args.data:
            cfg = cfg.with_data_dir(Path("demo-data"))
    if args.port is not None:
        cfg = cfg.replace("web", port=args.port)
    stop = threading.Event()
    _stop_on_signals(stop)
    # The web site comes from the composition layer (packcam.cli), which knows web/.
    start_web = None if args.no_web else getattr(args, "start_web", None)
    run_demo(cfg, stop, duration=args.duration, start_web=start_web, out=sys.stdout)
    return EXIT_OK


def cmd_clips(args: argparse.Namespace) -> int:
    from station.ledger import INDEX_NAME, Ledger

    cfg = load_config(args)
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


def _existing_index(cfg: config_mod.Config) -> Path:
    from station.ledger import INDEX_NAME

    index = cfg.station.data_dir / INDEX_NAME
    if not index.is_file():
        raise StationError(f"no clip index in {cfg.station.data_dir} (is that the data dir?)")
    return index


def cmd_recover(args: argparse.Namespace) -> int:
    from station.recovery import recover_data_dir

    cfg = load_config(args)
    _existing_index(cfg)
    report = recover_data_dir(cfg)
    if args.json:
        json.dump({**report.__dict__, "ok": report.ok}, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        for line in report.lines():
            print(line)
    return EXIT_OK if report.ok else EXIT_FAIL


def cmd_hold(args: argparse.Namespace) -> int:
    import getpass

    from station.ledger import Ledger

    cfg = load_config(args)
    ledger = Ledger(_existing_index(cfg))
    try:
        by = args.by or f"cli:{getpass.getuser()}"
        changed = ledger.set_legal_hold(args.order, not args.release, by, args.note or "")
        n = len(ledger.clips(args.order))
    finally:
        ledger.close()
    state = "released" if args.release else "on legal hold"
    print(f"order {args.order!r} {'is now' if changed else 'was already'} {state}"
          f" ({n} clip{'s' if n != 1 else ''} indexed)")  # fmt: skip
    if n == 0 and not args.release:
        print("note: no clips of this order yet; the hold covers clips recorded later")
    return EXIT_OK


def cmd_retention(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from station.ledger import Ledger
    from station.retention import Candidate, Policy, disk_probe, plan

    cfg = load_config(args)
    ledger = Ledger(_existing_index(cfg))
    try:
        stored = ledger.stored_clips()
        holds = ledger.legal_holds()
        alarms = ledger.alarms()
    finally:
        ledger.close()
    space = disk_probe(cfg.station.data_dir)()
    policy = Policy.from_config(cfg.retention)
    result = plan([Candidate.from_stored(c) for c in stored], now=datetime.now(UTC),
                  free_bytes=space.free, total_bytes=space.total, policy=policy)  # fmt: skip
    mb = 1 << 20
    print(f"free {space.free / mb:.0f} MB of {space.total / mb:.0f} MB; floor "
          f"{result.floor_bytes / mb:.0f} MB; {len(stored)} clips kept on disk; min age "
          f"{policy.min_age_days:g} days; archive required: {policy.archive_required}")  # fmt: skip
    by_id = {c.id: c for c in stored}
    if result.deletions:
        print(f"retention would delete {len(result.deletions)} clip(s) now, oldest first:")
        for d in result.deletions:
            c = by_id[d.id]
            print(f"  {c.id}\t{c.order_id}\t{c.started_at:%Y-%m-%d %H:%M}Z\t{c.size}\t{c.path}")
    else:
        print("nothing to delete now" if not result.below_floor else "nothing may be deleted")
    if not result.floor_reached:
        print("the floor cannot be reached: the station refuses new clips (disk-full alarm)")
    for why, n in sorted(result.kept.items()):
        print(f"kept: {n} clip(s) {why}")
    for h in holds:
        print(f"legal hold: {h.order_id} (by {h.held_by}, since {h.held_utc})")
    for a in alarms:
        print(f"ALARM {a.kind}: {a.message} (x{a.count}, since {a.first_utc})")
    return EXIT_OK if result.floor_reached else EXIT_FAIL


def cmd_sounds(args: argparse.Namespace) -> int:
    from station.feedback import TONES, AplaySink, prepare_sounds

    cfg = load_config(args)
    fb = cfg.feedback
    out = Path(args.out) if args.out else (
        Path(fb.sounds_dir) if fb.sounds_dir else cfg.station.data_dir / "sounds"
    )  # fmt: skip
    voice = args.voice or fb.voice
    if args.play and args.play != "all" and args.play not in TONES:
        raise ConfigError(f"--play: no sound {args.play!r} (sounds: {', '.join(TONES)}, all)")
    sounds = prepare_sounds(out, volume=fb.volume, voice=voice)
    for name, path in sounds.items():
        print(f"{name}\t{path}")
    if args.play:
        sink = AplaySink(args.device or fb.device, fb.player)
        for name in sounds if args.play == "all" else [args.play]:
            sink.play(name, sounds[name])
            sink.close()  # one after the other, each to its end
    return EXIT_OK


# ---- parser -------------------------------------------------------------------------------


Registrar = Callable[[Any], None]


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
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "station",
        help="run the packing station (camera, scanners, recorder) until SIGTERM",
        description="Run the station as configured: capture, decode, record and index clips.",
    )
    add_config(p, required=True)
    add_data(p)
    p.set_defaults(func=cmd_station)

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
    p.set_defaults(func=cmd_replay)

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
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser(
        "hold",
        help="put an order on legal hold (retention never deletes its clips) or release it",
        description="Legal hold for ORDER: its clips, present and future, are never deleted by "
        "retention until released. Every change is logged with who made it.",
    )
    p.add_argument("order", metavar="ORDER")
    p.add_argument("--release", action="store_true", help="release the hold")
    p.add_argument("--by", metavar="NAME", help="who decides (default: cli:<user>)")
    p.add_argument("--note", metavar="TEXT", help="why (e.g. a dispute or case number)")
    add_data(p, required=True)
    add_config(p)
    p.set_defaults(func=cmd_hold)

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
    p.set_defaults(func=cmd_retention)

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
    p.set_defaults(func=cmd_doctor)

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
    p.set_defaults(func=cmd_sounds)

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
