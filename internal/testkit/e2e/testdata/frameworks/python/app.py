"""The Flask one of the suite's shops, served by waitress: jsonify (its
datetimes are HTTP dates), isoformat, time.time() floats."""
import os
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

from flask import Flask, Response, jsonify, request
from waitress import serve

VARIANT_B = os.environ.get("VARIANT") == "B"
STARTED = time.time()
CREATED = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=timezone.utc)
NAMES = ["kettle", "teapot", "mug", "spoon"]
PRICES = [19.5, 20.0, 7.25, 3.0]
lock = threading.Lock()
counts = {"served": 0, "orders": 0}
app = Flask(__name__)


def item(i, planted):
    tags = {"kitchen": True, "new": True, "t%d" % i: True, "sale": i % 2 == 0}
    return {"id": i, "name": NAMES[i], "price": PRICES[i] + (1 if planted else 0),
            "tags": [t for t, on in tags.items() if on],
            "createdAt": CREATED + timedelta(hours=i)}


def now():
    return datetime.now(timezone.utc)


@app.get("/api/items")
def items():
    resp = jsonify(generatedAt=now().isoformat(), requestId=str(uuid.uuid4()),
                   items=[item(i, False) for i in range(len(NAMES))])
    resp.headers["Cache-Control"] = "no-store" if VARIANT_B else "max-age=60"
    return resp


@app.get("/api/items/<int:i>")
def one(i):
    if i >= len(NAMES):
        return jsonify(error="no such item"), 404
    if VARIANT_B and i == 3:
        return jsonify(error="internal"), 500
    return jsonify(item=item(i, VARIANT_B), viewedAt=now())


@app.get("/api/ranking")
def ranking():
    r = ["mug", "kettle", "spoon", "teapot"]
    return jsonify(ranking=r[::-1] if VARIANT_B else r, at=int(time.time()))


@app.get("/api/slow")
def slow():
    time.sleep(0.06 if VARIANT_B else 0.02)
    return jsonify(ok=True, at=now().isoformat())


@app.get("/api/status")
def status():
    with lock:
        counts["served"] += 1
        n = counts["served"]
    resp = jsonify(status="ok", served=n, uptime=time.time() - STARTED, now=time.time())
    resp.headers["X-Request-Id"] = uuid.uuid4().hex
    return resp


@app.post("/api/orders")
def orders():
    body = request.get_json(silent=True) or {}
    i, qty = body.get("item"), body.get("qty", 1)
    if not isinstance(i, int) or not 0 <= i < len(NAMES):
        return jsonify(error="bad order"), 400
    with lock:
        counts["orders"] += 1
        n = counts["orders"]
    resp = jsonify(id=str(uuid.uuid4()), number=n, createdAt=now().isoformat(), total=qty * PRICES[i])
    resp.status_code = 201
    resp.headers["Location"] = "/api/orders/%d" % n
    return resp


@app.get("/api/report.csv")
def report():
    rows = ["id,name,generated_at"] + ["%d,%s,%s" % (i, n, now().isoformat()) for i, n in enumerate(NAMES)]
    return Response("\n".join(rows) + "\n", mimetype="text/csv")


@app.get("/api/health.txt")
def health():
    return Response("# generated_at=%s\nstatus ok\nitems %d\n" % (now().isoformat(), len(NAMES)), mimetype="text/plain")


if __name__ == "__main__":
    host, port = os.environ["ADDR"].rsplit(":", 1)
    serve(app, host=host, port=int(port), threads=8, _quiet=True)
