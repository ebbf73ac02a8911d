-- What the ledger service's role (GONGJI_LEDGER_WRITER_ROLE) may do on the ledger's schema, applied
-- by `gongji ledger migrate` after the migrations: insert entries and their postings, and read them
-- (and which migrations are applied, to start without migrating). No UPDATE, DELETE or TRUNCATE;
-- not the owner, so no ALTER and no trigger changes. {schema} and {writer} are identifiers.
REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {writer};
REVOKE ALL ON SCHEMA {schema} FROM {writer};
GRANT USAGE ON SCHEMA {schema} TO {writer};
GRANT SELECT, INSERT ON {schema}.journal_entry, {schema}.posting TO {writer};
GRANT SELECT ON {schema}._yoyo_migration TO {writer};
