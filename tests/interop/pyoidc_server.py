"""A thin glue server around pyoidc's OpenID Provider (the `oic` package, by Roland Hedberg
and the IdentityPython project, from PyPI).

pyoidc implements OpenID Connect Dynamic Client Registration 1.0: registration
(`Provider.create_registration`, open: no initial access token), reading a client back with its
registration access token at a `registration_client_uri` that carries the client id in a query
string (`read_registration`), no update or delete (`alter_registration` and
`delete_registration` answer 403 "Unsupported operation"), client secrets that expire a day
after they are issued, and a token endpoint whose client authentication (`verify_client`)
answers every failure, and an unknown code after success, with 401 `unauthorized_client`.
This file only routes HTTP to those methods and counts registrations. Used by
tests/real_servers.rs; not part of dcr-bootstrap.

    python3 tests/interop/pyoidc_server.py PORT
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from oic.oic.provider import Provider, RegistrationEndpoint, TokenEndpoint
from oic.utils.authn.authn_context import AuthnBroker
from oic.utils.authn.client import verify_client
from oic.utils.authn.user import NoAuthn
from oic.utils.authz import AuthzHandling
from oic.utils.sdb import create_session_db
from oic.utils.userinfo import UserInfo

PORT = int(sys.argv[1])
BASE = f"http://127.0.0.1:{PORT}"
broker = AuthnBroker()
broker.add("urn:none", NoAuthn(None, "nobody"))
PROVIDER = Provider(
    BASE,
    create_session_db(BASE, "session-secret", "session-password"),
    {},
    broker,
    UserInfo({}),
    AuthzHandling(),
    verify_client,
    "symkey-0123456789abcdef",
    baseurl=BASE + "/",
)
PROVIDER.endp = [RegistrationEndpoint(None), TokenEndpoint(None)]
STATS = {"registered": 0}


def discovery():
    return {
        "issuer": BASE,
        "registration_endpoint": BASE + "/registration",
        "token_endpoint": BASE + "/token",
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def answer(self, resp):
        status = getattr(resp, "status_code", 200)
        self.reply(int(str(status).split()[0]), resp.message or "")

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n).decode()

    def route(self, method):
        url = urlsplit(self.path)
        authn = self.headers.get("Authorization") or ""
        if url.path == "/.well-known/openid-configuration" and method == "GET":
            return self.reply(200, json.dumps(discovery()))
        if url.path == "/_stats":
            return self.reply(200, json.dumps(STATS))
        if url.path == "/registration":
            req = self.body() if method == "POST" else url.query
            resp = PROVIDER.registration_endpoint(request=req, authn=authn, method=method)
            if method == "POST" and str(resp.status_code).startswith("201"):
                STATS["registered"] += 1
            return self.answer(resp)
        if url.path == "/token" and method == "POST":
            return self.answer(PROVIDER.token_endpoint(request=self.body(), authn=authn))
        return self.reply(404, json.dumps({"error": "not_found"}))

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
