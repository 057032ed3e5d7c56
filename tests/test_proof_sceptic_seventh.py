"""A seventh sceptic round: what the stranger's verify.py and `packcam verify` read of one
bundle differently (a token's imprint and the fraction of its time; the cases that run both
verifiers over a whole bundle are in test_proof_verifiers_agree.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from proof_support import TsaServer

from station.proof.standalone_verify import token_hash_name, token_text, token_time
from station.proof.tsa import request_token, verify_token


def test_both_verifiers_read_a_tokens_time_to_its_fraction_of_a_second(tmp_path: Path) -> None:
    """A TSA stating genTime to the millisecond (openssl's clock_precision_digits, as many
    public TSAs do): verify.py cut it to the whole second, so a token 902.7 s after the
    recorded end was in time there (902 s, AUTHENTIC) and late in `packcam verify`."""
    srv = TsaServer(tmp_path / "tsa", "ec")
    cnf = srv.dir / "tsa.cnf"
    cnf.write_text(cnf.read_text() + "clock_precision_digits = 3\n")
    digest = hashlib.sha256(b"a signed manifest").digest()
    try:  # openssl drops trailing zeros: one in a thousand tokens falls on a whole second
        tokens = [request_token(srv.url, digest)[0] for _ in range(3)]
    finally:
        srv.stop()
    fractions = 0
    for n, token in enumerate(tokens):
        tst = tmp_path / f"t{n}.tst"
        tst.write_bytes(token)
        when, _ = token_time(tst, tmp_path)
        info = verify_token(token, digest)
        assert when == info.gen_time
        fractions += info.gen_time.microsecond != 0
        assert token_hash_name(token_text(tst, tmp_path)) == "sha256"
    assert fractions, "no token stated a fraction of a second"
