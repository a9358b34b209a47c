-- pg-notify-bridge: least-privilege roles. Step 2 of 2, run as the installer
-- role (the owner of the bridge schema) after install-triggers, and again after
-- each upgrade (install-triggers of a new version may add objects):
--
--   psql -v ON_ERROR_STOP=1 -d app -U bridge_installer -v writers='app_user' \
--        -f deploy/sql/grants.sql
--
-- Variables (psql -v NAME=VALUE), all optional:
--   daemon   role the daemons log in as (bridge_daemon)
--   writers  space-separated roles of the application that write to watched
--            tables: Django's database user, migration and batch-job roles...
--
-- What each role may do, and why:
--   daemon   read the log and the registry; stamp committed rows (UPDATE tick,
--            INSERT a tick); prune old ticks (DELETE, advance pruned_through).
--            Nothing on the application's tables: it never reads them.
--   writers  the capture triggers run as the writer (not SECURITY DEFINER), and
--            append to bridge.log: USAGE on the schema and INSERT on the log,
--            nothing else (they cannot read or change what others wrote).
-- `python -m bridge status` as the daemon role lists the daemons (its own
-- sessions); another role needs pg_read_all_stats to see them.

\if :{?daemon}
\else
\set daemon bridge_daemon
\endif
\if :{?writers}
\else
\set writers ''
\endif

BEGIN;

GRANT USAGE ON SCHEMA bridge TO :"daemon";
GRANT SELECT ON bridge.meta, bridge.watched TO :"daemon";
GRANT UPDATE (value) ON bridge.meta TO :"daemon";
GRANT SELECT, UPDATE (tick), DELETE ON bridge.log TO :"daemon";
GRANT SELECT, INSERT, DELETE ON bridge.tick TO :"daemon";
GRANT USAGE ON SEQUENCE bridge.tick_seq TO :"daemon";
REVOKE ALL ON FUNCTION bridge.stamp(), bridge.prune(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bridge.stamp(), bridge.prune(interval) TO :"daemon";

SELECT format('GRANT USAGE ON SCHEMA bridge TO %I', w),
       format('GRANT INSERT ON bridge.log TO %I', w)
  FROM unnest(string_to_array(:'writers', ' ')) w
 WHERE w <> ''
\gexec

COMMIT;
