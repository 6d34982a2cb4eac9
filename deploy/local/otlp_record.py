"""A trace processor for the rotel OTLP collector: writes every span it
receives as one JSON line to $WHISTLE_SPANS_FILE, so a test (or a developer)
can read back what the services exported.

    rotel-agent start --otlp-grpc-endpoint 127.0.0.1:4317 \
        --otlp-http-endpoint 127.0.0.1:4318 --exporter blackhole \
        --otlp-with-trace-processor deploy/local/otlp_record.py
"""

import json
import os

OUT = os.environ.get("WHISTLE_SPANS_FILE", "spans.jsonl")


def _value(kv):
    v = kv.value.value if kv.value is not None else None
    return v if isinstance(v, (str, int, float, bool)) or v is None else repr(v)


def process_spans(resource_spans):
    resource = {kv.key: _value(kv) for kv in resource_spans.resource.attributes} if resource_spans.resource else {}
    with open(OUT, "a", encoding="utf-8") as f:
        for scope in resource_spans.scope_spans:
            for s in scope.spans:
                f.write(
                    json.dumps(
                        {
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "name": s.name,
                            "service": resource.get("service.name"),
                            "attributes": {kv.key: _value(kv) for kv in s.attributes},
                            "start_unix_nano": s.start_time_unix_nano,
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
