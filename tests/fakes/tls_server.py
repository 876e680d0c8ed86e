# A local HTTPS server standing in for the Istio ingress gateway in
# tests/doctor.rs: serves CERT/KEY on 127.0.0.1 (a free port, printed on
# the first line of stdout) and answers each request by the longest route
# prefix given as PREFIX=STATUS[:BODY]; anything else gets 404, as Envoy
# answers a path no route matches.
# With TLS_SERVER_NAME set, a handshake with another SNI is refused.
# Usage: tls_server.py CERT KEY ROUTE...
import http.server
import os
import ssl
import sys

cert, key, routes = sys.argv[1], sys.argv[2], sys.argv[3:]
table = []
for route in routes:
    prefix, answer = route.split("=", 1)
    status, _, body = answer.partition(":")
    table.append((prefix, int(status), body or "ok"))
table.sort(key=lambda entry: len(entry[0]), reverse=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        for prefix, status, body in table:
            if self.path.startswith(prefix):
                break
        else:
            status, body = 404, ""
        data = body.encode()
        self.send_response(status)
        self.send_header("content-length", str(len(data)))
        self.send_header("x-host-seen", self.headers.get("host", ""))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
# Like the gateway, refuse a handshake whose SNI is not the domain.
expected = os.environ.get("TLS_SERVER_NAME")


def check_name(connection, name, context):
    if expected and name != expected:
        return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
    return None


context.sni_callback = check_name
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
