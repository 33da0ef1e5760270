"""A webhook receiver for the local demo (deploy/local/demo-notify.sh): HTTPS on loopback
with the certificate ``make run`` made (.local/webhooks/), trusted by the local stack
through FERRY_WEBHOOK_CA_BUNDLE. Prints one JSON line per request: the headers, whether
the Standard Webhooks signature verifies with the secret in ``--secret-file`` (read at each
request: the secret exists only once the subscription is made), and the event.

    python -m deploy.local.webhook_receiver --port 8890 --cert C --key K --secret-file S
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from standardwebhooks import Webhook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--secret-file", required=True)
    args = parser.parse_args()
    secret_file = Path(args.secret_file)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("webhook-")}
            try:
                event = Webhook(secret_file.read_text().strip()).verify(body, headers)
                verified = True
            except Exception as exc:
                event, verified = json.loads(body or b"null"), f"no: {exc}"
            print(json.dumps({"headers": headers, "signature_verified": verified, "event": event}), flush=True)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on https://127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
