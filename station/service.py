"""Assembles a station from its config (the one place backends are chosen) and runs it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import cv2

from station.backends import build_camera, build_scan_sources
from station.capture.barcodes import camera_scan_worker
from station.capture.camera import OpenCVCamera
from station.capture.frames import FrameSource
from station.config import Config
from station.errors import CameraError, ConfigError
from station.fleet.archiver import Archiver
from station.fleet.central_sync import CentralSync
from station.floor.alarms import AlarmBoard
from station.floor.demo_floor import SCREEN_SIGN_IN_AFTER_S, packing_floor, sign_in_on_screen
from station.floor.events import StationEvents
from station.floor.hooks import attach_recorder, build_events, clip_archived, clip_finished
from station.proof.exports import ExportWorker
from station.proof.finalizer import build_finalizers, deletion_signer_of, start_stamp_of
from station.recording.live import LiveWriter
from station.recording.overlay import Overlay
from station.recording.recorder import Finalizer, FinishedClip, Recorder
from station.recording.runner import Station, StationWatchdog
from station.recording.stream import stream_factories
from station.recording.writer import HARDWARE_ENCODERS, EncoderSettings, probe_encoder, to_i420
from station.runtime.background import CacheSweep
from station.runtime.localzone import station_tz
from station.runtime.sdnotify import Watchdog
from station.store.caches import FrameFiles
from station.store.ledger import ClipRecord, Ledger
from station.store.recovery import Recovery, data_dir_lock
from station.store.retention import ARCHIVE_MISSING, DiskProbe, RetentionManager

if TYPE_CHECKING:
    from station.fleet.archiver import Archiver
    from station.fleet.central_sync import CentralSync
    from station.proof.exports import ExportWorker

log = logging.getLogger(__name__)

# Starts the web site beside the demo station (cfg, stop, out) -> its thread: web.cli's
# start_demo_site, handed in by the composition layer (station/ does not import web/).
# Serves the web site on a thread until the event is set: (that thread, the site's URL).
StartWeb = Callable[[Config, threading.Event, TextIO], tuple[threading.Thread, str]]


@dataclass
class Assembly:
    """A station with everything it owns, so callers can inspect and close it."""

    station: Station
    recorder: Recorder
    ledger: Ledger
    camera: FrameSource
    finalizers: tuple[Finalizer, ...] = ()
    alarms: AlarmBoard | None = None
    recovery: Recovery | None = None
    retention: RetentionManager | None = None
    archiver: Archiver | None = None
    central_sync: CentralSync | None = None
    live: LiveWriter | None = None
    events: StationEvents | None = None
    exports: ExportWorker | None = None  # builds the web site's evidence bundles
    frames: FrameFiles | None = None  # the web site's key-frame cache, kept within its bound
    sweep: CacheSweep | None = None  # sweeps both caches in the background

    def close(self) -> None:
        """Close what the station run leaves open (the recorder is closed by the run)."""
        if self.sweep is not None:
            self.sweep.stop()
        if self.exports is not None:
            try:
                self.exports.stop()  # before the finalizers: a build may sign a checkpoint
            except Exception:
                log.exception("stopping the export worker failed")
        if self.live is not None:
            self.live.close()  # writes the last status (e.g. "stopped") first
        if self.retention is not None:
            self.retention.stop()
        if self.archiver is not None:
            try:
                self.archiver.stop()  # an unfinished upload resumes at the next start
            except Exception:
                log.exception("stopping the archiver failed")
        for f in self.finalizers:
            close = getattr(f, "close", None)
            if close is not None:
                try:
                    close()  # signs a last checkpoint, stops the timestamp thread
                except Exception:
                    log.exception("closing finalizer %r failed", f)
        if self.central_sync is not None:
            try:
                # Last: what the archiver verified and the last checkpoint reach the central index.
                self.central_sync.stop(final_push=True)
            except Exception:
                log.exception("stopping the central sync failed")
        if self.events is not None:
            self.events.close()  # plays the last queued sound, flushes the webhook queue
        self.ledger.close()


def assemble(
    cfg: Config,
    *,
    camera: FrameSource | None = None,
    realtime: bool = True,
    live_view: bool = True,
    on_finished: Callable[[FinishedClip], None] | None = None,
    probe: DiskProbe | None = None,
) -> Assembly:
    """Build camera, scan sources, decoder, overlay, writer, recorder and ledger from ``cfg``.

    A camera that is not live (a file, a non-real-time synthetic scene) gets a synchronous
    decoder, so what is read does not depend on how fast this machine is. Also built: the
    alarm board, crash recovery (which salvages clips whose writer failed) and the retention
    manager guarding the disk (``probe``: free-space probe, the real ``statvfs`` by default);
    ``run_station`` runs recovery and starts retention before the capture loop.
    """

    cam = camera if camera is not None else build_camera(cfg, realtime=realtime)
    r = cfg.recorder
    if r.encoder in HARDWARE_ENCODERS:
        # Staff learn of a missing or busy hardware encoder now, not at the first parcel; no
        # silent fallback to libx264 (it would change what the evidence looks like).
        probe_encoder(EncoderSettings.from_recorder(r, cam.width, cam.height, cam.fps))
    data_dir = cfg.station.data_dir
    # the capture loop's index writes go through a writer thread: it never waits in SQLite
    ledger = Ledger.in_data_dir(data_dir, capture_writes=True)
    width, height, fps = cam.width, cam.height, cam.fps

    encoder_factory, muxer_factory = stream_factories(r, width, height, fps)

    finalizers = build_finalizers(cfg)  # the signer must be the last finalizer
    events = build_events(cfg, live=cam.live)
    alarms = AlarmBoard(ledger, cfg.retention.alarm_command, events=events)
    recovery = Recovery(cfg, ledger, finalizers, alarms=alarms)
    archiver, sync = build_fleet(cfg, events, alarms=alarms)
    # the site's key frames: freed before any clip when the disk runs short (the bundles too,
    # once the export worker is made: _run_locked)
    frames = FrameFiles(data_dir, cfg.web.frame_cache_mb << 20, ledger)
    retention = RetentionManager(
        cfg,
        ledger,
        probe=probe,
        alarms=alarms,
        signer=deletion_signer_of(finalizers),
        # an archived clip goes only once the bucket still shows its copy (one HEAD)
        archive_check=archiver.store.check_archived if archiver is not None else None,
        caches=[frames],
    )

    def finished(result: FinishedClip) -> None:
        if result.empty:
            pass
        elif result.error is None:
            alarms.clear("recording-failed", cfg.station.name)
        else:
            kept = "indexed as interrupted" if result.record else "indexed by recovery later"
            msg = f"clip of order {result.order_id!r}: {result.error} ({kept})"
            alarms.raise_("recording-failed", cfg.station.name, msg)
        retention.poke()  # a finished clip used space: check the floor now
        clip_finished(events, result, time.monotonic())
        for part in (archiver, sync):
            if part is not None:
                part.on_finished(result)
        if on_finished is not None:
            on_finished(result)

    recorder = Recorder(
        cfg,
        ledger,
        encoder=encoder_factory,
        muxer=muxer_factory,
        on_finished=finished,
        finalizers=finalizers,
        salvage=recovery.salvage,
        start_stamp=start_stamp_of(finalizers),
    )
    attach_recorder(events, cfg, recorder)
    decoder = None
    if cfg.scanner.camera_decode:
        decoder = camera_scan_worker(cfg, sync=not cam.live)
    overlay = None
    if r.overlay:
        overlay = Overlay(cfg.station.name, station_tz(cfg), r.font, r.overlay_language)
    scenario = getattr(cam, "scenario", None)
    live = LiveWriter(data_dir, cfg.station.name, threaded=True) if live_view else None
    # Under systemd (Type=notify): READY=1 on the first frame, then WATCHDOG=1 from the capture
    # loop, so a stalled loop gets the service restarted. Without $NOTIFY_SOCKET it only
    # forwards to the live writer.
    on_frame = Watchdog(live) if live_view else None
    st = Station(
        cfg,
        cam,
        recorder,
        # an injected camera that is no synthetic scene walks no script: no scripted scans
        scan_sources=build_scan_sources(
            cfg, scenario=scenario, scripted=camera is None or scenario is not None
        ),
        decoder=decoder,
        overlay=overlay,
        to_i420=to_i420,
        on_frame=on_frame,
        guard=retention,
        alarms=alarms,
        events=events,
    )
    asm = Assembly(
        st, recorder, ledger, cam, finalizers, alarms, recovery, retention, archiver, sync, live
    )
    asm.events = events
    asm.frames = frames
    return asm


def build_fleet(
    cfg: Config, events: StationEvents | None = None, *, alarms: AlarmBoard | None = None
) -> tuple[Archiver | None, CentralSync | None]:
    """The archiver ([archive] enabled) and the central sync ([central] enabled), not started.

    Each opens its own connections to the index; the sync is woken when a clip is archived,
    and the clip's "archive-missing" alarm (retention found its bucket copy gone) is cleared.
    """
    archiver = sync = None
    if cfg.central.enabled:
        sync = CentralSync(cfg)
    if cfg.archive.enabled:

        def archived(rec: ClipRecord) -> None:
            if alarms is not None:
                alarms.clear(ARCHIVE_MISSING, rec.path)
            if sync is not None:
                sync.wake()
            if events is not None:
                clip_archived(events, rec, time.monotonic())

        archiver = Archiver(cfg, on_archived=archived)
    return archiver, sync


def run_station(cfg: Config, stop: threading.Event, **kw: object) -> Assembly:
    """Run until ``stop`` is set or the camera ends; returns the closed assembly.

    Holds the data dir's lock throughout (a second station or ``packcam recover`` on the same
    directory is refused), recovers unfinished recordings and reconciles the index first, and
    keeps the retention thread running beside the capture loop.
    """
    with data_dir_lock(cfg.station.data_dir):  # makes the data dir, or says why it cannot
        return _run_locked(cfg, stop, **kw)


def _run_locked(cfg: Config, stop: threading.Event, **kw: object) -> Assembly:
    asm = assemble(cfg, **kw)  # type: ignore[arg-type]
    assert asm.recovery is not None and asm.retention is not None and asm.alarms is not None
    log.info(
        "station %r: camera %s %dx%d@%g, data %s",
        cfg.station.name,
        cfg.camera.backend,
        asm.camera.width,
        asm.camera.height,
        asm.camera.fps,
        cfg.station.data_dir,
    )
    try:
        try:
            asm.recovery.run()
        except Exception as exc:  # recording new evidence matters more than tidying the old
            log.exception("crash recovery failed; recording anyway")
            msg = f"crash recovery failed: {exc}"
            asm.alarms.raise_("recovery", str(cfg.station.data_dir), msg)
        exports = None
        try:
            exports = ExportWorker(cfg)
        except OSError as exc:  # the web's bundles wait; recording must not
            _exports_off(asm.alarms, cfg, exc)
        if exports is not None:
            asm.retention.add_cache(exports)  # bundles too go before any clip
        asm.retention.start()
        asm.sweep = CacheSweep([c for c in (asm.frames, exports) if c is not None])
        asm.sweep.start()  # one sweep now: what a stopped station left over its bounds
        if exports is not None:
            try:
                asm.exports = exports
                exports.start()
            except OSError as exc:
                _exports_off(asm.alarms, cfg, exc)
        for part in (asm.archiver, asm.central_sync):
            if part is not None:
                part.start()  # after recovery, so recovered clips are archived too
        asm.station.run(stop)
    finally:
        if isinstance(asm.station.on_frame, StationWatchdog):
            asm.station.on_frame.stopping()
            asm.station.on_frame.write_status(asm.station.status(), state="stopped")
        asm.close()
    return asm


def _exports_off(alarms: AlarmBoard, cfg: Config, exc: OSError) -> None:
    log.error("evidence bundles for the web site are off: %s", exc)
    alarms.raise_("exports", str(cfg.station.data_dir), f"export worker: {exc}")


def probe_video(path: Path) -> tuple[int, int, float]:
    """Width, height and frame rate of a video file (for replaying it at its own size)."""
    if not path.is_file():
        raise CameraError(f"no such video file: {path}")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise CameraError(f"cannot open video file {path}")
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or 30.0
    finally:
        cap.release()
    if w <= 0 or h <= 0:
        raise CameraError(f"{path} has no video stream")
    return w - w % 2, h - h % 2, fps


def replay(cfg: Config, video: Path, *, start: str | None = None) -> list[ClipRecord]:
    """Run the whole pipeline over ``video`` as the camera, as fast as possible; return clips."""
    start_wall: datetime | None = None
    if start:
        try:
            start_wall = datetime.fromisoformat(start)
        except ValueError as exc:
            raise ConfigError(f"--start: not an ISO 8601 time: {start!r}") from exc
        if start_wall.tzinfo is None:
            start_wall = start_wall.astimezone()
    w, h, fps = probe_video(video)
    cfg = cfg.replace("camera", backend="opencv", source=str(video), width=w, height=h, fps=fps)
    cam = OpenCVCamera(
        str(video), w, h, fps, cfg.camera.read_timeout_s, start_wall=start_wall, tz=station_tz(cfg)
    )
    finished: list[FinishedClip] = []
    asm = run_station(
        cfg, threading.Event(), camera=cam, live_view=False, on_finished=finished.append
    )
    failed = [f for f in finished if f.record is None]
    for f in failed:
        log.error("clip of order %r was not indexed: %s", f.order_id, f.error)
    del asm
    return [f.record for f in finished if f.record is not None]


def run_demo(
    cfg: Config,
    stop: threading.Event,
    *,
    duration: float | None = None,
    start_web: StartWeb | None = None,
    out: TextIO,
) -> None:
    """The synthetic station plus (with ``start_web``) the web site, until stopped."""
    if cfg.camera.backend != "synthetic":
        cfg = cfg.replace("camera", backend="synthetic", scenario="")
    cfg.station.data_dir.mkdir(parents=True, exist_ok=True)

    cfg, receiver = packing_floor(cfg, out)  # sounds into a log, a webhook receiver
    threads: list[threading.Thread] = []
    if start_web is not None:
        web_thread, url = start_web(cfg, stop, out)
        threads += [web_thread, _screen_sign_in(cfg, url, stop, out)]
    if duration is not None:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    out.write(f"packcam demo: station {cfg.station.name!r} recording to {cfg.station.data_dir}\n")
    out.flush()
    t0 = time.monotonic()
    try:
        run_station(cfg, stop, realtime=True)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        if receiver is not None:
            receiver.close()
    out.write(f"packcam demo: stopped after {time.monotonic() - t0:.0f} s\n")


def _screen_sign_in(cfg: Config, url: str, stop: threading.Event, out: TextIO) -> threading.Thread:
    """A packer signs in on the station screen a few seconds in (after the badge at 0.5 s)."""

    def run() -> None:
        if cfg.screen.packers and not stop.wait(SCREEN_SIGN_IN_AFTER_S):
            sign_in_on_screen(url, cfg, cfg.screen.packers[0], stop, out)

    thread = threading.Thread(target=run, name="demo-screen-sign-in", daemon=True)
    thread.start()
    return thread
