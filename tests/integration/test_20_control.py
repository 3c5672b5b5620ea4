"""The running daemon: proxyctl commands, reloads (full, single object, failed),
listeners and connections across reloads, signals, graceful offline."""
import json
import os
import signal
import socket
import stat
import threading
import time

import pytest

from conftest import free_port, wait_for
from peers import ScriptOrigin, port_open, read_head

MAIN = """
runtime:
  server_offline_delay: 200ms
  task_wait_delay: 100ms
worker:
  thread_number: 2
resolver:
  - name: r
    type: deny_all
escaper:
  - name: e
    type: direct_fixed
    resolver: r
    egress_network_filter: {default: allow, allow: 127.0.0.1}
server:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: e
  - server.d
"""


def echo_origin():
    def handler(sock, origin):
        while True:
            d = sock.recv(65536)
            if not d:
                return
            sock.sendall(d)
    return ScriptOrigin(handler).start()


def connect_tunnel(proxy_port, target_port):
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    s.sendall(f"CONNECT 127.0.0.1:{target_port} HTTP/1.1\r\nHost: 127.0.0.1:{target_port}\r\n\r\n".encode())
    head, rest = read_head(s)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert rest == b""
    return s


def echo_roundtrip(s, payload):
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        d = s.recv(65536)
        assert d, "tunnel closed"
        got += d
    assert got == payload


@pytest.fixture
def daemon(proxyd):
    proxyd.write("main.yaml", MAIN)
    proxyd.write("server.d/dummy.yaml", "name: park\ntype: dummy_close\nlisten: 127.0.0.1:0\n")
    return proxyd.start()


def test_proxyctl_basics(daemon):
    assert daemon.ctl("version").stdout.strip() == daemon.ctl("--version").stdout.split()[1]
    assert daemon.ctl("list", "server").stdout.split() == ["http", "park"]
    assert daemon.ctl("list", "escaper").stdout.split() == ["e"]
    assert daemon.ctl("list", "resolver").stdout.split() == ["r"]
    assert daemon.ctl("list", "user-group").stdout == ""
    st = daemon.ctl("server", "http", "status").stdout.splitlines()
    assert st[0] == "online: true" and st[1].startswith("alive tasks: ")
    assert st[2].startswith("total conn: ") and st[3].startswith("total task: ")
    r = daemon.ctl("server", "nope", "status", check=False)
    assert r.returncode == 1 and "no such server" in r.stderr
    j = daemon.ctl_json("stats")
    assert j["ok"] and j["workers"] == 2 and j["generation"] == 1
    assert [s["name"] for s in j["servers"]] == ["http", "park"]
    plain = daemon.ctl("stats").stdout.splitlines()
    assert plain[0].startswith(f"proxyd {j['version']}, pid {daemon.proc.pid}, running, up ")
    assert any(line.split()[:3] == ["http", "http_proxy", "yes"] for line in plain)
    assert daemon.ctl("check").returncode == 0


def test_control_socket_permissions_and_text_protocol(daemon):
    path = os.path.join(daemon.ctl_dir, "_.sock")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o660, oct(mode)
    assert os.path.exists(os.path.join(daemon.ctl_dir, f"_{daemon.proc.pid}.sock"))
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(b"pid\nversion\nset recv_timeout 5\nbogus\nquit\n")
    data = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    lines = data.decode().splitlines()
    assert lines[0] == str(daemon.proc.pid)
    assert json.loads(lines[1])["ok"] is True
    assert lines[2] == "recv_timeout = 5"
    assert json.loads(lines[3]) == {"ok": False, "error": "unknown command"}
    # a request line longer than the limit is refused, not buffered forever
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(b"x" * 5000)
    reply = s.recv(4096)
    assert b"too long" in reply


def test_reload_good_and_bad(daemon):
    port = daemon.listen_port("http")
    daemon.write("main.yaml", MAIN + "  - {name: extra, type: dummy_close}\n")
    r = daemon.ctl("reload")
    assert r.stdout.strip() == "notice: success"
    assert "extra" in daemon.ctl("list", "server").stdout.split()
    assert daemon.stats()["generation"] == 2
    assert daemon.listen_port("http") == port  # the listener was kept

    daemon.write("main.yaml", MAIN + "  - {name: extra, type: dummy_close, bogus: 1}\n")
    r = daemon.ctl("reload", check=False)
    assert r.returncode == 1
    assert f"{daemon.dir}/main.yaml:20:38: server 'extra': unknown key 'bogus'" in r.stderr
    # the old configuration keeps serving
    assert daemon.stats()["generation"] == 2
    assert "extra" in daemon.ctl("list", "server").stdout.split()
    # the check command reports the broken file too
    r = daemon.ctl("check", check=False)
    assert r.returncode == 1 and "unknown key 'bogus'" in r.stderr


def test_reload_single_object(daemon):
    port = daemon.listen_port("park")
    daemon.write("server.d/dummy.yaml", "name: park\ntype: dummy_close\nlisten: 127.0.0.1:0\nlisten_in_worker: true\n")
    assert daemon.ctl("reload-server", "park").stdout.strip() == "notice: success"
    assert daemon.stats()["generation"] == 2
    assert daemon.listen_port("park") == port
    # a change that shows: the server moves to another port, the old one closes
    new_port = free_port()
    daemon.write("server.d/dummy.yaml", f"name: park\ntype: dummy_close\nlisten: 127.0.0.1:{new_port}\n")
    assert daemon.ctl("reload-server", "park").stdout.strip() == "notice: success"
    assert daemon.listen_port("park") == new_port
    wait_for(lambda: not port_open(port), 5, what="old port closed")
    socket.create_connection(("127.0.0.1", new_port), timeout=5).close()
    daemon.write("server.d/dummy.yaml", "name: park\ntype: dummy_close\nlisten: 127.0.0.1:0\n")
    # the object must keep its name
    daemon.write("server.d/dummy.yaml", "name: other\ntype: dummy_close\n")
    r = daemon.ctl("reload-server", "park", check=False)
    assert r.returncode == 1 and "now defines 'other'" in r.stderr
    # an inline object cannot be reloaded alone
    r = daemon.ctl("reload-server", "http", check=False)
    assert r.returncode == 1 and "reload is not supported" in r.stderr
    r = daemon.ctl("reload-escaper", "nope", check=False)
    assert r.returncode == 1 and "no escaper named 'nope'" in r.stderr
    # a broken single file changes nothing
    daemon.write("server.d/dummy.yaml", "name: park\ntype: dummy_close\nlisten: 1.2.3.4.5\n")
    r = daemon.ctl("reload-server", "park", check=False)
    assert r.returncode == 1 and f"{daemon.dir}/server.d/dummy.yaml:3:9" in r.stderr
    assert daemon.stats()["generation"] == 3


def test_listener_and_tunnel_survive_reloads(daemon):
    origin = echo_origin()
    port = daemon.listen_port("http")
    tunnel = connect_tunnel(port, origin.port)
    echo_roundtrip(tunnel, b"before")
    failures = []
    attempts = [0]
    stop = threading.Event()

    def hammer():
        # connection attempts during reloads must never be refused
        while not stop.is_set():
            attempts[0] += 1
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5):
                    pass
            except OSError as e:
                failures.append(e)
    t = threading.Thread(target=hammer)
    t.start()
    try:
        for i in range(5):
            daemon.ctl("reload")
            daemon.signal(signal.SIGHUP)
            echo_roundtrip(tunnel, b"during-%d" % i)
    finally:
        stop.set()
        t.join()
    wait_for(lambda: daemon.stats()["generation"] == 11, 10, what="generation 11")
    echo_roundtrip(tunnel, b"after" * 1000)
    assert failures == []
    assert attempts[0] >= 10, attempts
    tunnel.close()
    origin.stop()


def test_sigterm_graceful_offline(daemon):
    origin = echo_origin()
    port = daemon.listen_port("http")
    tunnel = connect_tunnel(port, origin.port)
    daemon.signal(signal.SIGTERM)
    # listeners close after server_offline_delay; the tunnel keeps working
    wait_for(lambda: daemon.ctl_json("stats")["state"] == "draining", 5, what="draining")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    echo_roundtrip(tunnel, b"still here")
    assert daemon.proc.poll() is None
    tunnel.close()
    assert daemon.wait(10) == 0
    origin.stop()


def test_offline_cancels_tasks_after_task_wait_timeout(proxyd):
    """SIGTERM: listeners close, tasks get task_wait_timeout to end, then they are
    cancelled and the process exits 0."""
    proxyd.write("main.yaml", MAIN.replace("task_wait_delay: 100ms",
                                           "task_wait_delay: 100ms\n  task_wait_timeout: 500ms"))
    proxyd.write("server.d/dummy.yaml", "name: park\ntype: dummy_close\n")
    proxyd.start()
    origin = echo_origin()
    tunnel = connect_tunnel(proxyd.listen_port("http"), origin.port)
    t0 = time.monotonic()
    proxyd.signal(signal.SIGTERM)
    assert proxyd.wait(15) == 0
    elapsed = time.monotonic() - t0
    assert 0.7 <= elapsed < 10, elapsed  # offline delay + wait delay + wait timeout
    tunnel.settimeout(5)
    assert tunnel.recv(10) == b""  # cancelled, not left open
    origin.stop()


def test_proxyctl_offline(daemon):
    assert daemon.ctl("offline").stdout.strip() == "notice: success"
    assert daemon.wait(10) == 0


def test_sigint_quits_now(daemon):
    origin = echo_origin()
    tunnel = connect_tunnel(daemon.listen_port("http"), origin.port)
    daemon.signal(signal.SIGINT)
    assert daemon.wait(10) == 0
    tunnel.settimeout(5)
    assert tunnel.recv(10) == b""
    origin.stop()


def test_second_daemon_same_group_refused(daemon, proxyd_factory):
    other = proxyd_factory("other")
    other.ctl_dir = daemon.ctl_dir
    other.write("main.yaml", "server:\n  - {name: s, type: dummy_close}\n")
    other.start(wait=False)
    assert other.wait(10) == 71
    assert "another proxyd answers" in other.log()
    other.expect_exit = 71


def test_group_names_sockets(proxyd):
    proxyd.write("main.yaml", "server:\n  - {name: s, type: dummy_close}\n")
    proxyd.start(args=["-G", "edge"], wait=False)
    wait_for(lambda: os.path.exists(os.path.join(proxyd.ctl_dir, "edge.sock")), 10,
             what="edge.sock")
    r = proxyd.ctl("-G", "edge", "version")
    assert r.returncode == 0
    r = proxyd.ctl("-p", str(proxyd.proc.pid), "-G", "edge", "list", "server")
    assert r.stdout.split() == ["s"]
