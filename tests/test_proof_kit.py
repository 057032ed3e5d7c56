"""The stranger's kit: verify.py from inside a real bundle, run with python3 -I and openssl only."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from proof_support import (  # noqa: F401 (fixtures)
    Store,
    build_store,
    bundle_index,
    forge_log,
    garbage_bundles,
    read_zip,
    resign_bundle,
    rewrite_zip,
    store,
    tsa_ec,
    tsa_rsa,
)

from station.proof.bundle import export_order
from station.proof.ca import CompanyCa, cert_fingerprint, pem
from station.proof.canonical import canonical_json
from station.proof.keys import StationKey
from station.proof.paths import ProofPaths
from station.proof.verify import verify_bundle


@pytest.fixture(scope="module")
def bundle(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    path = tmp_path_factory.mktemp("kit") / "A1.zip"
    export_order(store.cfg, "A1", path)
    return path


def _kit(bundle: Path, tmp: Path, *args: str, cert_dir: Path | None = None) -> tuple[int, str]:
    """Unzip only verify.py and run it in isolated mode (-I: no packcam on sys.path);
    ``cert_dir``: the machine's CA certificates directory (SSL_CERT_DIR) openssl sees."""
    script = tmp / "verify.py"
    script.write_bytes(read_zip(bundle, "verify.py"))
    r = subprocess.run(
        [sys.executable, "-I", str(script), str(bundle), *args],
        cwd=tmp,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **({"SSL_CERT_DIR": str(cert_dir)} if cert_dir else {})},
        check=False,
        timeout=120,
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout


def _pins(st: Store) -> list[str]:
    return ["--ca", str(st.data / "proof-public/company-ca.crt"), "--tsa-ca", str(st.tsa.root)]


def test_kit_imports_nothing_but_the_standard_library(bundle: Path) -> None:
    src = read_zip(bundle, "verify.py").decode()
    imported = {
        line.split()[1].split(".")[0]
        for line in src.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    assert not {"station", "cryptography", "av", "packcam"} & imported


def test_honest_bundle_with_pins_is_authentic(store: Store, bundle: Path, tmp_path: Path) -> None:  # noqa: F811
    rc, out = _kit(bundle, tmp_path, *_pins(store))
    assert rc == 0 and "RESULT: AUTHENTIC" in out, out
    assert "FAIL" not in out


def test_pinning_by_fingerprint(store: Store, bundle: Path, tmp_path: Path) -> None:  # noqa: F811
    ca = x509.load_pem_x509_certificate((store.data / "proof-public/company-ca.crt").read_bytes())
    tsa = x509.load_pem_x509_certificate(store.tsa.root.read_bytes())
    rc, out = _kit(
        bundle, tmp_path, "--ca", cert_fingerprint(ca), "--tsa-ca", cert_fingerprint(tsa)
    )
    assert rc == 0, out


def test_nothing_pinned_is_intact_but_not_anchored(bundle: Path, tmp_path: Path) -> None:
    rc, out = _kit(bundle, tmp_path)
    assert rc == 4 and "INTACT BUT NOT ANCHORED" in out, out
    assert "compare: company CA SHA256:" in out and "compare: TSA root SHA256:" in out


def test_kit_catches_tampering(store: Store, bundle: Path, tmp_path: Path) -> None:  # noqa: F811
    idx = bundle_index(bundle)
    clip = idx["clips"][0]["clip"]
    data = bytearray(read_zip(bundle, clip))
    data[len(data) // 2] ^= 1
    bad = rewrite_zip(bundle, tmp_path / "bad.zip", {clip: bytes(data)})
    rc, out = _kit(bad, tmp_path, *_pins(store))
    assert rc == 1 and "[clip-altered]" in out and "[bundle-member-unsigned]" in out, out
    inc = json.loads(read_zip(bundle, idx["clips"][0]["inclusion"]))
    inc["audit_path"][0] = "00" * 32
    bad2 = rewrite_zip(
        bundle, tmp_path / "bad2.zip", {idx["clips"][0]["inclusion"]: json.dumps(inc).encode()}
    )
    rc, out = _kit(bad2, tmp_path, *_pins(store))
    assert rc == 1 and "[log-not-included]" in out, out


def test_kit_refuses_a_member_bundle_json_does_not_name(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
) -> None:
    """Another order's genuine clip added and the bundle manifest re-signed by the key holder:
    only that export-time signature vouches for it, as `packcam verify` says too."""
    other = read_zip(bundle, bundle_index(bundle)["clips"][1]["clip"])
    key = StationKey.load(ProofPaths.from_config(store.cfg).key)
    forged = resign_bundle(bundle, tmp_path / "extra.zip", key, {"clips/other.mp4": other})
    rc, out = _kit(forged, tmp_path, *_pins(store))
    assert rc == 1 and "[bundle-member-unreferenced]" in out, out
    assert "bundle-member-unsigned" not in out, out
    assert "bundle-member-unreferenced" in verify_bundle(forged, anchors=store.anchors()).codes()


def test_kit_wants_the_clips_own_checkpoint_to_cover_it(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
) -> None:
    """A first checkpoint of fewer entries than the clip's place in the log (here the empty
    tree, which every log extends) proves nothing about the clip: refused, as by the
    in-package verifier, even when the station key signed it."""
    item = bundle_index(bundle)["clips"][0]
    fc = item["first_checkpoint"]
    body = json.loads(read_zip(bundle, fc["body"]))
    body["tree_size"] = 0
    raw = canonical_json(body)
    key = StationKey.load(ProofPaths.from_config(store.cfg).key)
    cons = {"proof": []}
    bad = rewrite_zip(
        bundle,
        tmp_path / "uncovered.zip",
        {fc["body"]: raw, fc["signature"]: key.sign(raw),
         fc["consistency"]: json.dumps(cons).encode()},
    )  # fmt: skip
    assert "log-proof-mismatch" in verify_bundle(bad, anchors=store.anchors()).codes()
    rc, out = _kit(bad, tmp_path, *_pins(store))
    assert rc == 1 and "[log-proof-mismatch]" in out and "covers 0 entries" in out, out


def test_kit_refuses_a_forgery_with_its_own_ca_and_tsa(
    store: Store,  # noqa: F811
    tmp_path: Path,
    tsa_rsa,  # noqa: F811
) -> None:
    forger = build_store(tmp_path / "forger", tsa_rsa, ["A1"], c2pa=False)
    forged = export_order(forger.cfg, "A1", tmp_path / "forged.zip").path
    rc, out = _kit(forged, tmp_path, *_pins(store))
    # the forger's tokens are valid ones, from a TSA you did not pin: not anchored, no failure
    assert rc == 1 and "[cert-foreign-ca]" in out and "[time-unanchored]" in out, out
    assert "[tsa-invalid]" not in out, out
    rc, out = _kit(forged, tmp_path)
    assert rc == 4, out  # never 0 without a pin


def test_kit_trusts_only_the_pinned_ca_not_the_machines(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A station key certified by a CA the verifier's machine happens to trust (its system
    certificate store), not the company CA pinned with --ca: never AUTHENTIC. (openssl verify
    -CAfile also reads the default certificate directory and store.)"""
    other = CompanyCa.create(tmp_path / "other-ca", "Some CA in the system store")
    forger = build_store(tmp_path / "forger", store.tsa, ["A1"], ca=other, c2pa=False)
    forged = export_order(forger.cfg, "A1", tmp_path / "forged.zip").path
    system = tmp_path / "system-certs"
    system.mkdir()
    (system / "other.pem").write_bytes(pem(other.cert))
    subprocess.run(["openssl", "rehash", str(system)], check=True, capture_output=True)
    rc, out = _kit(forged, tmp_path, *_pins(store), cert_dir=system)
    assert rc == 1 and "[cert-foreign-ca]" in out, out
    honest = export_order(store.cfg, "A1", tmp_path / "honest.zip").path
    assert _kit(honest, tmp_path, *_pins(store), cert_dir=system)[0] == 0


def test_kit_refuses_unsafe_member_names(bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bundle) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr("../escape.txt", b"x")
    run = tmp_path / "run"
    run.mkdir()
    rc, out = _kit(bad, run)
    assert rc == 1 and "bundle-malformed" in out
    assert not (tmp_path / "escape.txt").exists() and not (run / "escape.txt").exists()


@pytest.mark.parametrize("name", ["{clip}", "./{clip}", "{upper}"])
def test_kit_refuses_two_members_that_unpack_to_one_file(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
    name: str,
) -> None:
    """An edited copy of a clip zipped before the real one under a name that unzips to the same
    file: the kit checked the one unzipped last, a person's unzip tool may show the other."""
    clip = bundle_index(bundle)["clips"][0]["clip"]
    bad = tmp_path / "shadow.zip"
    with zipfile.ZipFile(bundle) as zin, zipfile.ZipFile(bad, "w") as zout:
        zout.writestr(name.format(clip=clip, upper=clip.upper()), b"edited")
        with warnings.catch_warnings():  # zipfile warns of a duplicate name, and writes it
            warnings.simplefilter("ignore", UserWarning)
            for info in zin.infolist():
                zout.writestr(info, zin.read(info))
    rc, out = _kit(bad, tmp_path, *_pins(store))
    assert rc == 1 and "[bundle-malformed]" in out and "RESULT: NOT AUTHENTIC" in out, out


@pytest.mark.parametrize("ended_at", ["kept", "gone", "naive"])
def test_kit_wants_a_recorded_end_to_hold_the_tsa_time_to(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
    ended_at: str,
) -> None:
    """Manifests re-signed by the key holder (own log, fresh tokens) with no recorded end, or
    one without its UTC offset: no time bound can hold, never AUTHENTIC."""

    def edit(body: dict) -> None:
        if ended_at == "gone":
            del body["ended_at"]
        elif ended_at == "naive":
            body["ended_at"] = body["ended_at"][:23]

    key = StationKey.load(store.data / "proof/station-key.pem")
    forged = forge_log(bundle, tmp_path / "f.zip", key, store.tsa.url, edit)
    rc, out = _kit(forged, tmp_path, *_pins(store))
    if ended_at == "kept":
        assert rc == 0 and "RESULT: AUTHENTIC" in out, out
    else:
        assert rc == 1 and "[time-out-of-bounds]" in out and "no recorded end" in out, out


@pytest.mark.parametrize("started_at", ["kept", "back-dated", "gone"])
def test_kit_holds_the_recorded_start_to_the_signed_duration(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
    started_at: str,
) -> None:
    """Manifests re-signed by the key holder (own log, fresh tokens) with the start moved years
    back and the end kept next to the token: "2020-01-01 to today" contradicts duration_s."""

    def edit(body: dict) -> None:
        if started_at == "back-dated":
            body["started_at"] = "2020-01-01T10:00:00.000+08:00"
        elif started_at == "gone":
            del body["started_at"]

    key = StationKey.load(store.data / "proof/station-key.pem")
    forged = forge_log(bundle, tmp_path / "f.zip", key, store.tsa.url, edit)
    rc, out = _kit(forged, tmp_path, *_pins(store))
    if started_at == "kept":
        assert rc == 0 and "RESULT: AUTHENTIC" in out, out
    elif started_at == "gone":
        assert rc == 1 and "[time-inconsistent]" in out and "no start" in out, out
    else:
        assert rc == 1 and "[time-inconsistent]" in out, out
        assert "2020-01-01T10:00:00+08:00" in out and "not when it happened" in out, out


def test_kit_on_a_garbage_bundle_is_a_clear_verdict_not_a_traceback(
    bundle: Path, tmp_path: Path
) -> None:
    script = tmp_path / "verify.py"
    script.write_bytes(read_zip(bundle, "verify.py"))
    (tmp_path / "tmp").mkdir()
    for what, path in garbage_bundles(tmp_path).items():
        r = subprocess.run(
            [sys.executable, "-I", str(script), str(path)],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path / "tmp")},
            check=False,
            timeout=60,
        )
        assert "Traceback" not in r.stderr, (what, r.stderr)
        assert r.returncode == 1 and "[bundle-malformed]" in r.stdout, (what, r.stdout)
        assert not list((tmp_path / "tmp").iterdir()), what


@pytest.mark.parametrize("flag", ["--ca", "--tsa-ca", "--witness-key"])
def test_a_pin_file_the_kit_cannot_read_is_an_input_error_not_a_verdict(
    bundle: Path, tmp_path: Path, flag: str
) -> None:
    """A --ca, --tsa-ca or --witness-key file that is not there is the verifier's own input:
    exit 3 and no RESULT line in verify.py, as in packcam verify (never a verdict on the
    bundle, never exit 1, which reads NOT AUTHENTIC to a script)."""
    missing = str(tmp_path / "missing.pem")
    args = [flag, missing] + (["--witness", missing] if flag == "--witness-key" else [])
    rc, out = _kit(bundle, tmp_path, *args)
    assert rc == 3 and "RESULT" not in out, (rc, out)
    packcam = subprocess.run(
        [sys.executable, "-m", "station.proof", "verify", str(bundle), *args],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert packcam.returncode == 3 and "RESULT" not in packcam.stdout, packcam.stdout
