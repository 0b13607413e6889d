-- The shop's tables, and the stored procedure the old version places an
-- order with. The new version does the same in application code (app.py).
CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL, qty int NOT NULL, total numeric(10,2) NOT NULL,
                     status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), paid_at timestamptz);
CREATE TABLE order_events (id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders, kind text NOT NULL,
                           at timestamptz NOT NULL DEFAULT now());

-- place_order: the price with 20% VAT, rounded to the cent, and the
-- order's first event.
CREATE FUNCTION place_order(p_customer text, p_qty int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  new_id bigint;
BEGIN
  INSERT INTO orders (customer, qty, total, status)
    VALUES (p_customer, p_qty, round(p_qty * 19.99 * 1.2, 2), 'created') RETURNING id INTO new_id;
  INSERT INTO order_events (order_id, kind) VALUES (new_id, 'created');
  RETURN new_id;
END $$;

-- What shadowtap reads: every table's changes.
CREATE PUBLICATION shadowtap FOR ALL TABLES;
