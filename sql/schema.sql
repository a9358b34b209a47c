-- pg-notify-bridge: the `bridge` schema (event log, ticks, registry).
--
-- Idempotent: `python -m bridge install-triggers` runs it every time, so an
-- older schema is upgraded in place. Bump SCHEMA_VERSION in bridge/install.py
-- together with the `schema_version` row below.
--
-- Positions. A sequence id is not commit order (a transaction holding id 5
-- can commit after the one holding id 6), so writers only append rows with
-- tick NULL. A daemon then stamps every committed, unstamped row with the
-- next tick number, in an UPDATE under an advisory lock (bridge.stamp()).
-- Stamps are taken in lock order, and the lock is released at commit, so
-- tick order is commit order and every daemon sees the same (tick, id)
-- positions. A row from a transaction that is still open is invisible to the
-- UPDATE and is stamped by a later tick, after it commits.
--
-- Writers pay for one heap row and one entry in the small partial index
-- log_unstamped; the position indexes only ever hold stamped rows, so the
-- daemon pays for them when it stamps.
--
-- Wake-ups. A writer NOTIFYs only when it cannot take the guard key
-- (install.GUARD_KEY) shared, that is while a daemon sleeps on LISTEN holding
-- it exclusively or waits for it; docs/guarantees.md has the argument.

CREATE SCHEMA IF NOT EXISTS bridge;

CREATE TABLE IF NOT EXISTS bridge.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

INSERT INTO bridge.meta (key, value) VALUES
    ('db_id', substr(md5(random()::text || clock_timestamp()::text), 1, 8)),
    ('pruned_through', '0')
ON CONFLICT (key) DO NOTHING;

CREATE TABLE IF NOT EXISTS bridge.log (
    id bigint GENERATED ALWAYS AS IDENTITY,
    tick bigint,
    channel text NOT NULL,
    tbl text NOT NULL,
    op text NOT NULL,
    pks jsonb,
    count integer NOT NULL
);

CREATE INDEX IF NOT EXISTS log_unstamped ON bridge.log (id) WHERE tick IS NULL;
CREATE INDEX IF NOT EXISTS log_position ON bridge.log (tick, id) WHERE tick IS NOT NULL;
CREATE INDEX IF NOT EXISTS log_channel ON bridge.log (channel, tick, id) WHERE tick IS NOT NULL;
-- TRUNCATEs only (a handful of rows): a resume on a row channel finds its
-- table's TRUNCATEs here instead of reading the whole table channel.
CREATE INDEX IF NOT EXISTS log_truncate ON bridge.log (channel, tick, id)
    WHERE tick IS NOT NULL AND op = 'TRUNCATE';

CREATE SEQUENCE IF NOT EXISTS bridge.tick_seq;

-- One row per tick: when it was cut, for pruning by age and for lag metrics.
CREATE TABLE IF NOT EXISTS bridge.tick (
    tick bigint PRIMARY KEY,
    stamped_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS tick_stamped_at ON bridge.tick (stamped_at);

-- The tables that have capture triggers, and how their channels are named.
CREATE TABLE IF NOT EXISTS bridge.watched (
    tbl text PRIMARY KEY,
    channel text NOT NULL UNIQUE,
    channel_column text,
    pk_columns text[] NOT NULL,
    functions text[] NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now()
);

-- Cut a tick: stamp every committed, unstamped row. Returns the tick, or
-- NULL when there was nothing to stamp. Serialized across daemons by a
-- transaction-scoped advisory lock, released at commit.
CREATE OR REPLACE FUNCTION bridge.stamp() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    t bigint;
    n bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pg_notify_bridge.stamp'));
    IF NOT EXISTS (SELECT 1 FROM bridge.log WHERE tick IS NULL) THEN
        RETURN NULL;
    END IF;
    t := nextval('bridge.tick_seq');
    -- At most 10,000 rows a tick, oldest first: a backlog left by a long outage
    -- is cut into several short ticks instead of one UPDATE holding the lock
    -- for minutes. Every row here has committed, and a later change to one row
    -- always has a higher id, so a later or equal tick: order still holds.
    -- (tick IS NULL outside too, so both sides use log_unstamped, not a scan.)
    UPDATE bridge.log SET tick = t
     WHERE tick IS NULL
       AND id = ANY (ARRAY(SELECT id FROM bridge.log WHERE tick IS NULL
                           ORDER BY id LIMIT 10000));
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO bridge.tick (tick) VALUES (t);
    -- Wake the other daemons when one may be waiting for the guard key
    -- (install.GUARD_KEY): queued behind a sleeping daemon, it would not read
    -- the rows of writers that skipped their NOTIFY until its own grant. The
    -- try-lock fails exactly while a daemon holds or waits for the key; when it
    -- succeeds, a daemon that queues later is granted after this commit and reads.
    -- A sleeping daemon (its session says so) skips it: while it holds the key
    -- every writer NOTIFYs, so the others were woken by the same NOTIFYs.
    IF current_setting('pg_notify_bridge.sleeping', true) IS DISTINCT FROM 'on'
       AND NOT pg_try_advisory_xact_lock_shared(8101520941583262066) THEN
        PERFORM pg_notify('pg_notify_bridge', 'tick');
    END IF;
    RETURN t;
END
$$;

-- stamp(), then the rows after a position: what a woken daemon does, in one
-- round trip instead of two. The second statement runs after the first, with
-- a snapshot that sees its stamps; the caller gets the rows only once the
-- call (and so the stamp) has committed.
CREATE OR REPLACE FUNCTION bridge.advance(after_tick bigint, after_id bigint, max_rows integer)
RETURNS SETOF bridge.log
LANGUAGE sql AS $$
    SELECT bridge.stamp();
    SELECT * FROM bridge.log
     WHERE tick IS NOT NULL AND (tick, id) > (after_tick, after_id)
     ORDER BY tick, id LIMIT max_rows;
$$;

-- Delete the ticks older than `retention`; one daemon at a time. Returns the
-- number of log rows deleted. A position at or before pruned_through can no
-- longer be resumed from: the daemon answers it with a resync.
CREATE OR REPLACE FUNCTION bridge.prune(retention interval) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cutoff bigint;
    n bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('pg_notify_bridge.prune')) THEN
        RETURN 0;
    END IF;
    SELECT tick INTO cutoff FROM bridge.tick
     WHERE stamped_at < now() - retention
     ORDER BY stamped_at DESC LIMIT 1;
    IF cutoff IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM bridge.log WHERE tick IS NOT NULL AND tick <= cutoff;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM bridge.tick WHERE tick <= cutoff;
    UPDATE bridge.meta SET value = greatest(value::bigint, cutoff)::text
     WHERE key = 'pruned_through';
    RETURN n;
END
$$;

INSERT INTO bridge.meta (key, value) VALUES ('schema_version', '6')
ON CONFLICT (key) DO UPDATE SET value = excluded.value;
