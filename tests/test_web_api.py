"""The JSON API: order lookup, clip search, station status, OpenAPI document, auth."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import pytest
from conftest_web import ORDERS, PASSWORDS, WebEnv, login, openapi_errors

from web.api import record_schema


def basic(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def api(web_client):
    return login(web_client, "viewer")


@pytest.mark.parametrize("key", list(ORDERS))
def test_order_lookup(api, web_env: WebEnv, key: str) -> None:
    order_id = ORDERS[key]
    resp = api.get("/api/orders/" + quote(order_id, safe=""))
    assert resp.status_code == 200 and resp.is_json
    doc = resp.get_json()
    assert doc["order_id"] == order_id
    clip = doc["clips"][0]
    stored = web_env.clips[key]
    assert clip["sha256"] == stored.sha256 and clip["size"] == stored.size
    assert clip["id"] == stored.id and clip["video_url"] == f"/clips/{stored.id}/video"
    assert clip["started_at"].endswith("+08:00") and clip["started_utc"].endswith("Z")
    assert clip["finish_reason"] == "sealed" and clip["waybill"] == stored.waybill
    assert [e["kind"] for e in clip["events"]] == ["order", "waybill", "seal"]
    assert doc["waybills"] == [stored.waybill]


def test_order_with_two_clips(api) -> None:
    doc = api.get("/api/orders/PO-1001").get_json()
    assert len(doc["clips"]) == 2
    assert doc["clips"][0]["started_utc"] < doc["clips"][1]["started_utc"]


@pytest.mark.parametrize("path", ["/api/orders/NOPE", "/api/orders/..%2F..", "/api/nope"])
def test_api_404_is_json(api, path: str) -> None:
    resp = api.get(path)
    assert resp.status_code == 404 and resp.is_json and "error" in resp.get_json()


@pytest.mark.parametrize("path", ["/api/orders/PO-1001", "/api/clips", "/api/stations"])
def test_api_needs_auth(web_client, path: str) -> None:
    resp = web_client.get(path)
    assert resp.status_code == 401 and resp.is_json
    assert resp.headers["WWW-Authenticate"].startswith("Basic")


def test_basic_auth_for_scripts(web_client) -> None:
    ok = web_client.get("/api/orders/PO-1001", headers=basic("viewer", PASSWORDS["viewer"]))
    assert ok.status_code == 200
    bad = web_client.get("/api/orders/PO-1001", headers=basic("viewer", "nope"))
    assert bad.status_code == 401 and bad.is_json
    # Basic auth logs in for that request only: no session cookie is issued.
    assert "packcam_session" not in ok.headers.get("Set-Cookie", "")


def test_clip_search(api) -> None:
    doc = api.get("/api/clips?q=SF12345678901&limit=2").get_json()
    assert len(doc["clips"]) == 2 and doc["more"] is True
    assert "events" not in doc["clips"][0]
    doc = api.get("/api/clips", query_string={"q": "订单"}).get_json()
    assert [c["order_id"] for c in doc["clips"]] == ["订单-七号"]
    assert api.get("/api/clips?limit=abc").status_code == 400
    assert api.get("/api/clips?from=yesterday").status_code == 400
    doc = api.get("/api/clips?station=station-02").get_json()
    assert {c["station"] for c in doc["clips"]} == {"station-02"}


def test_station_status(api, web_env: WebEnv) -> None:
    live = web_env.data_dir / "live"
    live.mkdir()
    (live / "desk1.json").write_text(
        '{"station": "desk1", "state": "idle", "updated_utc": "2020-01-01T00:00:00Z"}'
    )
    doc = api.get("/api/stations").get_json()
    (st,) = doc["stations"]
    assert st["station"] == "desk1" and st["silent"] is True
    assert st["shown_state"] == "silent"
    assert doc["disk_free_bytes"] > 0


def test_openapi_document_matches_the_routes(web_client, web_app) -> None:
    doc = web_client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    rules = {r.rule.replace("<path:order_id>", "{order_id}") for r in web_app.url_map.iter_rules()}
    for path in doc["paths"]:
        assert path in rules
    schema = doc["components"]["schemas"]["Clip"]["properties"]
    assert {"sha256", "waybill", "started_at", "duration_s", "finish_reason"} <= set(schema)


def test_answers_are_what_the_openapi_document_says(api) -> None:
    """Every field the API sends is documented, with its type (scripts are written from it)."""
    doc = api.get("/api/openapi.json").get_json()
    paths = doc["paths"]
    order_schema = paths["/api/orders/{order_id}"]["get"]["responses"]["200"]["content"]
    clips_schema = paths["/api/clips"]["get"]["responses"]["200"]["content"]
    for order_id in ORDERS.values():
        got = api.get("/api/orders/" + quote(order_id, safe="")).get_json()
        assert got["clips"] and got["clips"][0]["events"]
        assert openapi_errors(got, order_schema["application/json"]["schema"], doc) == []
    found = api.get("/api/clips?limit=500").get_json()
    assert len(found["clips"]) >= len(ORDERS)
    assert openapi_errors(found, clips_schema["application/json"]["schema"], doc) == []


@dataclass
class _Inner:
    at: datetime
    n: int | None = None


@dataclass
class _Outer:
    name: str
    inner: tuple[_Inner, ...]
    tags: list[str]
    ratio: float | None


@dataclass
class _Odd:
    codes: set[int]


def test_record_schema_follows_the_record_types() -> None:
    assert record_schema(_Outer) == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "inner": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "at": {"type": "string", "format": "date-time"},
                        "n": {"type": ["integer", "null"]},
                    },
                },
            },
            "tags": {"type": "array", "items": {"type": "string"}},
            "ratio": {"type": ["number", "null"]},
        },
    }
    with pytest.raises(TypeError, match="no JSON Schema"):
        record_schema(_Odd)
