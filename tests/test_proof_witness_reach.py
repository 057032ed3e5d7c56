"""A witness record vouches for a bundle's clips only when a checkpoint it cosigned holds them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from proof_support import (  # noqa: F401 (fixtures)
    KIT,
    Store,
    TsaServer,
    bundle_index,
    read_zip,
    resign_bundle,
    run_kit,
    store,
    tsa_ec,
    witness_doc,
)

from station.proof import merkle
from station.proof.bundle import export_order
from station.proof.canonical import canonical_json
from station.proof.keys import StationKey
from station.proof.log import ProofLog, checkpoint_body, utc_now
from station.proof.tsa import request_token
from station.proof.verify import verify_bundle


@pytest.fixture(scope="module")
def central() -> StationKey:
    """The central site's witness key (the verifier pins it)."""
    return StationKey.generate()


def _own_checkpoint(bundle: Path, clip: int = 0) -> tuple[str, str]:
    """The (body, signature) members of a clip's own checkpoint in the bundle."""
    fc = bundle_index(bundle)["clips"][clip]["first_checkpoint"]
    return fc["body"], fc["signature"]


def _both(
    st: Store, bundle: Path, doc: dict[str, Any], central: StationKey, tmp: Path
) -> tuple[tuple[str, str, str], int, str]:
    """`packcam verify`'s witness check (status, code, reason) and verify.py's exit and its
    witness line, given the same saved record and the pinned witness key."""
    saved = tmp / "witness.json"
    saved.write_text(json.dumps(doc))
    report = verify_bundle(
        bundle, anchors=st.anchors(), tmp_dir=tmp, witness=doc, witness_pin=central.fingerprint
    )
    (c,) = [c for c in report.checks if c.name == "witness"]
    rc, out = run_kit(KIT, bundle, tmp, *st.pins(), "--witness", str(saved),
                      "--witness-key", central.fingerprint)  # fmt: skip
    (line,) = [ln for ln in out.splitlines() if " witness:" in ln]
    assert report.exit_code == rc, "\n".join([*report.lines(), "---- verify.py:", out])
    return (c.status, c.code, c.reason), rc, line


def test_a_cosigned_checkpoint_below_a_clip_does_not_vouch_for_it(
    store: Store,  # noqa: F811
    central: StationKey,
    tmp_path: Path,
) -> None:
    """Order A1 (log entries 0 and 2) exported at 3 entries while the witness has cosigned
    the log up to 2 only (its last sync): the first clip's own checkpoint is cosigned, the
    second clip the witness has not seen yet. Both verifiers said "cosigned" (OK) for the
    whole bundle; they now say not yet, how far the witness saw, and which record to fetch."""
    bundle = export_order(store.cfg, "A1", tmp_path / "a1.zip").path
    assert json.loads(read_zip(bundle, "log/checkpoint.json"))["tree_size"] == 3
    doc = witness_doc(bundle, central, [_own_checkpoint(bundle)])
    assert [c["tree_size"] for c in doc["checkpoints"]] == [2]
    (status, code, reason), rc, line = _both(store, bundle, doc, central, tmp_path)
    assert (status, code) == ("warn", "checkpoint-unwitnessed"), reason
    assert rc == 0 and line.startswith("WARN") and "[checkpoint-unwitnessed]" in line, line
    for said in (reason, line):
        assert "up to 2 entries" in said and "log entry 2" in said, said
        assert "?tree_size=3" in said, said
    # cosigned at the bundle's own size: the witness saw both clips
    (status, code, reason), rc, line = _both(store, bundle, witness_doc(bundle, central),
                                             central, tmp_path)  # fmt: skip
    assert (status, code) == ("ok", "") and rc == 0 and line.startswith("OK"), (reason, line)


def test_a_cosigned_checkpoint_that_holds_every_clip_vouches_for_the_bundle(
    store: Store,  # noqa: F811
    central: StationKey,
    tmp_path: Path,
) -> None:
    """Order B2 (log entry 1) exported at 3 entries: its own checkpoint (2 entries) holds it,
    and the bundle proves that checkpoint a prefix of its own; cosigned, that is the witness
    having seen the clip."""
    bundle = export_order(store.cfg, "B2", tmp_path / "b2.zip").path
    doc = witness_doc(bundle, central, [_own_checkpoint(bundle)])
    (status, code, reason), rc, line = _both(store, bundle, doc, central, tmp_path)
    assert (status, code) == ("ok", "") and rc == 0 and line.startswith("OK"), (reason, line)
    assert "pinned witness key" in reason and "pinned witness key" in line, (reason, line)


def _fork_past(st: Store, bundle: Path, dst: Path, size: int) -> Path:
    """What the key holder can make without the witness: the log's first two entries as the
    witness saw them (so the first clip's own checkpoint, which it cosigned, stays a prefix),
    then the order's second clip re-signed with another manifest (a staged recording, say) in
    a history of its own, made-up entries up to ``size`` (a size the witness has not reached),
    that checkpoint signed and timestamped now, the bundle manifest re-signed."""
    key = st.station_key()
    idx = bundle_index(bundle)
    plog = ProofLog.in_data_dir(st.data)
    try:
        leaves = plog.leaf_hashes(2)
    finally:
        plog.close()
    second = idx["clips"][1]
    body = json.loads(read_zip(bundle, second["manifest"]))
    body["finish_reason"] = "sealed" if body.get("finish_reason") != "sealed" else "waybill"
    manifest = canonical_json(body)
    changes: dict[str, bytes | None] = {
        second["manifest"]: manifest,
        second["signature"]: key.sign(manifest),
    }
    for i, t in enumerate(second["timestamps"]):
        token = request_token(st.tsa.url, hashlib.sha256(manifest).digest())[0]
        changes[t] = token if i == 0 else None
    second["timestamps"] = second["timestamps"][:1]
    leaves += [merkle.leaf_hash(manifest)]
    leaves += [hashlib.sha256(b"made up %d" % i).digest() for i in range(len(leaves), size)]
    root = merkle.root(leaves)
    cpi = idx["checkpoint"]
    station = json.loads(read_zip(bundle, cpi["body"]))["station"]
    cp = canonical_json(checkpoint_body(station, key, size, root, utc_now()))
    changes[cpi["body"]], changes[cpi["signature"]] = cp, key.sign(cp)
    for t in cpi["timestamps"]:
        changes[t] = request_token(st.tsa.url, hashlib.sha256(cp).digest())[0]
    for e in idx["clips"]:
        seq = json.loads(changes.get(e["manifest"]) or read_zip(bundle, e["manifest"]))["seq"]
        inc = json.loads(read_zip(bundle, e["inclusion"]))
        inc.update(tree_size=size, root_sha256=root.hex(),
                   audit_path=[h.hex() for h in merkle.inclusion_proof(seq, leaves)])  # fmt: skip
        changes[e["inclusion"]] = json.dumps(inc).encode()
        if fc := e.get("first_checkpoint"):
            cons = json.loads(read_zip(bundle, fc["consistency"]))
            old = int(cons["old_size"])
            cons.update(new_size=size, new_root_sha256=root.hex(),
                        proof=[h.hex() for h in merkle.consistency_proof(old, leaves)])  # fmt: skip
            changes[fc["consistency"]] = json.dumps(cons).encode()
    changes["bundle.json"] = json.dumps(idx).encode()
    return resign_bundle(bundle, dst, key, changes)


def test_a_fork_past_the_witnessed_log_is_not_called_cosigned(
    store: Store,  # noqa: F811
    central: StationKey,
    tmp_path: Path,
) -> None:
    """The witness cosigned the log at 2 and 3 entries. The key holder forks it after entry 1
    (the order's second clip, entry 2, replaced) and pads it to 9 entries, a size the witness
    has not reached: no checkpoint of the bundle's contradicts a cosigned one, and the first
    clip's own checkpoint (2 entries) is the cosigned one. Both verifiers called that bundle
    cosigned by the witness; the witness never saw its second clip, and they now say so."""
    honest = export_order(store.cfg, "A1", tmp_path / "a1.zip").path
    doc = witness_doc(
        honest, central, [_own_checkpoint(honest), ("log/checkpoint.json", "log/checkpoint.sig")]
    )
    assert [c["tree_size"] for c in doc["checkpoints"]] == [2, 3]
    forked = _fork_past(store, honest, tmp_path / "forked.zip", 9)
    (status, code, reason), rc, line = _both(store, forked, doc, central, tmp_path)
    assert rc == 0, line  # nothing in the bundle fails: only the witness can tell
    assert (status, code) == ("warn", "checkpoint-unwitnessed"), reason
    assert line.startswith("WARN") and "up to 2 entries" in line and "log entry 2" in line, line
    assert "?tree_size=9" in reason and "?tree_size=9" in line, (reason, line)
