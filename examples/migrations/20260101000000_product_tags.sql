-- Tags for search filters. A nullable column without a default is a metadata-only change.
ALTER TABLE products ADD COLUMN IF NOT EXISTS tags text[];
