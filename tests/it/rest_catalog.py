"""A small Iceberg REST catalog for the tests, backed by pyiceberg's SqlCatalog (SQLite) and
local files: GET config, namespaces, tables, load table, HEAD table, POST commit (pyiceberg
applies the requirements and updates, and answers 409 on a failed requirement). Requires a
bearer token. Prints `port N` and serves until stdin closes.

Usage: rest_catalog.py WAREHOUSE_DIR TOKEN
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.table import CommitTableRequest

warehouse, token = sys.argv[1], sys.argv[2]
catalog = SqlCatalog("rest", uri=f"sqlite:///{warehouse}/rest.db", warehouse=f"file://{warehouse}")
lock = threading.Lock()


def load_result(t):
    return {"metadata-location": t.metadata_location,
            "metadata": json.loads(t.metadata.model_dump_json(by_alias=True, exclude_none=True)),
            "config": {}}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def error(self, code, kind, message):
        self.reply(code, {"error": {"message": message, "type": kind, "code": code}})

    def route(self):
        if self.headers.get("Authorization") != f"Bearer {token}":
            return self.error(401, "NotAuthorizedException", "bad token")
        parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
        if parts[:1] != ["v1"]:
            return self.error(404, "NoSuchEndpoint", self.path)
        parts = parts[1:]
        with lock:
            if parts == ["config"]:
                return self.reply(200, {"defaults": {}, "overrides": {}})
            if parts == ["namespaces"]:
                return self.reply(200, {"namespaces": [list(n) for n in catalog.list_namespaces()]})
            if len(parts) == 2 and parts[0] == "namespaces":
                ns = tuple(parts[1].split("\x1f"))
                return self.reply(200, {"namespace": list(ns), "properties": {}})
            if len(parts) == 3 and parts[2] == "tables":
                ns = tuple(parts[1].split("\x1f"))
                ids = [{"namespace": list(i[:-1]), "name": i[-1]} for i in catalog.list_tables(ns)]
                return self.reply(200, {"identifiers": ids})
            if len(parts) == 4 and parts[2] == "tables":
                ident = tuple(parts[1].split("\x1f")) + (parts[3],)
                try:
                    t = catalog.load_table(ident)
                except NoSuchTableError:
                    return self.error(404, "NoSuchTableException", str(ident))
                if self.command in ("GET", "HEAD"):
                    return self.reply(200 if self.command == "GET" else 204, load_result(t))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                req = CommitTableRequest.model_validate_json(body)
                try:
                    resp = catalog.commit_table(t, tuple(req.requirements), tuple(req.updates))
                except CommitFailedException as e:
                    return self.error(409, "CommitFailedException", str(e))
                return self.reply(200, {
                    "metadata-location": resp.metadata_location,
                    "metadata": json.loads(resp.metadata.model_dump_json(by_alias=True, exclude_none=True)),
                })
        return self.error(404, "NoSuchEndpoint", self.path)

    do_GET = do_POST = do_HEAD = route


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"port {server.server_address[1]}", flush=True)
sys.stdin.read()
server.shutdown()
