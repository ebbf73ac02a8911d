-- Postings are checked against their entries once a statement instead of once a row (issue 12: the
-- row trigger of 0002 was about a sixth of PostgreSQL's CPU a booked result). The rule is the same:
-- a posting is refused unless its entry was inserted by the same transaction, now at the end of the
-- statement that inserts it (the whole statement fails, as before).
-- depends: 0003.burden

CREATE FUNCTION postings_with_their_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orphan text;
BEGIN
    SELECT a.entry_id INTO orphan FROM added a
    WHERE NOT EXISTS (SELECT 1 FROM journal_entry e WHERE e.entry_id = a.entry_id AND e.xmin = pg_current_xact_id()::xid)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'posting for journal entry % refused: postings are written with their entry, never added later',
            orphan USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER posting_with_its_entry ON posting;
DROP FUNCTION posting_with_its_entry();
CREATE TRIGGER postings_with_their_entries AFTER INSERT ON posting REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION postings_with_their_entries();
