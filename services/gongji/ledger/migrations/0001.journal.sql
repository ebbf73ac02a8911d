-- The fund ledger: an append-only double-entry journal (one entry per settlement, reversal or
-- account credit), balanced per entry by a constraint checked at commit.
-- depends:

CREATE TABLE journal_entry (
    entry_id        text PRIMARY KEY,             -- setl_id, or credit_id: redelivery inserts nothing
    event_type      text NOT NULL CHECK (event_type IN ('settlement', 'reversal', 'credit')),
    source_id       text NOT NULL,                -- claim_id or credit_id
    orig_entry_id   text,                         -- a reversal's original settlement
    psn_no          text NOT NULL,                -- pseudonymous person number
    fixmedins_code  text,
    insu_admdvs     text,                         -- 参保地
    mdtrtarea_admvs text,                         -- 就医地
    setl_time       timestamptz,
    book_date       date NOT NULL,                -- the settlement's own local date (+08:00)
    medfee_sumamt   numeric(16, 2) NOT NULL DEFAULT 0,  -- what 3201/3202 reconcile
    fund_pay_sumamt numeric(16, 2) NOT NULL DEFAULT 0,
    acct_pay        numeric(16, 2) NOT NULL DEFAULT 0,  -- own account and family mutual aid
    psn_cash_pay    numeric(16, 2) NOT NULL DEFAULT 0,
    kafka_topic     text,                         -- where the result was read: for audit
    kafka_partition integer,
    kafka_offset    bigint,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX journal_entry_institution ON journal_entry (fixmedins_code, event_type, book_date);
CREATE INDEX journal_entry_book_date ON journal_entry (book_date);

CREATE TABLE posting (
    entry_id  text NOT NULL REFERENCES journal_entry (entry_id),
    line_no   smallint NOT NULL,
    account   text NOT NULL,
    debit     numeric(16, 2) NOT NULL DEFAULT 0 CHECK (debit >= 0),
    credit    numeric(16, 2) NOT NULL DEFAULT 0 CHECK (credit >= 0),
    book_date date NOT NULL,
    PRIMARY KEY (entry_id, line_no),
    CHECK ((debit = 0) <> (credit = 0))
);
CREATE INDEX posting_account ON posting (account, book_date);
CREATE INDEX posting_book_date ON posting (book_date);

-- Every entry balances: checked once per entry when the transaction commits, after its postings.
CREATE FUNCTION journal_entry_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d numeric;
    c numeric;
BEGIN
    SELECT coalesce(sum(debit), 0), coalesce(sum(credit), 0) INTO d, c FROM posting WHERE entry_id = NEW.entry_id;
    IF d <> c OR d = 0 THEN
        RAISE EXCEPTION 'journal entry % does not balance: debits %, credits %', NEW.entry_id, d, c
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER journal_entry_balanced AFTER INSERT ON journal_entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION journal_entry_balances();

-- Append-only: a booked entry is corrected by a reversal, never edited or deleted.
CREATE FUNCTION journal_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the journal is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER journal_entry_append_only BEFORE UPDATE OR DELETE ON journal_entry
    FOR EACH ROW EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER posting_append_only BEFORE UPDATE OR DELETE ON posting
    FOR EACH ROW EXECUTE FUNCTION journal_is_append_only();
