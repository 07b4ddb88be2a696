"""The API ceiling: the same Flask under the same gunicorn settings, answering a fixed JSON body."""

from __future__ import annotations

from flask import Flask, Response

BODY = b'{"name":"KrishnaMohan","phone":9731423166,"since":"2022-09-01T10:00:00.000Z"}'


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/user/<path:name>")
    def user(name: str) -> Response:
        return Response(BODY, mimetype="application/json")

    @app.get("/livez")
    def livez() -> Response:
        return Response(b'{"status":"ok"}', mimetype="application/json")

    return app
