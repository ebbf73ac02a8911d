-- The ledger's PostgreSQL roles, least privilege. Run once as a superuser (or a role with CREATEROLE
-- and CREATEDB), passwords as psql variables so they stay out of the file and the shell history:
--   psql -v owner_password="$OWNER_PW" -v writer_password="$WRITER_PW" -f deploy/postgres/roles.sql
-- (add -v reader_password="$READER_PW" for the dashboard's read-only role, at the end of this file)
-- then, with the owner's URL, `gongji ledger migrate` (GONGJI_LEDGER_MIGRATION_URL, and
-- GONGJI_LEDGER_WRITER_ROLE=gongji_ledger): it creates the schema and tables, owned by the owner,
-- and grants the writer INSERT and SELECT on the journal and nothing else (services/gongji/ledger/grants.sql).
-- The service runs as the writer (GONGJI_DATABASE_URL); it cannot UPDATE, DELETE or TRUNCATE the
-- journal, ALTER it, or touch its triggers, and it does not migrate.
SET password_encryption = 'scram-sha-256';
CREATE ROLE gongji_ledger_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE gongji_ledger LOGIN PASSWORD :'writer_password';
CREATE DATABASE gongji OWNER gongji_ledger_owner;
REVOKE ALL ON DATABASE gongji FROM PUBLIC;
GRANT CONNECT ON DATABASE gongji TO gongji_ledger;
-- The dashboard's reader (its period view, "today" and "this month", reads the journal): with
-- -v reader_password=…, a role that may connect and SELECT the ledger's tables and nothing else.
-- SELECT comes from the owner's default privileges in this database, so it covers the schema and
-- tables `gongji ledger migrate` creates afterwards (run this file before migrating).
\if :{?reader_password}
CREATE ROLE gongji_ledger_reader LOGIN PASSWORD :'reader_password';
GRANT CONNECT ON DATABASE gongji TO gongji_ledger_reader;
\connect gongji
ALTER DEFAULT PRIVILEGES FOR ROLE gongji_ledger_owner GRANT USAGE ON SCHEMAS TO gongji_ledger_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE gongji_ledger_owner GRANT SELECT ON TABLES TO gongji_ledger_reader;
\endif
