"""A thin glue server around Authlib's own RFC 7591/7592 endpoints.

Authlib (by Hsiaoming Yang, from PyPI) implements the registration endpoint
(`ClientRegistrationEndpoint`), the management endpoint (`ClientConfigurationEndpoint`), the
token endpoint with client credentials, and client authentication by `client_secret_basic`,
`client_secret_post` and `private_key_jwt` (`JWTBearerClientAssertion`, RFC 7523). This file only stores
clients in memory, names the routes, says which initial access token registration takes, and
publishes a discovery document. Used by tests/real_servers.rs; not part of dcr-bootstrap.

    python3 tests/interop/authlib_server.py PORT INITIAL_ACCESS_TOKEN
"""

import secrets
import sys
import time

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc7592 import ClientConfigurationEndpoint
from flask import Flask, jsonify, request
from joserfc.jwk import KeySet

PORT = int(sys.argv[1])
IAT = sys.argv[2]
BASE = f"http://127.0.0.1:{PORT}"
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]

CLIENTS = {}  # client_id -> Client
RATS = {}  # registration access token -> client_id
SEEN_JTIS = set()
STATS = {"registered": 0, "updated": 0, "deleted": 0, "tokens": 0}


class Client(ClientMixin):
    def __init__(self, info, metadata):
        self.client_info = info
        self.client_metadata = metadata

    @property
    def client_id(self):
        return self.client_info["client_id"]

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        uris = self.client_metadata.get("redirect_uris") or []
        return uris[0] if uris else None

    def get_allowed_scope(self, scope):
        allowed = set((self.client_metadata.get("scope") or "").split())
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in (self.client_metadata.get("redirect_uris") or [])

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_info["client_secret"])

    def check_endpoint_auth_method(self, method, endpoint):
        want = self.client_metadata.get("token_endpoint_auth_method", "client_secret_basic")
        return method == want

    def check_response_type(self, response_type):
        return response_type in (self.client_metadata.get("response_types") or ["code"])

    def check_grant_type(self, grant_type):
        return grant_type in (self.client_metadata.get("grant_types") or ["authorization_code"])


class RegistrationToken:
    def __init__(self, client_id):
        self.client_id = client_id

    def check_client(self, client):
        return client.client_id == self.client_id


def server_metadata():
    return {
        "issuer": BASE,
        "registration_endpoint": f"{BASE}/register",
        "token_endpoint": f"{BASE}/token",
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "response_types_supported": ["code"],
    }


def registration_info(client):
    rat = next((t for t, c in RATS.items() if c == client.client_id), None)
    if rat is None:
        rat = secrets.token_urlsafe(32)
        RATS[rat] = client.client_id
    return {
        "registration_client_uri": f"{BASE}/register/{client.client_id}",
        "registration_access_token": rat,
    }


def bearer():
    auth = request.headers.get("Authorization", "")
    return auth[7:] if auth.startswith("Bearer ") else None


class Registration(ClientRegistrationEndpoint):
    def authenticate_token(self, req):
        return bearer() == IAT or None

    def save_client(self, client_info, client_metadata, req):
        client = Client(client_info, client_metadata)
        CLIENTS[client.client_id] = client
        STATS["registered"] += 1
        return client

    def generate_client_registration_info(self, client, req):
        return registration_info(client)

    def get_server_metadata(self):
        return server_metadata()


class Configuration(ClientConfigurationEndpoint):
    def authenticate_token(self, req):
        client_id = RATS.get(bearer() or "")
        return RegistrationToken(client_id) if client_id else None

    def authenticate_client(self, req):
        return CLIENTS.get(req.uri.rstrip("/").rsplit("/", 1)[-1])

    def revoke_access_token(self, req, token):
        for t, c in list(RATS.items()):
            if c == token.client_id:
                del RATS[t]

    def check_permission(self, client, req):
        return True

    def delete_client(self, client, req):
        CLIENTS.pop(client.client_id, None)
        STATS["deleted"] += 1

    def update_client(self, client, client_metadata, req):
        client.client_metadata = client_metadata
        STATS["updated"] += 1
        return client

    def generate_client_registration_info(self, client, req):
        return registration_info(client)

    def get_server_metadata(self):
        return server_metadata()


class AssertionAuth(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def get_audiences(self):
        return [f"{BASE}/token", BASE]

    def resolve_client_public_key(self, client):
        return KeySet.import_key_set(client.client_metadata.get("jwks") or {"keys": []})

    def validate_jti(self, claims, jti):
        if jti in SEEN_JTIS:
            return False
        SEEN_JTIS.add(jti)
        return True


class ClientCredentials(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS


app = Flask(__name__)


def save_token(token, req):
    STATS["tokens"] += 1


server = AuthorizationServer(app, query_client=CLIENTS.get, save_token=save_token)
server.register_grant(ClientCredentials)
server.register_client_auth_method(AssertionAuth.CLIENT_AUTH_METHOD, AssertionAuth())
server.register_endpoint(Registration())
server.register_endpoint(Configuration())


@app.get("/.well-known/openid-configuration")
def discovery():
    return jsonify(server_metadata())


@app.post("/register")
def register():
    return server.create_endpoint_response("client_registration")


@app.route("/register/<client_id>", methods=["GET", "PUT", "DELETE"])
def manage(client_id):
    return server.create_endpoint_response("client_configuration")


@app.post("/token")
def token():
    return server.create_token_response()


@app.get("/_stats")
def stats():
    return jsonify({**STATS, "live": len(CLIENTS)})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=PORT, threaded=False)
