"""The order state machine as a pure function: step(state, event, rules) -> (state, actions)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from station.capture.codes import LYING_KINDS, Code, Kind
from station.capture.frames import PedalPress
from station.config import SessionSection
from station.store.clips import LYING_CARD


class FinishReason(StrEnum):
    """Why a clip ended: its ``finish_reason`` in the index and the manifest. The one list of
    them: the web labels (web/i18n.py) and the README are tested against it."""

    SEALED = "sealed"
    WAYBILL = "waybill"
    NEXT_ORDER = "next-order"
    RESCAN = "rescan"
    TIMEOUT = "timeout"
    STILL = "still"
    END_OF_INPUT = "end-of-input"
    INTERRUPTED = "interrupted"
    CAMERA_LOST = "camera-lost"
    DISK_FULL = "disk-full"


# The source name of the camera's own reads (``RawScan.source``): all others are by hand.
CAMERA = "camera"

# How many orders packed at this table the session remembers (``Floor.packed``): more than
# the sheets a table keeps in view between clearings. Too few lets an old sheet open a clip
# over another buyer's parcel; too many only asks a hand scan for the repack of an old order.
# As many waybills linked to them are kept (``Floor.waybills``): their labels pile up too,
# and as many read with no clip open (``Floor.unlinked``).
KEPT_ORDERS = 100

# A seal this soon after a clip opened at its order's scan (``Recording.at_scan``) is the
# parcel before's, a moment late: the pedal pressed, or the seal card held up to the camera
# (its first look) or scanned by hand, as the hand puts the next sheet down (the camera
# confirms a sheet 0.1-0.4 s after it lands) or scans it (``_late_seal``). No parcel is
# packed and sealed within a second of its scan, and a seal meant to stop a clip opened by
# mistake acts when given again after it. Longer would swallow that second seal. A waybill
# only with ``waybill_ends_clip`` (the label is the seal then): by default it is linked, not
# an end, and the label scanned right after its sheet is the new parcel's.
SEAL_LATE_S = 1.0
PEDAL_LATE_S = SEAL_LATE_S  # (its first name: the pedal's window came first)

# What the station itself ends a clip for (``EndClip``), whatever the packer does.
STATION_ENDS = frozenset(
    {FinishReason.END_OF_INPUT, FinishReason.DISK_FULL, FinishReason.INTERRUPTED}
)


# ---- states -------------------------------------------------------------------------------


class ClipKind(StrEnum):
    ORDER = "order"  # packing an outbound parcel
    RETURN = "return"  # unboxing a returned parcel


@dataclass(frozen=True, slots=True)
class Floor:
    """Who is at the table and what the next clip is: kept across every state change.

    ``packed``: the orders packed at this table, newest first (at most ``KEPT_ORDERS``):
    their sheets may still lie in view, so a camera read of one is not a new packing.
    ``waybills``: (waybill, order) for the waybills linked to the clips of those orders (or
    that ended one waiting for the camera, with no clip of it to link to), newest link first
    (at most ``KEPT_ORDERS``): a label of an earlier parcel lying in view, read by the camera,
    is that parcel's, not the open order's waybill nor its end.
    ``repack``: a repack card was shown at the first camera time, and the first order sheet
    the camera reads from then until the second, with no clip open, is the one shown to be
    packed again, also of an order in ``packed`` (None: no card, or its sheet came).
    ``unlinked``: the waybills read with no clip open and linked to none, newest first (at
    most ``KEPT_ORDERS``): a label in view then (the parcel before, finished after its clip
    ended; or one labelled before its order was scanned) is no clip's, and read by the camera
    during a later clip it is not that clip's waybill nor its end either.
    """

    packer: str | None = None
    next_kind: ClipKind = ClipKind.ORDER
    packed: tuple[str, ...] = ()
    waybills: tuple[tuple[str, str], ...] = ()
    repack: tuple[float, float] | None = None
    unlinked: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Cut:
    """The packing the station's last stop cut: the newest clip it recorded ended
    ``interrupted`` (a power cut, a crash, a restart while it recorded), of ``order_id``, a
    clip of ``kind``. Nothing the packer does ended it, so it may go on when the station is
    back (``restarted``)."""

    order_id: str
    kind: ClipKind = ClipKind.ORDER


@dataclass(frozen=True, slots=True)
class Idle:
    """No order open: frames only feed the pre-roll buffer.

    ``last``: the order of the clip that ended last and when, while nothing else has opened:
    a camera read of that order stamped before then was made while its clip was open (decoded
    late), not a new packing of it.

    ``last_began``: when the clip of ``last`` began (its order's scan; its first clip's, for
    one that resumed the order after a camera loss), None when unknown: a waybill read
    stamped between then and its end is that order's label, linked to the clip it was read
    in (``Recorder.link_ended`` picks it by the read's time).

    ``unrecorded``: the order whose clip was refused (or whose writer failed, or which timed
    out, stayed still or was finished for a full disk): it may be packed on with no clip, and
    nothing marks its end, so the next order's clip starts at its scan (its pre-roll would be
    that parcel) until a seal, a waybill or the pedal ends it. ``unrecorded_t``: when that
    order was scanned (its packing known to go on since; None: unknown): a seal or waybill
    read before then, decoded late, is an earlier parcel's and ends nothing.

    ``cut``: the packing the station's last stop cut, while ``unrecorded`` is its order (from
    the start, until a clip of it starts or that packing ends): the clip its sheet opens
    resumes it (``StartClip.after_restart``), no repack.

    ``followed_t``: when an order was first scanned after the clip of ``last`` ended, its
    clip refused (None: none since): a hand scan stamped then or after, even at that clip's
    end (the next order's scan ended it, or came in the instant of its seal), was made after
    that order's scan: that packing's or a later one's, never the ended clip's.
    """

    floor: Floor = Floor()
    last: tuple[str, float] | None = None
    last_waybills: tuple[str, ...] = ()  # the waybills linked to that order's clip
    unrecorded: str | None = None
    last_began: float | None = None
    cut: Cut | None = None
    unrecorded_t: float | None = None
    followed_t: float | None = None


@dataclass(frozen=True, slots=True)
class Recording:
    """A clip of ``order_id`` is being written since ``started_t``.

    ``previous``: the order whose clip ended last, before this one began (None for none), and
    ``previous_waybills`` the waybills linked to it: a camera read of one of them is that
    parcel, still at the table, not a next order or this order's waybill. ``previous_span``:
    when its clip began (its first, through camera losses) and ended (None when unknown): a
    waybill read stamped in it, decoded after this clip began, is that order's and is linked
    to the (ended) clip it was read in.

    ``first_t``: when the order's first clip began, for a clip that resumes it after a camera
    loss (None: this clip is its first). The safety timeout counts from it.

    ``at_scan``: this clip began at its order's scan, when its packing began (not one that
    resumes it after a camera loss or a restart, nor one its sheet opened after its clip
    was refused): a pedal press or seal card within ``SEAL_LATE_S`` of ``started_t`` is the
    parcel before's seal, and this clip goes on (``_late_seal``).
    """

    order_id: str
    started_t: float
    last_motion_t: float
    waybills: tuple[str, ...] = ()
    floor: Floor = Floor()
    packer: str | None = None  # the packer signed in when this clip started
    kind: ClipKind = ClipKind.ORDER
    previous: str | None = None
    previous_waybills: tuple[str, ...] = ()
    previous_span: tuple[float, float] | None = None
    first_t: float | None = None
    at_scan: bool = False


@dataclass(frozen=True, slots=True)
class Suspended:
    """The camera is away (lost at camera time ``lost_t``, or never there).

    ``order_id``: the order to record from the first frame back, None for none: the order
    open at the loss (``order_at_loss``) until it is sealed, or an order scanned in the dark
    (at ``scanned_t``). ``since``: when that order began (its clip, or its scan in the dark):
    a read stamped before then (decoded late) is not its order's. ``last``: as Idle's, with
    no order waiting (the order finished before the loss, or in the dark); with one waiting,
    the order before it (its clip's ``previous`` when the camera is back). ``kind``: the kind
    of the clip the loss cut while its order still waits (the same packing resumes as the
    same kind), None when the waiting order is another (it takes the floor's next kind).
    With it, ``packer``: that clip's packer, ``signed_in``: who was signed in at the loss,
    and ``first_t``: when the order's first clip began (its safety timeout counts from it).
    ``unrecorded``, ``unrecorded_t``: as Idle's, with no order waiting: that packing goes on
    in the dark and after, until a seal, a waybill or the pedal ends it. ``cut``: as Idle's,
    with no order waiting; with one, the packing the station's stop cut when that order is
    its own. ``last_span``: when the clip of ``last`` began and ended (None when unknown, or
    it had none: scanned in the dark): a waybill read stamped in it, decoded after the loss,
    is that order's label, linked to that clip (as with no loss: ``Idle.last_began``,
    ``Recording.previous_span``).
    """

    order_id: str | None
    lost_t: float
    waybills: tuple[str, ...] = ()
    order_at_loss: str | None = None
    scanned_t: float | None = None
    floor: Floor = Floor()
    since: float | None = None
    last: tuple[str, float] | None = None
    kind: ClipKind | None = None
    packer: str | None = None
    signed_in: str | None = None
    first_t: float | None = None
    unrecorded: str | None = None
    cut: Cut | None = None
    unrecorded_t: float | None = None
    last_span: tuple[float, float] | None = None


State = Idle | Recording | Suspended

# ---- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scanned:
    """A debounced, classified code seen at camera time ``t``.

    ``lying``: the camera read it at the place where it last lay still (``codes.Lying``): a
    card put down at the table, or a returned parcel's label, seen again after something
    covered it.

    ``first_t``: a camera read is confirmed at ``t``, the frame that gave it enough looks;
    this is its first look in that sighting (``RawScan.first_t``; None: ``t``). A waybill or
    seal card first read by the time the open clip began is taken as read then
    (``_first_look``).
    """

    code: Code
    t: float
    source: str = CAMERA
    lying: bool = False
    first_t: float | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """Sent for every frame; ``moving`` is False when the scene did not change."""

    t: float
    moving: bool = True


@dataclass(frozen=True, slots=True)
class CameraLost:
    """The camera stopped delivering frames; ``t``: the time of its last frame (0.0: none came)."""

    t: float


@dataclass(frozen=True, slots=True)
class CameraBack:
    """The camera delivers frames again, the first at camera time ``t``."""

    t: float


@dataclass(frozen=True, slots=True)
class ClipRefused:
    """The runner could not start the clip of ``order_id`` (e.g. the disk is full)."""

    order_id: str
    t: float
    reason: str


@dataclass(frozen=True, slots=True)
class RecordingFailed:
    """The clip writer failed; the recorder already closed the clip and keeps its frames."""

    t: float
    error: str


@dataclass(frozen=True, slots=True)
class EndClip:
    """The station ends the open clip now, for ``reason``: its input ran out
    (``END_OF_INPUT``), free space fell below what finishing a clip needs (``DISK_FULL``), or
    it is stopping (``INTERRUPTED``: SIGTERM, a fatal error)."""

    t: float
    reason: FinishReason

    def __post_init__(self) -> None:
        if self.reason not in STATION_ENDS:
            raise ValueError(f"the station does not end a clip for {self.reason!r}")


Event = (
    Scanned | PedalPress | Tick | CameraLost | CameraBack | ClipRefused | RecordingFailed | EndClip
)

# ---- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartClip:
    """Open a clip for ``order_id`` at ``t``; ``pre_roll`` includes the buffered seconds.

    ``resumed_after_s``: the clip starts when the camera came back after a loss, this many
    seconds after the last frame before it (the gap, recorded in the manifest, with
    ``lost_t``, the order open at the loss and when the order was scanned in the dark).

    ``handover``: the clip resumes the one the loss cut, and who is signed in changed in the
    dark to another than that clip's packer: (that packer, who is signed in now). Nobody saw
    which of them packed on, so the clip names no packer (``packer`` is None).

    ``after_restart``: the clip resumes the packing the station's last stop cut (``Cut``):
    the same packing, of the same kind, not a repack (the runner's manifest names the clip cut).
    """

    order_id: str
    t: float
    pre_roll: bool = True
    waybills: tuple[str, ...] = ()
    resumed_after_s: float | None = None
    lost_t: float | None = None
    order_at_loss: str | None = None
    scanned_t: float | None = None
    packer: str | None = None  # who was signed in when the clip started
    kind: ClipKind = ClipKind.ORDER
    handover: tuple[str | None, str | None] | None = None
    after_restart: bool = False


@dataclass(frozen=True, slots=True)
class StopClip:
    """Finish the open clip at ``t`` for ``reason`` (the runner does nothing if none is open)."""

    reason: FinishReason
    t: float


@dataclass(frozen=True, slots=True)
class LinkWaybill:
    """Link ``waybill`` to the clip of ``order_id``: the open one, or, with ``ended``, the one
    that ended last (a read made while it was open and decoded after the next clip began)."""

    order_id: str
    waybill: str
    carrier: str
    t: float
    ended: bool = False


@dataclass(frozen=True, slots=True)
class LogEvent:
    """Record a scan or pedal press; it belongs to the clip open after the preceding actions,
    unless ``in_clip`` is False: one stamped before that clip began, which the clip ignores
    (the runner indexes it on its own and warns)."""

    kind: str  # a codes.Kind value, "pedal" or "refused"
    text: str
    t: float
    source: str
    note: str = ""
    in_clip: bool = True
    card: str = ""  # a control card's command (seal, test, signout, return, repack), or LYING_CARD


@dataclass(frozen=True, slots=True)
class PreviousParcel:
    """With no order open, the parcel before was still at the table at camera time ``t`` (its
    seal, its waybill, a pedal press, its sheet seen again): no clip's pre-roll reaches back to
    ``t``, or another buyer's parcel and label would open the next order's clip."""

    t: float


Action = StartClip | StopClip | LinkWaybill | LogEvent | PreviousParcel


_SEEN_AGAIN = (
    "its clip has ended: seen again by the camera, ignored (scan it by hand to record a repack)"
)
_LYING = "lying where it lay before, seen again by the camera; ignored (hold it up or scan it)"
_LABEL_SEEN_AGAIN = "{}'s waybill, seen again by the camera; ignored (scan it by hand to link it)"
_UNLINKED_SEEN_AGAIN = (
    "a waybill first seen with no clip open, seen again by the camera; ignored (scan it by hand"
    " to link it)"
)


def _log(ev: Scanned, note: str = "") -> LogEvent:
    card = ev.code.detail if ev.code.kind is Kind.CONTROL else ""
    return LogEvent(ev.code.kind.value, ev.code.text, ev.t, ev.source, note, card=card)


def _is_seal(code: Code) -> bool:
    return code.kind is Kind.SEAL or (code.kind is Kind.CONTROL and code.detail == "seal")


def _changes_floor(code: Code) -> bool:
    """A badge, the sign-out, return or repack card: it changes the floor, never a clip."""
    return code.kind in (Kind.OPERATOR, Kind.RETURN) or (
        code.kind is Kind.CONTROL and code.detail in ("signout", "return", "repack")
    )


def _began(state: State) -> tuple[str, float] | None:
    """The order open (or waiting for the camera) and the camera time it began."""
    if isinstance(state, Recording):
        return state.order_id, state.started_t
    if isinstance(state, Suspended) and state.order_id is not None and state.since is not None:
        return state.order_id, state.since
    return None


def _last(state: State) -> tuple[str, float] | None:
    """The order that ended last, with no order open or waiting since."""
    if isinstance(state, Idle) or (isinstance(state, Suspended) and state.order_id is None):
        return state.last
    return None


def _packed_here(state: State, event: Scanned) -> bool:
    """Is ``event`` the camera reading the sheet of an order packed at this table before:
    one it remembers (the last, the one before the open clip, ``Floor.packed``), not the
    order open or waiting for the camera now, nor the one packed now whose clip never
    started (refused, or its writer failed: its sheet shown again records its own parcel)?"""
    if event.source != CAMERA or event.code.kind is not Kind.ORDER:
        return False
    shown = state.floor.repack
    if isinstance(state, Idle) and shown is not None and shown[0] <= event.t <= shown[1]:
        return False  # the sheet shown after the repack card: recorded again
    text = event.code.text
    began = _began(state)
    if began is not None and text == began[0]:
        return False
    last = _last(state)
    if isinstance(state, Idle | Suspended) and text == state.unrecorded:
        return last is not None and text == last[0]  # its clip ended (timeout, still, ...)
    before = state.previous if isinstance(state, Recording) else last[0] if last else None
    return text == before or text in state.floor.packed


def _packed(floor: Floor, order_id: str) -> tuple[str, ...]:
    """The orders packed at the table after ``order_id`` was scanned there, newest first."""
    rest = tuple(o for o in floor.packed if o != order_id)
    return (order_id, *rest)[:KEPT_ORDERS]


def _linked(floor: Floor, links: Iterable[tuple[str, str]]) -> Floor:
    """``floor`` once ``links`` (waybill, order), newest first, were linked after the ones it
    remembers: a waybill is its newest order's, and only those of orders in ``packed`` stay."""
    orders = set(floor.packed)
    kept: dict[str, str] = {}
    for waybill, order in (*links, *floor.waybills):
        if order in orders:
            kept.setdefault(waybill, order)
    waybills = tuple(kept.items())[:KEPT_ORDERS]
    return floor if waybills == floor.waybills else replace(floor, waybills=waybills)


def remembered(orders: Iterable[tuple[str, Iterable[str]]], unlinked: Iterable[str] = ()) -> Floor:
    """The floor of a table where ``orders`` were packed before the station started, newest
    first, each with the waybills linked to its clips (the index's last clips of the station),
    and where the waybills ``unlinked`` were read with no clip open, newest first (the index's
    events of no clip): their sheets and labels may still lie in view. Nobody is signed in."""
    newest_first = [(order_id, tuple(waybills)) for order_id, waybills in orders]
    floor = Floor()
    for order_id, _ in reversed(newest_first):
        floor = replace(floor, packed=_packed(floor, order_id))
    floor = _linked(floor, ((w, o) for o, waybills in newest_first for w in waybills))
    owned = {w for w, _ in floor.waybills}  # linked to none means to no order remembered
    loose = dict.fromkeys(w for w in unlinked if w not in owned)
    return replace(floor, unlinked=tuple(loose)[:KEPT_ORDERS])


def restarted(
    orders: Iterable[tuple[str, Iterable[str]]],
    cut: Cut | None = None,
    unlinked: Iterable[str] = (),
) -> Idle:
    """The session of a station that starts where ``orders`` were packed and ``unlinked``
    waybills read (``remembered``) and its last stop cut the packing ``cut`` (None: it
    stopped between parcels).

    That order stays in the table's memory (once another is packed, its sheet in view is an
    old one), but its parcel is at the table, half packed, its end never marked: as after a
    refused clip, its sheet shown again (to the camera too) opens its clip, which resumes that
    packing, and the next order's clip starts at its scan, until a seal, a waybill or the
    pedal marks that packing's end."""
    floor = remembered(orders, unlinked)
    if cut is None:
        return Idle(floor)
    return Idle(floor, unrecorded=cut.order_id, cut=cut)


def _resumes_cut(state: Idle | Suspended, order_id: str) -> bool:
    """Does a clip of ``order_id`` opened now resume the packing the station's stop cut?"""
    return state.cut is not None and state.cut.order_id == order_id == state.unrecorded


def _kept_cut(state: Idle | Suspended, order_id: str) -> Cut | None:
    """``state.cut`` once ``order_id`` is the order packed on with no clip: only its own."""
    return state.cut if state.cut is not None and state.cut.order_id == order_id else None


def _label_owner(state: State, waybill: str) -> str | None:
    """The order ``waybill`` was last linked to at this table, as the session remembers it."""
    if isinstance(state, Recording | Suspended) and waybill in state.waybills:
        return state.order_id
    for linked, order in state.floor.waybills:
        if linked == waybill:
            return order
    if isinstance(state, Recording) and waybill in state.previous_waybills:
        return state.previous
    if isinstance(state, Idle) and state.last is not None and waybill in state.last_waybills:
        return state.last[0]
    return None


def _earlier_label(state: State, event: Scanned, order: str | None) -> str | None:
    """Is ``event`` the camera reading the waybill label of an earlier parcel, one linked at
    this table to another order than ``order`` (the order it would be linked to or end), or
    one read with no clip open and linked to none? Its note, else None. A hand scan is
    deliberate: it links, as ever."""
    if event.source != CAMERA or event.code.kind is not Kind.WAYBILL:
        return None
    owner = _label_owner(state, event.code.text)
    if owner is None:
        return _UNLINKED_SEEN_AGAIN if event.code.text in state.floor.unlinked else None
    return _LABEL_SEEN_AGAIN.format(owner) if owner != order else None


def _unlinked(state: State, event: Event, actions: list[Action], rules: SessionSection) -> bool:
    """Is ``event`` a waybill read (camera or hand) made with no clip open (no order open or
    waiting then: it is stamped before the open one began; or the camera read it in the frame
    whose read opened the open clip, ``_opening_frame``: shot before that order was opened),
    or, with ``waybill_ends_clip``, in the moment after the open clip opened at its scan
    (``_late_seal``), and linked to no clip?"""
    if not isinstance(event, Scanned) or event.code.kind is not Kind.WAYBILL:
        return False
    began = _began(state)
    moment = (
        isinstance(state, Recording)
        and rules.waybill_ends_clip
        and _late_seal(state, event, waybill_ends=True) is not None
    )
    if (
        began is not None
        and event.t >= began[1]
        and not moment
        and not _opening_frame(state, event)
    ):
        return False
    if any(isinstance(a, LinkWaybill) for a in actions):
        return False
    return _label_owner(state, event.code.text) is None


def _ended_in_the_dark(
    state: State, new: State, event: Event, actions: list[Action]
) -> list[tuple[str, str]]:
    """[(waybill, order)] when ``event`` is a waybill that ended the order waiting for the
    camera (``waybill_ends_clip``: the only way a waybill closes it) and was linked to no clip
    (none of that order's was cut by the loss): still that order's label, which may lie in
    view while the next order is packed. Else []."""
    if not (
        isinstance(event, Scanned)
        and event.code.kind is Kind.WAYBILL
        and isinstance(state, Suspended)
        and state.order_id is not None
        and isinstance(new, Suspended)
        and new.order_id is None
        and not any(isinstance(a, LinkWaybill) for a in actions)
    ):
        return []
    return [(event.code.text, state.order_id)]


def _labelled(floor: Floor, waybill: str) -> Floor:
    """``floor`` once ``waybill`` was read with no clip open (``Floor.unlinked``)."""
    rest = tuple(w for w in floor.unlinked if w != waybill)
    return replace(floor, unlinked=(waybill, *rest)[:KEPT_ORDERS])


def _lying_from_before(state: State, event: Scanned) -> str | None:
    """The note for ``event`` when it is the camera reading the sheet or the waybill label of
    an earlier parcel packed at this table, still lying in view (None: it is not)."""
    if _packed_here(state, event):
        return _SEEN_AGAIN
    # The parcel at the table: the open or waiting order's, else the one packed with no clip.
    at_table = None if isinstance(state, Idle) else state.order_id
    if isinstance(state, Idle | Suspended) and at_table is None:
        at_table = state.unrecorded
    return _earlier_label(state, event, at_table)


def _stamped(order: tuple[str, float], t: float) -> str:
    """Why a read stamped ``t`` is not of the clip of ``order`` (its order, when it began)."""
    order_id, began = order
    if t == began:
        return f"stamped t={t:.3f}, in the frame whose read opened the clip of {order_id!r}"
    return f"stamped t={t:.3f}, before the clip of {order_id!r} began at t={began:.3f}"


def _opening_frame(state: State, event: Scanned | PedalPress) -> bool:
    """Is ``event`` a waybill or a seal card the camera read in the frame whose read of the
    open order opened its first clip? One frame's reads reach the session in no set order,
    and that frame was shot before the order was opened, while the parcel before was at the
    table: its label read beside the new order's sheet is its own, not the new order's, and
    the seal card held up beside it sealed that parcel (read after the sheet, it sealed the
    new order's clip in its first frame, and that order was packed in no clip). (Another
    sheet read there is still the next order.) Such a read confirmed a frame or two later is
    stamped at its first look (``_first_look``)."""
    return (
        isinstance(state, Recording)
        and state.first_t is None
        and isinstance(event, Scanned)
        and event.source == CAMERA
        and event.t == state.started_t
        and (event.code.kind is Kind.WAYBILL or _is_seal(event.code))
    )


def _first_look(state: State, event: Event) -> Event:
    """``event`` stamped at the camera's first look at it (``Scanned.first_t``) when it is a
    waybill or a seal card read at or before the open order's first clip began and confirmed
    only after: it was in view beside the new order's sheet (or before its hand scan), the
    parcel before's, as one confirmed in that frame (``_opening_frame``). A label and a card
    that came into view with the sheet are confirmed a frame or two after it (0.3 s at
    ``decode_every = 3``): the card sealed the new order's clip at once, the label was linked
    to it as its waybill. Else ``event`` as it is."""
    if (
        isinstance(event, Scanned)
        and event.source == CAMERA
        and event.first_t is not None
        and event.first_t < event.t
        and (event.code.kind is Kind.WAYBILL or _is_seal(event.code))
        and isinstance(state, Recording)
        and state.first_t is None
        and event.first_t <= state.started_t
    ):
        return replace(event, t=event.first_t)
    return event


def _before_clip(order: tuple[str, float], event: Scanned | PedalPress) -> LogEvent:
    note = _stamped(order, event.t) + "; ignored"
    if isinstance(event, PedalPress):
        return LogEvent("pedal", "", event.t, event.source, note, in_clip=False)
    if event.code.kind is Kind.ITEM:  # an item's note is its symbology: keep it
        note = f"{event.code.detail}; {note}"
    return replace(_log(event, note), in_clip=False)


def _late_waybill(state: State, event: Scanned | PedalPress) -> tuple[State, list[Action]] | None:
    """A waybill read stamped while the previous order's clip was open, decoded after this
    one began: that parcel's label, linked to its ended clip (None: not such a read). Or, in
    a clip that resumes its order after a camera loss (or in the dark of a later loss, its
    order waiting), one stamped while an earlier clip of the order a loss cut was open: the
    order's own label, linked to that clip."""
    began = _began(state)
    if (
        isinstance(state, Recording | Suspended)
        and isinstance(event, Scanned)
        and event.code.kind is Kind.WAYBILL
        and state.first_t is not None
        and began is not None
        and state.first_t <= event.t < began[1]
    ):
        return _label_before_the_loss(state, event, began)
    if not (
        isinstance(state, Recording)
        and isinstance(event, Scanned)
        and event.code.kind is Kind.WAYBILL
        and state.previous is not None
        and state.previous_span is not None
        and state.previous_span[0] <= event.t <= state.previous_span[1]
    ):
        return None
    stamped = _stamped((state.order_id, state.started_t), event.t) + ": "
    earlier = _earlier_label(state, event, state.previous)
    if earlier is not None:  # a label lying in view since before that clip: linked to none
        return state, [replace(_log(event, stamped + earlier), in_clip=False)]
    note = stamped + f"{state.previous}'s waybill"
    if event.code.text in state.previous_waybills:
        return state, [replace(_log(event, note + ", already linked"), in_clip=False)]
    link = LinkWaybill(state.previous, event.code.text, event.code.detail, event.t, ended=True)
    new = replace(state, previous_waybills=(*state.previous_waybills, event.code.text))
    return new, [replace(_log(event, note + ", linked to its ended clip"), in_clip=False), link]


def _label_before_the_loss(
    state: Recording | Suspended, event: Scanned, began: tuple[str, float]
) -> tuple[State, list[Action]]:
    """``_late_waybill`` for a read of a clip a loss cut, of the order resumed (or waiting
    for the camera), ``began``: that order and when its latest clip began."""
    order_id = began[0]
    stamped = _stamped(began, event.t) + ": "
    earlier = _earlier_label(state, event, order_id)
    if earlier is not None:  # another parcel's label lying in view: linked to none
        return state, [replace(_log(event, stamped + earlier), in_clip=False)]
    note = stamped + f"read before the camera was lost, {order_id}'s waybill"
    if event.code.text in state.waybills:
        return state, [replace(_log(event, note + ", already linked"), in_clip=False)]
    link = LinkWaybill(order_id, event.code.text, event.code.detail, event.t, ended=True)
    logged = replace(_log(event, note + ", linked to its clip the loss cut"), in_clip=False)
    return state, [logged, link]


def in_open_clip(state: State, t: float, source: str = "") -> bool:
    """Does a record stamped at camera time ``t`` from ``source`` that decides nothing (a
    rejected read) go in the open clip's timeline? Not when it was made before that clip began
    (decoded late), nor read by the camera in the frame whose read opened it: it is of the
    parcel before, as such a scan is (``step``)."""
    if not isinstance(state, Recording) or t < state.started_t:
        return False
    return not (source == CAMERA and t == state.started_t and state.first_t is None)


def _start(order_id: str, t: float, at_scan: bool = True) -> Recording:
    return Recording(order_id=order_id, started_t=t, last_motion_t=t, at_scan=at_scan)


def step(state: State, event: Event, rules: SessionSection) -> tuple[State, list[Action]]:
    """Advance the session by one event. Pure: no clocks, no I/O, no hidden state.

    The only authority on orders and clips: the runner executes the actions and reports
    what happened at the edges (camera, disk, writer, shutdown) back as events.
    """
    event = _first_look(state, event)
    new, actions = _decide(state, event, rules)
    if not actions:  # every frame's Tick: the table's memory changes with a scan only
        return new, actions
    # The floor remembers every waybill linked (to the open clip, an ended one, the order
    # waiting in the dark) or ending the order waiting in the dark, with its order, for as long
    # as it remembers that order; and those read with no clip open, linked to none.
    links = [(a.waybill, a.order_id) for a in reversed(actions) if isinstance(a, LinkWaybill)]
    dark = _ended_in_the_dark(state, new, event, actions)
    floor = _linked(new.floor, [*dark, *links])
    if isinstance(event, Scanned) and (
        _unlinked(state, event, actions, rules) or any(d not in floor.waybills for d in dark)
    ):
        floor = _labelled(floor, event.code.text)
    return (new if floor is new.floor else replace(new, floor=floor)), actions


def _decide(state: State, event: Event, rules: SessionSection) -> tuple[State, list[Action]]:
    """``step`` but for the waybills the floor remembers."""
    began = _began(state)
    if (
        began is not None
        and isinstance(event, Scanned | PedalPress)
        and (event.t < began[1] or _opening_frame(state, event))
        and not (isinstance(event, Scanned) and _changes_floor(event.code))
    ):
        # Made before the open clip began (a camera read decoded late, behind the hand scan
        # that opened this order; or, in the dark, from a frame before the loss; or a label or
        # seal card read in the frame whose read opened it): it is not this order's, so it
        # never ends, seals, links to or replaces this clip. A badge or card still changes the
        # floor below. A waybill read while the clip before was open is that order's: linked.
        late = _late_waybill(state, event)
        return late if late is not None else (state, [_before_clip(began, event)])
    if (
        isinstance(event, Scanned)
        and event.lying
        and event.source == CAMERA
        and event.code.kind in LYING_KINDS
    ):
        # A seal or control card put down at the table and seen again where it lay, after a
        # parcel covered it for longer than the debounce: no gesture, so no seal (it would end
        # the open clip mid-packing, the rest unrecorded), sign-out or return. The card held
        # up (elsewhere), a hand scan or the pedal still does it. Nor a returned parcel's label
        # seen again on it: that return began already (it made the next clip a return too).
        return state, [replace(_log(event, _LYING), card=LYING_CARD)]
    last = _last(state)
    if (
        isinstance(state, Recording)
        and isinstance(event, Scanned)
        and event.code.kind is Kind.ORDER
        and event.code.text == state.order_id
        and event.source == CAMERA
    ):
        # The open order's sheet at the table seen again after a box covered it, whoever is
        # signed in: packing goes on (ending a clip is a deliberate act: a hand scan, the
        # seal, the pedal).
        return state, [_log(event, "seen again by the camera; the clip goes on")]
    if (
        last is not None
        and isinstance(event, Scanned)
        and event.code.kind is Kind.ORDER
        and event.code.text == last[0]
        and event.t < last[1]
    ):
        # The order just packed, read while its clip was open and decoded after the clip ended
        # (sealed by hand, say), when on time it would have ended that clip: it must not open
        # a "repack" that records the next parcel.
        note = f"stamped t={event.t:.3f}, before its clip ended at t={last[1]:.3f}"
        return state, [replace(_log(event, note + "; ignored"), in_clip=False)]
    if isinstance(event, Scanned) and (lying := _lying_from_before(state, event)) is not None:
        # An order packed here before, its sheet or its waybill label still lying at the table
        # (they pile up in view) and seen again: not a new packing, which would end the open
        # clip or open a "repack" recording the next parcel as that order's; nor the open
        # order's waybill (its index row and manifest would name another buyer's label) or,
        # with waybill_ends_clip, its end. A repack or a relabelling is scanned by hand.
        if began is not None:
            return state, [_log(event, lying)]
        return state, [replace(_log(event, lying), in_clip=False), PreviousParcel(event.t)]
    if isinstance(event, Scanned) and event.code.kind is Kind.ITEM:
        # A product code (camera or hand scan): logged (in the open clip's timeline, if any); it
        # changes nothing, whatever the state: it never starts, ends or resumes a clip.
        return state, [_log(event, event.code.detail)]
    if not isinstance(state, Idle | Recording | Suspended):
        raise TypeError(f"unknown state {state!r}")  # programming error: fail at once
    floor = state.floor
    if (
        isinstance(event, Scanned)
        and event.code.kind is Kind.ORDER
        and (began is None or event.code.text != began[0])
    ):
        # (any order scanned ends the repack card's wait for its sheet)
        floor = replace(floor, packed=_packed(floor, event.code.text), repack=None)
    if isinstance(event, Scanned):
        # Badges, sign-out and return cards change the floor only: never a clip (an open clip
        # keeps the packer and kind it started with).
        code = event.code
        if code.kind is Kind.OPERATOR:
            return replace(state, floor=replace(floor, packer=code.detail)), [
                _log(event, f"packer {code.detail} signed in")
            ]
        if code.kind is Kind.CONTROL and code.detail == "signout":
            note = f"packer {floor.packer} signed out" if floor.packer else "no packer signed in"
            return replace(state, floor=replace(floor, packer=None)), [_log(event, note)]
        if code.kind is Kind.RETURN or (code.kind is Kind.CONTROL and code.detail == "return"):
            return replace(state, floor=replace(floor, next_kind=ClipKind.RETURN)), [
                _log(event, "the next clip is a return")
            ]
        if code.kind is Kind.CONTROL and code.detail == "repack":
            # Held up (lying cards were ignored above): a camera-only station's way to record
            # an order packed here again. Only the first sheet, soon, with no clip open: an
            # old sheet read during a clip still ends nothing.
            wait = (event.t, event.t + rules.repack_window_s)
            note = f"the first order sheet shown within {rules.repack_window_s:g} s is packed again"
            return replace(state, floor=replace(floor, repack=wait)), [_log(event, note)]
        # (The open order's sheet seen again by the camera went on above: no new packing.)
        if code.kind is Kind.ORDER and rules.require_packer and floor.packer is None:
            new, actions = _refuse_unsigned(state, event)
            # (the clip it ends is remembered: its label read late is still linked to it)
            return replace(_remember(state, new, actions), floor=floor), actions
    if (
        isinstance(event, ClipRefused)
        and isinstance(state, Recording)
        and event.order_id == state.order_id
        and state.kind is ClipKind.RETURN
    ):
        floor = replace(floor, next_kind=ClipKind.RETURN)  # the return is still to come
    match state:
        case Idle():
            new, actions = _step_idle(state, event)
        case Recording():
            new, actions = _step_recording(state, event, rules)
        case Suspended():
            new, actions = _step_suspended(state, event, rules)
            if isinstance(event, CameraBack) and state.kind is not None:
                # The clip cut by the loss resumes: the same packing, so it keeps its kind (a
                # return card scanned in the dark stays the next clip's) and its packer.
                packer, handover = _resumed_packer(state)
                actions = [
                    replace(a, handover=handover) if isinstance(a, StartClip) else a
                    for a in actions
                ]
                return _stamp(new, actions, Floor(packer, state.kind), keep=floor)
    cut = state.cut if isinstance(state, Idle | Suspended) else None
    if cut is not None and any(isinstance(a, StartClip) and a.after_restart for a in actions):
        # The packing the station's stop cut resumes: the same kind of clip (a return card
        # shown before stays the next clip's).
        resumed = replace(floor, next_kind=cut.kind)
        return _stamp(_remember(state, new, actions), actions, resumed, keep=floor)
    return _stamp(_remember(state, new, actions), actions, floor)


def _remember(old: State, new: State, actions: list[Action]) -> State:
    """An Idle state after a clip stopped knows which order it was and when it ended; a clip
    started after one ended (from that Idle, or as the next order) knows that order."""
    if not actions:
        return new  # every frame's Tick comes through here: nothing more to look at
    stops = [a for a in actions if isinstance(a, StopClip)]
    if isinstance(new, Recording) and any(isinstance(a, StartClip) for a in actions):
        if isinstance(old, Recording):
            # (from the order's first clip: a read in a clip a camera loss cut is its too)
            span = (_first_t(old), stops[-1].t) if stops else None
            return replace(
                new, previous=old.order_id, previous_waybills=old.waybills, previous_span=span
            )
        if isinstance(old, Idle) and old.last is not None:
            began = old.last_began
            span = (began, old.last[1]) if began is not None else None
            return replace(
                new, previous=old.last[0], previous_waybills=old.last_waybills, previous_span=span
            )
        return new
    if not (isinstance(old, Recording) and isinstance(new, Idle)):
        return new
    if not stops:
        return new
    links = tuple(a.waybill for a in actions if isinstance(a, LinkWaybill))
    waybills = tuple(dict.fromkeys((*old.waybills, *links)))
    last = (old.order_id, stops[-1].t)
    return replace(new, last=last, last_waybills=waybills, last_began=_first_t(old))


def _refuse_unsigned(state: State, event: Scanned) -> tuple[State, list[Action]]:
    """An order scanned while no packer is signed in and ``require_packer`` is on."""
    refused = LogEvent("refused", event.code.text, event.t, event.source, "no packer signed in")
    if isinstance(state, Recording):
        last = (state.order_id, event.t)
        if event.code.text == state.order_id:
            return Idle(state.floor, last), [_log(event), StopClip(FinishReason.RESCAN, event.t)]
        idle = Idle(
            state.floor, last, unrecorded=event.code.text, unrecorded_t=event.t, followed_t=event.t
        )
        # (it may be packed all the same)
        return idle, [StopClip(FinishReason.NEXT_ORDER, event.t), refused]
    if isinstance(state, Suspended):
        # The next parcel is on the table: the order waiting for the camera must not resume
        # on it (as in the light, a refused next order ends the open one).
        closed = _close_waiting(state, event.t)
        if event.code.text == state.order_id:
            return closed, [_log(event, "order closed while the camera was lost")]
        cut = _kept_cut(state, event.code.text)
        return replace(closed, unrecorded=event.code.text, unrecorded_t=event.t, cut=cut), [refused]
    cut = _kept_cut(state, event.code.text)
    # (the same order scanned again: its packing went on since it was first scanned)
    since = state.unrecorded_t if event.code.text == state.unrecorded else event.t
    followed = event.t if state.last is not None and state.followed_t is None else state.followed_t
    refused_state = replace(state, unrecorded=event.code.text, unrecorded_t=since, cut=cut)
    return replace(refused_state, followed_t=followed), [refused]


def _resumed_packer(state: Suspended) -> tuple[str | None, tuple[str | None, str | None] | None]:
    """The packer of the clip that resumes the one the loss cut, and its handover (StartClip).

    That clip's packer, as a badge read in the light never changes the open clip; but when
    who is signed in changed in the dark to someone else, nobody saw who packed on from the
    camera's return: naming either could name the wrong person, so the clip names neither.
    """
    now = state.floor.packer
    if now in (state.signed_in, state.packer):
        return state.packer, None
    return None, (state.packer, now)


def _stamp(
    new: State, actions: list[Action], floor: Floor, keep: Floor | None = None
) -> tuple[State, list[Action]]:
    """Carry the floor into the new state; give each started clip its packer and kind. The
    next clip is an order again, unless ``keep``: the floor to carry on unchanged."""
    if any(isinstance(a, StartClip) for a in actions):
        actions = [
            replace(a, packer=floor.packer, kind=floor.next_kind) if isinstance(a, StartClip) else a
            for a in actions
        ]
        if isinstance(new, Recording):
            new = replace(new, packer=floor.packer, kind=floor.next_kind)
        floor = keep if keep is not None else replace(floor, next_kind=ClipKind.ORDER)
    elif keep is not None:
        floor = keep
    return replace(new, floor=floor), actions


def _step_idle(state: Idle, event: Event) -> tuple[State, list[Action]]:
    if isinstance(event, Scanned):
        code = event.code
        if code.kind is Kind.ORDER:
            pre_roll = state.unrecorded in (None, code.text)
            again = _resumes_cut(state, code.text)
            start = StartClip(code.text, event.t, pre_roll=pre_roll, after_restart=again)
            # (its packing began at its scan unless it went on with no clip: refused, cut)
            at_scan = code.text != state.unrecorded
            return _start(code.text, event.t, at_scan), [start, _log(event)]
        if code.kind is Kind.CONTROL and code.detail == "test":
            return state, [_log(event, "test scan")]
        if code.kind is Kind.UNKNOWN:
            return state, [_log(event, "matches no order pattern; ignored")]
        if code.kind is Kind.WAYBILL and (late := _label_of_last_clip(state, event)) is not None:
            return late
        if (code.kind is Kind.WAYBILL or _is_seal(code)) and _before_unrecorded(state, event.t):
            note = f"read before {state.unrecorded} was scanned: no open order; ignored"
            return state, [_log(event, note), PreviousParcel(event.t)]
        if code.kind is Kind.WAYBILL or _is_seal(code):
            ended = replace(state, unrecorded=None, unrecorded_t=None, cut=None)
            return ended, [_log(event, "no open order; ignored"), PreviousParcel(event.t)]
        return state, [_log(event, "no open order; ignored")]
    if isinstance(event, PedalPress):
        note = "no open order; ignored"
        ended = replace(state, unrecorded=None, unrecorded_t=None, cut=None)
        return ended, [LogEvent("pedal", "", event.t, event.source, note), PreviousParcel(event.t)]
    if isinstance(event, CameraLost):  # no pre-roll reaches back across the loss
        dark = Suspended(None, event.t, last=state.last, unrecorded=state.unrecorded, cut=state.cut)
        span = None
        if state.last is not None and state.last_began is not None:
            span = (state.last_began, state.last[1])
        return replace(dark, unrecorded_t=state.unrecorded_t, last_span=span), []
    return state, []


def _before_unrecorded(state: Idle | Suspended, t: float) -> bool:
    """Was a read stamped ``t`` made before the order packed with no clip was scanned (decoded
    late)? Then it is an earlier parcel's seal or label: that packing goes on."""
    return (
        state.unrecorded is not None and state.unrecorded_t is not None and t < state.unrecorded_t
    )


def _label_of_last_clip(
    state: Idle | Suspended, event: Scanned
) -> tuple[State, list[Action]] | None:
    """A waybill read stamped while the clip that ended last was open, decoded after it ended
    (no clip opened since; also across a camera loss, or in the dark): that parcel's label,
    linked to its ended clip, as one decoded after the next clip began (``_late_waybill``).
    None: not such a read (nor is one by hand made after a later order's scan, stamped at that
    clip's end: ``Idle.followed_t``), or linked already. It ends that order's packing if it
    goes on with no clip, never another's (scanned after)."""
    if isinstance(state, Suspended):
        if state.order_id is not None or state.last is None or state.last_span is None:
            return None
        order_id, (began, end) = state.last[0], state.last_span
        linked: tuple[str, ...] = ()
    else:
        if state.last is None or state.last_began is None:
            return None
        (order_id, end), began, linked = state.last, state.last_began, state.last_waybills
        # Made after a later order's scan (a hand scan; the camera's stamped then are of the
        # frame whose read opened that order, shot before: ``_opening_frame``).
        if state.followed_t is not None and event.t >= state.followed_t and event.source != CAMERA:
            return None
    if not began <= event.t <= end or event.code.text in linked:
        return None
    note = f"stamped t={event.t:.3f}, before its clip ended at t={end:.3f}: {order_id}'s waybill"
    link = LinkWaybill(order_id, event.code.text, event.code.detail, event.t, ended=True)
    new: Idle | Suspended = state
    if isinstance(state, Idle):
        new = replace(state, last_waybills=(*state.last_waybills, event.code.text))
    if state.unrecorded == order_id:
        new = replace(new, unrecorded=None, unrecorded_t=None, cut=None)
    logged = _log(event, note + ", linked to its ended clip")
    if isinstance(state, Suspended):  # (no pre-roll reaches back across the loss)
        return new, [logged, link]
    return new, [logged, link, PreviousParcel(event.t)]


def _late_seal(
    state: Recording, event: Scanned | PedalPress, waybill_ends: bool = False
) -> LogEvent | None:
    """The log of ``event``, a pedal press or a seal card (a ``seal`` control card too; with
    ``waybill_ends``, ``waybill_ends_clip``, a waybill), when it is the parcel before's seal
    given a moment late: within ``SEAL_LATE_S`` of the order scan that opened this clip
    (``Recording.at_scan``), for a camera read from its first look (``Scanned.first_t``: the
    card was held up then). Logged outside the clip, which goes on; sealing it then left the
    new order's packing in no clip. None: it seals the clip.

    A waybill is linked to no clip: the parcel before's label scanned late, or this parcel's
    scanned early, nothing tells (``step`` remembers it as read with no clip open)."""
    seen = event.t
    label = isinstance(event, Scanned) and event.code.kind is Kind.WAYBILL
    if isinstance(event, Scanned):
        if not (_is_seal(event.code) or (label and waybill_ends)):
            return None
        if event.source == CAMERA and event.first_t is not None:
            seen = min(event.first_t, event.t)
    after = seen - state.started_t
    if not state.at_scan or not 0 <= after < SEAL_LATE_S:
        return None
    what = "pressed" if isinstance(event, PedalPress) else "read"
    note = f"{what} {after:.2f} s after the clip of {state.order_id!r} began at its scan: the"
    if label:
        note += (
            " parcel before's label (its seal) a moment late, or this parcel's scanned early;"
            " linked to no clip, the clip goes on (scan it again to link it and end the clip)"
        )
    else:
        note += " parcel before's seal, a moment late; the clip goes on"
    if isinstance(event, PedalPress):
        return LogEvent("pedal", "", event.t, event.source, note, in_clip=False)
    return replace(_log(event, note), in_clip=False)


def _step_recording(
    state: Recording, event: Event, rules: SessionSection
) -> tuple[State, list[Action]]:
    if isinstance(event, Scanned):
        code = event.code
        if code.kind is Kind.ORDER:
            if code.text == state.order_id:  # by hand (the camera's read changes nothing)
                return Idle(), [_log(event), StopClip(FinishReason.RESCAN, event.t)]
            return _start(code.text, event.t), [
                StopClip(FinishReason.NEXT_ORDER, event.t),
                StartClip(code.text, event.t),
                _log(event),
            ]
        if code.kind is Kind.WAYBILL:
            link = LinkWaybill(state.order_id, code.text, code.detail, event.t)
            if rules.waybill_ends_clip:
                if (late := _late_seal(state, event, waybill_ends=True)) is not None:
                    return state, [late]  # a label as this order's sheet came: whose?
                return Idle(), [_log(event), link, StopClip(FinishReason.WAYBILL, event.t)]
            waybills = state.waybills
            if code.text not in waybills:
                waybills = (*waybills, code.text)
            return replace(state, waybills=waybills), [_log(event), link]
        if _is_seal(code):
            if (late := _late_seal(state, event)) is not None:
                return state, [late]  # the parcel before's, as this order's sheet came
            return Idle(), [_log(event), StopClip(FinishReason.SEALED, event.t)]
        if code.kind is Kind.CONTROL:
            return state, [_log(event, "test scan")]
        return state, [_log(event, "matches no order pattern; ignored")]
    if isinstance(event, PedalPress):
        if (late := _late_seal(state, event)) is not None:
            # The parcel before sealed a moment late, as this order's sheet was read or
            # scanned: sealing this clip now left its packing in no clip.
            return state, [late]
        return Idle(), [
            LogEvent("pedal", "", event.t, event.source),
            StopClip(FinishReason.SEALED, event.t),
        ]
    if isinstance(event, Tick):
        if event.t - _first_t(state) >= rules.max_duration_s:
            # The clip ends, not the packing: nothing marks its end (as after a refused clip).
            idle = Idle(unrecorded=state.order_id, unrecorded_t=_first_t(state))
            return idle, [StopClip(FinishReason.TIMEOUT, event.t)]
        if event.moving:
            return replace(state, last_motion_t=event.t), []
        if rules.still_timeout_s > 0 and event.t - state.last_motion_t >= rules.still_timeout_s:
            # Nobody moves in view, not the parcel gone: it can lie half packed while the
            # packer fetches tape, and be packed on. As at a timeout, nothing marks its end.
            idle = Idle(unrecorded=state.order_id, unrecorded_t=_first_t(state))
            return idle, [StopClip(FinishReason.STILL, event.t)]
        return state, []
    if isinstance(event, EndClip):
        # A full disk ends the clip, not the packing: nothing marks its end (as after a timeout).
        if event.reason is FinishReason.DISK_FULL:
            idle = Idle(unrecorded=state.order_id, unrecorded_t=_first_t(state))
            return idle, [StopClip(event.reason, event.t)]
        return Idle(), [StopClip(event.reason, event.t)]
    if isinstance(event, CameraLost):
        dark = Suspended(
            state.order_id,
            event.t,
            state.waybills,
            state.order_id,
            since=state.started_t,
            last=(state.previous, state.started_t) if state.previous is not None else None,
            kind=state.kind,
            packer=state.packer,
            signed_in=state.floor.packer,
            first_t=_first_t(state),
        )
        return dark, [StopClip(FinishReason.CAMERA_LOST, event.t)]
    if isinstance(event, ClipRefused) and event.order_id == state.order_id:
        refused = LogEvent("refused", event.order_id, event.t, "station", event.reason)
        return _unrecorded(state), [refused]
    if isinstance(event, RecordingFailed):
        # The recorder closed the clip and keeps what was written; the packing goes on.
        return _unrecorded(state), []
    return state, []


def _first_t(state: Recording) -> float:
    """When the order of ``state`` began to be recorded: its safety timeout counts from then,
    through every clip that resumes it after a camera loss (the time in the dark included)."""
    return state.first_t if state.first_t is not None else state.started_t


def recorded_since(state: State) -> float | None:
    """When the order recorded now began to be (its first clip: through clips resumed after a
    camera loss), None with no clip open: a card read lying unmoved since then lay in view
    while that order was packed (``codes.Lying``)."""
    return _first_t(state) if isinstance(state, Recording) else None


def _unrecorded(state: Recording) -> Idle:
    """Idle after the clip of ``state`` was refused or its writer failed: its order is packed
    on unrecorded, and the order before it (if any) still ended where it did: its sheet read
    by the camera afterwards is not a repack (it would record this order's parcel)."""
    since = _first_t(state)
    if state.previous is None:
        return Idle(unrecorded=state.order_id, unrecorded_t=since)
    span = state.previous_span
    last = (state.previous, span[1] if span is not None else state.started_t)
    return Idle(
        last=last,
        last_waybills=state.previous_waybills,
        unrecorded=state.order_id,
        last_began=span[0] if span is not None else None,
        unrecorded_t=since,
        followed_t=since,
    )


def _close_waiting(state: Suspended, t: float) -> Suspended:
    """No order waits for the camera any more; the one that did (if any) ended at ``t``."""
    last = (state.order_id, t) if state.order_id is not None else state.last
    span = state.last_span
    if state.order_id is not None:  # its clip the loss cut, if it had one
        cut = state.order_id == state.order_at_loss and state.scanned_t is None
        began = state.first_t if state.first_t is not None else state.since  # its first clip
        span = (began, state.lost_t) if cut and began is not None else None
    return replace(
        state,
        last_span=span,
        order_id=None,
        waybills=(),
        scanned_t=None,
        since=None,
        last=last,
        kind=None,
        packer=None,
        signed_in=None,
        first_t=None,
        unrecorded=None,
        cut=None,
        unrecorded_t=None,
    )


def _step_suspended(
    state: Suspended, event: Event, rules: SessionSection
) -> tuple[State, list[Action]]:
    if isinstance(event, CameraBack):
        if state.order_id is None:
            idle = Idle(last=state.last, unrecorded=state.unrecorded, cut=state.cut)
            began = state.last_span[0] if state.last_span is not None else None
            return replace(idle, unrecorded_t=state.unrecorded_t, last_began=began), []
        if state.first_t is not None and event.t - state.first_t >= rules.max_duration_s:
            # Its time ran out in the dark: its clip is over, as a timeout in the light (a
            # clip started now would end at its first frame), but not its packing: nothing
            # marks its end, so the next order's clip starts at its scan.
            idle = Idle(last=(state.order_id, event.t), last_waybills=state.waybills)
            return replace(idle, unrecorded=state.order_id, unrecorded_t=state.first_t), []
        before = state.last[0] if state.last is not None else None
        rec = Recording(
            state.order_id,
            event.t,
            event.t,
            state.waybills,
            previous=before,
            # (resuming the order the loss cut, the clip that ended last is its own, cut)
            previous_span=state.last_span if state.first_t is None else None,
            first_t=state.first_t,
        )
        gap = round(max(0.0, event.t - state.lost_t), 3)
        start = StartClip(
            state.order_id,
            event.t,
            pre_roll=False,
            waybills=state.waybills,
            resumed_after_s=gap,
            lost_t=state.lost_t,
            order_at_loss=state.order_at_loss,
            scanned_t=state.scanned_t,
            after_restart=state.cut is not None and state.cut.order_id == state.order_id,
        )
        return rec, [start]
    closed = _close_waiting(state, event.t)
    if isinstance(event, Scanned):
        code = event.code
        if code.kind is Kind.ORDER:
            if code.text == state.order_id and event.source == CAMERA:
                # Read from a frame before the loss (no frames come in the dark): its sheet
                # lying at the table, as in the light; the order goes on.
                return state, [_log(event, "seen again by the camera before it was lost")]
            if code.text == state.order_id:
                return closed, [_log(event, "order closed while the camera was lost")]
            # ``last`` stays: the order before the waiting one (the resumed clip's previous)
            # (the packing the station's stop cut, if it is that order's, waits with it)
            cut = state.cut if _resumes_cut(state, code.text) else None
            waiting = replace(closed, order_id=code.text, scanned_t=event.t, since=event.t, cut=cut)
            return waiting, [_log(event, "camera lost; waiting")]
        if code.kind is Kind.WAYBILL and state.order_id is not None and rules.waybill_ends_clip:
            # The seal, as in the light: the order waiting ends; its clip cut by the loss (if
            # it is that clip's order) gets the waybill.
            note = "order ended by its waybill while the camera was lost"
            if state.order_at_loss != state.order_id or state.scanned_t is not None:
                return closed, [_log(event, note)]
            link = LinkWaybill(state.order_id, code.text, code.detail, event.t, ended=True)
            return closed, [_log(event, note), link]
        if code.kind is Kind.WAYBILL and state.order_id is not None:
            waybills = state.waybills
            if code.text not in waybills:
                waybills = (*waybills, code.text)
            # The clip that resumes the order names it (StartClip.waybills); the clip the loss
            # cut, if it is that order's, gets it now, as with waybill_ends_clip: no clip is
            # open in the dark, and the order may be sealed there (its label in no clip).
            was_cut = state.order_at_loss == state.order_id and state.scanned_t is None
            link = LinkWaybill(state.order_id, code.text, code.detail, event.t, ended=was_cut)
            return replace(state, waybills=waybills), [_log(event, "camera lost"), link]
        if _is_seal(code) and state.order_id is not None:
            return closed, [_log(event, "order sealed while the camera was lost")]
        if code.kind is Kind.WAYBILL and (late := _label_of_last_clip(state, event)) is not None:
            return late
        if (_is_seal(code) or code.kind is Kind.WAYBILL) and _before_unrecorded(state, event.t):
            note = f"read before {state.unrecorded} was scanned: camera lost; ignored"
            return state, [_log(event, note)]
        if _is_seal(code) or code.kind is Kind.WAYBILL:  # ends a packing with no clip, if any
            return closed, [_log(event, "camera lost; ignored")]
        return state, [_log(event, "camera lost; ignored")]
    if isinstance(event, PedalPress):
        return closed, [LogEvent("pedal", "", event.t, event.source, "camera lost")]
    # The input ran out or the station stops: nothing waits any more. A full disk leaves the
    # order waiting: when the camera is back, the runner refuses its clip if still full.
    if isinstance(event, EndClip) and event.reason is not FinishReason.DISK_FULL:
        return Idle(), []
    return state, []
