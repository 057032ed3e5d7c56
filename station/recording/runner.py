"""The capture loop: frames in, scans classified, session stepped, overlay drawn, clips written."""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from station.capture.codes import (
    CARD_KINDS,
    LABEL_MEMORY_S,
    LYING_KINDS,
    Code,
    Debounce,
    Kind,
    Lying,
    Rules,
    Sight,
    card_clashes,
    classify,
    sanitize,
    strip_symbology_id,
)
from station.capture.frames import (
    Caption,
    Frame,
    FrameOverlay,
    FrameScanner,
    FrameSource,
    InputEvent,
    PackerPick,
    PedalPress,
    RawScan,
    ScanSource,
)
from station.config import Config
from station.errors import CameraError, RecordingError, RejectedCode, StationError
from station.floor.alarms import AlarmBoard
from station.floor.events import EventKind, StationEvents
from station.recording import session as ss
from station.recording.recorder import LateLink, Recorder
from station.runtime.backoff import Backoff
from station.runtime.localzone import station_tz
from station.store.ledger import ClipRecord, ScanEventRecord

log = logging.getLogger(__name__)

RECENT_ORDERS = 256  # orders remembered for the duplicate check until their clip is indexed

# A camera hands a frame over some ms after it was shot (``Frame.t``: its exposure), so a hand
# scan or pedal press made meanwhile comes with it, stamped after it. Such an input waits for
# the first frame shot at or after it: acted on at once, the frame (the order before's
# packing) would carry the new order and open its clip, and be missing from the clip before.
# One stamped further ahead than this is on another clock (a video file's camera time, a
# scene not run in real time) and is acted on at once, as it comes.
INPUT_AHEAD_S = 1.0


def localize(wall: datetime, tz: tzinfo | None) -> datetime:
    return wall.astimezone(tz) if tz is not None else wall.astimezone()


@dataclass
class LoopStats:
    """Counters and per-stage wall time (seconds) of the capture thread."""

    frames: int = 0
    capture_s: float = 0.0
    overlay_s: float = 0.0
    convert_s: float = 0.0
    record_s: float = 0.0
    control_s: float = 0.0
    scans: int = 0
    rejected: int = 0
    camera_losses: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Status:
    """What the live view and dashboard show about the station right now."""

    station: str
    state: str  # idle | recording | suspended | stopped
    order_id: str | None
    waybills: tuple[str, ...]
    elapsed_s: float | None
    frames: int
    last_error: str | None
    alarm: str | None = None  # the most important active alarm ("disk-full: ...")
    packer: str | None = None  # the packer signed in now (issue 13)
    next_kind: str = "order"  # the kind the next clip will be ("return" after a return card)


class ClipGuard(Protocol):
    """May a clip start, must the open one be finished now? (retention.RetentionManager)"""

    def refusal(self) -> str | None: ...

    def must_finish_clip(self) -> bool: ...


class FrameSink(Protocol):
    """Gets every frame the encoder got, with the status then: ``(image, status, dropped)``
    (live.LiveWriter, sdnotify.Watchdog, a function in tests). Called on the capture thread."""

    def __call__(self, image: np.ndarray, status: Status, dropped: int = 0) -> None: ...


@runtime_checkable
class StatusSink(FrameSink, Protocol):
    """A frame sink that can also be told the status between frames (live.LiveWriter)."""

    def write_status(self, status: Status, dropped: int = 0, state: str | None = None) -> None: ...


@runtime_checkable
class StationWatchdog(StatusSink, Protocol):
    """A status sink that feeds systemd's watchdog (sdnotify.Watchdog): ``alive`` while no
    frames come (a lost camera), ``stopping`` when the service shuts down."""

    def alive(self, status: str) -> None: ...

    def stopping(self, status: str = "stopping") -> None: ...


class Station:
    """Owns one camera, its scan sources and a recorder, and runs the capture loop.

    ``run`` blocks on the calling thread (the capture thread) until ``stop_event`` is set or the
    camera reports end of input. ``session.step`` decides everything about orders and clips;
    the Station only executes its actions and reports what happens at the edges back to it
    as events: a camera lost (or absent at start), back, a full disk, a refused clip, a
    failed writer, the shutdown. It keeps no order state of its own.

    Per-frame errors are logged and survived. This is the one reconnect loop for the camera:
    a lost (or absent) camera raises the "camera-lost" alarm and is reopened with back-off,
    the systemd watchdog fed and ``stop_event`` honoured meanwhile; the same order resumes in
    a new clip whose manifest records the gap. ``guard`` (retention) refuses new clips when
    the disk is full and asks for the open one to be finished ("disk-full") before it runs
    out. Misuse raises at once.
    """

    def __init__(
        self,
        cfg: Config,
        camera: FrameSource,
        recorder: Recorder,
        *,
        scan_sources: Sequence[ScanSource] = (),
        decoder: FrameScanner | None = None,
        overlay: FrameOverlay | None = None,
        to_i420: Callable[[np.ndarray], np.ndarray],
        on_frame: FrameSink | None = None,
        guard: ClipGuard | None = None,
        alarms: AlarmBoard | None = None,
        events: StationEvents | None = None,
    ) -> None:
        self.cfg = cfg
        self.camera = camera
        self.recorder = recorder
        self.scan_sources = list(scan_sources)
        self.decoder = decoder  # a barcodes.ScanWorker (has submit/poll), or None
        self.overlay = overlay
        self.to_i420 = to_i420
        self.on_frame = on_frame
        self.guard = guard
        self.alarms = alarms
        self.events = events  # sounds, station screen, webhooks (station/floor/events.py)
        self.rules = Rules.from_config(cfg.codes)
        for clash in card_clashes(cfg.codes):  # (packcam check-config says the same)
            log.warning("station cards: %s", clash)
        self.tz = station_tz(cfg)
        self.state: ss.State = ss.Idle()
        self.debounce = Debounce()
        self.lying = Lying()  # the station cards'
        self.labels = Lying(forget_s=LABEL_MEMORY_S)  # return labels'
        self.stats = LoopStats()
        self.last_error: str | None = None
        self._prev_small: np.ndarray | None = None
        self._last_frame: Frame | None = None
        self._decode_sync = decoder is not None and decoder.sync
        # Camera facts, not order state: the wall time of the last frame before a loss (None
        # when the camera was absent from the start).
        self._lost_wall: datetime | None = None
        self._ahead: list[InputEvent] = []  # inputs stamped after the frame they came with
        # Orders whose clip started lately in this run (the last RECENT_ORDERS): a repack
        # scanned before the finisher indexed the first clip is still a repack.
        self._started_orders: dict[str, None] = {}
        # Index facts, not order state: the clip the station's last stop cut (its newest,
        # ended "interrupted"), whose packing the session may resume (session.Cut).
        self._cut_clip: ClipRecord | None = None

    # ---- status ---------------------------------------------------------------------------

    def status(self, now_t: float | None = None) -> Status:
        st = self.state
        order = getattr(st, "order_id", None)
        elapsed = None
        if isinstance(st, ss.Recording) and now_t is not None:
            elapsed = max(0.0, now_t - st.started_t)
        name = {ss.Idle: "idle", ss.Recording: "recording", ss.Suspended: "suspended"}[type(st)]
        return Status(
            station=self.cfg.station.name,
            state=name,
            order_id=order,
            waybills=getattr(st, "waybills", ()),
            elapsed_s=elapsed,
            frames=self.stats.frames,
            last_error=self.last_error,
            alarm=self.alarms.summary() if self.alarms is not None else None,
            packer=st.floor.packer,
            next_kind=st.floor.next_kind.value,
        )

    # ---- the loop -------------------------------------------------------------------------

    def run(self, stop_event: threading.Event) -> LoopStats:
        self._remember_the_table()
        for src in self.scan_sources:
            src.start()
        if self.decoder is not None:
            self.decoder.start()
        end_reason = ss.FinishReason.INTERRUPTED
        try:
            try:
                self.camera.start()
            except CameraError as exc:  # absent at start: the same path as a loss
                frame = self._reconnect(f"camera not available: {exc}", stop_event)
            else:
                frame = self._next_frame(stop_event)
                if frame is not None and self.alarms is not None:
                    # a camera-lost alarm a run before left active (it stopped, or the power
                    # went, while the camera was away) ends at this run's first frame
                    self.alarms.clear("camera-lost", self.cfg.station.name, capture=True)
            while frame is not None and not stop_event.is_set():
                try:
                    self.process(frame)
                except Exception as exc:  # one bad frame must not stop the station
                    log.exception("frame %d failed", frame.index)
                    self.last_error = f"frame {frame.index}: {exc}"
                if stop_event.is_set():
                    break
                frame = self._next_frame(stop_event)
            if frame is None and not stop_event.is_set():
                end_reason = ss.FinishReason.END_OF_INPUT
        finally:
            self._shutdown(end_reason)
        return self.stats

    def _remember_the_table(self) -> None:
        """Start the session knowing the orders last packed at this station (the index's last
        clips, those recovered after a crash included): their sheets and waybill labels may
        still lie in view after a restart, and the camera reading one must open no clip over
        the next parcel nor name its waybill; nor a label read with no clip open and linked to
        none (its scan events of no clip: no clip's label, session.Floor.unlinked). But when
        the newest clip ended "interrupted" and nothing was scanned here since, the station
        stopped while it recorded (a power cut, a crash, a restart) and nothing ended its
        packing: its sheet shown again resumes it (session.restarted). An unreadable index
        only costs that memory."""
        ledger, station = self.recorder.ledger, self.cfg.station.name
        try:
            recent = ledger.recent_orders(station, ss.KEPT_ORDERS)
            unlinked = ledger.unlinked_waybills(station, ss.KEPT_ORDERS)
            newest = ledger.newest_clip_at(station)
            scanned_since = newest is not None and self._scanned_since(newest)
        except sqlite3.Error as exc:
            log.warning("the orders last packed here are unknown (the index: %s)", exc)
            return
        cut = None
        if (
            newest is not None
            and newest.finish_reason == ss.FinishReason.INTERRUPTED
            # A scan after it: the station ran on (its writer failed, the clip salvaged as
            # "interrupted"), or ran again since, and that packing may have been sealed or
            # left since.
            and not scanned_since
        ):
            # (its order "unknown" too, recovered with no journal: a parcel at the table)
            cut = ss.Cut(newest.order_id, ss.ClipKind(newest.kind))
            self._cut_clip = newest
            log.info("the station stopped while clip %s of order %r recorded: its sheet shown "
                     "again resumes that packing", newest.id, newest.order_id)  # fmt: skip
        self.state = ss.restarted(recent, cut, unlinked)
        log.info("remembering the %d orders last packed at this table and %d waybills read there"
                 " with no clip open", len(recent), len(unlinked))  # fmt: skip

    def _scanned_since(self, clip: ClipRecord) -> bool:
        """Was anything scanned or pressed here with no clip open after ``clip`` was indexed?
        By the index's sequence (a clock stepped back after a boot on fake-hwclock's time
        stamps a later scan before the clip ended); by the stamps when the clip has no
        events to place it by (recovered with no journal)."""
        ledger, station = self.recorder.ledger, self.cfg.station.name
        if clip.id is not None and (since := ledger.logged_since(station, clip.id)) is not None:
            return since
        scanned = ledger.newest_unattached_event(station)
        return scanned is not None and scanned.wall > clip.ended_at

    def _next_frame(self, stop_event: threading.Event) -> Frame | None:
        """The next frame, reconnecting a lost camera; None at the end of input or on stop."""
        t0 = time.perf_counter()
        try:
            frame = self.camera.read(self.cfg.camera.read_timeout_s)
        except CameraError as exc:
            return self._reconnect(str(exc), stop_event)
        self.stats.capture_s += time.perf_counter() - t0
        return frame

    def _shutdown(self, reason: ss.FinishReason) -> None:
        last_t = self._last_frame.t if self._last_frame is not None else 0.0
        # A sync decoder's last results and the inputs made after the last frame reach the
        # session before the clip closes.
        for ev in self._poll(last_t, ahead=True):
            self._handle_input(ev)
        if self.decoder is not None:
            self.decoder.stop()
        for src in self.scan_sources:
            try:
                src.stop()
            except Exception:
                log.exception("stopping scan source %r failed", src)
        self._apply(ss.EndClip(last_t, reason))
        try:
            self.camera.stop()
        except Exception:
            log.exception("stopping the camera failed")
        self.recorder.close()

    def process(self, frame: Frame) -> None:
        """Handle one frame: decode, step the session, overlay, record."""
        self._last_frame = frame
        self.stats.frames += 1
        t0 = time.perf_counter()
        i420_in = frame.pixel_format == "i420"
        if self.decoder is not None and frame.index % self.cfg.scanner.decode_every == 0:
            if i420_in:
                # The barcode reader reads grey: an I420 frame's Y plane, with no conversion;
                # a copy of that plane alone when it reads in its own thread, so the overlay
                # can draw on the frame itself.
                luma = frame.luma if self._decode_sync else frame.luma.copy()
                self.decoder.submit(replace(frame, image=luma))
            else:
                self.decoder.submit(frame)
        for ev in self._poll(frame.t):
            self._handle_input(ev)
        moving = True
        if self.cfg.session.still_timeout_s > 0:
            moving = self._moving(frame.luma)
        self._apply(ss.Tick(frame.t, moving))
        t1 = time.perf_counter()
        self.stats.control_s += t1 - t0

        # The frame the encoder gets is I420: the camera's own (an I420 camera) or a new array
        # converted from the BGR one. The overlay is drawn on that I420 frame, never on the
        # camera's BGR frame, so the barcode worker can go on reading the BGR frame in its
        # thread without a copy being made for it.
        i420 = frame.image if i420_in else self.to_i420(frame.image)
        t2 = time.perf_counter()
        # The order this frame shows: the state now, at its capture, and never changed later.
        label = getattr(self.state, "order_id", None)
        wall = localize(frame.wall, self.tz)  # burned in and written to the clip: one value
        if self.overlay is not None:
            st = self.state
            elapsed = frame.t - st.started_t if isinstance(st, ss.Recording) else None
            waybills = getattr(st, "waybills", ())
            caption = Caption(
                wall=wall,
                order_id=label,
                waybill=" ".join(waybills) or None,
                elapsed_s=elapsed,
                recording=isinstance(st, ss.Recording),
                # The clip's packer while recording (a badge read mid-clip changes the next
                # clip), else who is signed in now.
                packer=st.packer if isinstance(st, ss.Recording) else st.floor.packer,
                kind=st.kind.value if isinstance(st, ss.Recording) else st.floor.next_kind.value,
            )
            self.overlay.apply_i420(i420, caption)
        t3 = time.perf_counter()
        try:
            self.recorder.push(i420, frame.t, wall, label)
        except RecordingError as exc:
            # The recorder closed the clip and salvages what was written; the order ends here.
            self._error(f"recording failed, the clip so far is kept: {exc}")
            if self.alarms is not None:
                self.alarms.raise_(
                    "recording-failed", self.cfg.station.name, str(exc), capture=True
                )
            self._apply(ss.RecordingFailed(frame.t, str(exc)))
        if self.guard is not None and self.recorder.recording and self.guard.must_finish_clip():
            # Finish the clip while there is room for its manifest and index row.
            self._error(f"disk nearly full: finishing the clip of {label!r} now")
            self._apply(ss.EndClip(frame.t, ss.FinishReason.DISK_FULL))
        t4 = time.perf_counter()
        self.stats.convert_s += t2 - t1
        self.stats.overlay_s += t3 - t2
        self.stats.record_s += t4 - t3
        if self.on_frame is not None:
            try:
                # Shared, not copied: nothing writes to this frame any more.
                self.on_frame(i420, self.status(frame.t), self.camera.dropped)
            except Exception:
                log.exception("on_frame callback failed")

    # ---- inputs ---------------------------------------------------------------------------

    def _poll(self, now: float, *, ahead: bool = False) -> list[InputEvent]:
        """The inputs to act on before the frame shot at ``now``, in time order: those stamped
        up to ``now``; the ones stamped after it (up to ``INPUT_AHEAD_S``) wait for a later
        frame, unless ``ahead`` (no frame follows)."""
        events = self._ahead
        sources: list[ScanSource] = list(self.scan_sources)
        if self.decoder is not None:
            sources.append(self.decoder)
        for src in sources:
            try:
                events.extend(src.poll(now))
            except Exception:
                log.exception("scan source %r failed", src)
        due: list[InputEvent] = []
        self._ahead = []
        for ev in sorted(events, key=lambda e: e.t):
            waits = not ahead and now < ev.t <= now + INPUT_AHEAD_S
            (self._ahead if waits else due).append(ev)
        return due

    def _handle_input(self, ev: InputEvent) -> None:
        if isinstance(ev, PedalPress):
            self._apply(ev)
            return
        if isinstance(ev, PackerPick):
            # The screen's sign-in is the badge by another road: the same session event.
            if ev.packer is not None:
                code = Code(ev.packer, Kind.OPERATOR, ev.packer)
            else:
                code = Code("SIGNOUT", Kind.CONTROL, "signout")
            self.stats.scans += 1
            log.info("packer %s on the station screen at t=%.3f",
                     f"{ev.packer!r} picked" if ev.packer else "sign-out", ev.t)  # fmt: skip
            self._apply(ss.Scanned(code, ev.t, ev.source))
            return
        assert isinstance(ev, RawScan)
        try:
            text = sanitize(ev.text, self.rules.max_length)
            if not ev.symbology:  # a hand scan: the scanner may prefix its symbology's AIM ID
                text = strip_symbology_id(text)
        except RejectedCode as exc:
            # A bad label lying in view is decoded again and again: report it once.
            key = ev.text if isinstance(ev.text, str) else repr(ev.text)
            is_new, self.debounce = self.debounce.seen(key, ev.t, self.rules.debounce_s)
            if not is_new:
                return
            self.stats.rejected += 1
            shown = repr(ev.text[:80]) if isinstance(ev.text, str) else type(ev.text).__name__
            log.warning("rejected scan from %s: %s: %s", ev.source, exc, shown)
            in_clip = ss.in_open_clip(self.state, ev.t, ev.source)
            if self.recorder.recording and not in_clip:
                log.warning("rejected read from %s stamped t=%.3f, before the open clip began:"
                            " applied to no clip", ev.source, ev.t)  # fmt: skip
            self.recorder.log_event(
                ScanEventRecord("rejected", shown, ev.source, self._wall_at(ev.t), None, str(exc)),
                ev.t,
                in_clip=in_clip,
            )
            self._emit(EventKind.SCAN_UNREADABLE, ev.t, None, source=ev.source, why=str(exc))
            return
        code = classify(text, self.rules, ev.symbology)
        # Keyed by the code's text: a hand scan typed with Caps Lock on and the camera's read
        # of the same label are one scan (else the hand scan of the order the camera had just
        # opened was a rescan that ended its clip).
        is_new, self.debounce = self.debounce.seen(code.text, ev.t, self.rules.debounce_s)
        sight = Sight.OTHER
        if ev.box is not None and code.kind in LYING_KINDS:
            # Every read of a card, also those the debounce swallows: where it lies. (Since
            # the order's first clip: a clip resumed after a camera loss is the same packing.)
            began = ss.recorded_since(self.state)
            if code.kind is Kind.RETURN:
                sight, self.labels = self.labels.seen(code.text, ev.t, ev.box, is_new, began)
            else:
                sight, self.lying = self.lying.seen(code.text, ev.t, ev.box, is_new, began)
        lying = sight is Sight.LYING
        # A card picked up from where it lay in view and held up is shown, however soon after
        # its last read there (else the seal was missed, the clip running on past it). Not a
        # return label: its parcel lifted is no new return.
        held_up = sight is Sight.HELD_UP and code.kind in CARD_KINDS
        if not is_new and not held_up:
            return
        if held_up:  # (never a read the debounce took as new: that was the showing)
            log.info("card %r picked up from where it lay and held up at t=%.3f: shown again",
                     code.text, ev.t)  # fmt: skip
        if code.text != text:
            # (Caps Lock keeps a code's length; a card behind a Code ID is shorter)
            caps = len(code.text) == len(text)
            why = "typed with Caps Lock on" if caps else "a station card behind its Code ID"
            log.info("scan %r from %s taken as %r: %s", text, ev.source, code.text, why)
        self.stats.scans += 1
        log.info("scan %r (%s%s) from %s at t=%.3f", code.text, code.kind.value,
                 f" {code.detail}" if code.detail else "", ev.source, ev.t)  # fmt: skip
        if code.kind is Kind.UNKNOWN:
            if ev.symbology and ev.symbology not in self.rules.order_symbologies:
                # the usual case: a product's or a carton's code in view, not a misconfiguration
                log.info("code %r is a %s, no order symbology (codes.order_symbologies): "
                         "ignored", code.text, ev.symbology)  # fmt: skip
            else:
                log.warning("code %r matches no configured order pattern", code.text)
        if lying:
            log.info("card %r read at t=%.3f where it lay before, seen again after something"
                     " covered it: ignored (hold it up to the camera, or scan it by hand)",
                     code.text, ev.t)  # fmt: skip
        self._apply(ss.Scanned(code, ev.t, ev.source, lying=lying, first_t=ev.first_t))

    # ---- session actions ------------------------------------------------------------------

    def _apply(self, event: ss.Event) -> None:
        before = self.state.floor.packer
        self.state, actions = ss.step(self.state, event, self.cfg.session)
        if self.state.floor.packer != before:
            log.info("packer %s", f"{self.state.floor.packer} signed in" if
                     self.state.floor.packer else f"{before} signed out")  # fmt: skip
            self._emit(EventKind.PACKER_CHANGED, event.t, getattr(self.state, "order_id", None),
                       packer=self.state.floor.packer)  # fmt: skip
        for action in actions:
            self._do(action)

    def _do(self, action: ss.Action) -> None:
        match action:
            case ss.PreviousParcel():
                self.recorder.disown(action.t)
            case ss.StartClip():
                refused = self.guard.refusal() if self.guard is not None else None
                if refused is not None:
                    self._error(f"not recording order {action.order_id!r}: {refused}")
                    # The session logs the refusal; the log emits the scan-refused event.
                    self._apply(ss.ClipRefused(action.order_id, action.t, refused))
                    return
                repack = self._repack(action)
                try:
                    self.recorder.start(
                        action.order_id,
                        action.t,
                        pre_roll=action.pre_roll,
                        waybills=action.waybills,
                        extra={**self._floor(action), **repack, **(self._gap(action) or {})},
                        wall=self._wall_at(action.t),
                    )
                except RecordingError as exc:
                    self._error(f"cannot start clip for {action.order_id!r}: {exc}")
                    self._apply(ss.RecordingFailed(action.t, str(exc)))
                    self._emit(EventKind.SCAN_REFUSED, action.t, action.order_id, why=str(exc))
                else:
                    self._started_orders.pop(action.order_id, None)
                    self._started_orders[action.order_id] = None
                    if len(self._started_orders) > RECENT_ORDERS:
                        del self._started_orders[next(iter(self._started_orders))]
                    # repack: this station's own index made it one (announced just below);
                    # the fleet duplicate check then links it without a second warning.
                    # waybills: those the clip starts with (scanned while the camera was
                    # lost), announced "kept" then: the screen lists them under this clip.
                    self._emit(EventKind.ORDER_STARTED, action.t, action.order_id,
                               packer=action.packer, clip_kind=action.kind.value,
                               waybills=list(action.waybills),
                               repack=bool(repack), resumed=action.after_restart
                               or action.resumed_after_s is not None)  # fmt: skip
                    if repack:
                        # After order-started: the screen clears its banner on a new order.
                        earlier = repack.get("repack_of", [])
                        self._emit(EventKind.DUPLICATE_ORDER, action.t, action.order_id,
                                   earlier=earlier, why=f"already recorded: clip(s) {earlier}"
                                   if earlier else "already recorded")  # fmt: skip
            case ss.StopClip():
                if self.recorder.recording:
                    self.recorder.stop(action.reason.value, action.t)
            case ss.LinkWaybill(ended=True):
                # A read of the order before, decoded after this clip began: to its clip.
                linked = self.recorder.link_ended(
                    action.order_id,
                    action.waybill,
                    action.carrier,
                    action.t,
                    done=functools.partial(self._linked_late, action.t),
                )
                if linked is None:
                    log.warning("waybill %r of order %r linked to no clip: no ended clip of it"
                                " here", action.waybill, action.order_id)  # fmt: skip
                    return
                log.info("waybill %r read at t=%.3f linked to the ended clip %s of order %r (%s)",
                         action.waybill, action.t, linked.clip, action.order_id,
                         "in its manifest" if linked.how == "manifest" else
                         "queued for the index: its manifest is already signed")  # fmt: skip
                if linked.how == "index":
                    return  # announced once the index has it, or could not take it
                self._emit(EventKind.WAYBILL_LINKED, action.t, action.order_id,
                           waybill=action.waybill, carrier=action.carrier,
                           linked_to="ended-clip", clip=linked.clip,
                           after_signing=False)  # fmt: skip
            case ss.LinkWaybill():
                linked = self.recorder.link_waybill(action.waybill, action.carrier, action.t)
                # (not the state's order: a waybill may end the clip)
                where: dict[str, object] = {"linked_to": "order"}
                if linked is not None:
                    where = {"linked_to": "open-clip", "clip": linked.clip}
                else:
                    # No clip open (the order waits for the camera): the session keeps it
                    # for that order's clip to come (StartClip.waybills); linked to none now,
                    # and to none at all if the order is sealed in the dark.
                    log.info("waybill %r of order %r kept for its clip to come: no clip is "
                             "open", action.waybill, action.order_id)  # fmt: skip
                self._emit(EventKind.WAYBILL_LINKED, action.t, action.order_id,
                           waybill=action.waybill, carrier=action.carrier, **where)  # fmt: skip
            case ss.LogEvent():
                wall = self._wall_at(action.t)
                rec = ScanEventRecord(
                    action.kind, action.text, action.source, wall, None, action.note, action.card
                )
                if not action.in_clip:
                    log.warning("%s %r from %s applied to no clip: %s",
                                action.kind, action.text, action.source, action.note)  # fmt: skip
                self.recorder.log_event(rec, action.t, in_clip=action.in_clip)
                if action.kind == "refused":
                    self._emit(EventKind.SCAN_REFUSED, action.t, action.text, why=action.note)

    def _repack(self, action: ss.StartClip) -> dict[str, object]:
        """The manifest fields of a repack: an order this station recorded before (its index,
        or started earlier in this run and not indexed yet). A clip resuming its own order
        after a camera loss, or the packing the station's last stop cut, is the same packing,
        not a repack."""
        if action.after_restart:
            return {}
        if action.resumed_after_s is not None and action.order_at_loss == action.order_id:
            return {}
        try:
            earlier = self.recorder.ledger.order_clip_refs(action.order_id)
        except (StationError, sqlite3.Error) as exc:  # unreadable index: record anyway
            log.error("duplicate check for %r failed: %s", action.order_id, exc)
            earlier = []
        if not earlier and action.order_id not in self._started_orders:
            return {}
        return {
            "repack": True,
            "repack_of": [i for i, _sha in earlier],
            "repack_of_sha256": [sha for _i, sha in earlier],
        }

    def _floor(self, action: ss.StartClip) -> dict[str, object]:
        """The manifest fields saying who packed the clip and what kind of clip it is."""
        floor: dict[str, object] = {"kind": action.kind.value}
        if action.packer is not None:
            floor["packer"] = action.packer
        return floor

    def _gap(self, action: ss.StartClip) -> dict[str, object] | None:
        """The manifest fields of a clip that resumes after a camera loss or a stop."""
        if action.after_restart and self._cut_clip is not None:
            return self._restart_gap(action, self._cut_clip)
        if action.resumed_after_s is None:
            return None
        gap: dict[str, object] = {"seconds": action.resumed_after_s}
        if action.scanned_t is not None:
            gap["order_scanned_at"] = self._wall_at(action.scanned_t).isoformat(
                timespec="milliseconds"
            )
        if self._lost_wall is not None:
            gap["camera_lost_at"] = self._lost_wall.isoformat(timespec="milliseconds")
        gap["resumed_at"] = self._wall_at(action.t).isoformat(timespec="milliseconds")
        if action.order_at_loss is not None:
            gap["order_at_loss"] = action.order_at_loss
        if action.handover is not None:  # the clip names no packer: who was here either end
            gap["packer_at_loss"], gap["packer_at_resume"] = action.handover
        return {"resumed_after_s": action.resumed_after_s, "gap": gap}

    def _restart_gap(self, action: ss.StartClip, cut: ClipRecord) -> dict[str, object]:
        """The manifest fields of a clip resuming the packing the station's stop cut: as after
        a camera loss, the gap from the last frame of the clip cut (``station_stopped_at``,
        which that clip's index row and manifest name, with its hash) to this clip's start. A
        clock set back in the meantime (no RTC, no network yet) shows in the two times."""
        resumed = self._wall_at(action.t)
        seconds = round(max(0.0, (resumed - cut.ended_at).total_seconds()), 3)
        gap: dict[str, object] = {
            "seconds": seconds,
            "station_stopped_at": cut.ended_at.isoformat(timespec="milliseconds"),
            "resumed_at": resumed.isoformat(timespec="milliseconds"),
            "order_at_loss": cut.order_id,
            "cut_clip": cut.id,
            "cut_clip_sha256": cut.sha256,
        }
        if action.scanned_t is not None:  # scanned while the camera was away
            gap["order_scanned_at"] = self._wall_at(action.scanned_t).isoformat(
                timespec="milliseconds"
            )
        log.info("order %r resumes the packing cut by the station's stop (clip %s), %.1f s on",
                 action.order_id, cut.id, seconds)  # fmt: skip
        return {"resumed_after_s": seconds, "gap": gap}

    def _linked_late(self, t: float, late: LateLink) -> None:
        """Announce (on the finisher thread) what became of a waybill read at ``t`` for a
        clip already being signed: linked once its index row is written; told "unlinked"
        when that clip was never indexed or the index refused the row (the floor is never
        told "linked" for a link that lands nowhere)."""
        if late.error is None:
            self._emit(EventKind.WAYBILL_LINKED, t, late.order_id, waybill=late.link.waybill,
                       carrier=late.link.carrier, linked_to="ended-clip", clip=late.clip,
                       after_signing=True)  # fmt: skip
        else:
            self._emit(EventKind.WAYBILL_UNLINKED, t, late.order_id, waybill=late.link.waybill,
                       carrier=late.link.carrier, clip=late.clip,
                       why=late.error)  # fmt: skip

    def _emit(self, kind: EventKind, t: float, order_id: str | None, **data: object) -> None:
        if self.events is not None:
            self.events.emit(kind, t, order_id, **data)  # never raises; listeners never block

    def _wall_at(self, t: float) -> datetime:
        f = self._last_frame
        if f is None:
            return localize(datetime.now().astimezone(), self.tz)
        return localize(f.wall + timedelta(seconds=t - f.t), self.tz)

    def _error(self, msg: str) -> None:
        log.error(msg)
        self.last_error = msg

    def _moving(self, image: np.ndarray) -> bool:
        small = cv2.resize(image, (64, 36), interpolation=cv2.INTER_AREA)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        small = small.astype(np.int16)
        prev, self._prev_small = self._prev_small, small
        if prev is None:
            return True
        # Mean absolute change above sensor noise: a hand or a box moving in view.
        return float(np.abs(small - prev).mean()) > 1.5

    def _reconnect(self, why: str, stop_event: threading.Event) -> Frame | None:
        """The camera is lost (or absent): tell the session, raise the alarm, reopen it with
        back-off until a frame comes, the input ends (None) or ``stop_event`` is set (None).

        Feeds systemd meanwhile (READY=1 with a "waiting for camera" status if no frame ever
        came, then WATCHDOG=1): retrying on purpose is not a stall.
        """
        self.stats.camera_losses += 1
        self._error(f"camera lost: {why}")
        last = self._last_frame
        self._lost_wall = self._wall_at(last.t) if last is not None else None
        self._apply(ss.CameraLost(last.t if last is not None else 0.0))
        # The session stopped the open clip: finish it now, not when frames are back, and
        # let no pre-roll reach back across the gap.
        self.recorder.end_stream()
        if self.alarms is not None:
            self.alarms.raise_("camera-lost", self.cfg.station.name, why, capture=True)
        watchdog = self.on_frame if isinstance(self.on_frame, StationWatchdog) else None
        backoff = Backoff(0.5, 10.0)
        while not stop_event.is_set():
            if watchdog is not None:
                watchdog.alive(f"waiting for camera: {why}")
            self._publish_status()
            try:
                self.camera.stop()
            except Exception:
                log.debug("camera stop before reopening failed", exc_info=True)
            try:
                self.camera.start()
                frame = self.camera.read(self.cfg.camera.read_timeout_s)
            except CameraError as exc:
                why = str(exc)
                delay = backoff.next()
                log.warning("camera still unavailable (%s); retrying in %.1fs", exc, delay)
                stop_event.wait(delay)
                continue
            if frame is None:
                return None
            log.info("camera is back")
            if self.alarms is not None:
                self.alarms.clear("camera-lost", self.cfg.station.name, capture=True)
            self._camera_back(frame)
            return frame
        return None

    def _camera_back(self, frame: Frame) -> None:
        """Scans made while the camera was away go to the session first, still suspended (a
        seal or the next order changes what resumes; orders begun and sealed in the dark are
        only logged); then the session hears that the camera is back. ``frame`` follows."""
        self._last_frame = frame  # wall times from here on are read off the returned camera
        for ev in self._poll(frame.t):
            self._handle_input(ev)
        waiting = self.state.order_id if isinstance(self.state, ss.Suspended) else None
        self._apply(ss.CameraBack(frame.t))
        if waiting is not None and isinstance(self.state, ss.Idle):
            log.warning("order %r not resumed: its max_duration_s (%.0f s) ran out while the "
                        "camera was lost", waiting, self.cfg.session.max_duration_s)  # fmt: skip

    def _publish_status(self) -> None:
        """Tell the live view now (it is otherwise updated per frame, and none arrive)."""
        if not isinstance(self.on_frame, StatusSink):
            return
        try:
            self.on_frame.write_status(self.status(), self.camera.dropped)
        except Exception:
            log.exception("live status update failed")
