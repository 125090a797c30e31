-- Site profiles (issue 24, CDS_SITES): which site each audited hook call came from.
-- 'default' is the implicit site of the single-site variables (no CDS_SITES).
ALTER TABLE hook_call ADD COLUMN site_id TEXT NOT NULL DEFAULT 'default';
CREATE INDEX hook_call_site ON hook_call (site_id);
