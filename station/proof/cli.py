"""`packcam keys|ca|export|verify|audit|checkpoint`: the proof subcommands (see register)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from station.cliargs import EXIT_OK, add_config, add_data, load_config
from station.config import Config
from station.errors import ConfigError
from station.proof import ProofError, rotation
from station.proof.bundle import export_order
from station.proof.ca import CA_CERT, CompanyCa
from station.proof.keys import StationKey, load_public_pem
from station.proof.log import ProofLog
from station.proof.paths import ProofPaths
from station.proof.standalone_verify import WITNESS_SIZES_MAX
from station.proof.trust import Anchors, build_anchors, parse_witness_pin
from station.proof.tsa import TsaQueue, load_roots
from station.proof.verify import (
    DEFAULT_MAX_DELAY_S,
    Report,
    TimeBound,
    WitnessFetch,
    audit,
    check_bundle_in_log,
    load_known_checkpoint,
    verify_bundle,
    verify_clip,
)
from station.store.recovery import DataDirBusy, data_dir_lock


def _common(p: argparse.ArgumentParser, *, data_required: bool = False) -> None:
    add_config(p)
    add_data(p, required=data_required)


def _anchors(args: argparse.Namespace) -> Anchors:
    return build_anchors(
        args.ca or (),
        args.tsa_ca or (),
        args.trust,
        use_default=not args.no_default_trust,
    )


def _bound(args: argparse.Namespace) -> TimeBound:
    if args.max_delay <= 0:
        raise ProofError("--max-delay must be a positive number of minutes")
    return TimeBound(max_delay_s=args.max_delay * 60.0)


def _config_and_paths(args: argparse.Namespace) -> tuple[Config, ProofPaths]:
    """The configuration the command line names, and the proof files it puts where."""
    cfg = load_config(args)
    return cfg, ProofPaths.from_config(cfg)


def _print_key(first_line: str, public_key: Path, fingerprint: str, *, width: int) -> None:
    """A station key made or found: ``first_line`` names its private file, then its public
    half and fingerprint follow, their labels padded to ``width``."""
    print(first_line)
    print(f"{'public key':{width}} {public_key}")
    print(f"{'fingerprint':{width}} {fingerprint}")


def _print_report(report: Report, as_json: bool) -> int:
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        for line in report.lines():
            print(line)
    return report.exit_code


# ---- commands ------------------------------------------------------------------------------


def cmd_keys_init(args: argparse.Namespace) -> int:
    _, paths = _config_and_paths(args)
    paths.ensure_dirs()
    key, created = StationKey.load_or_create(paths.key, public_path=paths.public_key)
    made = "created" if created else "existing"
    _print_key(
        f"{made} station key {paths.key} (mode 0600)", paths.public_key, key.fingerprint, width=11
    )
    return EXIT_OK


def cmd_keys_rotate(args: argparse.Namespace) -> int:

    cfg, paths = _config_and_paths(args)
    try:
        with data_dir_lock(cfg.station.data_dir):
            if args.prepare:
                key = rotation.prepare(paths)
                files = rotation.RotationFiles.of(paths)
                _print_key(
                    f"successor key {files.next_key} (mode 0600), not in use yet",
                    files.next_public,
                    key.fingerprint,
                    width=13,
                )
                print(
                    "next: on the CA machine, `packcam ca issue "
                    f"{cfg.station.name} --station-key station-key.next.pub.pem --out DIR`, "
                    "then here `packcam keys rotate --cert DIR/station-key.crt`"
                )
                return EXIT_OK
            res = rotation.rotate(
                cfg,
                cert=Path(args.cert) if args.cert else None,
                keep_old_key=args.keep_old_key,
            )
    except DataDirBusy as exc:
        raise ProofError(f"{exc}: stop the station first (no clip may be recording)") from exc
    rot = res.rotation
    print(f"rotated the station key of {cfg.station.name!r}")
    print(f"old key  {rot.old_key}: log closed at {res.tree_size} entries")
    print(f"new key  {rot.new_key}: new log, 0 entries")
    print(f"final checkpoint {rot.checkpoint_id} signed by both keys", end="")
    print(f"; {res.pending_timestamps} timestamp request(s) pending" if cfg.proof.tsa_urls
          else "; no TSA configured: not timestamped")  # fmt: skip
    if res.kept_old_key:
        print(f"old private key kept at {res.kept_old_key} (--keep-old-key): it must never sign")
    else:
        print("old private key overwritten and replaced")
    if not res.certified:
        print(
            f"warning: no certificate for the new key: its clips verify only as INTACT BUT NOT "
            f"ANCHORED until `packcam ca issue {cfg.station.name} --station-key "
            f"{paths.public_key}` installs one at {paths.key_cert}",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_ca_init(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    ca_dir = Path(args.ca_dir) if args.ca_dir else ProofPaths.from_config(cfg).ca_dir
    ca = CompanyCa.create(ca_dir, args.name)
    print(f"created company CA {args.name!r} in {ca_dir}")
    print(f"certificate {ca_dir / CA_CERT} (publish it and this fingerprint)")
    print(f"fingerprint {ca.fingerprint}")
    print(f"private key {ca_dir / 'ca.key'}: keep it offline, off the stations")
    return EXIT_OK


def cmd_ca_issue(args: argparse.Namespace) -> int:
    cfg, paths = _config_and_paths(args)
    ca = CompanyCa.load(Path(args.ca_dir) if args.ca_dir else paths.ca_dir)
    if args.station_key:
        pub = load_public_pem(Path(args.station_key).read_bytes())
    elif args.station == cfg.station.name:
        paths.ensure_dirs()
        pub = StationKey.load_or_create(paths.key, public_path=paths.public_key)[0].public
    else:
        raise ProofError(
            f"{args.station!r} is not this station ({cfg.station.name!r}): pass its public key "
            "with --station-key FILE (from `packcam keys init` on that station)"
        )
    certs = ca.issue_station(args.station, pub, days=args.days)
    if args.out:
        out = Path(args.out)
        targets = {
            "c2pa_key": out / "station-c2pa-key.pem",
            "c2pa_cert": out / "station-c2pa-chain.pem",
            "key_cert": out / "station-key.crt",
            "ca_cert": out / "company-ca.crt",
        }
    else:
        targets = {
            "c2pa_key": paths.c2pa_key,
            "c2pa_cert": paths.c2pa_cert,
            "key_cert": paths.key_cert,
            "ca_cert": paths.ca_cert,
        }
    certs.install(**targets)
    print(f"issued certificates for station {args.station!r} by CA {ca.fingerprint}")
    for what, p in targets.items():
        print(f"  {what:9} {p}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:

    res = export_order(load_config(args), args.order, Path(args.output))
    print(
        f"wrote {res.path}: {res.clips} clip(s), {res.frames} key frames, {res.timestamps} "
        f"timestamp token(s), log checkpoint of {res.checkpoint_size} entries"
    )
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    target = Path(args.file)
    if not target.is_file():
        raise ProofError(f"no such file: {target}")
    anchors, bound = _anchors(args), _bound(args)
    if args.witness_key and not args.witness:
        raise ProofError("--witness-key pins the key of a witness document: give --witness too")
    pin = parse_witness_pin(args.witness_key) if args.witness_key else None
    witness: dict[str, Any] | WitnessFetch | None = None
    if args.witness and args.witness.startswith(("http://", "https://")):
        url = str(args.witness)

        def witness_of(sizes: list[int]) -> dict[str, Any]:  # once the bundle's are known
            return _witness_doc(_with_sizes(url, sizes))

        witness = witness_of
    elif args.witness:
        witness = _witness_doc(args.witness)
    if target.suffix.lower() == ".zip" or _is_zip(target):
        report = verify_bundle(
            target, anchors=anchors, bound=bound, witness=witness, witness_pin=pin
        )
        if args.data or args.config:  # as the station site's /verify page
            check_bundle_in_log(report, load_config(args))
    else:
        cfg = load_config(args) if (args.data or args.config) else None
        report = verify_clip(target, cfg, anchors=anchors, bound=bound)
    return _print_report(report, args.json)


def _with_sizes(url: str, sizes: list[int]) -> str:
    """The witness URL asking also for the checkpoints at the tree sizes the bundle cites
    (``?tree_size=N``): the plain record lists the newest ones only, and an old bundle's are
    long past them."""
    if not sizes:
        return url
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query.append(("tree_size", ",".join(str(s) for s in sizes[:WITNESS_SIZES_MAX])))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe=",")))


def _witness_doc(source: str) -> dict[str, Any]:
    """The witness's cosigned checkpoints: a saved file, or fetched from the central site's
    ``/witness/<station>`` URL (unreachable: None, and the report says it was not checked)."""
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=10) as resp:
                doc = json.loads(resp.read(16 << 20))
        except (OSError, ValueError) as exc:
            print(f"packcam: witness {source} not reachable: {exc}", file=sys.stderr)
            return {"unreachable": str(exc)}
        return doc if isinstance(doc, dict) else {"unreachable": "not a JSON object"}
    try:
        doc = json.loads(Path(source).read_bytes())
    except (OSError, ValueError) as exc:
        raise ProofError(f"cannot read the witness document {source}: {exc}") from exc
    if not isinstance(doc, dict):  # never a verdict as if no witness had been asked for
        raise ProofError(f"{source} is not a witness document (GET /witness/<station>)")
    return doc


def _is_zip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"PK\x03\x04"


def cmd_audit(args: argparse.Namespace) -> int:
    known = [load_known_checkpoint(Path(f)) for f in args.checkpoint or ()]
    report = audit(load_config(args), anchors=_anchors(args), bound=_bound(args), known=known)
    return _print_report(report, args.json)


def cmd_checkpoint(args: argparse.Namespace) -> int:
    cfg, paths = _config_and_paths(args)
    plog = ProofLog.in_data_dir(cfg.station.data_dir)
    try:
        cp = plog.checkpoint(StationKey.load(paths.key), cfg.station.name)
        if cp is None:
            print("log is empty: no checkpoint")
            return EXIT_OK
        if cfg.proof.tsa_urls:
            plog.enqueue_timestamp("checkpoint", cp.sha256, cfg.proof.tsa_urls)
            q = TsaQueue(
                plog,
                roots=load_roots(paths.tsa_ca),
                timeout_s=cfg.proof.tsa_timeout_s,
                retry_s=cfg.proof.tsa_retry_s,
            )
            q.process_due()
        print(f"checkpoint {cp.id}: {cp.tree_size} entries, root {cp.root_hash}")
        print(f"timestamp requests pending: {plog.pending_count()}")
    finally:
        plog.close()
    return EXIT_OK


# ---- registration --------------------------------------------------------------------------

VERDICT_HELP = (
    "Exit status: 0 AUTHENTIC (intact, signer certified by a company CA you trust, time from a "
    "TSA you trust within --max-delay of the recorded end); 1 NOT AUTHENTIC (something was "
    "altered, removed or contradicts the signed record; each check names its reason code, see "
    "docs/proof.md); 4 INTACT BUT NOT ANCHORED (nothing altered, but signer or time rest only "
    "on certificates that came with the evidence: compare the printed fingerprints with the "
    "ones the seller and the TSA publish; or the time only on the station's word: no token, "
    "or only ones later than --max-delay, time-late); 5 AUTHENTIC FOR SOME OF THE ORDER'S "
    "CLIPS (a partial bundle: the others were deleted by the station's retention, by its "
    "signed record); 2 usage/config error; 3 unusable input. "
    "Certificates shipped with the evidence are never trusted by themselves."
)


def _trust_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ca",
        action="append",
        metavar="PEM|SHA256",
        help="company CA to trust: a PEM file or its SHA-256 fingerprint (repeatable)",
    )
    p.add_argument(
        "--tsa-ca",
        action="append",
        metavar="PEM|SHA256",
        help="TSA root to trust: a PEM file or its SHA-256 fingerprint (repeatable)",
    )
    p.add_argument(
        "--trust",
        metavar="FILE",
        help="trust file: lines 'ca <fingerprint|file>' / 'tsa <fingerprint|file>' (default: "
        "~/.config/packcam/trust when it exists)",
    )
    p.add_argument("--no-default-trust", action="store_true", help="ignore the per-user trust file")
    p.add_argument(
        "--max-delay",
        type=float,
        default=DEFAULT_MAX_DELAY_S / 60,
        metavar="MIN",
        help="how far the TSA's time may lie from a clip's recorded end to anchor it (default 15 "
        "minutes; before it by more fails, after it by more is time-late, not anchored)",
    )


def register(subparsers: Any) -> None:
    """Add the proof subcommands to ``packcam``'s subparsers (each sets ``func``)."""
    p = subparsers.add_parser(
        "keys",
        help="the station's Ed25519 signing key",
        description="Manage the key that signs every clip manifest and log checkpoint.",
    )
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    k = ks.add_parser(
        "init",
        help="create the station key if missing and print its fingerprint",
        description="Create the station's Ed25519 key (file mode 0600, in <data>/proof/, mode "
        "0700) unless it exists, publish its public half to <data>/proof-public/"
        "station-key.pub.pem and print the fingerprint to publish. Run it as the station's "
        "user (sudo -u packcam-station) on an installed station.",
    )
    _common(k)
    k.set_defaults(func=cmd_keys_init)
    k = ks.add_parser(
        "rotate",
        help="retire the station key: close its log (final checkpoint signed by both keys), "
        "start a new one",
        description="Rotate the station's Ed25519 key (after a suspected leak, or on a "
        "schedule). Stop the station first: rotation takes the data directory's lock, so it is "
        "refused while the station runs (and so while a clip is recording). The current log is "
        "closed with a FINAL checkpoint (it says final and names the successor key's "
        "fingerprint) signed by the old AND the new key and queued for RFC 3161 timestamps; "
        "the old log and the old key's public key and certificate are archived read-only "
        "(<data>/proof-public/retired/); the old private key is overwritten (unless "
        "--keep-old-key) and the new key starts a new log of 0 entries. Bundles of old clips "
        "stay verifiable. Certificate: run `packcam keys rotate --prepare`, have the company CA "
        "issue a certificate for the printed public key (`packcam ca issue STATION "
        "--station-key station-key.next.pub.pem --out DIR`), then `packcam keys rotate --cert "
        "DIR/station-key.crt`. Without --cert, clips of the new key verify only as INTACT BUT "
        "NOT ANCHORED until a certificate is installed. An interrupted rotation is finished "
        "at the next start.",
    )
    _common(k)
    k.add_argument(
        "--prepare",
        action="store_true",
        help="only make the successor key and print its public key for the CA; rotate nothing",
    )
    k.add_argument(
        "--cert",
        metavar="PEM",
        help="the company CA's certificate for the successor key (checked: key, station name, "
        "chain to the installed company CA)",
    )
    k.add_argument(
        "--keep-old-key",
        action="store_true",
        help="keep a copy of the retired private key in <data>/proof/retired/ (default: "
        "destroy it; it must never sign again either way)",
    )
    k.set_defaults(func=cmd_keys_rotate)

    p = subparsers.add_parser(
        "ca",
        help="company CA and station certificates (C2PA, station key)",
        description="A company root CA issues each station an ES256 certificate for C2PA and a "
        "certificate for its Ed25519 key. Keep the CA's private key off the stations.",
    )
    cs = p.add_subparsers(dest="ca_command", metavar="ACTION", required=True)
    c = cs.add_parser("init", help="create the company root CA", description="Create a CA.")
    _common(c)
    c.add_argument("--ca-dir", metavar="DIR", help="where the CA lives (default <data>/proof/ca)")
    c.add_argument("--name", default="packcam company CA", help="the CA's name (CN and O)")
    c.set_defaults(func=cmd_ca_init)
    c = cs.add_parser(
        "issue",
        help="issue a station's certificates",
        description="Issue STATION an ES256 C2PA certificate (CA:FALSE, digitalSignature, EKU "
        "emailProtection + documentSigning) and a certificate for its Ed25519 key. For this "
        "station the files go to the configured paths; else use --station-key and --out.",
    )
    _common(c)
    c.add_argument("station", metavar="STATION", help="station name (the certificate's CN)")
    c.add_argument("--ca-dir", metavar="DIR", help="the CA directory (default <data>/proof/ca)")
    c.add_argument("--station-key", metavar="PEM", help="the station's Ed25519 public key")
    c.add_argument("--out", metavar="DIR", help="write the files here instead")
    c.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    c.set_defaults(func=cmd_ca_issue)

    p = subparsers.add_parser(
        "export",
        help="write an order's evidence bundle (zip)",
        description="Bundle every clip of ORDER with its signed manifest, RFC 3161 tokens, log "
        "inclusion proof and checkpoint, keys and certificates, key frames, a zh-CN/English "
        "summary and VERIFY.md.",
    )
    p.add_argument("order", metavar="ORDER")
    p.add_argument("-o", "--output", metavar="BUNDLE.zip", required=True)
    _common(p)
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser(
        "verify",
        help="verify a bundle or a clip; exit 0 only when authentic, 4 when unanchored, 5 partial",
        description="Verify an evidence bundle (needs nothing else; with --data, each clip is "
        "also held to that station's log, as its /verify page does) or a bare clip (against "
        "the station index with --data, and its embedded C2PA manifest). Prints one reason per "
        "check. " + VERDICT_HELP,
    )
    p.add_argument("file", metavar="FILE|BUNDLE")
    _common(p)
    _trust_args(p)
    p.add_argument(
        "--witness",
        metavar="FILE|URL",
        help="the station's cosigned checkpoints from the central witness: a saved "
        "<site>/witness/<station>?tree_size=N (N: the bundle's checkpoint size; without it the "
        "record lists the newest checkpoints only) or the URL <site>/witness/<station>, asked "
        "for the bundle's sizes; a bundle from a forked log fails with log-fork",
    )
    p.add_argument(
        "--witness-key",
        metavar="SHA256|PEM",
        help="the central witness's key you trust: its fingerprint (the witness_key "
        "<site>/witness prints) or its public key PEM file; a --witness document signed by "
        "any other key is refused (exit 3, witness-untrusted), as is one whose own signatures "
        "do not verify (witness-invalid). Without it the document's key is only named",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_verify)

    p = subparsers.add_parser(
        "audit",
        help="check that clips on disk, index and signed log agree",
        description="Re-walk the store: every missing, replaced, reordered or extra clip, edited "
        "or deleted index row, rewritten log entry, pair of clips claiming the same seconds and "
        "recording logged twice is reported with its reason. " + VERDICT_HELP,
    )
    _common(p, data_required=True)
    _trust_args(p)
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="FILE",
        help="a signed checkpoint seen earlier (an evidence bundle, or checkpoint.json beside "
        "its .sig): the log must extend it, else log-rollback / log-fork (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_audit)

    p = subparsers.add_parser(
        "checkpoint",
        help="sign a log checkpoint now and fetch pending timestamps",
        description="Sign a checkpoint of the station's log and try the queued RFC 3161 requests.",
    )
    _common(p)
    p.set_defaults(func=cmd_checkpoint)


def main(argv: list[str] | None = None) -> int:
    """``python -m station.proof``: the same commands without the rest of packcam."""

    parser = argparse.ArgumentParser(prog="packcam", description="packcam proof commands")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"packcam: config error: {exc}", file=sys.stderr)
        return 2
    except ProofError as exc:
        print(f"packcam: {exc}", file=sys.stderr)
        return 3
