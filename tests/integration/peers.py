"""Real peers on loopback for integration tests: a test CA, nginx, dnsmasq and a small
scriptable HTTP origin for the edge cases nginx will not produce on demand.

Every peer runs in the foreground as one process and is stopped by pid."""
import hashlib
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
import time

from conftest import free_port, free_port_both, wait_for


def stop_pid(proc, grace=5.0):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_pki(d):
    """CA, server cert for localhost/origin.test/127.0.0.1/::1, client cert."""
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-sha256"]

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", *ec, "-days", "3650", "-subj", "/CN=proxyd test CA", "-keyout",
        "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-x509", *ec, "-days", "825", "-CA", "ca.pem", "-CAkey", "ca.key", "-subj",
        "/CN=localhost", "-keyout", "server.key", "-out", "server.pem", "-addext",
        "extendedKeyUsage=serverAuth", "-addext",
        "subjectAltName=DNS:localhost,DNS:origin.test,IP:127.0.0.1,IP:::1")
    run("req", "-x509", *ec, "-days", "825", "-CA", "ca.pem", "-CAkey", "ca.key", "-subj",
        "/CN=client1", "-keyout", "client.key", "-out", "client.pem", "-addext",
        "extendedKeyUsage=clientAuth")
    return d


class Nginx:
    """nginx serving a directory over HTTP and HTTPS on loopback (v4 and v6)."""

    def __init__(self, d, pki):
        self.d = d
        self.www = os.path.join(d, "www")
        os.makedirs(self.www, exist_ok=True)
        for sub in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(d, 0o755)
        os.chmod(self.www, 0o755)
        self.port = free_port()
        self.tls_port = free_port()
        self.port6 = free_port("::1")
        conf = f"""daemon off; worker_processes 1; pid {d}/nginx.pid;
error_log {d}/error.log warn; events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; default_type application/octet-stream;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi; keepalive_requests 10000;
  server {{ listen 127.0.0.1:{self.port}; listen [::1]:{self.port6}; root {self.www};
    location /echo-method {{ return 200 "$request_method $request_uri $http_host\\n"; }}
    location /headers {{ return 200 "xff=$http_x_forwarded_for fwd=$http_forwarded pa=$http_proxy_authorization conn=$http_connection te=$http_te custom=$http_x_custom\\n"; }} }}
  server {{ listen 127.0.0.1:{self.tls_port} ssl; root {self.www};
    ssl_certificate {pki}/server.pem; ssl_certificate_key {pki}/server.key; }} }}
"""
        self.conf = os.path.join(d, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = None

    def file(self, name, data):
        path = os.path.join(self.www, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)
        return path

    def random_file(self, name, size):
        path = os.path.join(self.www, name)
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, 1 << 20)
                f.write(os.urandom(n))
                left -= n
        os.chmod(path, 0o644)
        return path

    def start(self):
        self.log = open(os.path.join(self.d, "nginx.out"), "wb")
        self.proc = subprocess.Popen(["nginx", "-c", self.conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is None and port_open(self.port)
                 and port_open(self.tls_port), 10, what="nginx")
        return self

    def stop(self):
        stop_pid(self.proc)


class Dnsmasq:
    """dnsmasq with fixed answers (test-peers.md §5)."""

    def __init__(self, d, records):
        self.d = d
        self.port = free_port_both()
        self.args = ["dnsmasq", "-k", "-C", "/dev/null", f"--port={self.port}",
                     "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
                     "--no-hosts", f"--pid-file={d}/dnsmasq.pid", "--log-facility=-",
                     "--log-queries", *records]
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.d, "dnsmasq.log"), "wb")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("dnsmasq exited")
            r = subprocess.run(["dig", "@127.0.0.1", "-p", str(self.port), "+short",
                                "+time=1", "+tries=1", "probe.invalid"], capture_output=True)
            return r.returncode == 0
        wait_for(ready, 10, what="dnsmasq")
        return self

    def stop(self):
        stop_pid(self.proc)


class ScriptOrigin:
    """A raw TCP origin: handler(conn, data_so_far) decides what to send. Runs one
    thread per connection; counts connections."""

    def __init__(self, handler, host="127.0.0.1"):
        self.handler = handler
        self.connections = 0
        self.requests = []
        self.errors = []  # exceptions raised by handlers (assertions included)
        origin = self

        class H(socketserver.BaseRequestHandler):
            def handle(self):
                origin.connections += 1
                try:
                    origin.handler(self.request, origin)
                except OSError:
                    pass  # the proxy closing or resetting is the handler's normal end
                except Exception as e:  # noqa: BLE001 - reported by stop()
                    origin.errors.append(repr(e))

        class S(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.server = S((host, 0), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        """Stop serving; fail the test if a handler raised (it runs in its own thread,
        where an assertion would otherwise only print a traceback)."""
        self.server.shutdown()
        self.server.server_close()
        assert not self.errors, f"origin handler failed: {self.errors}"


def read_head(sock, limit=65536):
    """Read until CRLFCRLF; return (head bytes, rest)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            break
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def have(cmd):
    return shutil.which(cmd) is not None


class UdpEcho:
    """A UDP echo peer: answers every datagram with prefix + the datagram, to its
    sender. Counts what it received (list of (data, addr))."""

    def __init__(self, host="127.0.0.1", prefix=b"echo:"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.prefix = prefix
        self.received = []
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                return
            if self.closed or addr is None:
                return
            self.received.append((data, addr))
            try:
                self.sock.sendto(self.prefix + data, addr)
            except OSError:
                pass

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
