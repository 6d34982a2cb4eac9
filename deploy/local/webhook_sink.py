#!/usr/bin/env python3
"""A stand-in for the SMS gateway (POST /sms) and the units' webhooks (POST
/messages) when running locally: accepts the notifier's POSTs and logs one
line per message, with phone numbers masked. Standard library only."""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def mask(phone):
    if not phone:
        return "-"
    return phone[:3] + "*" * max(len(phone) - 7, 0) + phone[-4:] if len(phone) > 7 else "*" * len(phone)


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            m = json.loads(body)
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        r = m.get("recipient", {})
        if self.path.startswith("/sms"):
            who = f"SMS {mask(m.get('to'))} ({r.get('id', r.get('kind'))})"
        else:
            who = r.get("unit") or r.get("leader") or r.get("platform") or r.get("kind")
            who = f"{r.get('kind')} {who}"
        print(f"{m.get('ticket_number') or '-'} {m.get('template')} -> {who}: {m.get('text')}", flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8025)
    args = ap.parse_args()
    print(f"webhook sink on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), Sink).serve_forever()
