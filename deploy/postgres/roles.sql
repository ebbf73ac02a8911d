-- The ledger's PostgreSQL roles, least privilege. Run once as a superuser (or a role with CREATEROLE
-- and CREATEDB), passwords as psql variables so they stay out of the file and the shell history:
--   psql -v owner_password="$OWNER_PW" -v writer_password="$WRITER_PW" -f deploy/postgres/roles.sql
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
