"""http_proxy + direct_fixed with real clients (curl, pycurl, python-requests) against
nginx and a scriptable origin: forwarding, keep-alive, bodies, CONNECT, https
forwarding, failures, and downloads that survive reloads."""
import hashlib
import io
import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import wait_for
from peers import Dnsmasq, Nginx, ScriptOrigin, make_pki, read_head, sha256_file

CURL = ["curl", "-sS", "--noproxy", "", "-m", "60"]


@pytest.fixture(scope="module")
def env():
    # nginx workers run as nobody: every directory on the way must be traversable
    import pathlib
    import shutil
    import tempfile
    d = pathlib.Path(tempfile.mkdtemp(prefix="proxyd-http-"))
    os.chmod(d, 0o755)
    pki = make_pki(str(d / "pki"))
    ngx = Nginx(str(d / "nginx"), pki)
    ngx.file("small", b"hello\n")
    big = ngx.random_file("big", 100 * 1024 * 1024)
    ngx.random_file("mid", 3 * 1024 * 1024)
    ngx.start()
    dns = Dnsmasq(str(d), ["--address=/origin.test/127.0.0.1", "--host-record=v6.test,::1",
                           "--host-record=nocert.test,127.0.0.1", "--address=/blocked.test/", "--address=/#/"]).start()

    class E:
        pass
    e = E()
    e.pki, e.ngx, e.dns, e.big, e.dir = pki, ngx, dns, big, str(d)
    e.big_sha = sha256_file(big)
    yield e
    dns.stop()
    ngx.stop()
    shutil.rmtree(d, ignore_errors=True)


def config(env, extra_server="", extra_escaper="", listen="127.0.0.1:0", workers=2):
    return f"""
runtime:
  server_offline_delay: 100ms
  task_wait_delay: 50ms
worker:
  thread_number: {workers}
log: stdout
resolver:
  - name: dns
    type: c_ares
    server: 127.0.0.1:{env.dns.port}
    each_timeout: 500
    each_tries: 2
escaper:
  - name: direct
    type: direct_fixed
    resolver: dns
    egress_network_filter:
      default: allow
      allow: [127.0.0.1, "::1"]
    tcp_connect: {{max_retry: 1, each_timeout: 1s}}
{extra_escaper}
server:
  - name: http
    type: http_proxy
    listen: "{listen}"
    escaper: direct
    tls_client:
      ca_certificate: {env.pki}/ca.pem
{extra_server}
"""


@pytest.fixture
def proxy(env, proxyd):
    proxyd.write("main.yaml", config(env))
    proxyd.start()
    proxyd.port = proxyd.listen_port("http")
    proxyd.url = f"http://127.0.0.1:{proxyd.port}"
    return proxyd


def curl(proxy, *args):
    return subprocess.run([*CURL, "-x", proxy.url, *args], capture_output=True, timeout=120)


def raw(port, data, host="127.0.0.1", timeout=10):
    """Send raw bytes, read until the server closes."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(data)
    out = b""
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        if not d:
            break
        out += d
    s.close()
    return out


# ------------------------------------------------------------ a scripted origin

def http_origin(routes):
    """Keep-alive HTTP/1.1 origin: routes[path](method, headers, body) -> bytes to send
    (or a callable(sock) for custom behaviour)."""
    def handler(sock, origin):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                d = sock.recv(65536)
                if not d:
                    return
                buf += d
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            body = b""
            if "content-length" in headers:
                n = int(headers["content-length"])
                if headers.get("expect", "").lower() == "100-continue":
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                while len(buf) < n:
                    d = sock.recv(65536)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:n], buf[n:]
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    while b"\r\n" not in buf:
                        buf += sock.recv(65536)
                    size_line, _, buf = buf.partition(b"\r\n")
                    size = int(size_line.split(b";")[0], 16)
                    while len(buf) < size + 2:
                        d = sock.recv(65536)
                        if not d:
                            return
                        buf += d
                    body += buf[:size]
                    buf = buf[size + 2:]
                    if size == 0:
                        break
            origin.requests.append((method, path, headers, body))
            r = routes.get(path.split("?")[0], routes.get("*"))
            out = r(method, headers, body)
            if callable(out):
                out(sock)
                return
            sock.sendall(out)
            if b"connection: close" in out.lower().split(b"\r\n\r\n")[0]:
                return
    return ScriptOrigin(handler).start()


def ok_body(body, extra=b""):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


# -------------------------------------------------------------------- tests

def test_get_small_and_100mib_by_checksum(env, proxy):
    r = curl(proxy, f"http://127.0.0.1:{env.ngx.port}/small")
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    out = os.path.join(env.dir, "big.out")
    r = curl(proxy, "-o", out, f"http://127.0.0.1:{env.ngx.port}/big")
    assert r.returncode == 0, r.stderr
    assert sha256_file(out) == env.big_sha
    os.unlink(out)


def test_connect_tunnel_100mib_and_tls_origin(env, proxy):
    out = os.path.join(env.dir, "big.connect")
    r = curl(proxy, "-p", "-o", out, f"http://127.0.0.1:{env.ngx.port}/big")
    assert r.returncode == 0, r.stderr
    assert sha256_file(out) == env.big_sha
    os.unlink(out)
    r = curl(proxy, "--cacert", f"{env.pki}/ca.pem", f"https://localhost:{env.ngx.tls_port}/small")
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr


def test_https_absolute_form_forwarding(env, proxy):
    """The proxy itself speaks TLS to the origin and verifies it with its CA."""
    req = (f"GET https://localhost:{env.ngx.tls_port}/small HTTP/1.1\r\n"
           f"Host: localhost:{env.ngx.tls_port}\r\nConnection: close\r\n\r\n").encode()
    out = raw(proxy.port, req)
    assert out.startswith(b"HTTP/1.1 200"), out[:200]
    assert out.endswith(b"hello\n")
    # a name the certificate does not carry fails verification: 525
    req = (f"GET https://nocert.test:{env.ngx.tls_port}/small HTTP/1.1\r\nHost: x\r\n\r\n").encode()
    out = raw(proxy.port, req)
    assert out.startswith(b"HTTP/1.1 525"), out[:200]


def test_keepalive_both_sides_and_upstream_reuse(env, proxyd):
    # one worker: idle upstream connections are pooled per worker
    proxyd.write("main.yaml", config(env, workers=1))
    proxyd.start()
    proxy = proxyd
    proxy.url = f"http://127.0.0.1:{proxyd.listen_port('http')}"
    origin = http_origin({"*": lambda m, h, b: ok_body(b"x" * 10)})
    urls = [f"http://127.0.0.1:{origin.port}/{i}" for i in range(5)]
    r = curl(proxy, "-v", *urls)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"x" * 50
    assert r.stderr.count(b"Re-using existing connection") == 4
    assert origin.connections == 1  # one upstream connection served all five
    # a second client connection reuses the pooled upstream connection too
    r = curl(proxy, urls[0])
    assert r.returncode == 0 and origin.connections == 1
    origin.stop()


def test_pipelined_requests_answered_in_order(env, proxy):
    origin = http_origin({"*": lambda m, h, b: ok_body(h and m.encode() + b" " + b"ok")})
    reqs = b"".join(
        b"GET http://127.0.0.1:%d/%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % (origin.port, i)
        for i in range(3))
    reqs += b"GET http://127.0.0.1:%d/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % origin.port
    out = raw(proxy.port, reqs)
    assert out.count(b"HTTP/1.1 200 OK") == 4, out
    assert [p for _, p, _, _ in origin.requests] == ["/0", "/1", "/2", "/last"]
    origin.stop()


def test_request_bodies_length_chunked_expect(env, proxy):
    def echo(m, h, b):
        return ok_body(hashlib.sha256(b).hexdigest().encode())
    origin = http_origin({"*": echo})
    data = os.urandom(3 * 1024 * 1024 + 7)
    path = os.path.join(env.dir, "upload")
    with open(path, "wb") as f:
        f.write(data)
    want = hashlib.sha256(data).hexdigest().encode()
    url = f"http://127.0.0.1:{origin.port}/up"
    # Content-Length (curl adds Expect: 100-continue for large bodies)
    r = curl(proxy, "--data-binary", f"@{path}", url)
    assert r.returncode == 0 and r.stdout == want, r.stderr
    assert origin.requests[-1][2].get("expect") == "100-continue"
    # chunked
    r = curl(proxy, "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{path}", url)
    assert r.returncode == 0 and r.stdout == want, r.stderr
    assert origin.requests[-1][2].get("transfer-encoding") == "chunked"
    # PUT without Expect
    r = curl(proxy, "-X", "PUT", "-H", "Expect:", "--data-binary", f"@{path}", url)
    assert r.returncode == 0 and r.stdout == want, r.stderr
    assert origin.requests[-1][0] == "PUT"
    origin.stop()


def test_response_framing_chunked_head_204_304_close(env, proxy):
    def chunked(m, h, b):
        return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")

    def until_close(m, h, b):
        def send(sock):
            sock.sendall(b"HTTP/1.1 200 OK\r\n\r\nuntil-close-body")
            sock.close()
        return send
    origin = http_origin({
        "/chunked": chunked,
        "/head": lambda m, h, b: b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
        "/204": lambda m, h, b: b"HTTP/1.1 204 No Content\r\n\r\n",
        "/304": lambda m, h, b: b"HTTP/1.1 304 Not Modified\r\nContent-Length: 55\r\n\r\n",
        "/close": until_close,
    })
    base = f"http://127.0.0.1:{origin.port}"
    r = curl(proxy, base + "/chunked", base + "/204", base + "/304", "-I", base + "/head")
    # curl -I applies to every URL: HEAD everywhere; bodies must not be expected
    assert r.returncode == 0, r.stderr
    r = curl(proxy, base + "/chunked")
    assert r.returncode == 0 and r.stdout == b"hello world", r.stderr
    r = curl(proxy, "-w", "%{http_code}", base + "/204", base + "/304")
    assert r.returncode == 0 and r.stdout == b"204304", r.stdout
    r = curl(proxy, base + "/close")
    assert r.returncode == 0 and r.stdout == b"until-close-body", r.stderr
    origin.stop()


def test_upstream_closing_mid_body_is_not_a_complete_response(env, proxy):
    def cut_length(m, h, b):
        def send(sock):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"a" * 500)
            sock.close()
        return send

    def cut_chunked(m, h, b):
        def send(sock):
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            sock.close()
        return send
    origin = http_origin({"/cl": cut_length, "/ch": cut_chunked})
    r = curl(proxy, f"http://127.0.0.1:{origin.port}/cl")
    assert r.returncode == 18, (r.returncode, r.stderr)  # partial file
    r = curl(proxy, f"http://127.0.0.1:{origin.port}/ch")
    assert r.returncode in (18, 56), (r.returncode, r.stderr)
    origin.stop()


def test_hop_by_hop_headers_and_forwarded_for(env, proxyd):
    proxyd.write("main.yaml", config(env, extra_server="    append_forwarded_for: classic\n"))
    proxyd.start()
    url = f"http://127.0.0.1:{proxyd.listen_port('http')}"
    r = subprocess.run([*CURL, "-x", url, "-U", "alice:secret", "-H", "Connection: X-Custom",
                        "-H", "X-Custom: drop-me", "-H", "TE: trailers",
                        "-H", "Transfer_Encoding: chunked", "-H", "Content_Length: 5",
                        f"http://127.0.0.1:{env.ngx.port}/headers"], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == b"xff=127.0.0.1 fwd= pa= conn= te= custom="


def test_ipv6_client_and_origin(env, proxyd):
    proxyd.write("main.yaml", config(env, listen="[::1]:0"))
    proxyd.start()
    port = proxyd.listen_port("http")
    r = subprocess.run([*CURL, "-x", f"http://[::1]:{port}", f"http://[::1]:{env.ngx.port6}/small"],
                       capture_output=True)
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    r = subprocess.run([*CURL, "-x", f"http://[::1]:{port}", f"http://v6.test:{env.ngx.port6}/small"],
                       capture_output=True)
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr


def test_names_resolved_through_dns(env, proxy):
    r = curl(proxy, f"http://origin.test:{env.ngx.port}/small")
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    r = curl(proxy, "-w", "%{http_code}", "-o", "/dev/null", f"http://blocked.test:{env.ngx.port}/")
    assert r.stdout == b"530"
    r = curl(proxy, "-p", "-w", "%{http_connect}", f"http://blocked.test:{env.ngx.port}/")
    assert r.returncode == 56 and r.stdout == b"530"


def test_failures_refused_timeout_forbidden_loop(env, proxyd):
    proxyd.write("main.yaml", config(env, extra_server="    dst_port_filter: {default: allow, forbid: [25]}\n"))
    proxyd.start()
    url = f"http://127.0.0.1:{proxyd.listen_port('http')}"

    def code(target, *extra):
        r = subprocess.run([*CURL, "-x", url, "-o", "/dev/null", "-w", "%{http_code}", *extra,
                            target], capture_output=True)
        return r.stdout.decode()
    # refused
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed_port = s.getsockname()[1]
    s.close()
    assert code(f"http://127.0.0.1:{closed_port}/") == "521"
    # connect timeout: a listener whose accept queue is full drops new SYNs
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        try:
            f.connect(full.getsockname())
        except BlockingIOError:
            pass
        fillers.append(f)
    time.sleep(0.2)
    t0 = time.monotonic()
    assert code(f"http://127.0.0.1:{full.getsockname()[1]}/") == "522"
    assert time.monotonic() - t0 < 10
    for f in fillers:
        f.close()
    full.close()
    # forbidden destination port and egress filter
    assert code("http://127.0.0.1:25/") == "403"
    assert code(f"http://127.0.0.9:{env.ngx.port}/") == "403"
    # the proxy itself (dead loop)
    assert code(url + "/") in ("403", "404")
    assert code(f"http://127.0.0.1:{proxyd.listen_port('http')}/x") == "403"


def test_garbage_oversized_and_smuggling_attempts(env, proxy):
    assert raw(proxy.port, b"\x16\x03\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    big = b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n" % (
        env.ngx.port, b"a" * 70000)
    assert raw(proxy.port, big).startswith(b"HTTP/1.1 431")
    smug = (b"POST http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n") % env.ngx.port
    assert raw(proxy.port, smug).startswith(b"HTTP/1.1 400")
    lf = b"GET http://127.0.0.1:%d/ HTTP/1.1\nHost: x\n\n" % env.ngx.port
    assert raw(proxy.port, lf).startswith(b"HTTP/1.1 400")
    fold = b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n b\r\n\r\n" % env.ngx.port
    assert raw(proxy.port, fold).startswith(b"HTTP/1.1 400")
    # the daemon still serves
    r = curl(proxy, f"http://127.0.0.1:{env.ngx.port}/small")
    assert r.returncode == 0 and r.stdout == b"hello\n"


def test_easy_proxy_well_known_uri(env, proxy):
    r = subprocess.run([*CURL, f"{proxy.url}/.well-known/easy-proxy/http/127.0.0.1/{env.ngx.port}/small"],
                       capture_output=True)
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    r = subprocess.run([*CURL, "-o", "/dev/null", "-w", "%{http_code}", f"{proxy.url}/nothing"],
                       capture_output=True)
    assert r.stdout == b"404"


def test_max_connections_answers_503(env, proxyd):
    proxyd.write("main.yaml", config(env, extra_server="    max_connections: 1\n"))
    proxyd.start()
    port = proxyd.listen_port("http")
    hold = socket.create_connection(("127.0.0.1", port))
    hold.sendall(b"GET http://127.0.0.1:%d/small HTTP/1.1\r\nHost: x\r\n\r\n" % env.ngx.port)
    assert read_head(hold)[0].startswith(b"HTTP/1.1 200")
    out = raw(port, b"GET http://127.0.0.1:%d/small HTTP/1.1\r\nHost: x\r\n\r\n" % env.ngx.port)
    assert out.startswith(b"HTTP/1.1 503"), out
    hold.close()
    wait_for(lambda: raw(port, b"GET http://127.0.0.1:%d/small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                         % env.ngx.port).startswith(b"HTTP/1.1 200"), 5, what="a free slot")


def test_pycurl_and_requests_clients(env, proxy):
    import pycurl
    import requests
    buf = io.BytesIO()
    c = pycurl.Curl()
    c.setopt(pycurl.URL, f"http://127.0.0.1:{env.ngx.port}/mid")
    c.setopt(pycurl.PROXY, proxy.url)
    c.setopt(pycurl.WRITEDATA, buf)
    c.perform()
    assert c.getinfo(pycurl.RESPONSE_CODE) == 200
    c.close()
    assert hashlib.sha256(buf.getvalue()).hexdigest() == sha256_file(os.path.join(env.ngx.www, "mid"))
    buf = io.BytesIO()
    c = pycurl.Curl()
    c.setopt(pycurl.URL, f"https://localhost:{env.ngx.tls_port}/small")
    c.setopt(pycurl.PROXY, proxy.url)
    c.setopt(pycurl.HTTPPROXYTUNNEL, 1)
    c.setopt(pycurl.CAINFO, f"{env.pki}/ca.pem")
    c.setopt(pycurl.WRITEDATA, buf)
    c.perform()
    c.close()
    assert buf.getvalue() == b"hello\n"
    s = requests.Session()
    s.trust_env = False
    r = s.get(f"http://127.0.0.1:{env.ngx.port}/small", proxies={"http": proxy.url}, timeout=10)
    assert r.status_code == 200 and r.content == b"hello\n"
    r = s.get(f"https://localhost:{env.ngx.tls_port}/small", proxies={"https": proxy.url},
              verify=f"{env.pki}/ca.pem", timeout=10)
    assert r.status_code == 200 and r.content == b"hello\n"
    r = s.post(f"http://127.0.0.1:{env.ngx.port}/echo-method", data=b"x" * 1000,
               proxies={"http": proxy.url}, timeout=10)
    assert r.status_code in (200, 405)


def test_downloads_survive_five_reloads(env, proxy):
    """A long download through CONNECT and one through forwarding, both slowed by a
    speed limit, while the configuration is reloaded five times."""
    proxy.write("main.yaml", config(env, extra_server="    tcp_sock_speed_limit: 40M\n"))
    proxy.ctl("reload")
    outs = [os.path.join(env.dir, "r1"), os.path.join(env.dir, "r2")]
    procs = [
        subprocess.Popen([*CURL, "-x", proxy.url, "-o", outs[0], f"http://127.0.0.1:{env.ngx.port}/big"]),
        subprocess.Popen([*CURL, "-x", proxy.url, "-p", "-o", outs[1], f"http://127.0.0.1:{env.ngx.port}/big"]),
    ]
    for i in range(5):
        time.sleep(0.3)
        proxy.ctl("reload")
    for p in procs:
        assert p.wait(120) == 0
    for o in outs:
        assert sha256_file(o) == env.big_sha
        os.unlink(o)
    assert proxy.stats()["generation"] >= 7


def test_resolver_query_via_proxyctl(env, proxy):
    assert proxy.ctl("resolver", "dns", "query", "origin.test").stdout == "127.0.0.1\n"
    r = proxy.ctl("resolver", "dns", "query", "v6.test", "-s", "ipv6only")
    assert r.stdout == "::1\n"
    # a failed lookup is printed on stdout with exit status 0, as g3proxy-ctl does
    r = proxy.ctl("resolver", "dns", "query", "blocked.test")
    assert r.returncode == 0 and r.stdout.strip() == "NXDOMAIN"
    r = proxy.ctl("resolver", "nope", "query", "origin.test", check=False)
    assert r.returncode == 1 and "no such resolver" in r.stderr
    r = proxy.ctl("resolver", "dns", "query", "origin.test", "-s", "sideways", check=False)
    assert r.returncode == 1


def test_underscore_framing_header_aliases_are_not_forwarded(env, proxy):
    """Some servers read '_' as '-': Transfer_Encoding must never reach them."""
    origin = http_origin({"*": lambda m, h, b: ok_body(b"ok")})
    r = curl(proxy, "-H", "Transfer_Encoding: chunked", "-H", "Content_Length: 5",
             "-H", "X_Custom_Header: kept", f"http://127.0.0.1:{origin.port}/u")
    assert r.returncode == 0 and r.stdout == b"ok", r.stderr
    headers = origin.requests[-1][2]
    assert "transfer_encoding" not in headers and "content_length" not in headers
    assert headers.get("x_custom_header") == "kept"
    origin.stop()


def test_client_closing_while_waiting_aborts_the_request(env, proxy):
    """A client that goes away while its answer is pending ends the task at once
    (ClosedByClient) instead of holding the upstream request until it answers."""
    release = threading.Event()

    def slow(m, h, b):
        def send(sock):
            release.wait(20)
            try:
                sock.sendall(ok_body(b"late"))
            except OSError:
                pass
        return send
    origin = http_origin({"*": slow})
    s = socket.create_connection(("127.0.0.1", proxy.port))
    s.sendall(b"GET http://127.0.0.1:%d/slow HTTP/1.1\r\nHost: x\r\n\r\n" % origin.port)
    wait_for(lambda: proxy.stats()["servers"][0]["task_alive"] == 1, 5, what="task running")
    s.close()
    wait_for(lambda: proxy.stats()["servers"][0]["task_alive"] == 0, 3, what="task aborted")
    release.set()
    origin.stop()
