-- The analytics database of a small online shop selling office supplies.
-- Loaded by llmspans.examples.sql_analyst (SQLite).

CREATE TABLE suppliers (
    supplier_id INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    country     TEXT NOT NULL
);

CREATE TABLE products (
    product_id  INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    category    TEXT NOT NULL,
    unit_price  REAL NOT NULL,
    supplier_id INTEGER NOT NULL REFERENCES suppliers (supplier_id)
);

CREATE TABLE customers (
    customer_id INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    country     TEXT NOT NULL,
    city        TEXT NOT NULL,
    segment     TEXT NOT NULL,          -- 'consumer' or 'business'
    signup_date TEXT NOT NULL           -- YYYY-MM-DD
);

CREATE TABLE orders (
    order_id    INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (customer_id),
    order_date  TEXT NOT NULL,          -- YYYY-MM-DD
    status      TEXT NOT NULL,          -- 'shipped', 'delivered' or 'cancelled'
    channel     TEXT NOT NULL           -- 'web', 'mobile' or 'phone'
);

CREATE TABLE order_items (
    order_id    INTEGER NOT NULL REFERENCES orders (order_id),
    product_id  INTEGER NOT NULL REFERENCES products (product_id),
    quantity    INTEGER NOT NULL,
    unit_price  REAL NOT NULL,          -- price paid, after discounts
    PRIMARY KEY (order_id, product_id)
);

CREATE TABLE returns (
    return_id   INTEGER PRIMARY KEY,
    order_id    INTEGER NOT NULL REFERENCES orders (order_id),
    product_id  INTEGER NOT NULL REFERENCES products (product_id),
    reason      TEXT NOT NULL,          -- 'damaged', 'wrong_item' or 'not_needed'
    return_date TEXT NOT NULL           -- YYYY-MM-DD
);
