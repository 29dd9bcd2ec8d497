-- Example application database for opsbook: a small online shop.
--
-- Loaded into a fresh database by `opsbook sandbox up` and by the test harness. It exercises what
-- the runbooks care about: primary and foreign keys, identity columns and a free-standing
-- sequence, jsonb, a partial index, a view, and product images referenced by key from a media
-- bucket (`products.image_key`). All sample rows are generated deterministically (no random()),
-- so row counts and contents are the same on every load:
--   customers 500, products 200, orders 2000, order_items 5000, webhook_deliveries 300 (24 dead),
--   staff_users 3.

CREATE TABLE customers (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email            text        NOT NULL UNIQUE,
    full_name        text        NOT NULL,
    country          char(2)     NOT NULL,
    marketing_opt_in boolean     NOT NULL DEFAULT false,
    preferences      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku         text        NOT NULL UNIQUE,
    name        text        NOT NULL,
    description text,
    price_cents integer     NOT NULL CHECK (price_cents >= 0),
    currency    char(3)     NOT NULL DEFAULT 'EUR',
    stock       integer     NOT NULL DEFAULT 0 CHECK (stock >= 0),
    -- Key of the product image in the media bucket (S3/R2), e.g. products/SKU-00001.jpg.
    image_key   text,
    attributes  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Human-facing order numbers (SO-100000, SO-100001, ...).
CREATE SEQUENCE order_number_seq START WITH 100000;

CREATE TABLE orders (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_number     text        NOT NULL UNIQUE DEFAULT ('SO-' || nextval('order_number_seq')),
    customer_id      bigint      NOT NULL REFERENCES customers (id),
    status           text        NOT NULL
        CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded')),
    total_cents      integer     NOT NULL DEFAULT 0,
    shipping_address jsonb       NOT NULL,
    placed_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX orders_customer_placed_idx ON orders (customer_id, placed_at DESC);

CREATE TABLE order_items (
    order_id         bigint  NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no          integer NOT NULL,
    product_id       bigint  NOT NULL REFERENCES products (id),
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents integer NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, line_no)
);

CREATE INDEX order_items_product_idx ON order_items (product_id);

-- Outbound webhooks; failed deliveries that ran out of retries are 'dead' (the DLQ).
CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type      text        NOT NULL,
    target_url      text        NOT NULL,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz
);

CREATE INDEX webhook_deliveries_dead_idx ON webhook_deliveries (created_at) WHERE status = 'dead';

-- Back-office accounts; the admin password is rotated on staff changes.
CREATE TABLE staff_users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text        NOT NULL UNIQUE,
    role          text        NOT NULL CHECK (role IN ('admin', 'support', 'warehouse')),
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE VIEW customer_order_summary AS
SELECT c.id                                   AS customer_id,
       c.email,
       count(o.id)                            AS orders,
       coalesce(sum(o.total_cents), 0)        AS lifetime_cents,
       max(o.placed_at)                       AS last_order_at
FROM customers c
LEFT JOIN orders o ON o.customer_id = c.id AND o.status NOT IN ('cancelled', 'refunded')
GROUP BY c.id, c.email;

-- Sample data ---------------------------------------------------------------------------------

INSERT INTO customers (email, full_name, country, marketing_opt_in, preferences, created_at)
SELECT format('customer%s@example.com', lpad(g::text, 4, '0')),
       (ARRAY['Ada', 'Grace', 'Linus', 'Margaret', 'Ken', 'Barbara', 'Dennis', 'Frances'])[1 + g % 8]
           || ' ' ||
       (ARRAY['Lovelace', 'Hopper', 'Torvalds', 'Hamilton', 'Thompson', 'Liskov', 'Ritchie', 'Allen'])[1 + (g / 8) % 8],
       (ARRAY['DE', 'FR', 'NL', 'ES', 'IT', 'PT', 'BE', 'AT', 'IE', 'PL'])[1 + g % 10],
       g % 3 = 0,
       jsonb_build_object('language', (ARRAY['en', 'de', 'fr', 'es'])[1 + g % 4],
                          'newsletter', g % 3 = 0,
                          'tags', jsonb_build_array('cohort-' || (g % 5))),
       timestamptz '2023-01-01 00:00:00+00' + g * interval '17 hours'
FROM generate_series(1, 500) AS g;

INSERT INTO products (sku, name, description, price_cents, stock, image_key, attributes, created_at)
SELECT format('SKU-%s', lpad(g::text, 5, '0')),
       (ARRAY['Mug', 'T-shirt', 'Notebook', 'Sticker pack', 'Hoodie', 'Cap', 'Tote bag', 'Poster'])[1 + g % 8]
           || ' #' || g,
       'Sample product ' || g || ' for the opsbook example shop.',
       499 + (g * 137) % 9500,
       (g * 31) % 250,
       CASE WHEN g % 10 = 0 THEN NULL ELSE format('products/SKU-%s.jpg', lpad(g::text, 5, '0')) END,
       jsonb_build_object('colour', (ARRAY['black', 'white', 'red', 'blue', 'green'])[1 + g % 5],
                          'weight_g', 50 + (g * 13) % 900),
       timestamptz '2023-01-01 00:00:00+00' + g * interval '1 day'
FROM generate_series(1, 200) AS g;

INSERT INTO orders (customer_id, status, shipping_address, placed_at)
SELECT 1 + (g * 7919) % 500,
       (ARRAY['delivered', 'delivered', 'delivered', 'shipped', 'paid', 'pending', 'cancelled', 'refunded'])[1 + g % 8],
       jsonb_build_object('line1', (g % 200) || ' Example Street',
                          'city', (ARRAY['Berlin', 'Paris', 'Amsterdam', 'Madrid', 'Rome'])[1 + g % 5],
                          'postcode', lpad(((g * 97) % 99999)::text, 5, '0')),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '4 hours 23 minutes'
FROM generate_series(1, 2000) AS g;

-- Orders 1-1000 get 2 lines, 1001-2000 get 3 lines: 5000 lines in all.
INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price_cents)
SELECT o.id,
       l,
       p.id,
       1 + (o.id + l) % 4,
       p.price_cents
FROM orders o
CROSS JOIN generate_series(1, 3) AS l
JOIN products p ON p.id = 1 + (o.id * 53 + l * 11) % 200
WHERE l <= CASE WHEN o.id <= 1000 THEN 2 ELSE 3 END;

UPDATE orders o
SET total_cents = t.total
FROM (SELECT order_id, sum(quantity * unit_price_cents) AS total FROM order_items GROUP BY order_id) t
WHERE t.order_id = o.id;

INSERT INTO webhook_deliveries (event_type, target_url, payload, status, attempts, last_error, created_at, last_attempt_at)
SELECT (ARRAY['order.paid', 'order.shipped', 'order.refunded'])[1 + g % 3],
       (ARRAY['https://erp.example.com/hooks/orders', 'https://crm.example.com/webhooks',
              'https://wa-gateway.example.com/v1/messages'])[1 + g % 3],
       jsonb_build_object('order_id', 1 + (g * 13) % 2000, 'event_id', format('evt_%s', lpad(g::text, 6, '0'))),
       CASE WHEN g % 25 = 0 THEN 'failed' WHEN g % 12 = 0 THEN 'dead' ELSE 'delivered' END,
       CASE WHEN g % 25 = 0 THEN 3 WHEN g % 12 = 0 THEN 8 ELSE 1 END,
       CASE WHEN g % 25 = 0 THEN 'HTTP 503 Service Unavailable'
            WHEN g % 12 = 0 THEN 'HTTP 500 Internal Server Error after 8 attempts' END,
       timestamptz '2024-06-01 00:00:00+00' + g * interval '2 hours',
       timestamptz '2024-06-01 00:00:00+00' + g * interval '2 hours' + interval '5 minutes'
FROM generate_series(1, 300) AS g;

INSERT INTO staff_users (email, role, password_hash, created_at)
VALUES ('admin@example.com', 'admin', '$argon2id$v=19$m=19456,t=2,p=1$ZXhhbXBsZXNhbHQ$placeholderplaceholderplaceholder00', timestamptz '2023-01-01 00:00:00+00'),
       ('support@example.com', 'support', '$argon2id$v=19$m=19456,t=2,p=1$ZXhhbXBsZXNhbHQ$placeholderplaceholderplaceholder01', timestamptz '2023-01-02 00:00:00+00'),
       ('warehouse@example.com', 'warehouse', '$argon2id$v=19$m=19456,t=2,p=1$ZXhhbXBsZXNhbHQ$placeholderplaceholderplaceholder02', timestamptz '2023-01-03 00:00:00+00');

ANALYZE;
