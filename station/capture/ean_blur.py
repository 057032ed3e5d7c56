"""Reads blurry EAN-13/UPC-A symbols by fitting a blurred model of the code to bar profiles."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import cv2
import numpy as np

# Out-of-focus EAN-13/UPC-A codes (fixed-focus cameras, codes held too close) lose their narrow
# bars and both libraries give up. Their structure is strict, though: 95 modules, known guards,
# 7-module digit patterns, a parity pattern and a check digit. This stage fits a blurred model of
# the symbol to intensity profiles across the bars (geometry, blur width and the digits), and
# only accepts a code that several bands of the image agree on with a clear margin. The digits
# come back as read; station.capture.barcodes turns them into a Detection (the pipeline's ean-blur
# stage).

_L_CODES = ("0001101", "0011001", "0010011", "0111101", "0100011",
            "0110001", "0101111", "0111011", "0110111", "0001011")  # fmt: skip
_R_CODES = tuple("".join("1" if b == "0" else "0" for b in c) for c in _L_CODES)
_G_CODES = tuple(c[::-1] for c in _R_CODES)
_PARITY = ("LLLLLL", "LLGLGG", "LLGGLG", "LLGGGL", "LGLLGG",
           "LGGLLG", "LGGGLL", "LGLGLG", "LGLGGL", "LGGLGL")  # fmt: skip
_EAN_Q = 5  # quiet-zone modules modelled on each side
_EAN_K = 4  # profile samples per module
_EAN_CTX = 3  # neighbouring modules that blur into a digit's window
_EAN_NMOD = 95 + 2 * _EAN_Q
_EAN_WIN = 7 + 2 * _EAN_CTX


def _bits(codes: Sequence[str]) -> np.ndarray:
    return np.array([[int(b) for b in c] for c in codes], dtype=np.float64)


_EAN_DIGIT_CODES = np.zeros((2, 20, 7))
_EAN_DIGIT_CODES[0] = _bits(_L_CODES + _G_CODES)  # left half: 0-9 odd (L), 10-19 even (G)
_EAN_DIGIT_CODES[1, :10] = _bits(_R_CODES)
_EAN_STARTS = np.array([3 + 7 * i for i in range(6)] + [50 + 7 * i for i in range(6)]) + _EAN_Q
_EAN_BASE = np.full(_EAN_NMOD, 0.5)  # 0 = space, 1 = bar, 0.5 = not yet known
_EAN_BASE[:_EAN_Q] = 0.0
_EAN_BASE[_EAN_Q + 95 :] = 0.0
for _offset, _guard in ((0, "101"), (45, "01010"), (92, "101")):
    _EAN_BASE[_EAN_Q + _offset : _EAN_Q + _offset + len(_guard)] = [int(b) for b in _guard]
_EAN_WINDOW_IDX = (_EAN_STARTS[:, None] - _EAN_CTX) * _EAN_K + np.arange(_EAN_WIN * _EAN_K)
_EAN_INNER = slice(_EAN_CTX * _EAN_K - _EAN_K // 2, (_EAN_CTX + 7) * _EAN_K + _EAN_K // 2)
_EAN_U = (np.arange(_EAN_NMOD * _EAN_K) + 0.5) / _EAN_K - _EAN_Q  # module coordinate per sample
_EAN_TREND = np.linspace(-1.0, 1.0, _EAN_NMOD * _EAN_K)  # uneven lighting along the code
_EAN_WEIGHTS = (3, 1) * 6  # check-digit weights of digits 2..13
_EAN_PARITY_G = np.array([[c == "G" for c in p] for p in _PARITY])
# digit that moves the running check sum from s to ns, per weight (1 and 3 are invertible mod 10)
_EAN_STEP_DIGIT = {
    w: ((np.arange(10)[None, :] - np.arange(10)[:, None]) * inv) % 10 for w, inv in ((1, 1), (3, 7))
}


@lru_cache(maxsize=64)
def _blur_matrix(n_modules: int, sigma: float) -> np.ndarray:
    """Samples (n_modules * K) of Gaussian-blurred modules: ``samples = matrix @ modules``."""
    k = _EAN_K
    u = (np.arange(n_modules * k) + 0.5) / k  # sample positions in modules
    # exact area of each module under the Gaussian around each sample
    edges = np.arange(n_modules + 1)[None, :] - u[:, None]
    cdf = 0.5 * (1 + np.vectorize(math.erf)(edges / (sigma * math.sqrt(2))))
    weights = np.diff(cdf, axis=1)
    out: np.ndarray = weights / weights.sum(axis=1, keepdims=True)
    return out


@lru_cache(maxsize=64)
def _digit_window_matrix(sigma: float) -> np.ndarray:
    """Blur of one digit window (modules -> the samples that are scored), transposed."""
    return np.ascontiguousarray(_blur_matrix(_EAN_WIN, sigma)[_EAN_INNER].T)


def _quantise_sigma(sigma: float) -> float:
    return round(min(2.6, max(0.4, sigma)) * 20) / 20  # keeps the matrix caches small


def _ean_render(modules: np.ndarray, sigma: float) -> np.ndarray:
    out: np.ndarray = _blur_matrix(_EAN_NMOD, _quantise_sigma(sigma)) @ modules
    return out


def _ean_digit_costs(y: np.ndarray, modules: np.ndarray, sigma: float) -> np.ndarray:
    """Squared error of every digit pattern at every position, neighbours from ``modules``."""
    ctx = modules[_EAN_STARTS[:, None] - _EAN_CTX + np.arange(_EAN_WIN)]
    cand = np.repeat(ctx[:, None, :], 20, axis=1)
    cand[:6, :, _EAN_CTX : _EAN_CTX + 7] = _EAN_DIGIT_CODES[0]
    cand[6:, :, _EAN_CTX : _EAN_CTX + 7] = _EAN_DIGIT_CODES[1]
    pred = cand @ _digit_window_matrix(_quantise_sigma(sigma))
    obs = y[_EAN_WINDOW_IDX][:, _EAN_INNER]
    costs: np.ndarray = ((pred - obs[:, None, :]) ** 2).sum(axis=2)
    costs[6:, 10:] = np.inf  # the right half has no even-parity set
    return costs


def _ean_best_modules(costs: np.ndarray, modules: np.ndarray) -> np.ndarray:
    out = modules.copy()
    for i, c in enumerate(costs.argmin(axis=1)):
        out[_EAN_STARTS[i] : _EAN_STARTS[i] + 7] = _EAN_DIGIT_CODES[int(i >= 6), c]
    return out


def _ean_modules_of(code: str) -> np.ndarray:
    m = _EAN_BASE.copy()
    parity = _PARITY[int(code[0])]
    for i in range(12):
        d = int(code[i + 1])
        if i < 6:
            pattern = _EAN_DIGIT_CODES[0, d + (10 if parity[i] == "G" else 0)]
        else:
            pattern = _EAN_DIGIT_CODES[1, d]
        m[_EAN_STARTS[i] : _EAN_STARTS[i] + 7] = pattern
    return m


def _ean_constrained(costs: np.ndarray) -> tuple[tuple[float, str], tuple[float, str]]:
    """The two cheapest valid EAN-13 codes (parity pattern and check digit) for a cost table."""
    tab = np.empty((10, 12, 10))  # first digit, position, digit
    tab[:, :6, :] = np.where(
        _EAN_PARITY_G[:, :, None], costs[None, :6, 10:20], costs[None, :6, :10]
    )
    tab[:, 6:, :] = costs[None, 6:, :10]
    dp = np.full((10, 10), np.inf)  # first digit, check sum so far
    dp[np.arange(10), np.arange(10)] = 0.0
    back = []
    for i, w in enumerate(_EAN_WEIGHTS):
        step = dp[:, :, None] + tab[:, i, :][:, _EAN_STEP_DIGIT[w]]
        arg = step.argmin(axis=1)
        dp = np.take_along_axis(step, arg[:, None, :], axis=1)[:, 0, :]
        back.append(arg)
    totals = dp[:, 0]
    best = []
    for d0 in np.argsort(totals)[:2]:
        s, digits = 0, []
        for i in range(11, -1, -1):
            prev = back[i][d0, s]
            digits.append(int(_EAN_STEP_DIGIT[_EAN_WEIGHTS[i]][prev, s]))
            s = prev
        best.append((float(totals[d0]), str(d0) + "".join(map(str, reversed(digits)))))
    return best[0], best[1]


def _ean_sample(profile: np.ndarray, geom: Sequence[float]) -> np.ndarray:
    # piecewise linear: module 0 -> x0, the centre guard (47.5) -> xm, module 95 -> x1; the two
    # halves absorb most of the perspective of a tilted label
    x0, xm, x1 = geom
    u = _EAN_U
    xs = np.where(u < 47.5, x0 + u * (xm - x0) / 47.5, xm + (u - 47.5) * (x1 - xm) / 47.5)
    out: np.ndarray = np.interp(xs, np.arange(len(profile), dtype=np.float64), profile)
    return out


def _ean_costs(
    profile: np.ndarray, geom: Sequence[float], sigma: float, rounds: int = 2
) -> np.ndarray | None:
    obs = _ean_sample(profile, geom)
    k, q = _EAN_K, _EAN_Q
    quiet = np.concatenate([obs[k : q * k - k], obs[-(q * k - k) : -k]])
    white = float(np.median(quiet))
    black = float(np.percentile(obs[q * k : -q * k], 2))
    if white - black < 10:
        return None
    y = (white - obs) / (white - black)  # "darkness": 0 white, 1 black
    modules = _EAN_BASE
    for _ in range(rounds):
        costs = _ean_digit_costs(y, modules, sigma)
        modules = _ean_best_modules(costs, modules)
        a_mat = np.stack([_ean_render(modules, sigma), np.ones_like(y), _EAN_TREND], axis=1)
        (a, b, c), *_ = np.linalg.lstsq(a_mat, y, rcond=None)
        if a < 0.2:
            return None
        y = (y - b - c * _EAN_TREND) / a
    return _ean_digit_costs(y, modules, sigma)


def _ean_projector(pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Design matrix (model, offset, lighting trend) and its pseudo-inverse for one prediction."""
    a_mat = np.stack([pred, np.ones_like(pred), _EAN_TREND], axis=1)
    return a_mat, np.linalg.pinv(a_mat)


def _ean_residual(obs: np.ndarray, projector: tuple[np.ndarray, np.ndarray]) -> float:
    a_mat, pinv = projector
    coef = pinv @ obs
    if coef[0] > 0:  # bars must be darker than spaces
        return math.inf
    r = a_mat @ coef - obs
    return float(r @ r) / (len(obs) * max(float(obs.var()), 1e-6))


def _ean_refine(
    profile: np.ndarray, code: str, geom: list[float], sigma: float
) -> tuple[list[float], float, float]:
    """Adjust geometry and blur to fit a candidate code better (coordinate descent)."""
    modules = _ean_modules_of(code)
    mw = (geom[2] - geom[0]) / 95
    proj = _ean_projector(_ean_render(modules, sigma))
    best = _ean_residual(_ean_sample(profile, geom), proj)
    for step in (0.5, 0.25, 0.125):
        for s2 in (_quantise_sigma(sigma * 0.8), _quantise_sigma(sigma * 1.25)):
            p2 = _ean_projector(_ean_render(modules, s2))
            v = _ean_residual(_ean_sample(profile, geom), p2)
            if v < best:
                best, sigma, proj = v, s2, p2
        improved = True
        while improved:
            improved = False
            for gi in (0, 2, 1):
                for dx in (-step, step):
                    g2 = list(geom)
                    g2[gi] += dx * mw
                    v = _ean_residual(_ean_sample(profile, g2), proj)
                    if v < best:
                        best, geom, improved = v, g2, True
    return geom, sigma, best


def _ean_edge_pairs(profile: np.ndarray, limit: int = 40) -> list[tuple[int, int]]:
    """Plausible (left, right) ends of a symbol: a falling and a rising edge with quiet zones,
    the ``limit`` with the calmest quiet zones relative to the contrast between them."""
    p = cv2.GaussianBlur(profile.reshape(1, -1), (0, 0), 0.8).ravel()
    d = np.diff(p)
    thr = 0.15 * float(np.abs(d).max())
    mid = slice(1, len(d) - 1)
    falls = np.flatnonzero((d[mid] < -thr) & (d[mid] <= d[:-2]) & (d[mid] <= d[2:])) + 1
    rises = np.flatnonzero((d[mid] > thr) & (d[mid] >= d[:-2]) & (d[mid] >= d[2:])) + 2
    scored = []
    n = len(p)
    for left in falls:
        for right in rises:
            width = right - left
            if width < 95 * 0.9:
                continue
            mw = width / 95
            # spec quiet zones are 11 and 7 modules; the model needs _EAN_Q on both sides
            ql, qr = max(round(6 * mw), math.ceil(_EAN_Q * mw)), max(round(4 * mw), 2)
            if left - ql < 0 or right + max(qr, math.ceil(_EAN_Q * mw)) > n:
                continue
            inside = p[left:right]
            span = float(np.ptp(inside))
            before, after = p[left - ql : left - 1], p[right + 2 : right + qr]
            unrest = max(float(np.ptp(before)), float(np.ptp(after)) if len(after) else 0.0)
            if unrest > 0.3 * span or before.mean() < inside.mean():
                continue
            scored.append((unrest / max(span, 1e-6), int(left), int(right)))
    scored.sort()
    return [(left, right) for _, left, right in scored[:limit]]


@dataclass(frozen=True, slots=True)
class _BandFit:
    code: str
    cost: float
    runner_up: float
    costs: np.ndarray
    geom: tuple[float, float, float]
    misfit: float  # residual variance share of the code's rendered model
    sigma: float  # fitted blur, in modules


def _ean_decode_band(profile: np.ndarray, keep: int = 2) -> _BandFit | None:
    ranked = []
    for left, right in _ean_edge_pairs(profile):
        costs = _ean_costs(profile, (left, (left + right) / 2, right), 1.2, rounds=1)
        if costs is not None:
            ranked.append((_ean_constrained(costs)[0][0], left, right))
    ranked.sort()
    best: _BandFit | None = None
    for _, left, right in ranked[:keep]:
        for sigma0 in (0.9, 1.5):
            geom = [float(left), (left + right) / 2, float(right)]
            sigma, prev, costs, misfit = sigma0, "", None, math.inf
            # alternate: decode with this geometry, then fit the geometry to that code
            for _ in range(4):
                costs = _ean_costs(profile, geom, sigma)
                if costs is None:
                    break
                (cost, code), (runner_up, _) = _ean_constrained(costs)
                if code == prev:
                    break
                prev = code
                geom, sigma, misfit = _ean_refine(profile, code, geom, sigma)
            if costs is None:
                continue
            if best is None or cost < best.cost:
                best = _BandFit(
                    code,
                    cost,
                    runner_up,
                    costs / max(cost, 1e-6),
                    (geom[0], geom[1], geom[2]),
                    misfit,
                    sigma,
                )
    return best


def _bar_angles(gray: np.ndarray) -> list[float]:
    """Up to two candidate gradient directions (degrees) of the strongly oriented texture."""
    g = cv2.GaussianBlur(gray, (0, 0), 1.0)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1)
    jxx = cv2.boxFilter(gx * gx, -1, (7, 7))
    jyy = cv2.boxFilter(gy * gy, -1, (7, 7))
    jxy = cv2.boxFilter(gx * gy, -1, (7, 7))
    energy = jxx + jyy
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / np.maximum(energy, 1e-6)
    sel = (energy > 0.1 * float(np.percentile(energy, 95))) & (coherence > 0.6)
    if not sel.any():
        return [0.0]
    angles = 0.5 * np.degrees(np.arctan2(2 * jxy[sel], (jxx - jyy)[sel]))
    # Count pixels, not gradient strength: a few sharp label edges must not outvote the wide,
    # soft area of a blurry barcode. Orientation is circular: -90 and +90 degrees are the same.
    hist = np.bincount(((angles + 90) // 5).astype(int) % 36, minlength=36)
    smooth = hist + np.roll(hist, 1) + np.roll(hist, -1)
    peaks: list[int] = []
    for i in np.argsort(smooth)[::-1]:
        if all(min(abs(i - j), 36 - abs(i - j)) > 3 for j in peaks):
            peaks.append(int(i))
        if len(peaks) == 2:
            break
    out = []
    for i in peaks:
        centre = i * 5 - 90 + 2.5
        near = angles[np.abs((angles - centre + 90) % 180 - 90) <= 7.5]
        # circular mean of the doubled angles around the peak
        rad = np.radians(2 * near)
        out.append(0.5 * math.degrees(math.atan2(np.sin(rad).sum(), np.cos(rad).sum())))
    return out


def rotate(gray: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by ``angle`` degrees counter-clockwise on a grown canvas; also the inverse map."""
    h, w = gray.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * sin + w * cos), int(h * cos + w * sin)
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    rotated = cv2.warpAffine(
        gray, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return rotated, cv2.invertAffineTransform(m)


def _bar_rows(rotated: np.ndarray) -> tuple[int, int, float]:
    """Rows where vertical bars dominate (the longest such run) and how strongly they do."""
    gx = np.abs(cv2.Sobel(rotated, cv2.CV_32F, 1, 0))
    gy = np.abs(cv2.Sobel(rotated, cv2.CV_32F, 0, 1))
    score = np.convolve((gx - gy).mean(axis=1), np.ones(5) / 5, mode="same")
    on = np.flatnonzero(score > 0.35 * float(score.max()))
    if len(on) == 0 or score.max() <= 0:
        return 0, 0, 0.0
    runs = np.split(on, np.flatnonzero(np.diff(on) > 3) + 1)
    run = max(runs, key=len)
    return int(run[0]), int(run[-1]) + 1, float(score[run].sum())


_EAN_BANDS = 6
_EAN_GIVE_UP = 3  # bands without a single clear read after which a direction is abandoned


def read_blurry_ean(gray: np.ndarray) -> list[tuple[str, tuple[tuple[int, int], ...]]]:
    """One blurry EAN-13/UPC-A symbol in ``gray`` (a small image or a crop) as its 13 digits
    and corner points, or none."""
    options = []
    for angle in _bar_angles(gray):
        rotated, inverse = rotate(gray.astype(np.float32), angle)
        options.append((_bar_rows(rotated), rotated, inverse))
    # the direction whose rotation shows the most bar-like rows
    (top, bottom, _), rotated, inverse = max(options, key=lambda o: o[0][2])
    if bottom - top < 2 * _EAN_BANDS:
        return []
    height = (bottom - top) // _EAN_BANDS
    # middle bands first: they are the likeliest to cross the whole symbol
    order = sorted(range(_EAN_BANDS), key=lambda i: abs(i - (_EAN_BANDS - 1) / 2))
    for reverse in (False, True):  # upside down: the parity patterns tell the two apart
        fits: list[_BandFit] = []
        for n, i in enumerate(order):
            if n == _EAN_GIVE_UP and not any(_ean_vote(f) for f in fits):
                break  # nothing EAN-like in the best bands: not worth the rest
            profile = rotated[top + i * height : top + (i + 1) * height].mean(axis=0)
            fit = _ean_decode_band(profile[::-1] if reverse else profile)
            if fit is not None:
                fits.append(fit)
        code = _ean_accept(fits)
        if code is None:
            continue
        best = min((f for f in fits if f.code == code), key=lambda f: f.cost)
        x0, x1 = best.geom[0], best.geom[2]
        if reverse:
            x0, x1 = rotated.shape[1] - 1 - x1, rotated.shape[1] - 1 - x0
        corners = np.array([[x0, top], [x1, top], [x1, bottom], [x0, bottom]], dtype=np.float64)
        back = corners @ inverse[:, :2].T + inverse[:, 2]
        return [(code, tuple((round(x), round(y)) for x, y in back))]
    return []


def _ean_vote(fit: _BandFit) -> bool:
    """Whether a band's read is clear enough to count."""
    return (
        fit.runner_up >= _EAN_MARGIN * fit.cost
        and fit.misfit <= _EAN_MISFIT
        and fit.sigma <= _EAN_MAX_BLUR
    )


def _ean_accept(fits: list[_BandFit]) -> str | None:
    """The code several bands read with a clear margin and the pooled evidence agrees on."""
    confident = Counter(f.code for f in fits if _ean_vote(f))
    if not confident:
        return None
    (code, votes), *rest = confident.most_common()
    if votes < _EAN_MIN_VOTES or (rest and rest[0][1] >= votes):
        return None
    # fits is not empty (confident counts them), so the sum is an array, never sum's 0.
    pooled = _ean_constrained(cast(np.ndarray, sum(f.costs for f in fits)))[0][1]
    return code if pooled == code else None


_EAN_MARGIN = 2.0  # runner-up cost / best cost for a band to count as a vote
_EAN_MIN_VOTES = 2
# Share of the profile's variance the fitted code leaves unexplained. Real reads stay under
# 0.05; other symbologies (Code 128 fitted as EAN) and noise sit at 0.08 and above.
_EAN_MISFIT = 0.06
# Blur (Gaussian sigma, in modules) beyond which digits are no longer identifiable: reads of
# real photos fit 1.2-1.75; heavily blurred Code 128 fitted as EAN came out at 2.2 and more.
_EAN_MAX_BLUR = 1.9


__all__ = ["read_blurry_ean", "rotate"]
