"""RFC 3161 against local openssl TSAs (RSA and ECDSA): request, verify, queue offline, retry."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import pytest
from helpers_crash_child import Steps, assert_every_step, crash_at_every_step, finish
from proof_support import TsaServer, make_tsa_pki, tsa_ec, tsa_rsa  # noqa: F401 (fixtures)

from station.proof.log import ProofLog
from station.proof.tsa import (
    TokenInvalid,
    TsaQueue,
    load_roots,
    request_token,
    verify_token,
)
from station.store.ledger import Ledger


@pytest.fixture(params=["rsa", "ec"])
def tsa(request: pytest.FixtureRequest) -> TsaServer:
    return request.getfixturevalue(f"tsa_{request.param}")


def test_token_verifies_and_matches_openssl(tsa: TsaServer, tmp_path: Path) -> None:
    data = b"canonical manifest bytes"
    digest = hashlib.sha256(data).digest()
    token, nonce = request_token(tsa.url, digest)
    info = verify_token(token, digest, load_roots(tsa.root), nonce=nonce)
    assert info.chain_checked and info.hash_alg == "sha256" and info.imprint == digest
    assert "Test TSA" in info.tsa_subject
    # the by-hand step of VERIFY.md agrees
    (tmp_path / "m.json").write_bytes(data)
    (tmp_path / "t.tst").write_bytes(token)
    cmd = [
        "openssl",
        "ts",
        "-verify",
        "-token_in",
        "-in",
        str(tmp_path / "t.tst"),
        "-data",
        str(tmp_path / "m.json"),
        "-CAfile",
        str(tsa.root),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "Verification: OK" in out.stdout, out.stderr


def test_token_for_other_data_is_named(tsa: TsaServer) -> None:
    digest = hashlib.sha256(b"one manifest").digest()
    token, _ = request_token(tsa.url, digest)
    with pytest.raises(TokenInvalid, match="other data"):
        verify_token(token, hashlib.sha256(b"another manifest").digest(), load_roots(tsa.root))


def test_token_from_an_untrusted_tsa_fails_the_chain(tsa: TsaServer, tmp_path: Path) -> None:
    digest = hashlib.sha256(b"x").digest()
    token, _ = request_token(tsa.url, digest)
    foreign_root, _, _ = make_tsa_pki(tmp_path / "foreign", "ec")
    with pytest.raises(TokenInvalid, match="does not chain"):
        verify_token(token, digest, load_roots(foreign_root))
    # without roots the signature still verifies, but the result says the chain was unchecked
    assert not verify_token(token, digest).chain_checked


def test_tampered_token_signature_fails(tsa_ec: TsaServer) -> None:  # noqa: F811
    digest = hashlib.sha256(b"y").digest()
    token, _ = request_token(tsa_ec.url, digest)
    # flip one byte of the TSTInfo's serial region: the signed message digest no longer matches
    i = token.index(digest) - 40
    bad = token[:i] + bytes([token[i] ^ 1]) + token[i + 1 :]
    with pytest.raises(TokenInvalid):
        verify_token(bad, digest, load_roots(tsa_ec.root))


def test_queue_retries_while_offline_then_stores(tsa_rsa: TsaServer, tmp_path: Path) -> None:  # noqa: F811
    Ledger(tmp_path / "index.sqlite3").close()
    plog = ProofLog(tmp_path / "index.sqlite3")
    down = "http://127.0.0.1:9/tsa"  # nothing listens on the discard port
    digest = hashlib.sha256(b"manifest").hexdigest()
    plog.enqueue_timestamp("manifest", digest, (tsa_rsa.url, down))
    q = TsaQueue(plog, roots=load_roots(tsa_rsa.root), timeout_s=2, retry_s=0.01)
    tsa_rsa.online = False
    try:
        assert q.process_due() == (0, 2)
    finally:
        tsa_rsa.online = True
    rows = {r.tsa_url: r for r in plog.timestamps_for(digest)}
    assert rows[tsa_rsa.url].status == "pending" and rows[tsa_rsa.url].attempts == 1
    assert "503" in rows[tsa_rsa.url].last_error or "unreachable" in rows[tsa_rsa.url].last_error
    time.sleep(0.05)
    granted, _ = q.process_due()
    assert granted == 1
    rows = {r.tsa_url: r for r in plog.timestamps_for(digest)}
    assert rows[tsa_rsa.url].status == "granted" and rows[tsa_rsa.url].token
    assert rows[down].status == "pending" and rows[down].attempts == 2
    verify_token(rows[tsa_rsa.url].token, bytes.fromhex(digest), load_roots(tsa_rsa.root))
    plog.close()


def test_a_crash_at_any_step_of_the_worker_loses_no_token_and_the_next_run_fetches_again(
    tmp_path: Path,
    tsa_ec: TsaServer,  # noqa: F811
) -> None:
    """The TSA queue killed before storing each token (two TSAs' worth for one manifest): a
    token is stored whole with its row granted, or the row is still pending as it was and the
    next pass fetches it again. Tokens live only in their row: no file to leave behind."""
    work = tmp_path / "crash"
    data = work / "template" / "data"
    finish(data, Steps())
    plog = ProofLog.in_data_dir(data)
    try:
        (entry,) = plog.entries()
        plog.enqueue_timestamp("manifest", entry.manifest_sha256, (tsa_ec.url, tsa_ec.url + "2"))
    finally:
        plog.close()
    steps = crash_at_every_step("tsa", work)
    assert steps == ["index: ProofTables write"] * 2, steps
    digest = bytes.fromhex(entry.manifest_sha256)
    roots = load_roots(tsa_ec.root)

    def check(n: int, where: str) -> None:
        again = ProofLog.in_data_dir(work / str(n) / "data")
        try:
            rows = again.timestamps_for(entry.manifest_sha256)
            assert [r.status for r in rows] == ["granted"] * (n - 1) + ["pending"] * (3 - n), where
            assert all(r.attempts == 0 and r.token is None for r in rows[n - 1 :]), where
            TsaQueue(again, roots=roots).process_due()
            rows = again.timestamps_for(entry.manifest_sha256)
            assert [r.status for r in rows] == ["granted", "granted"], where
            for r in rows:
                assert r.token is not None, where
                verify_token(r.token, digest, roots)
        finally:
            again.close()

    assert_every_step(steps, check)
