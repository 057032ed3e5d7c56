"""The station's command handlers (`packcam station`, `demo`, `doctor`, ...), run by station.cli."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from station import config as config_mod
from station import configdoc
from station.capture.barcodes import decode_command
from station.capture.codes import (
    Rules,
    card_clashes,
    numbers_taken_for_products,
    orders_that_are_products,
)
from station.capture.synthetic import DEMO_SESSION
from station.cliargs import EXIT_FAIL, EXIT_OK, EXIT_USAGE, load_config
from station.errors import ConfigError, StationError
from station.floor.feedback import TONES, AplaySink, prepare_sounds
from station.runtime.doctor import (
    CHECK_NAMES,
    FAIL,
    render_text,
    report_dict,
    run_checks,
    startup_checks,
)
from station.service import replay, run_demo, run_station
from station.store.ledger import INDEX_NAME, Ledger
from station.store.recovery import recover_data_dir
from station.store.retention import Candidate, Policy, disk_probe, plan

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
    if args.show:
        print(configdoc.render_toml(cfg, f"# {args.file}: the effective config", mask=True), end="")
        return EXIT_OK
    print(f"{args.file}: OK (station {cfg.station.name!r}, camera {cfg.camera.backend}, "
          f"data {cfg.station.data_dir})")  # fmt: skip
    changed = configdoc.changed(cfg)
    print(f"{len(changed)} key{'' if len(changed) == 1 else 's'} differ from the defaults"
          + (":" if changed else ""))  # fmt: skip
    for key, value in changed:
        print(f"  {key} = {value}")
    for pattern, code in orders_that_are_products(Rules.from_config(cfg.codes)):
        print(f"warning: [codes] order_patterns {pattern!r} matches product codes (e.g. {code},"
              " of [codes] product_prefixes): a product scanned by hand would start an order's"
              " clip; narrow the pattern to your order IDs")  # fmt: skip
    for clash in card_clashes(cfg.codes):
        print(f"warning: {clash}")
    if taken := numbers_taken_for_products(Rules.from_config(cfg.codes)):
        print(f"warning: [codes] check_digits_sent = false and no order_patterns: a hand scan"
              f" such as {', '.join(taken)} (12 digits starting with a product prefix; 11 or 7"
              " digits likewise) is taken for a product, never an order or waybill; set"
              " order_patterns to your order IDs, or the scanner to send check digits")  # fmt: skip
    return EXIT_OK


def cmd_station(args: argparse.Namespace) -> int:

    cfg = load_config(args)
    stop = threading.Event()
    _stop_on_signals(stop)

    startup_checks(cfg)  # `packcam doctor` without the camera, logged in the background
    run_station(cfg, stop)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:

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

    cfg = load_config(args)
    clips = replay(cfg, Path(args.video), start=args.start)
    print(f"{len(clips)} clip(s) written to {cfg.station.data_dir}")
    for c in clips:
        print(f"  {c.order_id}\t{c.finish_reason}\t{c.duration_s:.1f}s\t{c.path}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:

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

    return decode_command(args.images, args.json)


def _existing_index(cfg: config_mod.Config) -> Path:

    index = cfg.station.data_dir / INDEX_NAME
    if not index.is_file():
        raise StationError(f"no clip index in {cfg.station.data_dir} (is that the data dir?)")
    return index


def cmd_recover(args: argparse.Namespace) -> int:

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

    cfg = load_config(args)
    ledger = Ledger(_existing_index(cfg))
    try:
        by = args.by or f"cli:{getpass.getuser()}"
        changed = ledger.set_legal_hold(args.order, not args.release, by, args.note or "")
        clips = ledger.clips(args.order)
        # a hold keeps what is still there: say which clips retention deleted before it
        gone = [(c.path, d["deleted_utc"]) for c in clips
                if (d := ledger.deletion_record(c.path)) is not None]  # fmt: skip
    finally:
        ledger.close()
    n = len(clips)
    state = "released" if args.release else "on legal hold"
    print(f"order {args.order!r} {'is now' if changed else 'was already'} {state}"
          f" ({n} clip{'s' if n != 1 else ''} indexed"
          f"{f', {len(gone)} of them already deleted by retention' if gone else ''})")  # fmt: skip
    for path, when in gone:
        print(f"deleted by retention on {when[:19].replace('T', ' ')} UTC (signed record kept):"
              f" {path}")  # fmt: skip
    if n == 0 and not args.release:
        print("note: no clips of this order yet; the hold covers clips recorded later")
    return EXIT_OK


def cmd_retention(args: argparse.Namespace) -> int:

    cfg = load_config(args)
    ledger = Ledger(_existing_index(cfg))
    try:
        now = datetime.now(UTC)
        stored = ledger.stored_clips()
        gone = ledger.latest_deleted(now)
        holds = ledger.legal_holds()
        alarms = ledger.alarms()
    finally:
        ledger.close()
    space = disk_probe(cfg.station.data_dir)()
    policy = Policy.from_config(cfg.retention, archiving=cfg.archive.enabled)
    result = plan([Candidate.from_stored(c) for c in stored], now=now, free_bytes=space.free,
                  total_bytes=space.total, policy=policy, gone=[gone] if gone else [])  # fmt: skip
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
