"""An order service on PostgreSQL, in two versions, for the writes suite.

VERSION=procedure places an order through the stored procedure
place_order (schema.sql), the old way; VERSION=app does it in
application code, the new way, and gets two things wrong that no answer
shows: the total is truncated to the cent instead of rounded, and the
"created" event is written twice. Both answer alike.

When a request carries X-Shadowtap-Request and MARK=1, the service
leaves it in its transaction (pg_logical_emit_message), so that
shadowtap ties the transaction's rows to the request; without it,
shadowtap attributes them by the request's window.

Every answer is logged to LOG as "status method path -". Reads ADDR
(host:port), DSN (libpq), VERSION, MARK and LOG.
"""
import math
import os
from decimal import Decimal

import psycopg2
import psycopg2.pool
from flask import Flask, g, jsonify, request
from waitress import serve

app = Flask(__name__)
pool = psycopg2.pool.ThreadedConnectionPool(1, 8, os.environ["DSN"])
log = open(os.environ["LOG"], "a", buffering=1)
VERSION = os.environ["VERSION"]
MARK = os.environ.get("MARK") == "1"


class tx:
    """One transaction on a pooled connection, marked with the request's
    shadowtap marker when there is one."""

    def __enter__(self):
        self.conn = pool.getconn()
        self.cur = self.conn.cursor()
        marker = request.headers.get("X-Shadowtap-Request")
        if MARK and marker:
            self.cur.execute("SELECT pg_logical_emit_message(true, 'shadowtap', %s)", (marker,))
        return self.cur

    def __exit__(self, exc, *_):
        if exc is None:
            self.conn.commit()
        else:
            self.conn.rollback()
        self.cur.close()
        pool.putconn(self.conn)


@app.after_request
def record(resp):
    log.write("%d %s %s -\n" % (resp.status_code, request.method, request.path))
    return resp


@app.post("/api/orders")
def place():
    body = request.get_json(silent=True) or {}
    customer, qty = str(body.get("customer", "")), int(body.get("qty", 1))
    with tx() as cur:
        if VERSION == "procedure":
            cur.execute("SELECT place_order(%s, %s)", (customer, qty))
            (oid,) = cur.fetchone()
        else:
            total = Decimal(math.floor(qty * 19.99 * 1.2 * 100)) / 100
            cur.execute("INSERT INTO orders (customer, qty, total, status) VALUES (%s, %s, %s, 'created') RETURNING id",
                        (customer, qty, total))
            (oid,) = cur.fetchone()
            for _ in range(2):
                cur.execute("INSERT INTO order_events (order_id, kind) VALUES (%s, 'created')", (oid,))
    resp = jsonify(id=oid, status="created")
    resp.status_code = 201
    resp.headers["Location"] = "/api/orders/%d" % oid
    return resp


@app.get("/api/orders/<int:oid>")
def show(oid):
    with tx() as cur:
        cur.execute("SELECT customer, qty, status FROM orders WHERE id = %s", (oid,))
        row = cur.fetchone()
    if not row:
        return jsonify(error="no such order"), 404
    return jsonify(id=oid, customer=row[0], qty=row[1], status=row[2])


@app.post("/api/orders/<int:oid>/pay")
def pay(oid):
    with tx() as cur:
        cur.execute("UPDATE orders SET status = 'paid', paid_at = now() WHERE id = %s AND status = 'created' RETURNING id",
                    (oid,))
        if not cur.fetchone():
            return jsonify(error="no such unpaid order"), 404
        cur.execute("INSERT INTO order_events (order_id, kind) VALUES (%s, 'paid')", (oid,))
    return jsonify(id=oid, status="paid")


if __name__ == "__main__":
    host, port = os.environ["ADDR"].rsplit(":", 1)
    serve(app, host=host, port=int(port), threads=8)
