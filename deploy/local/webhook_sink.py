#!/usr/bin/env python3
"""A stand-in for the SMS gateway (POST /sms) and the units' webhooks (POST
/messages) when running locally: accepts the notifier's POSTs and logs one
line per message, with phone numbers masked. With --tls-cert and --tls-key it
serves HTTPS. Standard library only."""
import argparse
import json
import ssl
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
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Sink)
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"webhook sink on {'https' if args.tls_cert else 'http'}://127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()
