"""The g3proxy-compatible config loader, through `proxyd -t`: file layouts, hybrid
sections, normalization, type aliases, references, and the position in every error."""
import os
import subprocess
import textwrap

import pytest

from conftest import PROXYD


def check(path):
    return subprocess.run([PROXYD, "-t", "-c", str(path)], capture_output=True, text=True,
                          timeout=30)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def based(text):
    """BASE (resolver r, escaper e: 7 lines) followed by text."""
    return BASE.lstrip("\n") + textwrap.dedent(text).lstrip("\n")


def ok(path):
    r = check(path)
    assert r.returncode == 0, r.stderr
    return r


def fails(path, *needles):
    r = check(path)
    assert r.returncode == 78, f"expected exit 78, got {r.returncode}: {r.stdout}{r.stderr}"
    for n in needles:
        assert n in r.stderr, f"{n!r} not in {r.stderr!r}"
    return r


BASE = """
resolver:
  - name: r
    type: deny_all
escaper:
  - name: e
    type: direct_fixed
    resolver: r
"""


def test_multi_document_main_file(tmp_path):
    p = write(tmp_path / "main.yaml", """
        resolver:
          - {name: r, type: deny_all}
        ---
        escaper:
          - {name: e, type: direct_fixed, resolver: r}
        ---
        server:
          - {name: s, type: http_proxy, listen: "127.0.0.1:0", escaper: e}
        """)
    ok(p)


def test_top_level_key_twice_across_documents(tmp_path):
    p = write(tmp_path / "main.yaml", """
        server: []
        ---
        server: []
        """)
    fails(p, f"{p}:3:1: key 'server' given twice (first at line 1)")


def test_key_normalization_and_type_aliases(tmp_path):
    p = write(tmp_path / "main.yaml", based("""
        server:
          - Name: s1
            Type: HttpProxy
            Listen: "127.0.0.1:0"
            escaper: e
            Req-Header-Recv-Timeout: 10s
          - name: s2
            type: http-proxy
            escaper: e
          - name: s3
            type: DummyClose
        """))
    ok(p)


def test_camel_case_resolver_and_escaper_types(tmp_path):
    p = write(tmp_path / "main.yaml", """
        resolver:
          - {name: r, type: DenyAll}
        escaper:
          - {name: e, type: DirectFixed, resolver: r}
          - {name: d, type: dummy-deny}
        """)
    ok(p)


def test_unknown_key_position(tmp_path):
    p = write(tmp_path / "main.yaml", based("""
        server:
          - name: s
            type: http_proxy
            escaper: e
            req_header_recv_timout: 10s
        """))
    fails(p, f"{p}:12:5: server 's': unknown key 'req_header_recv_timout'")


def test_bad_value_position(tmp_path):
    p = write(tmp_path / "main.yaml", based("""
        server:
          - name: s
            type: http_proxy
            escaper: e
            req_header_recv_timeout: 10 parsecs
        """))
    fails(p, f"{p}:12:30: server 's': key 'req_header_recv_timeout': invalid duration")


def test_unknown_top_level_key(tmp_path):
    p = write(tmp_path / "main.yaml", "servers: []\n")
    fails(p, f"{p}:1:1: unknown top-level key 'servers'")


def test_duplicate_names(tmp_path):
    p = write(tmp_path / "main.yaml", """
        server:
          - {name: s, type: dummy_close}
          - {name: s, type: dummy_close}
        """)
    fails(p, f"{p}:3:12: server 's': duplicate name")


def test_unknown_and_unsupported_types(tmp_path):
    p = write(tmp_path / "a.yaml", "server:\n  - {name: s, type: frobnicator}\n")
    fails(p, "unknown server type 'frobnicator'")
    p = write(tmp_path / "b.yaml", "server:\n  - {name: s, type: sni_proxy}\n")
    fails(p, f"{p}:2:21: server 's': key 'type': unsupported: server type 'sni_proxy'")
    p = write(tmp_path / "c.yaml", "auditor:\n  - name: a\n")
    fails(p, "unsupported: auditors")


def test_unsupported_key(tmp_path):
    p = write(tmp_path / "main.yaml", based("""
        server:
          - name: s
            type: http_proxy
            escaper: e
            server_id: x1
        """))
    fails(p, f"{p}:12:5: server 's': key 'server_id': unsupported")


def test_missing_reference(tmp_path):
    p = write(tmp_path / "main.yaml", based("""
        server:
          - name: s
            type: http_proxy
            escaper: nope
        """))
    fails(p, f"{p}:11:14: server 's': key 'escaper': escaper 'nope' is not defined")
    p = write(tmp_path / "r.yaml", """
        escaper:
          - {name: e, type: direct_fixed, resolver: missing}
        """)
    fails(p, "escaper 'e': key 'resolver': resolver 'missing' is not defined")


def test_two_servers_on_one_address(tmp_path):
    p = write(tmp_path / "main.yaml", """
        server:
          - {name: a, type: dummy_close, listen: 127.0.0.1:3999}
          - {name: b, type: dummy_close, listen: "127.0.0.1:3999"}
        """)
    fails(p, f"{p}:3:42: server 'b': key 'listen': address already used by server 'a'")


def test_missing_required_key(tmp_path):
    p = write(tmp_path / "main.yaml", based("""
        server:
          - name: s
            type: http_proxy
        """))
    fails(p, f"{p}:9:5: server 's': key 'escaper': missing required key")


def test_hybrid_sections_file_and_directory(tmp_path):
    write(tmp_path / "main.yaml", """
        resolver: resolver.yaml
        escaper:
          - escaper.d
        server: server.d/
        """)
    write(tmp_path / "resolver.yaml", """
        name: r1
        type: deny_all
        ---
        name: r2
        type: deny_all
        """)
    write(tmp_path / "escaper.d" / "a.yaml", "name: e\ntype: direct_fixed\nresolver: r2\n")
    write(tmp_path / "server.d" / "10-http.yaml", """
        name: http
        type: http_proxy
        escaper: e
        """)
    # other suffixes in the directory are not read
    write(tmp_path / "server.d" / "README.txt", "this is not yaml: [")
    write(tmp_path / "server.d" / "20-bad.yml", "name: x\ntype: bogus\n")
    ok(tmp_path / "main.yaml")
    # an error in a split file names that file
    write(tmp_path / "server.d" / "30-broken.yaml", "name: y\ntype: http_proxy\nescaper: e\nlisten: nope\n")
    fails(tmp_path / "main.yaml", f"{tmp_path}/server.d/30-broken.yaml:4:9: server 'y': key 'listen'")


def test_section_path_errors(tmp_path):
    p = write(tmp_path / "main.yaml", "server: nowhere.d\n")
    fails(p, f"{p}:1:9: key 'server': cannot read {tmp_path}/nowhere.d")
    p = write(tmp_path / "m2.yaml", "server:\n  - [a]\n")
    fails(p, f"{p}:2:5: key 'server': expected a map or a path, got a sequence")


def test_yaml_syntax_error_position(tmp_path):
    p = write(tmp_path / "main.yaml", "server:\n  - name: s\n    type: [dummy_close\n")
    # the position of the construct left open, and where libyaml gave up
    fails(p, f"{p}:3:11: YAML: while parsing a flow sequence", "(at line 4, column 1)")


def test_env_listen_address(tmp_path):
    p = write(tmp_path / "main.yaml", """
        server:
          - name: s
            type: dummy_close
            listen: $PROXYD_TEST_LISTEN
        """)
    r = subprocess.run([PROXYD, "-t", "-c", str(p)], capture_output=True, text=True,
                       env={**os.environ, "PROXYD_TEST_LISTEN": "127.0.0.1:3999"})
    assert r.returncode == 0, r.stderr
    r = subprocess.run([PROXYD, "-t", "-c", str(p)], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "PROXYD_TEST_LISTEN"})
    assert r.returncode == 78 and "environment variable PROXYD_TEST_LISTEN is not set" in r.stderr


@pytest.mark.parametrize("listen", ["3128", "'127.0.0.1:3128'", "'[::1]:3128'",
                                    "{address: '127.0.0.1:3128', backlog: 100}"])
def test_listen_forms(tmp_path, listen):
    p = write(tmp_path / "main.yaml", f"server:\n  - name: s\n    type: dummy_close\n    listen: {listen}\n")
    ok(p)


def test_runtime_and_worker_sections(tmp_path):
    p = write(tmp_path / "main.yaml", """
        runtime:
          thread_number: 2
          server_offline_delay: 1s
          task_wait_delay: 100ms
          task_wait_timeout: 1h
          task_quit_timeout: "30m"
        worker:
          thread_number: 2
          sched_affinity: false
        controller:
          local:
            recv_timeout: 30
            send_timeout: 1
        log: discard
        """)
    ok(p)
    p = write(tmp_path / "bad.yaml", "runtime:\n  server_offline_delay: soon\n")
    fails(p, f"{p}:2:25: runtime: key 'server_offline_delay': invalid duration")


def test_every_example_loads():
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    examples = os.path.join(top, "examples")
    files = sorted(f for f in os.listdir(examples) if f.endswith(".yaml"))
    assert "quickstart.yaml" in files
    for f in files:
        r = check(os.path.join(examples, f))
        assert r.returncode == 0, f"examples/{f}: {r.stderr}"
    r = check(os.path.join(top, "etc", "main.yaml"))
    assert r.returncode == 0, f"etc/main.yaml: {r.stderr}"
