"""systemd/: the units pass `systemd-analyze verify`, are hardened, and install.sh builds a tree."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from station import config as config_mod
from station.proof.exports import EXPORTS_DIR, REQUESTS_DIR
from station.proof.paths import PRIVATE_DIR, PUBLIC_DIR
from station.runtime.sdnotify import watchdog_interval

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNITS = ("packcam-station.service", "packcam-web.service")
PROD_BIN = "/opt/packcam/.venv/bin/packcam"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (apt install systemd; CI has it)"
)


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (systemd keys may repeat), comments dropped."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def packcam_executable() -> Path:
    """An existing packcam to put in ExecStart= (verify checks that it is executable)."""
    cand = Path(sys.executable).parent / "packcam"
    if cand.is_file() and os.access(cand, os.X_OK):
        return cand
    found = shutil.which("packcam")
    if found is None:
        pytest.skip("no packcam executable installed (pip install -e .)")
    return Path(found)


def unit_copies(dest: Path, replace: dict[str, str] | None = None) -> list[Path]:
    """The units with ExecStart= pointing at this checkout's packcam (and other edits)."""
    out = []
    for name in UNITS:
        text = (SYSTEMD / name).read_text(encoding="utf-8")
        text = text.replace(PROD_BIN, str(packcam_executable()))
        for old, new in (replace or {}).items():
            text = text.replace(old, new)
        (dest / name).write_text(text, encoding="utf-8")
        out.append(dest / name)
    return out


def analyze_verify(units: list[Path]) -> list[str]:
    """What `systemd-analyze verify` says about these units (lines naming them), and its rc."""
    assert ANALYZE is not None
    proc = subprocess.run(
        [ANALYZE, "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        cwd=units[0].parent,
        timeout=60,
    )
    names = [u.name for u in units] + [str(u) for u in units]
    lines = (proc.stdout + proc.stderr).splitlines()
    # Only complaints about our units count; a container may add noise about its own setup.
    ours = [ln for ln in lines if any(n in ln for n in names) or "packcam" in ln]
    if proc.returncode != 0:
        ours.append(f"exit status {proc.returncode}")
    return ours


@needs_analyze
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    assert analyze_verify(unit_copies(tmp_path)) == []


@needs_analyze
def test_verify_does_catch_mistakes(tmp_path: Path) -> None:
    """The check above is a real one: typos, bad values and missing programs are reported."""
    bad = unit_copies(
        tmp_path,
        {"Restart=always": "Restrat=always", "ProtectSystem=strict": "ProtectSystem=sometimes"},
    )
    said = "\n".join(analyze_verify(bad))
    assert "Restrat" in said and "sometimes" in said
    (tmp_path / "missing").mkdir()
    gone = unit_copies(tmp_path / "missing", {str(packcam_executable()): "/nonexistent/pc"})
    assert any("/nonexistent/pc" in ln for ln in analyze_verify(gone))


def exposure(unit: Path) -> float | None:
    assert ANALYZE is not None
    proc = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        cwd=unit.parent,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    return float(m.group(1)) if m else None


@needs_analyze
@pytest.mark.parametrize(("unit", "limit"), [(UNITS[0], 2.5), (UNITS[1], 1.5)])
def test_exposure_stays_low(tmp_path: Path, unit: str, limit: float) -> None:
    """`systemd-analyze security`: 0 is fully locked down, 10 is a unit with no hardening."""
    copies = dict(zip(UNITS, unit_copies(tmp_path), strict=True))
    score = exposure(copies[unit])
    if score is None:
        pytest.skip("this systemd-analyze has no `security --offline` (systemd < 250)")
    assert score <= limit, f"{unit}: exposure {score} > {limit}"


def test_station_unit_is_a_watched_notify_service() -> None:
    u = parse_unit(SYSTEMD / UNITS[0])["Service"]
    assert u["Type"] == ["notify"] and u["NotifyAccess"] == ["main"]
    assert u["Restart"] == ["always"] and u["RestartSec"] == ["5"]
    assert u["ExecStart"] == [f"{PROD_BIN} station --config /etc/packcam/packcam.toml"]
    assert (u["User"], u["Group"]) == (["packcam-station"], ["packcam"])
    assert set(u["SupplementaryGroups"][0].split()) == {"video", "input", "gpio"}
    # The capture loop pings every WatchdogSec/2 (what systemd puts in WATCHDOG_USEC).
    assert u["WatchdogSec"] == ["30"]
    assert watchdog_interval({"WATCHDOG_USEC": str(30 * 10**6)}) == 15.0
    allowed = " ".join(u["DeviceAllow"])
    for dev in ("video4linux", "media", "dma_heap", "input", "gpiochip"):
        assert f"char-{dev} rw" in allowed
    assert u["DevicePolicy"] == ["closed"]
    # lgpio makes its pipes in the working directory: a writable one (ProtectSystem=strict).
    assert u["WorkingDirectory"] == [f"/run/{u['RuntimeDirectory'][0]}"]
    # adjtimex(2) reads the NTP state recorded in every manifest: not filtered out.
    assert "adjtimex" in u["SystemCallFilter"][0] and "ProtectClock" not in u


def test_web_unit_cannot_see_the_station_key() -> None:
    u = parse_unit(SYSTEMD / UNITS[1])["Service"]
    assert u["Type"] == ["notify"] and u["Restart"] == ["always"]
    assert u["ExecStart"] == [f"{PROD_BIN} web --config /etc/packcam/packcam.toml"]
    assert (u["User"], u["Group"]) == (["packcam-web"], ["packcam"])
    assert "SupplementaryGroups" not in u
    assert u["InaccessiblePaths"] == [f"/var/lib/packcam/{PRIVATE_DIR}"]
    assert f"/var/lib/packcam/{PUBLIC_DIR}" in u["ReadOnlyPaths"]
    # evidence bundles: the station signs them into exports/; the site only asks and reads
    assert f"-/var/lib/packcam/{EXPORTS_DIR}" in u["ReadOnlyPaths"]
    assert u["MemoryDenyWriteExecute"] == ["yes"] and u["PrivateDevices"] == ["yes"]


@pytest.mark.parametrize("unit", UNITS)
def test_common_hardening(unit: str) -> None:
    u = parse_unit(SYSTEMD / unit)["Service"]
    expect = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/packcam",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "LockPersonality": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
        "UMask": "0007",
    }
    assert {k: u.get(k, ["<unset>"])[0] for k in expect} == expect
    families = set(u["RestrictAddressFamilies"][0].split())
    assert families <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}


def test_units_agree_with_the_code() -> None:
    """The data dir the units open up is the config's default; folder names match ProofPaths."""
    assert config_mod.load(None).station.data_dir == Path("/var/lib/packcam")
    tmpfiles = (SYSTEMD / "packcam.tmpfiles").read_text(encoding="utf-8")
    assert re.search(rf"^d /var/lib/packcam/{PRIVATE_DIR}\s+0700\s+packcam-station", tmpfiles, re.M)
    assert re.search(rf"^d /var/lib/packcam/{PUBLIC_DIR}\s+0755\s+packcam-station", tmpfiles, re.M)
    from station.floor.packer_inbox import INBOX_DIR

    for name, mode in ((REQUESTS_DIR, "2770"), (EXPORTS_DIR, "2750"), (INBOX_DIR, "2770")):
        assert re.search(rf"^d /var/lib/packcam/{name}\s+{mode}\s+packcam-station", tmpfiles, re.M)
    sysusers = (SYSTEMD / "packcam.sysusers").read_text(encoding="utf-8")
    for user in ("packcam-station", "packcam-web"):
        assert re.search(rf"^u {user}\s+-:packcam\s", sysusers, re.M)


def test_install_script_is_valid_bash() -> None:
    script = SYSTEMD / "install.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(script)], check=True)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="install.sh creates users and chowns: needs root")
@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
    reason="systemd-sysusers/systemd-tmpfiles not installed (apt install systemd)",
)
def test_install_script_builds_users_folders_config_and_units(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    script = str(SYSTEMD / "install.sh")
    run = subprocess.run(
        [script, "--root", str(root), "--prefix", "/srv/pc"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    users = {ln.split(":")[0]: ln.split(":") for ln in (root / "etc/passwd").read_text().split()}
    groups = {ln.split(":")[0]: ln.split(":") for ln in (root / "etc/group").read_text().split()}
    gid = int(groups["packcam"][2])
    station_uid = int(users["packcam-station"][2])
    assert int(users["packcam-station"][3]) == int(users["packcam-web"][3]) == gid
    assert "packcam-station" in groups["video"][3].split(",")
    assert "packcam-web" not in groups["video"][3].split(",")
    data = root / "var/lib/packcam"
    for path, mode, uid in [
        (data, 0o2770, station_uid),
        (data / "clips", 0o2770, station_uid),
        (data / "proof", 0o700, station_uid),
        (data / "proof-public", 0o755, station_uid),
        (data / "export-requests", 0o2770, station_uid),
        (data / "packer-requests", 0o2770, station_uid),
        (data / "exports", 0o2750, station_uid),
        (root / "etc/packcam", 0o750, 0),
        (root / "etc/packcam/packcam.toml", 0o640, 0),
    ]:
        st = path.stat()
        assert (oct(_mode(path)), st.st_uid, st.st_gid) == (oct(mode), uid, gid), path
    # a valid config, on the Pi's camera: never the synthetic demo scene, whose scripted orders
    # a station started before its config was edited would sign and index as evidence
    installed = config_mod.load(root / "etc/packcam/packcam.toml")
    assert installed.camera.backend == "picamera2"
    for unit in UNITS:
        text = (root / "etc/systemd/system" / unit).read_text()
        assert "/srv/pc/.venv/bin/packcam" in text and "/opt/packcam" not in text
    # Again, after the admin edited the config: nothing of theirs is replaced.
    (root / "etc/packcam/packcam.toml").write_text('[station]\nname = "打包台1"\n')
    again = subprocess.run([script, "--root", str(root)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "kept the existing" in again.stdout
    assert "打包台1" in (root / "etc/packcam/packcam.toml").read_text()
    assert "/opt/packcam/.venv/bin/packcam" in (root / "etc/systemd/system" / UNITS[0]).read_text()


@pytest.mark.parametrize(
    "prefix", ["/home/pi/packcam", "/root/packcam", "packcam", "/run/user/1000/p"]
)
def test_install_script_refuses_a_prefix_the_units_cannot_reach(
    tmp_path: Path, prefix: str
) -> None:
    """ProtectHome=yes hides /home, /root and /run/user from both services, and systemd wants
    an absolute ExecStart=: such a --prefix would install units that can never start."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    run = subprocess.run(
        ["bash", str(SYSTEMD / "install.sh"), "--root", str(root), "--prefix", prefix],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert prefix in run.stderr and "--prefix" in run.stderr
    assert not (root / "etc/systemd").exists()  # refused before anything was installed
