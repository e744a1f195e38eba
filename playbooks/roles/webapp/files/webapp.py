"""Visits: the reference service's web application.

Every request to / records a visit in PostgreSQL and counts it in Redis; /health reports which web host
answered and whether the database and the cache were reachable (HTTP 200 only when both are). Settings come
from the environment (systemd's EnvironmentFile, written by Ansible). Only Debian-packaged libraries are used.
"""

import os
import socket
from contextlib import closing

import psycopg2
import redis
from flask import Flask, jsonify

HOSTNAME = socket.gethostname()
TIMEOUT_SECONDS = 2

app = Flask(__name__)

# One client per worker; redis-py keeps its own connection pool and reconnects after failures.
cache = redis.Redis(
    host=os.environ["WEBAPP_CACHE_HOST"],
    port=int(os.environ.get("WEBAPP_CACHE_PORT", "6379")),
    password=os.environ.get("WEBAPP_CACHE_PASSWORD") or None,
    socket_connect_timeout=TIMEOUT_SECONDS,
    socket_timeout=TIMEOUT_SECONDS,
)


def connect_db():
    """A short-lived connection: the service is small, and a dead primary must not hang a worker."""
    return psycopg2.connect(
        host=os.environ["WEBAPP_DB_HOST"],
        port=int(os.environ.get("WEBAPP_DB_PORT", "5432")),
        dbname=os.environ["WEBAPP_DB_NAME"],
        user=os.environ["WEBAPP_DB_USER"],
        password=os.environ["WEBAPP_DB_PASSWORD"],
        connect_timeout=TIMEOUT_SECONDS,
        application_name=f"webapp@{HOSTNAME}",
    )


def identity():
    return {
        "host": HOSTNAME,
        "inventory_hostname": os.environ.get("WEBAPP_INVENTORY_HOSTNAME", HOSTNAME),
        "env": os.environ.get("WEBAPP_ENV", "unknown"),
    }


def check_db():
    """The database is reachable when the application's own table can be read."""
    try:
        with closing(connect_db()) as conn, conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM visits")
            cur.fetchone()
        return True, None
    except psycopg2.Error as exc:
        return False, type(exc).__name__


def check_cache():
    try:
        return bool(cache.ping()), None
    except redis.RedisError as exc:
        return False, type(exc).__name__


@app.get("/health")
def health():
    db_ok, db_error = check_db()
    cache_ok, cache_error = check_cache()
    body = identity() | {"db": db_ok, "cache": cache_ok, "status": "ok" if db_ok and cache_ok else "degraded"}
    errors = {name: error for name, error in (("db", db_error), ("cache", cache_error)) if error}
    if errors:
        body["errors"] = errors
    return jsonify(body), 200 if db_ok and cache_ok else 503


@app.get("/")
def visit():
    try:
        # closing() ends the connection; `with conn` commits the transaction (or rolls it back on error).
        with closing(connect_db()) as conn, conn, conn.cursor() as cur:
            cur.execute("INSERT INTO visits (web_host) VALUES (%s) RETURNING id", (HOSTNAME,))
            visit_id = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM visits")
            total = cur.fetchone()[0]
    except psycopg2.Error as exc:
        return jsonify(identity() | {"error": f"database: {type(exc).__name__}"}), 503
    try:
        served_here = cache.incr(f"visits:{HOSTNAME}")
    except redis.RedisError as exc:
        return jsonify(identity() | {"error": f"cache: {type(exc).__name__}"}), 503
    return jsonify(identity() | {"visit": visit_id, "visits_total": total, "visits_served_here": served_here})
