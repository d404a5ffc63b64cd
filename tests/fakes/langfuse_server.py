"""A fake Langfuse server: real HTTP on 127.0.0.1 that records what the `langfuse` SDK sends.

* `POST /api/public/otel/v1/traces`: OTLP/HTTP protobuf (gzip or not), decoded into `spans`
  (dicts: trace_id, span_id, parent_span_id, name, start/end ns, attributes).
* `POST /api/public/scores`: the SDK's score batches (JSON list). Scores are kept by id, the way
  Langfuse upserts them; every received body is in `score_posts` to spot duplicates.
* `GET /api/public/projects`: one project (the SDK's auth check).

Basic auth must match the keys given; `fail_scores` makes the score endpoint answer with that HTTP
status; `stop()` / `start()` (same port) simulate an outage.
"""

from __future__ import annotations

import base64
import gzip
import json

from tornado.web import RequestHandler

from .local_http import LocalHTTP


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def decode_otlp(body: bytes) -> list[dict]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    spans = []
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for sp in ss.spans:
                spans.append({
                    "trace_id": sp.trace_id.hex(), "span_id": sp.span_id.hex(),
                    "parent_span_id": sp.parent_span_id.hex() or None, "name": sp.name,
                    "start_ns": sp.start_time_unix_nano, "end_ns": sp.end_time_unix_nano,
                    "attributes": {a.key: _value(a.value) for a in sp.attributes},
                    "scope": ss.scope.name,
                })
    return spans


class _Base(RequestHandler):
    def initialize(self, server: "FakeLangfuse") -> None:
        self.server = server

    def check_xsrf_cookie(self) -> None:
        pass

    def prepare(self) -> None:
        expected = "Basic " + base64.b64encode(f"{self.server.public_key}:{self.server.secret_key}".encode()).decode()
        if self.request.headers.get("Authorization") != expected:
            self.set_status(401)
            self.finish({"message": "Invalid credentials"})


class _Traces(_Base):
    def post(self) -> None:
        body = self.request.body
        if self.request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        spans = decode_otlp(body)
        self.server.spans.extend(spans)
        self.set_header("Content-Type", "application/x-protobuf")
        self.finish(b"")


class _Scores(_Base):
    def post(self) -> None:
        srv = self.server
        batch = json.loads(self.request.body or b"[]")
        srv.score_posts.append({"headers": dict(self.request.headers), "body": batch})
        if srv.fail_scores:
            self.set_status(srv.fail_scores)
            self.finish({"message": "fake langfuse: failing on purpose"})
            return
        for score in batch:
            srv.scores[score["id"]] = score
        self.set_status(202)
        self.finish({"message": "Accepted"})


class _Projects(_Base):
    def get(self) -> None:
        self.finish({"data": [{"id": "fake-project", "name": "fake"}]})


class FakeLangfuse(LocalHTTP):
    def __init__(self, public_key: str = "pk-lf-test", secret_key: str = "sk-lf-test") -> None:
        self.public_key, self.secret_key = public_key, secret_key
        self.spans: list[dict] = []
        self.scores: dict[str, dict] = {}
        self.score_posts: list[dict] = []
        self.fail_scores: int = 0

    @property
    def scores_received(self) -> list[dict]:
        """Every score item received, in order (duplicates included)."""
        return [s for post in self.score_posts for s in post["body"]]

    def start(self) -> "FakeLangfuse":
        """Listen (again on the same port after a stop, so the exporter's URL stays valid)."""
        self.serve([
            (r"/api/public/otel/v1/traces", _Traces, {"server": self}),
            (r"/api/public/scores", _Scores, {"server": self}),
            (r"/api/public/projects", _Projects, {"server": self}),
        ])
        return self

    def traces(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for s in self.spans:
            out.setdefault(s["trace_id"], []).append(s)
        return out
