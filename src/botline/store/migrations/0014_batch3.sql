-- Batch items under a claim (issue 13): the claim counts the live leases of a job and of an account
-- against batch.max_concurrent_per_job / _per_account; this index holds only claimed items, so that
-- count reads what runs now, never the whole job.
CREATE INDEX batch_items_held ON batch_items (account_id, job_id, lease_until) WHERE claim_token IS NOT NULL;
