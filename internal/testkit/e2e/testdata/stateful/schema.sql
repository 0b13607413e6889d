-- The snapshot both databases start from: users and products. What is
-- created after it (sessions, carts, orders) differs between them.
CREATE TABLE users (username text PRIMARY KEY);
CREATE TABLE products (sku text PRIMARY KEY, name text NOT NULL);
CREATE TABLE sessions (sid text PRIMARY KEY, token text UNIQUE NOT NULL, username text NOT NULL REFERENCES users);
CREATE TABLE carts (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), owner text NOT NULL REFERENCES users, items int NOT NULL DEFAULT 0);
CREATE SEQUENCE order_numbers START 1001;
CREATE TABLE orders (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), number bigint UNIQUE NOT NULL, cart uuid NOT NULL,
                     owner text NOT NULL, items int NOT NULL);
INSERT INTO users SELECT 'user' || i FROM generate_series(1, 100) i;
INSERT INTO products VALUES ('SKU-00012345', 'kettle'), ('SKU-00067890', 'teapot');
