"""Least-privilege bucket access: a station key reads and writes its own prefix, deletes nothing."""

from __future__ import annotations

from typing import Any

from station.fleet.objstore import station_prefix

STORES = ("aws", "minio", "seaweedfs")

# What the archiver does with its own objects (objstore.ObjectStore): HEAD/GET to verify, PUT and
# multipart uploads (list parts and abort to resume or give up one), retention on each object.
# Never a delete: evidence in the bucket is removed only by Object Lock expiry and an admin.
_OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:PutObjectRetention",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
_DELETE_ACTIONS = ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention")


def station_user_policy(bucket: str, prefix: str, station: str) -> dict[str, Any]:
    """The IAM policy (AWS S3, MinIO) for one station's access key: its own prefix, no delete."""
    own = station_prefix(prefix, station)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnPrefixWriteOnce",
                "Effect": "Allow",
                "Action": list(_OBJECT_ACTIONS),
                "Resource": [f"arn:aws:s3:::{bucket}/{own}*"],
            },
            {
                # Without s3:ListBucket AWS answers a HEAD of a missing key 403, not 404; the
                # archiver then lists that one key (ObjectStore.head). Only its own prefix
                # (with the slash: "station-01/*" does not cover "station-010/").
                "Sid": "ListOwnPrefixOnly",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [own, own + "*"]}},
            },
            {
                "Sid": "NeverDelete",
                "Effect": "Deny",
                "Action": list(_DELETE_ACTIONS),
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
        ],
    }


def seaweedfs_identity(
    bucket: str, prefix: str, station: str, access_key: str, secret_key: str
) -> dict[str, Any]:
    """A SeaweedFS ``s3.json`` identity for one station (name = the station, for the policy).

    SeaweedFS's coarse ``Write`` also allows DeleteObject, so the bucket policy from
    :func:`seaweedfs_bucket_policy` must be set too; ``PutObjectRetention`` is not part of
    ``Write`` and is granted on the prefix alone.
    """
    scope = f"{bucket}/{station_prefix(prefix, station)}*"
    return {
        "name": station,
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": [f"Read:{scope}", f"Write:{scope}", f"PutObjectRetention:{scope}"],
    }


def seaweedfs_bucket_policy(bucket: str, stations: list[str]) -> dict[str, Any]:
    """The bucket policy that takes DeleteObject away from every station identity.

    SeaweedFS matches an identity as ``arn:aws:iam::*:user/<identity name>``; the admin identity
    is not listed, so it can still delete (and the bucket audit sees what it did).
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "StationsNeverDelete",
                "Effect": "Deny",
                "Principal": {"AWS": [f"arn:aws:iam::*:user/{s}" for s in stations]},
                "Action": list(_DELETE_ACTIONS),
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }


def render(store: str, bucket: str, prefix: str, station: str) -> dict[str, Any]:
    """What an operator applies for ``station`` on ``store`` (one of :data:`STORES`)."""
    if store in {"aws", "minio"}:
        return {"user_policy": station_user_policy(bucket, prefix, station)}
    if store == "seaweedfs":
        return {
            "identity": seaweedfs_identity(
                bucket, prefix, station, "<station access key>", "<station secret key>"
            ),
            "bucket_policy": seaweedfs_bucket_policy(bucket, [station]),
        }
    raise ValueError(f"store must be one of {', '.join(STORES)}, not {store!r}")
