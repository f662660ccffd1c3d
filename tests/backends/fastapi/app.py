"""A CRUD backend built with FastAPI's own defaults, for tidesync's conformance suite.

Shaped like FastAPI's tutorial, not like tidesync's reference server: `GET /items` answers a plain
JSON array, errors are `HTTPException`s (`{"detail": ...}`), request validation errors are FastAPI's
422s, `DELETE` answers 204 with no body, and there are no idempotency keys, ETags or tombstones.
Records are free-form JSON objects with an `id` and an integer `version` that the backend keeps: every
write increments it, and a write whose body carries a `version` other than the stored one is refused
with 409 `{"detail": "version conflict"}` (the client then GETs the record to see the server's state).

    python app.py [--host 127.0.0.1] [--port 0]

prints `listening on http://HOST:PORT` once it accepts connections (port 0: a free one).

Test-only routes: `POST /__admin/reset` forgets everything; `GET /__admin/log` lists every write
request with its outcome (method, item id, the Idempotency-Key / X-Operation-ID it carried, the body
version, the version before and after, the status).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Response, status
from pydantic import BaseModel, ConfigDict

app = FastAPI(title="tidesync conformance: items")

items: dict[str, dict[str, Any]] = {}
write_log: list[dict[str, Any]] = []


class ItemCreate(BaseModel):
    """The body of `POST /items`: the client names the item; any other fields are kept as sent."""

    model_config = ConfigDict(extra="allow")

    id: str
    version: int | None = None


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _log(method: str, item_id: str, op: str | None, body_version: Any, before: int | None, after: int | None, code: int) -> None:
    write_log.append(
        {
            "method": method,
            "id": item_id,
            "op": op,
            "bodyVersion": body_version,
            "before": before,
            "after": after,
            "status": code,
            "at": _now(),
        }
    )


def _check_version(item_id: str, body: dict[str, Any], method: str, op: str | None) -> dict[str, Any]:
    stored = items.get(item_id)
    if stored is None:
        _log(method, item_id, op, body.get("version"), None, None, 404)
        raise HTTPException(status_code=404, detail="Item not found")
    if "version" in body and body["version"] != stored["version"]:
        _log(method, item_id, op, body.get("version"), stored["version"], None, 409)
        raise HTTPException(status_code=409, detail="version conflict")
    return stored


@app.get("/items")
def read_items() -> list[dict[str, Any]]:
    return list(items.values())


@app.get("/items/{item_id}")
def read_item(item_id: str) -> dict[str, Any]:
    if item_id not in items:
        raise HTTPException(status_code=404, detail="Item not found")
    return items[item_id]


@app.post("/items", status_code=status.HTTP_201_CREATED)
def create_item(
    item: ItemCreate, idempotency_key: str | None = Header(default=None)
) -> dict[str, Any]:
    data = item.model_dump()
    if item.id in items:
        _log("POST", item.id, idempotency_key, data.get("version"), items[item.id]["version"], None, 409)
        raise HTTPException(status_code=409, detail="Item already exists")
    data["version"] = 1
    items[item.id] = data
    _log("POST", item.id, idempotency_key, item.version, None, 1, 201)
    return data


@app.put("/items/{item_id}")
def replace_item(
    item_id: str, item: dict[str, Any], idempotency_key: str | None = Header(default=None)
) -> dict[str, Any]:
    stored = _check_version(item_id, item, "PUT", idempotency_key)
    data = {**item, "id": item_id, "version": stored["version"] + 1}
    items[item_id] = data
    _log("PUT", item_id, idempotency_key, item.get("version"), stored["version"], data["version"], 200)
    return data


@app.patch("/items/{item_id}")
def update_item(
    item_id: str, item: dict[str, Any], idempotency_key: str | None = Header(default=None)
) -> dict[str, Any]:
    stored = _check_version(item_id, item, "PATCH", idempotency_key)
    data = {**stored, **item, "id": item_id, "version": stored["version"] + 1}
    items[item_id] = data
    _log("PATCH", item_id, idempotency_key, item.get("version"), stored["version"], data["version"], 200)
    return data


@app.delete("/items/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_item(item_id: str, idempotency_key: str | None = Header(default=None)) -> Response:
    stored = items.pop(item_id, None)
    if stored is None:
        _log("DELETE", item_id, idempotency_key, None, None, None, 404)
        raise HTTPException(status_code=404, detail="Item not found")
    _log("DELETE", item_id, idempotency_key, None, stored["version"], None, 204)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@app.post("/__admin/reset")
def admin_reset() -> dict[str, bool]:
    items.clear()
    write_log.clear()
    return {"success": True}


@app.get("/__admin/log")
def admin_log() -> list[dict[str, Any]]:
    return write_log


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    original_startup = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await original_startup(sockets=sockets)
        print(f"listening on http://{args.host}:{port}", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])
    sys.exit(0 if server.started else 1)


if __name__ == "__main__":
    main()
