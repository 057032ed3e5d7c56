"""PostgreSQL schema of the central index, applied in order and recorded in schema_version."""

from __future__ import annotations

import logging
import time
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

# Exact substring keys (issue 12, after SEARCH_BLOCKS): each text's lower-case (ASCII letters,
# as ILIKE on COLLATE "C" folds them) pieces of 2, 3 and 4 characters, any characters. A piece
# of 2-4 characters is one key whose rows all match: no false candidates to read and drop (with
# pg_trgm, `O001` read tens of thousands of rows holding `o00` and `001` apart); a longer one is
# asked for its last pieces of 4 (central.db.search_keys). The clip index also holds the
# station, so a search limited to a few stations skips the others' rows inside the index.
# plpgsql: twice as fast per row as a SQL function's generate_series (the index build).
SEARCH_GRAMS_FUNCTION = """
    DO $do$ BEGIN
    IF to_regprocedure('packcam_grams(text)') IS NULL THEN
        CREATE FUNCTION packcam_grams(t text) RETURNS text[]
        LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE COST 1000 AS $$
        DECLARE
            l text := lower(t COLLATE "C");
            n int := length(l);
            keys text[] := '{}';
        BEGIN
            FOR k IN 2..4 LOOP
                FOR i IN 1..n - k + 1 LOOP
                    keys := keys || substr(l, i, k);
                END LOOP;
            END LOOP;
            RETURN keys;
        END $$;
    END IF;
    END $do$;
    """
# name -> the index, without CREATE INDEX [CONCURRENTLY] (central.schema.build_search_indexes
# builds them ahead of the migration without blocking writes; the migration then finds them).
SEARCH_GRAMS_INDEXES = {
    "clips_grams": "ON clips USING gin ((id >> 14), station, packcam_grams(order_id))",
    "clip_waybills_grams": "ON clip_waybills USING gin ((clip_id >> 14), packcam_grams(waybill))",
}
_DROP_INVALID = """
    DO $do$ DECLARE r record; BEGIN
    FOR r IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE c.relname = ANY(%s) AND NOT i.indisvalid LOOP
        EXECUTE format('DROP INDEX %%I', r.relname);
    END LOOP;
    END $do$;
    """
SEARCH_GRAMS = (
    "CREATE EXTENSION IF NOT EXISTS btree_gin;"
    + SEARCH_GRAMS_FUNCTION
    # an interrupted CONCURRENTLY build leaves an invalid index of that name: build it again
    + _DROP_INVALID % ("'{" + ",".join(SEARCH_GRAMS_INDEXES) + "}'",)
    + "".join(f"CREATE INDEX IF NOT EXISTS {n} {d};" for n, d in SEARCH_GRAMS_INDEXES.items())
    + "DROP INDEX IF EXISTS clips_search, clip_waybills_search;"
    + "DROP FUNCTION IF EXISTS packcam_bigrams(text);"
)

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
    # from the duplicate check of station/fleet/duplicates.py). Searched and counted per packer.
    """
    ALTER TABLE clips ADD COLUMN packer text COLLATE "C";
    ALTER TABLE clips ADD COLUMN kind text NOT NULL DEFAULT 'order';
    ALTER TABLE clips ADD COLUMN repack_of jsonb;
    ALTER TABLE clips ADD COLUMN repack_of_fleet jsonb;
    CREATE INDEX clips_packer ON clips(packer, started_utc);
    """,
    SEARCH_BLOCKS,
    SEARCH_GRAMS,
    # 12: a waybill its station linked to the clip after signing it (a late camera read,
    # station/store/clips.py): in no signed manifest, so the pages mark it as not proven.
    """
    ALTER TABLE clip_waybills ADD COLUMN linked_utc text;  -- NULL: in the signed manifest
    """,
    # 13: the witness's cosigned checkpoint at a given tree size (GET /witness/<station>
    # ?tree_size=N, the /verify page): an old bundle cites a size long out of the newest ones.
    """
    CREATE INDEX witnessed_size ON witnessed(station_id, tree_size);
    """,
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
        if current_version(conn) < len(MIGRATIONS):
            _wait_for_builder(cur)
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


_BUILD_LOCK = 7263542


def _wait_for_builder(cur: Any) -> None:
    """Wait while a build_search_indexes runs (its indexes are what the migration needs), by
    polling: a statement waiting for its lock would hold a snapshot, which CREATE INDEX
    CONCURRENTLY waits for in turn (a deadlock)."""
    waited = False
    while True:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (_BUILD_LOCK,))
        row = cur.fetchone()
        if row and row[0]:
            return
        if not waited:
            log.info("waiting for build-search-indexes to finish before migrating")
            waited = True
        time.sleep(1.0)


def build_search_indexes(conn: Any) -> list[str]:
    """Build the search indexes of SEARCH_GRAMS with CREATE INDEX CONCURRENTLY (``conn`` in
    autocommit), ahead of the migration that needs them: at millions of clips the build takes
    many minutes, and this way registrations and searches (on the old indexes) go on. Safe
    beside a running site of the previous version; an interrupted build is dropped and built
    again. Returns the names built."""
    built = []
    with conn.cursor() as cur:
        # one builder at a time (a second would drop the first's index in progress); not a
        # waiting lock: see _wait_for_builder
        cur.execute("SELECT pg_try_advisory_lock(%s)", (_BUILD_LOCK,))
        row = cur.fetchone()
        if not row or not row[0]:
            raise CentralError("another build-search-indexes or a migration is running")
        try:
            built = _build(cur)
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s)", (_BUILD_LOCK,))
    return built


def _build(cur: Any) -> list[str]:
    cur.execute("SELECT to_regclass('clips') IS NOT NULL")
    row = cur.fetchone()
    if not row or not row[0]:
        raise CentralError("no central index in this database yet: run `packcam central migrate`")
    built = []
    cur.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    cur.execute(SEARCH_GRAMS_FUNCTION)
    for name, definition in SEARCH_GRAMS_INDEXES.items():
        cur.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = %s",
            (name,),
        )
        row = cur.fetchone()
        if row and row[0]:
            continue
        if row:  # left invalid by an interrupted build
            cur.execute(f"DROP INDEX CONCURRENTLY {name}")
        log.info("building the search index %s (CONCURRENTLY)", name)
        cur.execute(f"CREATE INDEX CONCURRENTLY {name} {definition}")
        built.append(name)
    return built
