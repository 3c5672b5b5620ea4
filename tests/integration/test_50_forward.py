"""Port servers and forwarding: intelli_proxy (HTTP and SOCKS on one port),
plain_tcp_port (PROXY protocol in), tcp_stream (TCP port mapping with pick policies and
TLS to the upstream), direct_fixed's PROXY protocol out, and udp_stream (UDP port
forwarding with sessions that expire and survive reloads)."""
import os
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import free_port, wait_for
from peers import Nginx, ScriptOrigin, make_pki, sha256_file

CURL = ["curl", "-sS", "--noproxy", "", "-m", "60"]


@pytest.fixture(scope="module")
def env():
    import pathlib
    import shutil
    import tempfile
    d = pathlib.Path(tempfile.mkdtemp(prefix="proxyd-fwd-"))
    os.chmod(d, 0o755)
    pki = make_pki(str(d / "pki"))
    ngx = Nginx(str(d / "nginx"), pki)
    ngx.file("small", b"hello\n")
    big = ngx.random_file("big", 100 * 1024 * 1024)
    ngx.start()

    class E:
        pass
    e = E()
    e.pki, e.ngx, e.dir, e.big = pki, ngx, str(d), big
    e.big_sha = sha256_file(big)
    yield e
    ngx.stop()
    shutil.rmtree(d, ignore_errors=True)


def config(servers, workers=2, escaper_extra=""):
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
    server: 127.0.0.1
escaper:
  - name: direct
    type: direct_fixed
    resolver: dns
    egress_network_filter:
      default: allow
      allow: [127.0.0.1, "::1"]
    tcp_connect: {{max_retry: 0, each_timeout: 2s}}
{escaper_extra}
server:
{servers}
"""


def start(proxyd, servers, **kw):
    proxyd.write("main.yaml", config(servers, **kw))
    proxyd.start()
    return proxyd


def curl(*args):
    return subprocess.run([*CURL, *args], capture_output=True, timeout=120)


def read_all(s, timeout=5):
    s.settimeout(timeout)
    out = b""
    while True:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        out += d
    return out


def server_stat(proxyd, name, key):
    for s in proxyd.stats()["servers"]:
        if s["name"] == name:
            return s[key]
    raise KeyError(name)


# ----------------------------------------------------------------- peers

def echo_origin():
    """TCP echo; counts connections."""
    def handler(sock, origin):
        while True:
            d = sock.recv(65536)
            if not d:
                return
            sock.sendall(d)
    return ScriptOrigin(handler).start()


def pp_echo_origin():
    """Reads a PROXY protocol header (v1 or v2), records it, then echoes."""
    def handler(sock, origin):
        buf = b""
        while len(buf) < 16:
            d = sock.recv(4096)
            if not d:
                return
            buf += d
        if buf.startswith(b"PROXY "):
            while b"\r\n" not in buf:
                buf += sock.recv(4096)
            line, _, rest = buf.partition(b"\r\n")
            f = line.decode().split(" ")
            origin.requests.append(("v1", f[1], (f[2], int(f[4])), (f[3], int(f[5]))))
        elif buf.startswith(b"\r\n\r\n\x00\r\nQUIT\n"):
            ver_cmd, fam, ln = buf[12], buf[13], struct.unpack("!H", buf[14:16])[0]
            while len(buf) < 16 + ln:
                buf += sock.recv(4096)
            body, rest = buf[16:16 + ln], buf[16 + ln:]
            assert ver_cmd == 0x21 and fam == 0x11, (ver_cmd, fam)
            src, dst = socket.inet_ntoa(body[0:4]), socket.inet_ntoa(body[4:8])
            sp, dp = struct.unpack("!HH", body[8:12])
            origin.requests.append(("v2", "TCP4", (src, sp), (dst, dp)))
        else:
            origin.requests.append(("none",))
            rest = buf
        if rest:
            sock.sendall(rest)
        while True:
            d = sock.recv(65536)
            if not d:
                return
            sock.sendall(d)
    return ScriptOrigin(handler).start()


class UdpEcho:
    """Answers every datagram with data + b'|' + the sender's port."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.peers = set()
        self.stopped = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stopped:
            try:
                d, a = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.peers.add(a)
            self.sock.sendto(d + b"|" + str(a[1]).encode(), a)

    def stop(self):
        self.stopped = True
        self.thread.join()
        self.sock.close()


def udp_client():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.settimeout(3)
    return u


def udp_ask(u, port, data):
    """Send one datagram, return (echoed data, the upstream-side port the echo saw)."""
    u.sendto(data, ("127.0.0.1", port))
    d, a = u.recvfrom(65535)
    assert a == ("127.0.0.1", port), a
    body, _, p = d.rpartition(b"|")
    return body, int(p)


# --------------------------------------------------------------- intelli_proxy

def intelli_servers(extra=""):
    return f"""
  - name: http
    type: http_proxy
    escaper: direct
    append_forwarded_for: classic
  - name: socks
    type: socks_proxy
    escaper: direct
  - name: one
    type: intelli_proxy
    listen: 127.0.0.1:0
    http_server: http
    socks_server: socks
{extra}
"""


def test_intelli_http_and_socks_on_one_port(env, proxyd):
    start(proxyd, intelli_servers())
    port = proxyd.listen_port("one")
    url = f"http://127.0.0.1:{env.ngx.port}/small"
    r = curl("-x", f"http://127.0.0.1:{port}", url)
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    r = curl("-p", "-x", f"http://127.0.0.1:{port}", url)
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    r = curl("--socks5", f"127.0.0.1:{port}", url)
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    r = curl("--socks5-hostname", f"127.0.0.1:{port}", url)
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    r = curl("--socks4", f"127.0.0.1:{port}", url)
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    # the connection went through intelli_proxy once, then to the right server
    assert server_stat(proxyd, "one", "conn_total") == 5
    assert server_stat(proxyd, "http", "conn_total") == 2
    assert server_stat(proxyd, "socks", "conn_total") == 3
    assert server_stat(proxyd, "one", "conn_alive") == 0


def test_intelli_unknown_first_byte_closed(env, proxyd):
    start(proxyd, intelli_servers())
    port = proxyd.listen_port("one")
    for first in (b"\x16\x03\x01\x00\x05hello", b"xyz\r\n", b"\x00"):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(first)
        assert read_all(s) == b"", first
        s.close()
    assert server_stat(proxyd, "http", "conn_total") == 0
    assert server_stat(proxyd, "socks", "conn_total") == 0


def test_intelli_detection_timeout_closes_silently(env, proxyd):
    start(proxyd, intelli_servers("    protocol_detection_timeout: 300ms\n"
                                  "    protocol_detection_max_jobs: 16\n"
                                  "    protocol_detection_channel_size: 64\n"))
    port = proxyd.listen_port("one")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.monotonic()
    assert read_all(s) == b""
    took = time.monotonic() - t0
    assert 0.25 <= took < 3, took
    s.close()
    wait_for(lambda: server_stat(proxyd, "one", "conn_alive") == 0, 5, what="conn_alive 0")


def test_intelli_proxy_protocol_v2(env, proxyd):
    start(proxyd, intelli_servers("    proxy_protocol: 2\n"))
    port = proxyd.listen_port("one")
    hdr = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12) +
           socket.inet_aton("198.51.100.9") + socket.inet_aton("127.0.0.1") +
           struct.pack("!HH", 4242, port))
    req = (f"GET http://127.0.0.1:{env.ngx.port}/headers HTTP/1.1\r\n"
           f"Host: 127.0.0.1:{env.ngx.port}\r\nConnection: close\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(hdr + req)  # header and request in one segment: nothing may be lost
    out = read_all(s)
    assert b" 200 " in out.split(b"\r\n")[0], out
    assert b"xff=198.51.100.9 " in out, out
    # without a header: dropped
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(req)
    assert read_all(s) == b""


# -------------------------------------------------------------- plain_tcp_port

def test_plain_tcp_port_proxy_protocol_in(env, proxyd):
    start(proxyd, """
  - name: http
    type: http_proxy
    escaper: direct
    append_forwarded_for: classic
    ingress_network_filter: {default: forbid, allow: [127.0.0.1, 198.51.100.0/24]}
  - name: pp
    type: plain_tcp_port
    listen: 127.0.0.1:0
    server: http
    proxy_protocol: 1
    proxy_protocol_read_timeout: 1s
    ingress_network_filter: {default: forbid, allow: 127.0.0.1}
""")
    port = proxyd.listen_port("pp")
    url = f"http://127.0.0.1:{env.ngx.port}/headers"
    # curl sends its own address in the header
    r = curl("--haproxy-protocol", "-x", f"http://127.0.0.1:{port}", url)
    assert r.returncode == 0 and r.stdout.startswith(b"xff=127.0.0.1 "), (r.stdout, r.stderr)

    def via_header(src, split=False):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        hdr = f"PROXY TCP4 {src} 127.0.0.1 40000 {port}\r\n".encode()
        req = (f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{env.ngx.port}\r\n"
               f"Connection: close\r\n\r\n").encode()
        if split:  # the header in pieces, the request right behind it
            s.sendall(hdr[:7])
            time.sleep(0.05)
            s.sendall(hdr[7:20])
            time.sleep(0.05)
            s.sendall(hdr[20:] + req)
        else:
            s.sendall(hdr + req)
        return read_all(s)

    # http_proxy sees the header's address (and checks its own ingress filter on it)
    out = via_header("198.51.100.7")
    assert b"xff=198.51.100.7 " in out, out
    out = via_header("198.51.100.8", split=True)
    assert b"xff=198.51.100.8 " in out, out
    assert via_header("203.0.113.5") == b""
    assert server_stat(proxyd, "http", "forbidden_ingress") == 1

    # no header, a wrong version, a malformed header: dropped
    for data in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + b"\x00" * 12,
                 b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(data)
        assert read_all(s) == b"", data
    # nothing at all: dropped after proxy_protocol_read_timeout
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.monotonic()
    assert read_all(s) == b""
    assert 0.8 < time.monotonic() - t0 < 4
    wait_for(lambda: server_stat(proxyd, "pp", "conn_alive") == 0, 5, what="pp conn_alive 0")
    assert server_stat(proxyd, "http", "conn_alive") == 0


def test_plain_tcp_port_without_proxy_protocol_and_loops(env, proxyd):
    start(proxyd, """
  - name: ts
    type: tcp_stream
    escaper: direct
    upstream: 127.0.0.1:%d
  - name: plain
    type: plain_tcp_port
    listen: 127.0.0.1:0
    server: ts
  - name: loop_a
    type: plain_tcp_port
    listen: 127.0.0.1:0
    server: loop_b
  - name: loop_b
    type: plain_tcp_port
    listen: 127.0.0.1:0
    server: loop_a
""" % env.ngx.port)
    r = curl(f"http://127.0.0.1:{proxyd.listen_port('plain')}/small")
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    # servers handing connections to each other: dropped after a few hops, logged
    s = socket.create_connection(("127.0.0.1", proxyd.listen_port("loop_a")), timeout=5)
    assert read_all(s) == b""
    wait_for(lambda: "hand-overs" in proxyd.log(), 5, what="loop warning")


def test_port_servers_config_errors(proxyd):
    proxyd.write("nolisten.yaml", config("""
  - name: http
    type: http_proxy
    escaper: direct
  - name: p
    type: plain_tcp_port
    server: http
"""))
    r = proxyd.check_config("nolisten.yaml")
    assert r.returncode == 78 and "listen" in r.stderr and "missing" in r.stderr, r.stderr
    proxyd.write("notarget.yaml", config("""
  - name: p
    type: intelli_proxy
    listen: 127.0.0.1:0
    http_server: nope
    socks_server: nope
"""))
    r = proxyd.check_config("notarget.yaml")
    assert r.returncode == 78 and "'nope' is not defined" in r.stderr, r.stderr
    proxyd.write("udptarget.yaml", config("""
  - name: u
    type: udp_stream
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:9
  - name: p
    type: plain_tcp_port
    listen: 127.0.0.1:0
    server: u
"""))
    r = proxyd.check_config("udptarget.yaml")
    assert r.returncode == 78 and "takes no TCP connections" in r.stderr, r.stderr
    proxyd.write("pp3.yaml", config("""
  - name: http
    type: http_proxy
    escaper: direct
  - name: p
    type: plain_tcp_port
    listen: 127.0.0.1:0
    server: http
    proxy_protocol: 3
"""))
    r = proxyd.check_config("pp3.yaml")
    assert r.returncode == 78 and "proxy_protocol" in r.stderr, r.stderr
    proxyd.write("auth.yaml", config("""
  - name: t
    type: tcp_stream
    escaper: direct
    upstream: 127.0.0.1:80
    auth_by_client_ip: true
"""))
    r = proxyd.check_config("auth.yaml")
    assert r.returncode == 78 and "unsupported" in r.stderr, r.stderr
    proxyd.write("noport.yaml", config("""
  - name: t
    type: tcp_stream
    escaper: direct
    upstream: [127.0.0.1:80, {addr: 127.0.0.2, weight: 2}]
"""))
    r = proxyd.check_config("noport.yaml")
    assert r.returncode == 78 and "needs a port" in r.stderr, r.stderr
    proxyd.write("udpname.yaml", config("""
  - name: u
    type: udp_stream
    listen: 127.0.0.1:5353
    upstream: localhost:53
"""))
    r = proxyd.check_config("udpname.yaml")
    assert r.returncode == 78 and "needs an IP address" in r.stderr, r.stderr
    proxyd.write("udpdup.yaml", config("""
  - name: u1
    type: udp_stream
    listen: 127.0.0.1:5353
    upstream: 127.0.0.1:53
  - name: u2
    type: udp_stream
    listen: 127.0.0.1:5353
    upstream: 127.0.0.1:53
"""))
    r = proxyd.check_config("udpdup.yaml")
    assert r.returncode == 78 and "already used by server 'u1'" in r.stderr, r.stderr
    proxyd.write("udpself.yaml", config("""
  - name: u1
    type: udp_stream
    listen: 5353
    upstream: 127.0.0.1:5353
"""))
    r = proxyd.check_config("udpself.yaml")
    assert r.returncode == 78 and "own address" in r.stderr, r.stderr


# ------------------------------------------------------------------ tcp_stream

def echo_roundtrip(port, data=b"ping"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        d = s.recv(65536)
        if not d:
            break
        got += d
    s.close()
    return got


def test_tcp_stream_single_upstream_echo(env, proxyd):
    echo = echo_origin()
    try:
        start(proxyd, f"""
  - name: ts
    type: tcp_stream
    listen: 127.0.0.1:0
    escaper: direct
    proxy_pass: 127.0.0.1:{echo.port}
""")
        port = proxyd.listen_port("ts")
        assert echo_roundtrip(port) == b"ping"
        payload = os.urandom(3 * 1024 * 1024)
        assert echo_roundtrip(port, payload) == payload
        # half-close: the client's FIN reaches the upstream, the answer still comes back
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"last words")
        s.shutdown(socket.SHUT_WR)
        assert read_all(s) == b"last words"
        wait_for(lambda: server_stat(proxyd, "ts", "task_alive") == 0, 5, what="tasks end")
        assert server_stat(proxyd, "ts", "task_total") == 3
    finally:
        echo.stop()


def test_tcp_stream_weighted_random_uses_both(env, proxyd):
    a, b = echo_origin(), echo_origin()
    try:
        start(proxyd, f"""
  - name: ts
    type: tcp_stream
    listen: 127.0.0.1:0
    escaper: direct
    upstream:
      - 127.0.0.1:{a.port}
      - {{addr: "127.0.0.1:{b.port}", weight: 2}}
""")
        port = proxyd.listen_port("ts")
        for i in range(60):
            assert echo_roundtrip(port, b"x%d" % i) == b"x%d" % i
        assert a.connections + b.connections == 60
        assert a.connections >= 5 and b.connections >= 20, (a.connections, b.connections)
    finally:
        a.stop()
        b.stop()


def test_tcp_stream_round_robin_alternates(env, proxyd):
    a, b = echo_origin(), echo_origin()
    try:
        start(proxyd, f"""
  - name: ts
    type: tcp_stream
    listen: 127.0.0.1:0
    escaper: direct
    upstream_pick_policy: rr
    upstream: ["127.0.0.1:{a.port}", "127.0.0.1:{b.port}"]
""", workers=1)  # the counter is per worker: one worker makes the order exact
        port = proxyd.listen_port("ts")
        seen = []
        for i in range(6):
            before = (a.connections, b.connections)
            assert echo_roundtrip(port) == b"ping"
            wait_for(lambda: (a.connections, b.connections) != before, 5, what="upstream conn")
            seen.append("a" if a.connections != before[0] else "b")
        assert seen in (list("ababab"), list("bababa")), seen
    finally:
        a.stop()
        b.stop()


def test_tcp_stream_hash_policy_is_sticky(env, proxyd):
    a, b = echo_origin(), echo_origin()
    try:
        start(proxyd, f"""
  - name: ts
    type: tcp_stream
    listen: 127.0.0.1:0
    escaper: direct
    upstream_pick_policy: ketama
    upstream: ["127.0.0.1:{a.port}", "127.0.0.1:{b.port}"]
""")
        port = proxyd.listen_port("ts")
        for _ in range(10):
            assert echo_roundtrip(port) == b"ping"
        # same client and server address: always the same upstream
        assert sorted((a.connections, b.connections)) == [0, 10]
    finally:
        a.stop()
        b.stop()


def test_tcp_stream_100mib_by_checksum(env, proxyd):
    start(proxyd, f"""
  - name: ts
    type: tcp_stream
    listen: 127.0.0.1:0
    escaper: direct
    upstream: 127.0.0.1:{env.ngx.port}
""")
    out = os.path.join(env.dir, "big.ts")
    r = curl("-o", out, f"http://127.0.0.1:{proxyd.listen_port('ts')}/big")
    assert r.returncode == 0, r.stderr
    assert sha256_file(out) == env.big_sha
    os.unlink(out)


def test_tcp_stream_tls_to_upstream(env, proxyd):
    start(proxyd, f"""
  - name: tls
    type: tcp_stream
    listen: 127.0.0.1:0
    escaper: direct
    upstream: 127.0.0.1:{env.ngx.tls_port}
    tls_client:
      ca_certificate: {env.pki}/ca.pem
    upstream_tls_name: localhost
  - name: badname
    type: tcp_stream
    listen: 127.0.0.1:0
    escaper: direct
    upstream: 127.0.0.1:{env.ngx.tls_port}
    tls_client:
      ca_certificate: {env.pki}/ca.pem
    upstream_tls_name: wrong.example
""")
    r = curl(f"http://127.0.0.1:{proxyd.listen_port('tls')}/small")
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    r = curl(f"http://127.0.0.1:{proxyd.listen_port('badname')}/small")
    assert r.returncode != 0


def task_records(path, server_type):
    import json
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [r for r in map(json.loads, f) if r.get("server_type") == server_type]


def test_tcp_stream_task_log_and_dead_loop(env, proxyd):
    echo = echo_origin()
    try:
        logf = os.path.join(proxyd.dir, "task.log")
        own = free_port()
        proxyd.write("main.yaml", config(f"""
  - name: ts
    type: tcp_stream
    listen: 127.0.0.1:0
    escaper: direct
    upstream: 127.0.0.1:{echo.port}
  - name: self
    type: tcp_stream
    listen: 127.0.0.1:{own}
    escaper: direct
    upstream: 127.0.0.1:{own}
""").replace("log: stdout", f"log:\n  task:\n    file: {{path: {logf}, format: json}}"))
        proxyd.start()
        port = proxyd.listen_port("ts")
        assert echo_roundtrip(port, b"abcdef") == b"abcdef"
        recs = wait_for(lambda: task_records(logf, "TcpStream"), 5, what="task log")
        r = recs[0]
        want = {"task_type": "TcpConnect", "server_name": "ts", "escaper": "direct",
                "server_addr": f"127.0.0.1:{port}", "upstream": f"127.0.0.1:{echo.port}",
                "next_peer_addr": f"127.0.0.1:{echo.port}", "c_rd_bytes": 6, "c_wr_bytes": 6,
                "r_rd_bytes": 6, "r_wr_bytes": 6, "tcp_connect_tries": 1}
        for k, v in want.items():
            assert r.get(k) == v, (k, r)
        assert r["reason"] in ("ClosedByClient", "ClosedByUpstream"), r
        # a stream mapped onto its own listener: refused, not a connection storm
        s = socket.create_connection(("127.0.0.1", own), timeout=5)
        assert read_all(s) == b""
        recs = wait_for(lambda: [x for x in task_records(logf, "TcpStream")
                                 if x["server_name"] == "self"], 5, what="loop record")
        assert recs[0]["reason"] == "ForbiddenByRule", recs
        assert server_stat(proxyd, "self", "task_total") == 1
    finally:
        echo.stop()


# ------------------------------------------------------- PROXY protocol out

@pytest.mark.parametrize("version", [1, 2])
def test_direct_fixed_proxy_protocol_out(env, proxyd, version):
    peer = pp_echo_origin()
    try:
        start(proxyd, f"""
  - name: ts
    type: tcp_stream
    listen: 127.0.0.1:0
    escaper: ppout
    upstream: 127.0.0.1:{peer.port}
""", escaper_extra=f"""
  - name: ppout
    type: direct_fixed
    resolver: dns
    egress_network_filter: {{default: allow, allow: 127.0.0.1}}
    use_proxy_protocol: {version}
""")
        port = proxyd.listen_port("ts")
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"data after the header")
        got = b""
        while len(got) < 21:
            got += s.recv(100)
        me = s.getsockname()
        s.close()
        assert got == b"data after the header"
        wait_for(lambda: peer.requests, 5, what="header parsed")
        kind, proto, src, dst = peer.requests[0]
        assert kind == f"v{version}" and proto == "TCP4"
        assert src == me and dst == ("127.0.0.1", port), (src, dst, me)
    finally:
        peer.stop()


# ------------------------------------------------------------------ udp_stream

def udp_servers(echo_port, listen_port, extra=""):
    return f"""
  - name: us
    type: udp_stream
    listen: 127.0.0.1:{listen_port}
    upstream: 127.0.0.1:{echo_port}
{extra}
"""


def test_udp_stream_two_clients_and_idle_expiry(env, proxyd):
    echo = UdpEcho()
    try:
        lport = free_port(kind=socket.SOCK_DGRAM)
        start(proxyd, udp_servers(echo.port, lport, "    session_idle_timeout: 600ms\n"))
        c1, c2 = udp_client(), udp_client()
        results = {}

        def talk(name, u):
            ports = set()
            for i in range(50):
                body, p = udp_ask(u, lport, b"%s-%d" % (name.encode(), i))
                assert body == b"%s-%d" % (name.encode(), i)
                ports.add(p)
            results[name] = ports

        ts = [threading.Thread(target=talk, args=(n, u)) for n, u in (("one", c1), ("two", c2))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        # one upstream socket per client, kept for the whole exchange
        assert len(results["one"]) == 1 and len(results["two"]) == 1, results
        assert results["one"] != results["two"]
        assert server_stat(proxyd, "us", "task_alive") == 2
        # idle: both sessions expire, a new datagram opens a new session
        wait_for(lambda: server_stat(proxyd, "us", "task_alive") == 0, 5, what="sessions expire")
        body, p = udp_ask(c1, lport, b"again")
        assert body == b"again" and p not in results["one"] | results["two"]
        assert server_stat(proxyd, "us", "task_total") == 3
        c1.close()
        c2.close()
    finally:
        echo.stop()


def test_udp_stream_sessions_survive_reload(env, proxyd):
    echo = UdpEcho()
    try:
        lport = free_port(kind=socket.SOCK_DGRAM)
        start(proxyd, udp_servers(echo.port, lport))
        c = udp_client()
        _, p1 = udp_ask(c, lport, b"before")
        # same address, another setting: the sockets and the session are kept
        proxyd.write("main.yaml", config(udp_servers(echo.port, lport,
                                                      "    max_sessions: 100\n")))
        proxyd.ctl("reload")
        for i in range(20):
            body, p = udp_ask(c, lport, b"after%d" % i)
            assert body == b"after%d" % i and p == p1
        assert server_stat(proxyd, "us", "task_alive") == 1
        c2 = udp_client()
        body, p2 = udp_ask(c2, lport, b"new client")
        assert body == b"new client" and p2 != p1
        # a new address: served at once; the old one serves its session, no new ones
        lport2 = free_port(kind=socket.SOCK_DGRAM)
        proxyd.write("main.yaml", config(udp_servers(echo.port, lport2)))
        proxyd.ctl("reload")
        body, p3 = udp_ask(udp_client(), lport2, b"moved")
        assert body == b"moved"
        body, p = udp_ask(c, lport, b"old session")
        assert body == b"old session" and p == p1
        c3 = udp_client()
        c3.settimeout(0.5)
        c3.sendto(b"nobody", ("127.0.0.1", lport))
        with pytest.raises(socket.timeout):
            c3.recvfrom(100)
    finally:
        echo.stop()


def test_udp_stream_limits_and_filter(env, proxyd):
    echo = UdpEcho()
    try:
        lport = free_port(kind=socket.SOCK_DGRAM)
        start(proxyd, udp_servers(echo.port, lport, """    max_sessions: 1
    udp_sock_speed_limit: {upload_packets: 3, shift: 12}
    udp_misc_opts: {ttl: 32}
"""))
        c1, c2 = udp_client(), udp_client()
        assert udp_ask(c1, lport, b"a")[0] == b"a"
        c2.settimeout(0.5)
        c2.sendto(b"b", ("127.0.0.1", lport))  # a second session: over max_sessions
        with pytest.raises(socket.timeout):
            c2.recvfrom(100)
        assert server_stat(proxyd, "us", "refused_full") >= 1
        # 3 datagrams per 4.096 s window upstream ("a" took one): a burst of 10 gets at
        # most 2 + 3 through, even when it straddles two windows
        for i in range(10):
            c1.sendto(b"p%d" % i, ("127.0.0.1", lport))
        c1.settimeout(0.5)
        answers = 0
        try:
            while True:
                c1.recvfrom(100)
                answers += 1
        except socket.timeout:
            pass
        assert 1 <= answers <= 5, answers
    finally:
        echo.stop()


def test_udp_stream_ingress_filter(env, proxyd):
    echo = UdpEcho()
    try:
        lport = free_port(kind=socket.SOCK_DGRAM)
        # 127.0.0.1 is permitted implicitly by ingress rules unless listed
        rule = "    ingress_network_filter: {default: allow, forbid: 127.0.0.1}\n"
        start(proxyd, udp_servers(echo.port, lport, rule))
        c = udp_client()
        c.settimeout(0.5)
        c.sendto(b"x", ("127.0.0.1", lport))
        with pytest.raises(socket.timeout):
            c.recvfrom(100)
        assert server_stat(proxyd, "us", "forbidden_ingress") == 1
    finally:
        echo.stop()
