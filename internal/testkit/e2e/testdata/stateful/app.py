"""A stateful shop on PostgreSQL, for the correlation suite.

Everything a user creates is made by the database or the framework:
sessions (a random token in a table, sent as the `sid` cookie), bearer
tokens, carts with server-generated UUIDs and orders numbered by a
sequence. Two instances on two databases copied from one snapshot differ
in all of them (the test copy's sequence is 5000 ahead). A request naming
a session, token, cart or order its instance never made gets 401 or 404.

Every answer is logged to LOG as "status method path unknown-credential".
Reads ADDR (host:port), DSN (libpq) and LOG.
"""
import json
import os
import secrets

import psycopg2
import psycopg2.pool
from flask import Flask, g, jsonify, request
from waitress import serve

app = Flask(__name__)
pool = psycopg2.pool.ThreadedConnectionPool(1, 8, os.environ["DSN"])
log = open(os.environ["LOG"], "a", buffering=1)


def db():
    if "db" not in g:
        g.db = pool.getconn()
        g.db.autocommit = True
    return g.db


@app.teardown_appcontext
def release(_exc):
    conn = g.pop("db", None)
    if conn is not None:
        pool.putconn(conn)


def one(sql, *args):
    with db().cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone() if cur.description else None


def session_user():
    """The user of the request's session cookie or bearer token; g.unknown
    notes a credential this instance never issued."""
    g.unknown = False
    sid = request.cookies.get("sid")
    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else None
    for sql, value in (("SELECT username FROM sessions WHERE sid = %s", sid),
                       ("SELECT username FROM sessions WHERE token = %s", token)):
        if value:
            row = one(sql, value)
            if row:
                return row[0]
            g.unknown = True
    return None


@app.after_request
def record(resp):
    log.write("%d %s %s %s\n" % (resp.status_code, request.method, request.path,
                                 "unknown" if getattr(g, "unknown", False) else "-"))
    return resp


@app.post("/api/login")
def login():
    user = (request.get_json(silent=True) or {}).get("user", "")
    if not one("SELECT 1 FROM users WHERE username = %s", user):
        return jsonify(error="no such user"), 401
    sid, token = secrets.token_hex(16), secrets.token_urlsafe(24)
    one("INSERT INTO sessions (sid, token, username) VALUES (%s, %s, %s)", sid, token, user)
    resp = jsonify(user=user, token=token)
    resp.set_cookie("sid", sid, httponly=True, samesite="Lax")
    return resp


@app.post("/api/carts")
def new_cart():
    user = session_user()
    if not user:
        return jsonify(error="login first"), 401
    (cart,) = one("INSERT INTO carts (owner) VALUES (%s) RETURNING id::text", user)
    return jsonify(id=cart, owner=user), 201


@app.post("/api/carts/<cart>/items")
def add_item(cart):
    user = session_user()
    if not user:
        return jsonify(error="login first"), 401
    body = request.get_json(silent=True) or {}
    row = one("UPDATE carts SET items = items + %s WHERE id::text = %s AND owner = %s RETURNING items",
              int(body.get("qty", 1)), cart, user)
    if not row:
        return jsonify(error="no such cart"), 404
    return jsonify(cart=cart, items=row[0])


@app.post("/api/carts/<cart>/checkout")
def checkout(cart):
    user = session_user()
    if not user:
        return jsonify(error="login first"), 401
    row = one("SELECT items FROM carts WHERE id::text = %s AND owner = %s", cart, user)
    if not row:
        return jsonify(error="no such cart"), 404
    number, oid = one("INSERT INTO orders (number, cart, owner, items) VALUES (nextval('order_numbers'), %s, %s, %s) "
                      "RETURNING number, id::text", cart, user, row[0])
    resp = jsonify(order={"number": number, "id": oid, "items": row[0]})
    resp.status_code = 201
    resp.headers["Location"] = "/api/orders/%d" % number
    return resp


@app.get("/api/orders/<int:number>")
def order(number):
    user = session_user()
    if not user:
        return jsonify(error="login first"), 401
    row = one("SELECT id::text, items FROM orders WHERE number = %s AND owner = %s", number, user)
    if not row:
        return jsonify(error="no such order"), 404
    return jsonify(number=number, id=row[0], items=row[1])


@app.get("/api/products")
def products():
    with db().cursor() as cur:
        cur.execute("SELECT sku, name FROM products ORDER BY sku")
        return jsonify(products=[{"sku": s, "name": n} for s, n in cur.fetchall()])


if __name__ == "__main__":
    host, port = os.environ["ADDR"].rsplit(":", 1)
    serve(app, host=host, port=int(port), threads=8)
