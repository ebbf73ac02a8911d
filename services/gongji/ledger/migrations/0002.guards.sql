-- Guards the first migration left open (found in review):
-- * an entry whose amounts are all zero (an empty opening balance, a free visit) has no postings
--   and balances trivially: it is booked, not refused;
-- * postings can only be added in the transaction that inserts their entry, so an entry checked
--   at that commit cannot be unbalanced later by an extra posting;
-- * TRUNCATE is refused like UPDATE and DELETE.
-- depends: 0001.journal

CREATE OR REPLACE FUNCTION journal_entry_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d numeric;
    c numeric;
BEGIN
    SELECT coalesce(sum(debit), 0), coalesce(sum(credit), 0) INTO d, c FROM posting WHERE entry_id = NEW.entry_id;
    IF d <> c THEN
        RAISE EXCEPTION 'journal entry % does not balance: debits %, credits %', NEW.entry_id, d, c
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION posting_with_its_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM journal_entry WHERE entry_id = NEW.entry_id AND xmin = pg_current_xact_id()::xid) THEN
        RAISE EXCEPTION 'posting for journal entry % refused: postings are written with their entry, never added later',
            NEW.entry_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER posting_with_its_entry BEFORE INSERT ON posting
    FOR EACH ROW EXECUTE FUNCTION posting_with_its_entry();

CREATE TRIGGER journal_entry_no_truncate BEFORE TRUNCATE ON journal_entry
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER posting_no_truncate BEFORE TRUNCATE ON posting
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();
