-- The read-only role Grafana (and anyone else who only reads) connects as: devopstic_reader.
--
-- Run it as a role that may create roles, connected to DevOpstic's database, once per database
-- (it is idempotent: running it again resets the password and the grants):
--
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -v reader_password='…' [-v app_role=devopstic] -f reader-role.sql
--
-- reader_password is required. app_role is the role that runs the migrations and so owns the
-- tables (default: the role running this script); the default privileges below make the tables
-- that later migrations create readable too. The postgres image runs it on first start through
-- 10-reader-role.sh.

\if :{?reader_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'reader-role.sql: set the password: psql -v ON_ERROR_STOP=1 -v reader_password=... -f reader-role.sql'; END $$;
  \quit
\endif
\if :{?app_role}
\else
  \set app_role :USER
\endif

SELECT 'CREATE ROLE devopstic_reader LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'devopstic_reader') \gexec

ALTER ROLE devopstic_reader WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    PASSWORD :'reader_password';
-- Defaults for its sessions: read-only transactions, and a runaway dashboard query cut short.
-- They are only defaults: any session may lift them (SET default_transaction_read_only = off,
-- SET statement_timeout = 0), and whoever writes SQL for Grafana's datasource (a dashboard
-- editor; a Viewer too, through Grafana's query API) writes it for a session of this role. What
-- bounds this role is its grants below: SELECT on schema public's tables, nothing else.
ALTER ROLE devopstic_reader SET default_transaction_read_only = on;
ALTER ROLE devopstic_reader SET statement_timeout = '60s';

GRANT CONNECT ON DATABASE :"DBNAME" TO devopstic_reader;
GRANT USAGE ON SCHEMA public TO devopstic_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO devopstic_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE :"app_role" IN SCHEMA public GRANT SELECT ON TABLES TO devopstic_reader;

-- Nothing of its own in schema public. PostgreSQL 14 and older let every role (PUBLIC) create
-- objects there, read-only default or not: a table, or a function the application's queries
-- would find before the one they mean (CVE-2018-1058) and run as the application. PostgreSQL 15
-- no longer grants it; here it is taken from PUBLIC whatever the version, after app_role, which
-- runs the migrations, has been given it by name. Revoking needs the schema's owner or a
-- superuser: run by anyone else, it changes nothing, and the check below says so.
GRANT CREATE ON SCHEMA public TO :"app_role";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM devopstic_reader;
DO $$
BEGIN
  IF has_schema_privilege('devopstic_reader', 'public', 'CREATE') THEN
    RAISE EXCEPTION 'reader-role.sql: devopstic_reader can create objects in schema public (through PUBLIC, or a role it is a member of)'
      USING HINT = 'As the owner of schema public or a superuser: GRANT CREATE ON SCHEMA public TO <the role that runs the migrations>; REVOKE CREATE ON SCHEMA public FROM PUBLIC; and take devopstic_reader out of any role that may create there.';
  END IF;
END $$;
