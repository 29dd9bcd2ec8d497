-- no-transaction
-- Built concurrently so writes to products keep flowing while the index builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS products_tags_idx ON products USING gin (tags);
