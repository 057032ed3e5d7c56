"""PostgreSQL schema of the central index, applied in order and recorded in schema_version."""

from __future__ import annotations

import logging
from typing import Any

from central.errors import CentralError

log = logging.getLogger(__name__)

# Substring search newest first (central/db.py search): one GIN index per searched table whose
# first column is the clip id's block of 2**SEARCH_BLOCK_BITS ids (btree_gin), then the text's
# trigrams and its lower-case character pairs; a search asks for one block at a time, newest
# first, so each lookup stays small however common the piece. Replaces migration 4's and 6's
# single-column indexes. The shift must equal central.db.SEARCH_BLOCK_BITS.
SEARCH_BLOCKS = """
    CREATE EXTENSION IF NOT EXISTS btree_gin;
    CREATE INDEX clips_search ON clips
        USING gin ((id >> 14), order_id gin_trgm_ops, packcam_bigrams(order_id));
    CREATE INDEX clip_waybills_search ON clip_waybills
        USING gin ((clip_id >> 14), waybill gin_trgm_ops, packcam_bigrams(waybill));
    DROP INDEX IF EXISTS clips_order_trgm, clip_waybills_trgm, clips_order_bigrams,
        clip_waybills_bigrams;
    """

# Each entry upgrades the schema by one version. Never edit a shipped entry: append one.
# Text columns searched by prefix use COLLATE "C" so that range scans (x >= q AND x < q||max)
# are byte-order prefix matches whatever the database's default collation is.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE stations (
        id              serial PRIMARY KEY,
        name            text NOT NULL UNIQUE,
        token_sha256    text NOT NULL UNIQUE,  -- the enrolment token, hashed
        created_utc     timestamptz NOT NULL DEFAULT now(),
        enrolled_utc    timestamptz,  -- first contact with the token
        key_fingerprint text,  -- the station's Ed25519 key (station/proof)
        public_key      text,
        software        text,
        last_seen_utc   timestamptz,
        health          jsonb NOT NULL DEFAULT '{}'::jsonb,
        health_utc      timestamptz
    );
    CREATE TABLE clips (
        id              bigserial PRIMARY KEY,
        station_id      integer NOT NULL REFERENCES stations(id),
        local_id        bigint NOT NULL,  -- the clip's id in the station's own index
        order_id        text COLLATE "C" NOT NULL,
        waybill         text COLLATE "C",
        station         text COLLATE "C" NOT NULL,
        started_at      text NOT NULL,  -- ISO 8601 with the station's offset
        ended_at        text NOT NULL,
        started_utc     text COLLATE "C" NOT NULL,  -- as the station stores it (sortable)
        ended_utc       text NOT NULL,
        tz              text NOT NULL,
        duration_s      double precision NOT NULL,
        frame_count     integer NOT NULL,
        finish_reason   text NOT NULL,
        pre_roll_s      double precision NOT NULL,
        path            text NOT NULL,
        manifest_path   text NOT NULL,
        size            bigint NOT NULL,
        sha256          text NOT NULL,
        events          jsonb NOT NULL DEFAULT '[]'::jsonb,
        archived_utc    text,
        archive_key     text,
        archive_meta    jsonb,
        registered_utc  timestamptz NOT NULL DEFAULT now(),
        UNIQUE (station_id, local_id)
    );
    CREATE INDEX clips_order ON clips(order_id, started_utc);
    CREATE INDEX clips_started ON clips(started_utc);
    CREATE INDEX clips_station ON clips(station, started_utc);
    CREATE INDEX clips_sha256 ON clips(sha256);
    CREATE TABLE clip_waybills (
        clip_id         bigint NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
        waybill         text COLLATE "C" NOT NULL,
        carrier         text NOT NULL,
        t_clip_s        double precision NOT NULL,
        PRIMARY KEY (clip_id, waybill)
    );
    CREATE INDEX clip_waybills_waybill ON clip_waybills(waybill);
    CREATE TABLE checkpoints (
        station_id      integer NOT NULL REFERENCES stations(id),
        local_id        bigint NOT NULL,
        tree_size       bigint NOT NULL,
        root_hash       text NOT NULL,
        body            bytea NOT NULL,  -- canonical checkpoint bytes, exactly as signed
        signature       bytea NOT NULL,
        created_utc     text NOT NULL,
        PRIMARY KEY (station_id, local_id)
    );
    """,
    # 2: the witness (central/witness.py): checkpoints accepted as append-only growth, cosigned,
    # and the forks / rollbacks it refused.
    """
    CREATE TABLE witnessed (
        id              bigserial PRIMARY KEY,
        station_id      integer NOT NULL REFERENCES stations(id),
        tree_size       bigint NOT NULL,
        root_hash       text NOT NULL,
        body            bytea NOT NULL,  -- the station's checkpoint, exactly as it signed it
        signature       bytea NOT NULL,
        cosigned        bytea NOT NULL,  -- the witness's canonical statement about it
        cosignature     bytea NOT NULL,  -- Ed25519 by the witness key
        witnessed_utc   timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX witnessed_station ON witnessed(station_id, id);
    CREATE TABLE witness_alarms (
        id              bigserial PRIMARY KEY,
        station_id      integer NOT NULL REFERENCES stations(id),
        kind            text NOT NULL,  -- log-fork | log-rollback
        tree_size       bigint NOT NULL,
        root_hash       text NOT NULL,
        detail          text NOT NULL,
        body            bytea NOT NULL,
        at_utc          timestamptz NOT NULL DEFAULT now(),
        UNIQUE (station_id, kind, tree_size, root_hash)
    );
    """,
    # 3: a station is its key, not its name (`packcam central replace-station`): a replaced
    # Pi gets a new row under the same name; the old row is retired, its clips, log and
    # witness history stay (read-only: its token stops working). One active row per name.
    """
    ALTER TABLE stations ADD COLUMN retired_utc timestamptz;
    ALTER TABLE stations ADD COLUMN replaced_by integer REFERENCES stations(id);
    ALTER TABLE stations DROP CONSTRAINT stations_name_key;
    CREATE UNIQUE INDEX stations_active_name ON stations(name) WHERE retired_utc IS NULL;
    """,
    # 4: substring search (any case) over order IDs and waybills: pg_trgm GIN indexes, which
    # serve ILIKE '%q%' for queries of 3+ characters (web search, central/db.py).
    """
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX clips_order_trgm ON clips USING gin (order_id gin_trgm_ops);
    CREATE INDEX clip_waybills_trgm ON clip_waybills USING gin (waybill gin_trgm_ops);
    """,
    # 5: per-station counters and high-water marks, maintained by the registrations instead
    # of counted (at 10 M clips the counts cost ~1 s per station on every reconnect and on
    # every dashboard view).
    """
    ALTER TABLE stations ADD COLUMN n_clips bigint NOT NULL DEFAULT 0;
    ALTER TABLE stations ADD COLUMN high_clip bigint NOT NULL DEFAULT 0;
    ALTER TABLE stations ADD COLUMN high_archived bigint NOT NULL DEFAULT 0;
    ALTER TABLE stations ADD COLUMN high_checkpoint bigint NOT NULL DEFAULT 0;
    ALTER TABLE stations ADD COLUMN last_clip_utc text COLLATE "C";
    UPDATE stations s SET
        n_clips = (SELECT COUNT(*) FROM clips c WHERE c.station_id = s.id),
        high_clip = COALESCE((SELECT MAX(local_id) FROM clips c WHERE c.station_id = s.id), 0),
        high_archived = COALESCE((SELECT MAX((archive_meta->>'archive_seq')::bigint) FROM clips c
            WHERE c.station_id = s.id AND archive_meta ? 'archive_seq'), 0),
        high_checkpoint = COALESCE(
            (SELECT MAX(local_id) FROM checkpoints k WHERE k.station_id = s.id), 0),
        last_clip_utc = (SELECT MAX(started_utc) FROM clips c WHERE c.station_id = s.id);
    """,
    # 6: 2-character pieces, which pg_trgm cannot index: each value's set of lower-case
    # character pairs, in GIN indexes (central/db.py search).
    """
    -- COST: computing it row by row is slow; the planner must prefer the index
    CREATE FUNCTION packcam_bigrams(t text) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
    COST 10000 AS $$ SELECT coalesce(array_agg(DISTINCT substr(lower(t COLLATE "C"), i, 2)), '{}')
          FROM generate_series(1, length(t) - 1) AS i $$;
    CREATE INDEX clips_order_bigrams ON clips USING gin (packcam_bigrams(order_id));
    CREATE INDEX clip_waybills_bigrams ON clip_waybills USING gin (packcam_bigrams(waybill));
    """,
    # 7: the fleet health page (web/fleet.py): per station, when it last archived a clip and
    # the bytes of its archived clips in the bucket, maintained by register_clips like 5.
    """
    ALTER TABLE stations ADD COLUMN last_archived_utc text COLLATE "C";
    ALTER TABLE stations ADD COLUMN archived_bytes bigint NOT NULL DEFAULT 0;
    ALTER TABLE stations ADD COLUMN n_archived bigint NOT NULL DEFAULT 0;
    UPDATE stations s SET
        last_archived_utc = a.last, archived_bytes = a.bytes, n_archived = a.n
    FROM (SELECT station_id, MAX(archived_utc) AS last, SUM(size) AS bytes, COUNT(*) AS n
          FROM clips WHERE archived_utc IS NOT NULL GROUP BY station_id) a
    WHERE a.station_id = s.id;
    """,
    # 8: key rotation (central/witness.py): each witnessed checkpoint belongs to the log of one
    # station key; a rotation (the old log's final checkpoint signed by both keys) is cosigned
    # and moves the station to its successor key, whose log starts at 0.
    """
    ALTER TABLE witnessed ADD COLUMN log_key text;
    UPDATE witnessed w SET log_key = s.key_fingerprint FROM stations s WHERE s.id = w.station_id;
    CREATE TABLE witness_rotations (
        id              bigserial PRIMARY KEY,
        station_id      integer NOT NULL REFERENCES stations(id),
        old_key         text NOT NULL,
        new_key         text NOT NULL,
        old_public_key  text NOT NULL,
        tree_size       bigint NOT NULL,
        root_hash       text NOT NULL,
        body            bytea NOT NULL,
        signature_old   bytea NOT NULL,
        signature_new   bytea NOT NULL,
        witnessed_utc   timestamptz NOT NULL DEFAULT now(),
        UNIQUE (station_id, old_key)
    );
    """,
    # 9: the packing floor (issue 13): who packed a clip, its kind (order | return), and the
    # earlier clips a repack follows: at its own station (local ids) and at other stations
    # (``repack_of_fleet``: [{"station", "clip_id" (that station's local id), "started"}],
    # from the duplicate check of station/duplicates.py). Searched and counted per packer.
    """
    ALTER TABLE clips ADD COLUMN packer text COLLATE "C";
    ALTER TABLE clips ADD COLUMN kind text NOT NULL DEFAULT 'order';
    ALTER TABLE clips ADD COLUMN repack_of jsonb;
    ALTER TABLE clips ADD COLUMN repack_of_fleet jsonb;
    CREATE INDEX clips_packer ON clips(packer, started_utc);
    """,
    SEARCH_BLOCKS,
)


def current_version(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
        row = cur.fetchone()
        if not row or not row[0]:
            return 0
        cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        row = cur.fetchone()
        return int(row[0]) if row else 0


def migrate(conn: Any, upto: int | None = None) -> int:
    """Bring the schema up to date, or to version ``upto`` (benchmarks of an older schema);
    safe to run from several processes at once."""
    with conn.transaction(), conn.cursor() as cur:
        # One migrator at a time: the others wait here, then find nothing to do.
        cur.execute("SELECT pg_advisory_xact_lock(7263541)")
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, applied_utc timestamptz NOT NULL DEFAULT now())"
        )
        version = current_version(conn)
        if version > len(MIGRATIONS):
            raise CentralError(
                f"central schema version {version} is newer than this packcam "
                f"({len(MIGRATIONS)}); upgrade packcam"
            )
        last = len(MIGRATIONS) if upto is None else upto
        for n, script in enumerate(MIGRATIONS[version:last], start=version + 1):
            log.info("migrating the central index to schema version %d", n)
            cur.execute(script)
            cur.execute("INSERT INTO schema_version(version) VALUES (%s)", (n,))
        return max(version, last)
