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
-- Belt and braces: even a grant given by mistake cannot make this role write, and a runaway
-- dashboard query is cut short.
ALTER ROLE devopstic_reader SET default_transaction_read_only = on;
ALTER ROLE devopstic_reader SET statement_timeout = '60s';

GRANT CONNECT ON DATABASE :"DBNAME" TO devopstic_reader;
GRANT USAGE ON SCHEMA public TO devopstic_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO devopstic_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE :"app_role" IN SCHEMA public GRANT SELECT ON TABLES TO devopstic_reader;
