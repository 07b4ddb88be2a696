"""The seed design, as in the article: Flask on waitress, a new MySQL connection per request."""

from __future__ import annotations

import os

import pymysql
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/user/<name>")
def get(name: str):  # type: ignore[no-untyped-def]
    connection = pymysql.connect(
        host=os.environ["UMS_MYSQL_HOST"],
        port=int(os.environ["UMS_MYSQL_PORT"]),
        user=os.environ["UMS_MYSQL_USER"],
        password=os.environ["UMS_MYSQL_PASSWORD"],
        database="glarimy",
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM ums_users where name=%s", (name,))
            row = cursor.fetchone()
    finally:
        connection.close()
    if row is None:
        return jsonify({}), 404
    return jsonify({"name": row[0], "phone": row[1], "since": str(row[2])})


@app.get("/livez")
def livez():  # type: ignore[no-untyped-def]
    return jsonify(status="ok")
