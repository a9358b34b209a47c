-- pg-notify-bridge: least-privilege roles. Step 1 of 2, run once as a superuser
-- (or the database owner with CREATEROLE), in the application's database:
--
--   psql -v ON_ERROR_STOP=1 -d app -v tables='public.example_task public.other' \
--        -f deploy/sql/roles.sql
--
-- Then, as the installer role:
--   DATABASE_URL=postgresql://bridge_installer@.../app \
--     python -m bridge install-triggers public.example_task public.other
-- and step 2, deploy/sql/grants.sql, as the installer role too.
--
-- Variables (psql -v NAME=VALUE), all optional:
--   installer  role that owns the bridge schema and installs triggers (bridge_installer)
--   daemon     role the daemons log in as (bridge_daemon)
--   tables     space-separated tables to watch: the installer gets TRIGGER on them
--
-- Neither role gets a password here: set one with \password, or use your
-- usual authentication (pg_hba.conf, certificates). tests/test_ops_roles.py
-- runs both files and then the daemon, a writer and install-triggers as these roles.

\if :{?installer}
\else
\set installer bridge_installer
\endif
\if :{?daemon}
\else
\set daemon bridge_daemon
\endif
\if :{?tables}
\else
\set tables ''
\endif

BEGIN;

SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(ARRAY[:'installer', :'daemon']) r
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r)
\gexec

SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I', current_database(), :'installer',
              :'daemon')
\gexec

-- The installer owns the bridge schema, so install-triggers can create and
-- upgrade what is inside it. CREATE on the database lets it create schemas
-- (PostgreSQL checks it even for CREATE SCHEMA IF NOT EXISTS), nothing more.
SELECT format('GRANT CREATE ON DATABASE %I TO %I', current_database(), :'installer')
\gexec
SELECT format('CREATE SCHEMA IF NOT EXISTS bridge AUTHORIZATION %I', :'installer')
\gexec

-- Creating a trigger needs the TRIGGER privilege on the table, not its ownership,
-- and USAGE on its schema to find it.
SELECT DISTINCT format('GRANT USAGE ON SCHEMA %I TO %I', n.nspname, :'installer')
  FROM unnest(string_to_array(:'tables', ' ')) t
  JOIN pg_class c ON c.oid = t::regclass
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t <> ''
\gexec
SELECT format('GRANT TRIGGER ON TABLE %s TO %I', t::regclass, :'installer')
  FROM unnest(string_to_array(:'tables', ' ')) t
 WHERE t <> ''
\gexec

COMMIT;
