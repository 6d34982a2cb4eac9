#!/usr/bin/env python3
"""A real SMTP server for development and tests (aiosmtpd): every message it
accepts is written to DIR as <time>-<n>.eml, with the envelope recipients in an
X-Envelope-To header. The notifier's email channel talks to it over SMTP;
with --tls-cert and --tls-key it requires STARTTLS (or, with --implicit-tls,
speaks TLS from the start)."""
import argparse
import asyncio
import itertools
import os
import ssl
import time

from aiosmtpd.controller import Controller


class Maildir:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count()
        os.makedirs(directory, exist_ok=True)

    async def handle_DATA(self, server, session, envelope):
        name = f"{time.time_ns()}-{next(self.counter)}.eml"
        tmp = os.path.join(self.directory, "." + name)
        with open(tmp, "wb") as f:
            f.write(b"X-Envelope-To: " + ", ".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.directory, name))
        return "250 OK"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2525)
    p.add_argument("--dir", required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--implicit-tls", action="store_true")
    a = p.parse_args()
    tls = {}
    if a.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        tls = {"ssl_context": ctx} if a.implicit_tls else {"tls_context": ctx, "require_starttls": True}
    controller = Controller(Maildir(a.dir), hostname=a.host, port=a.port, **tls)
    controller.start()
    print(f"smtp sink on {a.host}:{a.port}, mail in {a.dir}", flush=True)
    try:
        asyncio.get_event_loop().run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
