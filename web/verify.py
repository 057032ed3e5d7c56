"""The public /verify page: upload a clip or an evidence bundle, see if it is a recorded clip."""

from __future__ import annotations

import errno
import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, render_template_string, request, session
from flask_babel import gettext

from station.config import Config
from station.proof import ProofError
from station.proof.ca import cert_fingerprint
from station.proof.paths import ProofPaths
from station.proof.trust import Anchors
from station.proof.tsa import load_pem_certs
from station.proof.verify import (
    AUTHENTIC,
    UNANCHORED,
    UNVERIFIED,
    Report,
    check_bundle_in_log,
    verify_bundle,
    verify_clip,
)
from web import uploads
from web.formatting import fmt_dt, fmt_site_dt, visible
from web.handles import media_store, site_config
from web.i18n import html_lang

log = logging.getLogger(__name__)

bp = Blueprint("verify", __name__)

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB ([web] verify_max_mb): a 10-minute 1080p clip is ~130 MB
SPOOL_KEY = "packcam_verify_spool"


def spool_of(app: Flask) -> uploads.Spool:
    return app.extensions[SPOOL_KEY]  # type: ignore[no-any-return]


def _limit() -> int:
    return spool_of(current_app).limits.max_bytes


def _raise_upload_limit() -> None:
    """Runs before every other before_request: only the upload may be larger than the site cap."""
    if request.endpoint == "verify.upload" and request.method == "POST":
        request.max_content_length = _limit() + uploads.FRAMING


@bp.record_once
def _install(state: Any) -> None:
    # The site caps request bodies (MAX_CONTENT_LENGTH), so the raised limit must be in place
    # before the app's own hooks.
    app: Flask = state.app
    app.before_request_funcs.setdefault(None, []).insert(0, _raise_upload_limit)
    cfg = site_config(app)
    override = app.config.get("PACKCAM_VERIFY_MAX_BYTES")
    limits = uploads.Limits.from_config(
        cfg, max_bytes=int(override) if override is not None else None
    )
    probe = app.config.get("PACKCAM_DISK_PROBE") or uploads.statvfs_probe
    app.extensions[SPOOL_KEY] = uploads.Spool(cfg.station.data_dir, limits, probe=probe)


# Inside the site's layout (its header, links and language switch) when the site serves it,
# else in BARE (the blueprint on its own app, as the proof tests mount it).
BARE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %} — packcam</title>
{% block head %}{% endblock %}
</head><body>{% block content %}{% endblock %}</body></html>
"""

PAGE = """{% extends layout %}
{% block title %}验证视频 · Verify a clip{% endblock %}
{% block head %}<link rel="stylesheet" href="{{ url_for('verify.css') }}">{% endblock %}
{% block content %}
<section class="verify">
<h1>验证打包视频 · Verify a packing clip</h1>
<p>上传工位录制的视频（MP4）或证据包（ZIP），检查它是否为本系统录制且未被修改。
文件只用于本次检查，不会保存。<br>
Upload a clip (MP4) or an evidence bundle (ZIP) to check that it is a clip this system recorded,
unaltered. The file is only used for this check and is not kept.</p>
<form method="post" action="{{ url_for('verify.upload') }}" enctype="multipart/form-data">
{% if csrf_token is defined %}
<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
{% endif %}
<input type="file" name="file" required accept=".mp4,.zip,video/mp4,application/zip">
<button type="submit">验证 Verify</button>
<small>最大 Max {{ max_mb }} MB</small>
</form>
{% if report %}
<hr>
<p class="verdict {{ verdict.css }}">{{ verdict.title }}</p>
<p>{{ verdict.detail }}</p>
{% if verdict.gaps %}<ul class="gaps">{% for g in verdict.gaps.clips %}<li class="warn">{{ g }}</li>
{% endfor %}</ul><p>{{ verdict.gaps.note }}</p>{% endif %}
{% if verdict.anchors %}<p>{{ verdict.anchors_label }}
(<a href="{{ url_for('verify.trust') }}">/trust</a>)</p>
<ul>{% for a in verdict.anchors %}<li><code>{{ a }}</code></li>{% endfor %}</ul>{% endif %}
{% if verdict.compare %}<p>{{ verdict.compare_label }}</p>
<ul>{% for a in verdict.compare %}<li><code>{{ a }}</code></li>{% endfor %}</ul>{% endif %}
{% if match %}
<table>
<tr><th>订单 Order</th><td>{{ visible(match.order_id) }}</td></tr>
<tr><th>运单 Waybill</th><td>{{ visible(match.waybill or "—") }}</td></tr>
<tr><th>工位 Station</th><td>{{ visible(match.station) }}</td></tr>
<tr><th>时间 Time</th><td>{{ match.started_at }} – {{ match.ended_at }}</td></tr>
{% if match.log_index is not none %}
<tr><th>日志序号 Log entry</th><td>{{ match.log_index }}</td></tr>
{% endif %}
</table>
{% endif %}
<p>文件 File: <code>{{ visible(name) }}</code>
{% if sha256 %}SHA-256 <code>{{ sha256 }}</code>{% endif %}</p>
<ul>
{% for c in report.checks %}
<li class="{{ c.status }}"><b>{{ c.status|upper }}</b>
{{ visible(c.name) }}: {{ visible(c.reason) }}
{% if c.code %}<code>[{{ c.code }}]</code>{% endif %}</li>
{% endfor %}</ul>
{% endif %}
{% if error %}<p class="fail">{{ error }}</p>{% endif %}
</section>
{% endblock %}
"""


CSS = """\
body:not(.site){font-family:system-ui,"Noto Sans CJK SC","WenQuanYi Zen Hei",sans-serif;
margin:1.5em;max-width:50em} .ok{color:#06612a} .fail{color:#a40000} .warn{color:#8a5a00}
li{margin:.2em 0} code{word-break:break-all;font-size:.85em} th{text-align:left;padding-right:1em}
.verdict{font-size:1.3em;font-weight:bold}
"""


@bp.get("/verify/verify.css")
def css() -> Response:
    resp = Response(CSS, mimetype="text/css")
    resp.headers["Cache-Control"] = "public, max-age=3600"
    return resp


def _render(status: int = 200, **ctx: Any) -> Response:
    ctx.setdefault("report", None)
    ctx.setdefault("match", None)
    ctx.setdefault("error", None)
    ctx.setdefault("name", "")
    ctx.setdefault("sha256", None)
    if ctx["report"] is not None and "verdict" not in ctx:  # the same model as `packcam verify`
        ctx["verdict"] = verdict_view(ctx["report"], site_anchors(site_config()))
    html = render_template_string(
        PAGE, max_mb=_limit() // (1 << 20), layout=_layout(), visible=visible, **ctx
    )
    return Response(html, status=status, mimetype="text/html")


def _layout() -> Any:
    """The site's base.html when this blueprint runs inside the site, else BARE."""
    if "packcam" in current_app.extensions:
        return "base.html"
    return current_app.jinja_env.from_string(BARE)


@bp.get("/verify")
def page() -> Response:
    return _render()


TRUST_PAGE = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} — packcam</title>
<link rel="stylesheet" href="{{ url_for('verify.css') }}">
</head><body>
<h1>{{ title }}</h1>
<p>{{ intro }}</p>
<ul>{% for a in anchors %}<li><code>{{ a }}</code></li>{% endfor %}</ul>
<p>{{ how }}</p>
<pre>packcam verify --trust trust.txt bundle.zip</pre>
<p><a href="{{ url_for('verify.trust_file') }}">trust.txt</a></p>
</body></html>
"""


def _(message: str, **kw: Any) -> str:
    """flask-babel's gettext on the real site (both languages), plain text without Babel."""
    if "babel" in current_app.extensions:
        return str(gettext(message, **kw))
    return message % kw if kw else message


def _html_lang() -> str:
    if "babel" in current_app.extensions:
        return html_lang()
    return "en"


def site_anchors(cfg: Config | None) -> Anchors:
    """What this site trusts: its company CA and its TSA roots (what /trust publishes)."""
    if cfg is None:
        return Anchors()
    paths = ProofPaths.from_config(cfg)
    tsa: list[Any] = []
    if paths.tsa_ca is not None:
        try:
            tsa = load_pem_certs(paths.tsa_ca.read_bytes())
        except (OSError, ProofError) as exc:
            log.warning("cannot read the TSA roots %s: %s", paths.tsa_ca, exc)
    return Anchors(ca=tuple(_trusted_ca(cfg) or ()), tsa=tuple(tsa))


def verdict_view(report: Report, anchors: Anchors) -> dict[str, Any]:
    """The verdict of a report in the reader's language: title, explanation, fingerprints."""
    v = report.verdict
    if v == AUTHENTIC:
        title = _("Authentic: matches a recorded clip")
        detail = _(
            "The file is the recorded one, signed by a station key that this site's company CA "
            "certified, and a trusted time-stamp authority saw it within the allowed delay."
        )
        css = "ok"
    elif v == UNANCHORED:
        title = _("Intact, but not anchored")
        if (
            "time-late" in report.reasons()
            and report.signer_anchored
            and report.covered
            and not report.facts.get("compare")
        ):  # every token from a TSA the site trusts, and the time the only thing unanchored
            if any(t.get("late") for t in report.facts.get("tokens") or []):
                detail = _(
                    "Nothing was altered and the signer is vouched for, but a time-stamp "
                    "authority this site trusts saw it only after the allowed delay past its "
                    "recorded end: it existed by then, and when it ended is the station's word "
                    "(a station offline then, or a record signed later: nobody can tell them "
                    "apart)."
                )
            else:  # seen near the end, by a TSA stating its time too loosely to place it
                detail = _(
                    "Nothing was altered and the signer is vouched for, but the time-stamp "
                    "authority this site trusts states its time too loosely to place the record "
                    "within the allowed delay of its recorded end: it existed by then, and when "
                    "it ended is the station's word."
                )
        elif report.facts.get("compare"):
            detail = _(
                "Nothing was altered, but the signer or the time is not vouched for by a company "
                "CA or time-stamp authority this site trusts. Compare the fingerprints below with "
                "the ones the seller gave you."
            )
        else:  # a bare clip judged by its C2PA manifest alone: no token, no key to compare
            detail = _(
                "Nothing was altered, but the signer or the time is not vouched for by a company "
                "CA or time-stamp authority this site trusts, and this file carries nothing to "
                "compare. Ask the seller for the order's evidence bundle."
            )
        css = "warn"
    elif v == UNVERIFIED and report.pending:  # the central site: a clip not archived yet
        title = _("Not verified")
        detail = _(
            "The station has not yet archived its signed record of these clips with this site, "
            "so the site cannot tell this bundle from one re-signed with the station's key: "
            "that proves neither that it is authentic nor that it was altered. Try again later."
        )
        css = "warn"
    elif v == UNVERIFIED:  # nothing failed: no word on the file either way
        title = _("Not verified")
        detail = _(
            "This site could not check the file: that proves neither that it is authentic "
            "nor that it was altered."
        )
        css = "warn"
    else:
        title = _("Not authentic")
        detail = _("Reasons: %(codes)s", codes=", ".join(sorted(report.codes())) or "—")
        css = "fail"
    gaps = _gaps(report) if v in (AUTHENTIC, UNANCHORED) else {}
    if gaps:  # the verdict is for the clips here: the title must not read as the whole order
        title += " — " + gaps["title"]
    return {
        "css": css,
        "title": ("✔ " if css == "ok" else "✘ " if css == "fail" else "⚠ ") + title,
        "detail": detail,
        "gaps": gaps,
        "anchors": anchors.describe(),
        "anchors_label": _("Checked against this site's published trust anchors:"),
        "compare": report.facts.get("compare", []),
        "compare_label": _("Fingerprints to compare:"),
    }


def _gaps(report: Report) -> dict[str, Any]:
    """A partial bundle's missing clips, each by the station's signed deletion record, in the
    reader's language; {} when none is missing."""
    deleted = report.facts.get("deleted_clips") or []
    if not deleted:
        return {}
    here = len(report.facts.get("clips") or [])
    return {
        "title": _(
            "partial: %(here)d of this order's %(total)d clips are in this bundle",
            here=here,
            total=here + len(deleted),
        ),
        "clips": [
            _(
                "Clip %(n)s of this order (%(start)s – %(end)s, SHA-256 %(sha)s) was deleted by "
                "the station's retention on %(when)s, by its own signed record.",
                n=d["clip"],
                start=fmt_dt(d["started_at"]),
                end=fmt_dt(d["ended_at"]),
                sha=d["sha256"],
                when=fmt_site_dt(d["deleted_utc"]),
            )
            for d in deleted
        ],
        "note": _(
            "A deletion record is the seller's own statement, its date too (no time-stamp "
            "authority saw it): it explains the gap, it proves neither when the clip was "
            "deleted nor what it showed. A date after the dispute may have begun tells against "
            "the seller; an earlier one proves nothing."
        ),
    }


@bp.get("/trust")
def trust() -> Response:
    """The seller's published anchors: a stable URL the verify page and the docs point to."""
    anchors = site_anchors(site_config())
    html = render_template_string(
        TRUST_PAGE,
        lang=_html_lang(),
        title=_("Trust anchors of this site"),
        intro=_(
            "Evidence from this site is authentic only if its signer chains to this company CA "
            "and its time comes from these time-stamp authorities. Compare these SHA-256 "
            "fingerprints with the ones you received from the seller by another channel."
        ),
        how=_("Save the file below and verify with:"),
        anchors=anchors.describe(),
    )
    return Response(html, mimetype="text/html")


@bp.get("/trust.txt")
def trust_file() -> Response:
    """The same anchors as a packcam trust file (``packcam verify --trust trust.txt``)."""
    anchors = site_anchors(site_config())
    lines = ["# packcam trust file: compare these fingerprints with the seller's"]
    lines += [f"ca {cert_fingerprint(c)}" for c in anchors.ca]
    lines += [f"tsa {cert_fingerprint(c)}" for c in anchors.tsa]
    resp = Response("\n".join(lines) + "\n", mimetype="text/plain")
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


def _trusted_ca(cfg: Config | None) -> list[Any] | None:
    if cfg is None:
        return None
    ca = ProofPaths.from_config(cfg).ca_cert
    try:
        return load_pem_certs(ca.read_bytes())
    except (FileNotFoundError, NotADirectoryError, ProofError):
        return None
    except PermissionError as exc:  # e.g. configured inside proof/, which this user cannot see
        log.warning("cannot read the company CA certificate %s: %s", ca, exc)
        return None


def _recorded_match(cfg: Config | None, report: Report) -> dict[str, Any] | None:
    """The recorded clip a verified upload corresponds to, from the report's facts."""
    if report.facts.get("order_id") and report.facts.get("log_index") is not None:
        return report.facts
    clips: list[dict[str, Any]] = report.facts.get("clips", [])
    for clip in clips:
        return clip
    return None


@bp.post("/verify")
def upload() -> Response:
    # The site's CSRF check leaves this form to the streamed parse (web/uploads.py).
    expected = str(session.get("csrf", "")) if "packcam" in current_app.extensions else None
    spool = spool_of(current_app)
    try:
        with uploads.spooled_upload(spool, expected_csrf=expected) as up:
            return _check(up)
    except uploads.UploadRefused as exc:
        log.warning(
            "verify page: upload from %s refused (%s): %s", request.remote_addr, exc.code, exc
        )
        resp = _render(exc.status, error=exc.message)
        if exc.retry_after:
            resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    except OSError as exc:
        # the data disk filled up under an admitted upload (the station recording): the
        # upload's files are gone already (spooled_upload); say so, not "something went wrong"
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        log.error("verify page: the data disk is full: %s", exc)
        return _render(507, error=uploads.DISK_FULL)


def _check(up: uploads.Upload) -> Response:
    cfg = site_config()
    store = media_store()
    if up.is_zip:
        up.ticket.grow(uploads.unzip_need(up.path, spool_of(current_app).limits))
        report = verify_bundle(up.path, anchors=site_anchors(cfg), tmp_dir=up.scratch())
        if store is not None:  # the fleet's central site: the PostgreSQL index, not a local log
            store.check_bundle(report)
        elif cfg is not None:
            check_bundle_in_log(report, cfg)
    elif store is not None:
        report = store.verify_clip(up.path)
    else:
        try:
            report = verify_clip(up.path, cfg, anchors=site_anchors(cfg))
        except ProofError as exc:
            log.warning("verify page: %s", exc)
            return _render(503, error="本站尚无录像索引 · this site has no clip index yet")
    log.info(
        "verify page: %s (%d bytes) from %s -> %s",
        "bundle" if up.is_zip else "clip",
        up.size,
        request.remote_addr,
        report.verdict + (f" {sorted(report.codes())}" if report.failures else ""),
    )
    return _render(
        200,
        report=report,
        match=_recorded_match(cfg, report) if report.ok and not report.pending else None,
        name=up.name,
        sha256=report.facts.get("sha256"),
    )
