-- Governance calls (policy judge, routing classifier) counted apart in the usage records (issue 14).
ALTER TABLE usage_hourly ADD COLUMN policy_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN policy_input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN policy_output_tokens INTEGER NOT NULL DEFAULT 0;
