"""socks_proxy + direct_fixed with real clients (curl, PySocks) and a stdlib SOCKS5
client against nginx, dnsmasq and UDP echo peers: SOCKS4/4a/5 CONNECT, name resolution,
UDP ASSOCIATE in both modes (associate and g3proxy's simplified "udp connect"), DNS
over SOCKS UDP, reply codes for failures, malformed input, and reloads."""
import json
import os
import socket
import struct
import subprocess
import time

import pytest

from conftest import wait_for
from peers import Dnsmasq, Nginx, ScriptOrigin, UdpEcho, make_pki, sha256_file

CURL = ["curl", "-sS", "--noproxy", "", "-m", "60"]


@pytest.fixture(scope="module")
def env():
    import pathlib
    import shutil
    import tempfile
    d = pathlib.Path(tempfile.mkdtemp(prefix="proxyd-socks-"))
    os.chmod(d, 0o755)
    pki = make_pki(str(d / "pki"))
    ngx = Nginx(str(d / "nginx"), pki)
    ngx.file("small", b"hello\n")
    big = ngx.random_file("big", 100 * 1024 * 1024)
    ngx.start()
    dns = Dnsmasq(str(d), ["--address=/origin.test/127.0.0.1", "--host-record=v6.test,::1",
                           "--host-record=udp.test,192.0.2.55", "--address=/blocked.test/",
                           "--address=/#/"]).start()
    echo = UdpEcho().start()
    echo2 = UdpEcho(prefix=b"two:").start()
    echo6 = UdpEcho("::1").start()

    class E:
        pass
    e = E()
    e.pki, e.ngx, e.dns, e.big, e.dir = pki, ngx, dns, big, str(d)
    e.echo, e.echo2, e.echo6 = echo, echo2, echo6
    e.big_sha = sha256_file(big)
    yield e
    for x in (echo, echo2, echo6):
        x.stop()
    dns.stop()
    ngx.stop()
    shutil.rmtree(d, ignore_errors=True)


def config(env, extra_server="", extra_connect_server="", task_log=None, workers=2):
    log = "stdout"
    if task_log:
        log = f"{{default: discard, task: {{file: {{path: {task_log}, format: json}}}}}}"
    return f"""
runtime:
  server_offline_delay: 100ms
  task_wait_delay: 50ms
worker:
  thread_number: {workers}
log: {log}
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
      allow: [127.0.0.1, "::1", 127.0.0.0/8]
    tcp_connect: {{max_retry: 1, each_timeout: 1s}}
server:
  - name: socks
    type: socks_proxy
    listen: "127.0.0.1:0"
    escaper: direct
    use_udp_associate: true
    dst_port_filter: {{default: allow, forbid: [25]}}
    dst_host_filter_set: {{exact_match: {{default: allow, forbid: [forbidden.test]}}}}
{extra_server}
  - name: socks_c
    type: socksproxy
    listen: "127.0.0.1:0"
    escaper: direct
    dst_port_filter: {{default: allow, forbid: [25]}}
{extra_connect_server}
"""


def start(proxyd, text):
    proxyd.write("main.yaml", text)
    proxyd.start()
    proxyd.port = proxyd.listen_port("socks")
    proxyd.port_c = proxyd.listen_port("socks_c")
    return proxyd


@pytest.fixture
def proxy(env, proxyd):
    return start(proxyd, config(env))


# ------------------------------------------------------------ a SOCKS client

def recv_exact(s, n):
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            raise EOFError(f"closed after {len(out)} of {n} bytes: {out!r}")
        out += d
    return out


def read_until_eof(s, timeout=10):
    """Everything the server sends until it closes; AssertionError if it does not
    close in time."""
    s.settimeout(timeout)
    out = b""
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            raise AssertionError(f"the server did not close (got {out!r})")
        except ConnectionResetError:
            return out
        if not d:
            return out
        out += d


def addr_bytes(host):
    """SOCKS5 ATYP + DST.ADDR for an IPv4/IPv6 literal or a domain."""
    for fam, atyp in ((socket.AF_INET, 1), (socket.AF_INET6, 4)):
        try:
            return bytes([atyp]) + socket.inet_pton(fam, host)
        except OSError:
            pass
    h = host.encode()
    return bytes([3, len(h)]) + h


def read_reply(s):
    """A SOCKS5 reply (or UDP header without RSV/FRAG): (rep, host, port)."""
    ver, rep, _, atyp = recv_exact(s, 4)
    assert ver == 5
    if atyp == 1:
        host = socket.inet_ntop(socket.AF_INET, recv_exact(s, 4))
    elif atyp == 4:
        host = socket.inet_ntop(socket.AF_INET6, recv_exact(s, 16))
    else:
        host = recv_exact(s, recv_exact(s, 1)[0]).decode()
    return rep, host, struct.unpack("!H", recv_exact(s, 2))[0]


def s5_open(port, methods=b"\x00"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(bytes([5, len(methods)]) + methods)
    return s, recv_exact(s, 2)


def s5_request(port, host, tport, cmd=1):
    """Greeting + request; returns (socket, rep, bound host, bound port)."""
    s, m = s5_open(port)
    assert m == b"\x05\x00", m
    s.sendall(bytes([5, cmd, 0]) + addr_bytes(host) + struct.pack("!H", tport))
    rep, bh, bp = read_reply(s)
    return s, rep, bh, bp


def s4_request(port, tport, ip="127.0.0.1", domain=None, cmd=1):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    dst = socket.inet_aton("0.0.0.1" if domain is not None else ip)
    msg = bytes([4, cmd]) + struct.pack("!H", tport) + dst + b"user\x00"
    if domain is not None:
        msg += domain + b"\x00"
    s.sendall(msg)
    return s, recv_exact(s, 8)


def http_get(s, path="/small"):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return read_until_eof(s, 30)


class Assoc:
    """A SOCKS5 UDP association: the TCP control connection and our UDP socket."""

    def __init__(self, port, family=socket.AF_INET, declare_port=True):
        host = "127.0.0.1" if family == socket.AF_INET else "::1"
        self.u = socket.socket(family, socket.SOCK_DGRAM)
        self.u.bind((host, 0))
        self.u.settimeout(5)
        self.c = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.c.sendall(b"\x05\x01\x00")
        assert recv_exact(self.c, 2) == b"\x05\x00"
        me = self.u.getsockname()[1] if declare_port else 0
        self.c.sendall(b"\x05\x03\x00" + addr_bytes(host) + struct.pack("!H", me))
        self.rep, self.rhost, self.rport = read_reply(self.c)
        self.relay = (self.rhost, self.rport)

    def send(self, host, port, data, sock=None):
        (sock or self.u).sendto(b"\x00\x00\x00" + addr_bytes(host) + struct.pack("!H", port) + data,
                                self.relay)

    def recv(self, sock=None):
        """(source host, source port, payload) of one answer."""
        d, _ = (sock or self.u).recvfrom(65535)
        assert d[:3] == b"\x00\x00\x00", d
        atyp = d[3]
        if atyp == 1:
            host, off = socket.inet_ntop(socket.AF_INET, d[4:8]), 8
        elif atyp == 4:
            host, off = socket.inet_ntop(socket.AF_INET6, d[4:20]), 20
        else:
            n = d[4]
            host, off = d[5:5 + n].decode(), 5 + n
        return host, struct.unpack("!H", d[off:off + 2])[0], d[off + 2:]

    def close(self):
        self.c.close()
        self.u.close()


def dns_query(name, qid=0x1234):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack("!HH", 1, 1)


def dns_a_answers(msg, qid=0x1234):
    rid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", msg[:12])
    assert rid == qid and flags & 0x8000, msg
    off = 12
    for _ in range(qd):
        while msg[off]:
            off += msg[off] + 1
        off += 5
    ips = []
    for _ in range(an):
        if msg[off] & 0xC0 == 0xC0:
            off += 2
        else:
            while msg[off]:
                off += msg[off] + 1
            off += 1
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        if rtype == 1:
            ips.append(socket.inet_ntoa(msg[off:off + rdlen]))
        off += rdlen
    return ips


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def server_stats(proxyd, name):
    return next(s for s in proxyd.stats()["servers"] if s["name"] == name)


def task_records(path):
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


# ------------------------------------------------------------------- CONNECT

def test_curl_socks4_4a_5_5h_small_and_100mib(env, proxy):
    base = f"http://127.0.0.1:{env.ngx.port}"
    for mode in ("--socks5", "--socks5-hostname", "--socks4", "--socks4a"):
        r = subprocess.run([*CURL, mode, f"127.0.0.1:{proxy.port}", base + "/small"],
                           capture_output=True, timeout=120)
        assert r.returncode == 0 and r.stdout == b"hello\n", (mode, r.stderr)
    for mode in ("--socks5-hostname", "--socks4"):
        out = os.path.join(env.dir, "big.socks")
        r = subprocess.run([*CURL, mode, f"127.0.0.1:{proxy.port}", "-o", out, base + "/big"],
                           capture_output=True, timeout=120)
        assert r.returncode == 0, (mode, r.stderr)
        assert sha256_file(out) == env.big_sha
        os.unlink(out)
    # IPv6 target, literal and by name
    for url in (f"http://[::1]:{env.ngx.port6}/small", f"http://v6.test:{env.ngx.port6}/small"):
        r = subprocess.run([*CURL, "--socks5-hostname", f"127.0.0.1:{proxy.port}", url],
                           capture_output=True, timeout=60)
        assert r.returncode == 0 and r.stdout == b"hello\n", (url, r.stderr)
    st = server_stats(proxy, "socks")
    assert st["task_total"] >= 8 and st["out_bytes"] > 200 * 1024 * 1024
    assert st["task_alive"] == 0 or wait_for(
        lambda: server_stats(proxy, "socks")["task_alive"] == 0, 5, what="tasks to end")


def test_socks5h_names_through_dnsmasq(env, proxy):
    r = subprocess.run([*CURL, "--socks5-hostname", f"127.0.0.1:{proxy.port}",
                        f"http://origin.test:{env.ngx.port}/small"], capture_output=True)
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    r = subprocess.run([*CURL, "--socks4a", f"127.0.0.1:{proxy.port}",
                        f"http://origin.test:{env.ngx.port}/small"], capture_output=True)
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    # NXDOMAIN: host unreachable
    s, rep, _, _ = s5_request(proxy.port, "blocked.test", env.ngx.port)
    assert rep == 0x04
    assert read_until_eof(s) == b""
    r = subprocess.run([*CURL, "--socks5-hostname", f"127.0.0.1:{proxy.port}",
                        f"http://blocked.test:{env.ngx.port}/"], capture_output=True)
    assert r.returncode == 97


def test_raw_socks5_and_socks4_replies_and_tunnel(env, proxy):
    s, rep, bh, bp = s5_request(proxy.port, "127.0.0.1", env.ngx.port)
    assert rep == 0 and bh == "127.0.0.1" and bp > 0
    out = http_get(s)
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello\n")
    # greeting, request and the first bytes of the tunnel in one segment
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"\x05\x01\x00" + b"\x05\x01\x00" + addr_bytes("127.0.0.1") +
              struct.pack("!H", env.ngx.port) +
              b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert recv_exact(s, 2) == b"\x05\x00"
    assert read_reply(s)[0] == 0
    assert read_until_eof(s).endswith(b"hello\n")
    s, r4 = s4_request(proxy.port, env.ngx.port)
    assert r4[:2] == b"\x00\x5a"
    assert http_get(s).endswith(b"hello\n")
    s, r4 = s4_request(proxy.port, env.ngx.port, domain=b"origin.test")
    assert r4[:2] == b"\x00\x5a"
    assert http_get(s).endswith(b"hello\n")


def test_pysocks_client(env, proxy):
    import socks
    for kind in (socks.SOCKS5, socks.SOCKS4):
        for rdns in (False, True):
            s = socks.socksocket()
            s.set_proxy(kind, "127.0.0.1", proxy.port, rdns=rdns)
            s.settimeout(10)
            s.connect(("origin.test" if rdns else "127.0.0.1", env.ngx.port))
            out = http_get(s)
            s.close()
            assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello\n"), (kind, rdns)
    s = socks.socksocket()
    s.set_proxy(socks.SOCKS5, "127.0.0.1", proxy.port)
    with pytest.raises(socks.ProxyError) as e:
        s.connect(("127.0.0.1", closed_port()))
    assert "refused" in str(e.value).lower()


def test_failure_reply_codes(env, proxy):
    # refused
    s, rep, _, _ = s5_request(proxy.port, "127.0.0.1", closed_port())
    assert rep == 0x05
    assert read_until_eof(s) == b""
    s, r4 = s4_request(proxy.port, closed_port())
    assert r4[1] == 0x5B
    # forbidden destination port, forbidden host, egress filter
    assert s5_request(proxy.port, "127.0.0.1", 25)[1] == 0x02
    assert s5_request(proxy.port, "forbidden.test", 80)[1] == 0x02
    assert s5_request(proxy.port, "0.0.0.0", env.ngx.port)[1] == 0x02
    assert s4_request(proxy.port, 25)[1][1] == 0x5B
    # dead loop: the proxy itself (both servers are ours)
    assert s5_request(proxy.port, "127.0.0.1", proxy.port)[1] == 0x02
    assert s5_request(proxy.port, "127.0.0.1", proxy.port_c)[1] == 0x02
    # BIND is not supported
    assert s5_request(proxy.port, "127.0.0.1", env.ngx.port, cmd=2)[1] == 0x07
    assert s4_request(proxy.port, env.ngx.port, cmd=2)[1][1] == 0x5B
    # unknown command, bad address type
    s, _ = s5_open(proxy.port)
    s.sendall(b"\x05\x09\x00\x01\x7f\x00\x00\x01\x00\x50")
    assert read_reply(s)[0] == 0x07
    assert read_until_eof(s) == b""
    s, _ = s5_open(proxy.port)
    s.sendall(b"\x05\x01\x00\x07\x7f\x00\x00\x01\x00\x50")
    assert read_reply(s)[0] == 0x08
    assert read_until_eof(s) == b""
    # no acceptable method: only username/password and GSSAPI offered
    s, m = s5_open(proxy.port, methods=b"\x02\x01")
    assert m == b"\x05\xff"
    assert read_until_eof(s) == b""
    st = server_stats(proxy, "socks")
    assert st["forbidden_dest"] >= 3


def test_connect_timeout_reply_0x09(env, proxy):
    """A listener whose accept queue is full drops SYNs: the connect times out."""
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
    s, rep, _, _ = s5_request(proxy.port, "127.0.0.1", full.getsockname()[1])
    assert rep == 0x09
    assert time.monotonic() - t0 < 10
    for f in fillers:
        f.close()
    full.close()


def test_malformed_truncated_oversized_close_cleanly(env, proxyd):
    start(proxyd, config(env, extra_server="    negotiation_timeout: 500ms\n"))
    port = proxyd.port

    def raw(data, close_after=False):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if data:
            s.sendall(data)
        if close_after:
            s.close()
            return None
        return read_until_eof(s)

    assert raw(b"GET / HTTP/1.1\r\n\r\n") == b""                   # not SOCKS
    assert raw(b"\x16\x03\x01\x00\x05hello") == b""                # TLS
    assert raw(b"\x05\x00") == b""                                  # NMETHODS 0
    # RSV not zero: general failure
    out = raw(b"\x05\x01\x00" + b"\x05\x01\x01\x01\x7f\x00\x00\x01\x00\x50")
    assert out == b"\x05\x00" + b"\x05\x01\x00\x01" + b"\x00" * 6
    # SOCKS4a with a 300-byte domain: rejected
    out = raw(b"\x04\x01\x00\x50\x00\x00\x00\x01u\x00" + b"a" * 300 + b"\x00")
    assert out == b"\x00\x5b" + b"\x00" * 6
    # SOCKS4 user id without its NUL within 256 bytes
    assert raw(b"\x04\x01\x00\x50\x7f\x00\x00\x01" + b"u" * 400)[:2] == b"\x00\x5b"
    # a SOCKS5 domain that is not a name
    out = raw(b"\x05\x01\x00\x05\x01\x00\x03\x05a b c\x00\x50")
    assert out[:2] == b"\x05\x00" and out[3] == 0x01
    # half messages, then silence: the negotiation timeout closes them
    t0 = time.monotonic()
    for half in (b"\x05", b"\x05\x02\x00", b"\x05\x01\x00\x05\x01\x00\x03\x10abc",
                 b"\x04\x01\x00\x50\x7f\x00\x00\x01user"):
        out = raw(half)
        assert out in (b"", b"\x05\x00"), (half, out)
    assert time.monotonic() - t0 < 8
    # half messages, then the client goes away
    for half in (b"\x05", b"\x05\x01\x00\x05\x01", b"\x04\x01\x00", b"\x05\x01\x00\x05\x01\x00\x03"):
        raw(half, close_after=True)
    # garbage after first bytes that are neither 4 nor 5 (a SOCKS4 request of random
    # bytes could name a public address: tests never leave loopback)
    for b0 in range(0, 256, 17):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(bytes([b0]) + os.urandom(600))
        read_until_eof(s)
    # still serving
    r = subprocess.run([*CURL, "--socks5", f"127.0.0.1:{port}",
                        f"http://127.0.0.1:{env.ngx.port}/small"], capture_output=True)
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr
    assert server_stats(proxyd, "socks")["task_alive"] == 0


# ----------------------------------------------------------------------- UDP

def test_udp_associate_echo_and_several_peers(env, proxy):
    a = Assoc(proxy.port)
    assert a.rep == 0 and a.rhost == "127.0.0.1"
    for i in range(5):
        a.send("127.0.0.1", env.echo.port, b"ping%d" % i)
        assert a.recv() == ("127.0.0.1", env.echo.port, b"echo:ping%d" % i)
    a.send("127.0.0.1", env.echo2.port, b"other")
    assert a.recv() == ("127.0.0.1", env.echo2.port, b"two:other")
    # IPv6 peer through the IPv4 association
    a.send("::1", env.echo6.port, b"six")
    assert a.recv() == ("::1", env.echo6.port, b"echo:six")
    # a domain target: resolved by the escaper, datagrams wait for the answer
    for i in range(5):
        a.send("origin.test", env.echo.port, b"name%d" % i)
    got = sorted(a.recv()[2] for _ in range(5))
    assert got == sorted(b"echo:name%d" % i for i in range(5))
    # not from the declared port: dropped
    other = socket.socket(type=socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    other.settimeout(0.5)
    a.send("127.0.0.1", env.echo.port, b"intruder", sock=other)
    with pytest.raises(socket.timeout):
        other.recvfrom(100)
    # bad header, fragments, forbidden port: dropped, the association lives on
    a.u.sendto(b"\x00\x00\x01\x01\x7f\x00\x00\x01" + struct.pack("!H", env.echo.port) + b"frag",
               a.relay)
    a.u.sendto(b"\x00\x00\x00\x09junk", a.relay)
    a.send("127.0.0.1", 25, b"smtp")
    a.send("127.0.0.1", env.echo.port, b"still")
    assert a.recv() == ("127.0.0.1", env.echo.port, b"echo:still")
    a.close()
    other.close()


def test_udp_associate_ipv6_client_and_undeclared_port(env, proxyd):
    text = config(env).replace('listen: "127.0.0.1:0"\n    escaper: direct\n    use_udp',
                               'listen: "[::1]:0"\n    escaper: direct\n    use_udp')
    proxyd.write("main.yaml", text)
    proxyd.start()
    port = proxyd.listen_port("socks")
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.bind(("::1", 0))
    u.settimeout(5)
    c = socket.create_connection(("::1", port), timeout=10)
    c.sendall(b"\x05\x01\x00")
    assert recv_exact(c, 2) == b"\x05\x00"
    c.sendall(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")   # 0.0.0.0:0: "not known yet"
    rep, host, rport = read_reply(c)
    assert rep == 0 and host == "::1"
    u.sendto(b"\x00\x00\x00" + addr_bytes("::1") + struct.pack("!H", env.echo6.port) + b"v6",
             ("::1", rport))
    d = u.recvfrom(100)[0]
    assert d.endswith(b"echo:v6") and d[3] == 4
    c.close()
    u.close()


def test_udp_connect_mode_one_peer(env, proxy):
    a = Assoc(proxy.port_c)
    assert a.rep == 0
    for i in range(3):
        a.send("127.0.0.1", env.echo.port, b"c%d" % i)
        assert a.recv() == ("127.0.0.1", env.echo.port, b"echo:c%d" % i)
    # another destination ends the session
    a.send("127.0.0.1", env.echo2.port, b"elsewhere")
    assert read_until_eof(a.c) == b""
    a.close()
    # a name as the peer: answers name it as the client did
    a = Assoc(proxy.port_c)
    a.send("origin.test", env.echo.port, b"n1")
    a.send("origin.test", env.echo.port, b"n2")
    assert sorted([a.recv(), a.recv()]) == [("origin.test", env.echo.port, b"echo:n1"),
                                            ("origin.test", env.echo.port, b"echo:n2")]
    a.close()
    # a forbidden first destination ends it too
    a = Assoc(proxy.port_c)
    a.send("127.0.0.1", 25, b"smtp")
    assert read_until_eof(a.c) == b""
    a.close()


def test_dns_query_through_socks_udp(env, proxy):
    for port in (proxy.port, proxy.port_c):
        a = Assoc(port)
        a.send("127.0.0.1", env.dns.port, dns_query("udp.test"))
        host, sport, msg = a.recv()
        assert sport == env.dns.port
        assert dns_a_answers(msg) == ["192.0.2.55"]
        a.close()


def test_udp_timeouts_initial_and_idle(env, proxyd):
    start(proxyd, config(env, extra_server="    udp_client_initial_timeout: 300ms\n"
                                           "    task_idle_check_interval: 2s\n"
                                           "    task_idle_max_count: 1\n"))
    a = Assoc(proxyd.port)
    t0 = time.monotonic()
    assert read_until_eof(a.c) == b""       # no first datagram: closed
    assert time.monotonic() - t0 < 3
    a.close()
    a = Assoc(proxyd.port)
    a.send("127.0.0.1", env.echo.port, b"once")
    assert a.recv()[2] == b"echo:once"
    t0 = time.monotonic()
    assert read_until_eof(a.c, 10) == b""   # idle: closed after one silent check
    assert time.monotonic() - t0 < 6
    a.close()
    # bytes on the control connection end the association
    a = Assoc(proxyd.port)
    a.c.sendall(b"x")
    assert read_until_eof(a.c) == b""
    a.close()


def test_udp_bind_port_range_and_transmute(env, proxyd):
    lo = 30000 + os.getpid() % 2000
    start(proxyd, config(env, extra_server=f"    udp_bind_port_range: {lo}-{lo + 50}\n"
                                           "    transmute_udp_echo_ip: true\n",
                         extra_connect_server="    transmute_udp_echo_ip: {127.0.0.1: 192.0.2.7}\n"
                                              "    udp_bind_ipv4: [127.0.0.1]\n"))
    a = Assoc(proxyd.port)
    assert a.rep == 0 and a.rhost == "0.0.0.0" and lo <= a.rport <= lo + 50
    # "0.0.0.0" means: the address of the TCP connection
    a.relay = ("127.0.0.1", a.rport)
    a.send("127.0.0.1", env.echo.port, b"ranged")
    assert a.recv()[2] == b"echo:ranged"
    a.close()
    a = Assoc(proxyd.port_c)
    assert a.rep == 0 and a.rhost == "192.0.2.7"
    a.close()


def test_task_logs_and_counters(env, proxyd):
    path = os.path.join(proxyd.dir, "task.log")
    start(proxyd, config(env, task_log=path))
    s, rep, _, _ = s5_request(proxyd.port, "127.0.0.1", env.ngx.port)
    assert rep == 0 and http_get(s).endswith(b"hello\n")
    s.close()
    a = Assoc(proxyd.port)
    a.send("127.0.0.1", env.echo.port, b"x" * 10)
    assert a.recv()[2] == b"echo:" + b"x" * 10
    a.close()
    a = Assoc(proxyd.port_c)
    a.send("127.0.0.1", env.echo.port, b"y")
    a.recv()
    a.close()
    s5_request(proxyd.port, "127.0.0.1", closed_port())[0].close()

    def records():
        r = [x for x in task_records(path) if x.get("server_type") == "SocksProxy"]
        return r if len(r) >= 4 else None
    recs = wait_for(records, 10, what="four task records")
    by_type = {}
    for r in recs:
        by_type.setdefault(r["task_type"], []).append(r)
    tc = by_type["TcpConnect"]
    ok = next(r for r in tc if r["reason"] in ("ClosedByClient", "ClosedByUpstream"))
    assert ok["upstream"] == f"127.0.0.1:{env.ngx.port}" and int(ok["r_rd_bytes"]) > 0
    assert ok["escaper"] == "direct" and ok["server_name"] == "socks"
    refused = next(r for r in tc if r["reason"] == "UpstreamNotConnected")
    assert refused["stage"] == "Finished"
    ua = by_type["UdpAssociate"][0]
    assert ua["reason"] == "ClosedByClient"
    assert ua["initial_peer"] == f"127.0.0.1:{env.echo.port}"
    assert int(ua["c_rd_packets"]) == 1 and int(ua["r_wr_bytes"]) == 10
    assert int(ua["r_rd_bytes"]) == 15 and int(ua["c_wr_packets"]) == 1
    for k in ("tcp_server_addr", "tcp_client_addr", "udp_server_addr", "udp_client_addr"):
        assert ua[k].startswith("127.0.0.1:"), k
    uc = by_type["UdpConnect"][0]
    assert uc["upstream"] == f"127.0.0.1:{env.echo.port}"
    assert uc["next_peer_addr"] == f"127.0.0.1:{env.echo.port}"
    assert uc["next_bound_addr"].startswith("127.0.0.1:")
    st = server_stats(proxyd, "socks")
    assert st["task_total"] >= 3 and st["in_bytes"] > 0 and st["out_bytes"] > 0
    esc = next(e for e in proxyd.stats()["escapers"] if e["name"] == "direct")
    assert esc["task_total"] >= 4 and esc["out_bytes"] >= 11


def test_reload_keeps_tunnel_and_association(env, proxy):
    def echo_handler(sock, origin):
        while True:
            d = sock.recv(65536)
            if not d:
                return
            sock.sendall(d)
    origin = ScriptOrigin(echo_handler).start()
    s, rep, _, _ = s5_request(proxy.port, "127.0.0.1", origin.port)
    assert rep == 0
    a = Assoc(proxy.port)
    a.send("127.0.0.1", env.echo.port, b"before")
    assert a.recv()[2] == b"echo:before"
    for i in range(3):
        s.sendall(b"round %d" % i)
        assert recv_exact(s, 7) == b"round %d" % i
        proxy.write("main.yaml", config(env, extra_server=f"    negotiation_timeout: {i + 2}s\n"))
        proxy.ctl("reload")
        a.send("127.0.0.1", env.echo.port, b"during%d" % i)
        assert a.recv()[2] == b"echo:during%d" % i
    s.sendall(b"after")
    assert recv_exact(s, 5) == b"after"
    s.shutdown(socket.SHUT_WR)
    assert read_until_eof(s) == b""
    s.close()
    a.close()
    origin.stop()
    # the reloaded server serves new clients
    r = subprocess.run([*CURL, "--socks5", f"127.0.0.1:{proxy.listen_port('socks')}",
                        f"http://127.0.0.1:{env.ngx.port}/small"], capture_output=True)
    assert r.returncode == 0 and r.stdout == b"hello\n", r.stderr


def test_quit_with_open_tunnel_association_and_negotiation(env, proxyd):
    """Fast quit cancels every kind of SOCKS connection cleanly (the fixture checks the
    exit status and the sanitizer output)."""
    start(proxyd, config(env))
    s, rep, _, _ = s5_request(proxyd.port, "127.0.0.1", env.ngx.port)
    assert rep == 0
    a = Assoc(proxyd.port)
    a.send("127.0.0.1", env.echo.port, b"hi")
    assert a.recv()[2] == b"echo:hi"
    b = Assoc(proxyd.port_c)                      # waiting for its first datagram
    n, _ = s5_open(proxyd.port)                   # negotiated, no request yet
    m = socket.create_connection(("127.0.0.1", proxyd.port), timeout=10)  # said nothing
    c = socket.create_connection(("127.0.0.1", proxyd.port), timeout=10)
    c.sendall(b"\x05\x01\x00\x05\x01\x00\x03\x0bslow")   # halfway through a request
    wait_for(lambda: server_stats(proxyd, "socks")["task_alive"] == 2, 5, what="two tasks")
    assert proxyd.stop() == 0
    for sock in (s, a.c, b.c, n, m, c):
        read_until_eof(sock, 5)
        sock.close()
    a.u.close()
    b.u.close()
