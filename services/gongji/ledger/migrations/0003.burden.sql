-- The out-of-pocket share of people in difficulty (seed 003: "reasonably control the proportion of
-- out of pocket expenses within the scope of policies for people with difficulties"): each entry
-- keeps the in-scope amount (inscp_scp_amt, negative for a reversal) and the assistance category the
-- claim was settled under (psn_idet_type, null for none), so `gongji ledger burden` reads the share
-- left to persons per region and category from the journal alone. Entries booked before this
-- migration keep 0 and null: the report counts them as in no category with nothing in scope.
-- depends: 0002.guards

ALTER TABLE journal_entry
    ADD COLUMN inscp_scp_amt numeric(16, 2) NOT NULL DEFAULT 0,
    ADD COLUMN psn_idet_type text;
CREATE INDEX journal_entry_burden ON journal_entry (book_date, insu_admdvs, psn_idet_type)
    WHERE event_type IN ('settlement', 'reversal');
