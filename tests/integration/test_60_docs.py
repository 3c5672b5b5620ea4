"""Manual pages: every config key, module type, proxyctl command and proxyd flag the code
has is documented, the pages render without warnings, and the first example of
proxyd.yaml(5) is a valid configuration."""
import glob
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import PROXYCTL, PROXYD, TOP

MAN = os.path.join(TOP, "man")
PAGES = ["proxyd.8", "proxyctl.8", "proxyd.yaml.5"]

# Keys of struct conf_key tables that are internal and not user-visible. There should be
# none: every key the loader accepts is part of the configuration language.
EXEMPT_KEYS = set()


def roff_text(name):
    """A page's source with font changes and common escapes removed, so that names can
    be searched as the reader sees them."""
    with open(os.path.join(MAN, name), encoding="utf-8") as f:
        s = f.read()
    s = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", s)
    s = s.replace("\\-", "-").replace("\\&", "").replace("\\(dq", '"').replace("\\c", "")
    s = s.replace("\\e", "\\")
    return s


def has_word(text, word):
    return re.search(r"(?<![A-Za-z0-9_])" + re.escape(word) + r"(?![A-Za-z0-9_])", text)


def c_source(path):
    """C source with comments blanked out (string literals kept)."""
    with open(path, encoding="utf-8") as f:
        s = f.read()
    return re.sub(r"/\*.*?\*/", lambda m: " " * len(m.group(0)), s, flags=re.S)


def braced_body(text, start):
    """The text between the '{' before `start` and its matching '}'."""
    depth, i = 1, start
    while depth and i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        i += 1
    return text[start:i - 1]


def conf_key_tables():
    """(file, table, [keys]) for every array of struct conf_key in daemon/ and modules/:
    the first string of each {"key", ...} entry plus every alias of CK_ALIASES(...)."""
    files = sorted(glob.glob(os.path.join(TOP, "daemon", "*.c")) +
                   glob.glob(os.path.join(TOP, "modules", "*", "*.c")))
    out = []
    for path in files:
        src = c_source(path)
        for m in re.finditer(r"struct\s+conf_key\s+(\w+)\s*\[\s*\]\s*=\s*\{", src):
            body = braced_body(src, m.end())
            keys = re.findall(r'\{\s*"([^"]+)"', body)
            for a in re.findall(r"CK_ALIASES\(([^)]*)\)", body):
                keys += re.findall(r'"([^"]+)"', a)
            out.append((os.path.relpath(path, TOP), m.group(1), keys))
    return out


def registered_types():
    """{kind list name: [(type, [aliases])]} from daemon/registry.c and the ops tables."""
    reg = c_source(os.path.join(TOP, "daemon", "registry.c"))
    ops_src = {}
    for path in glob.glob(os.path.join(TOP, "modules", "*", "*.c")):
        src = c_source(path)
        for m in re.finditer(r"const\s+struct\s+\w+_ops\s+(\w+)\s*=\s*\{", src):
            ops_src[m.group(1)] = braced_body(src, m.end())
    kinds = {}
    for m in re.finditer(r"static\s+const\s+struct\s+obj_ops\s*\*\s*const\s+(\w+)\s*\[\s*\]\s*=\s*\{",
                         reg):
        types = []
        for sym in re.findall(r"OPS\((\w+)\)", braced_body(reg, m.end())):
            assert sym in ops_src, f"registry.c lists {sym}, defined in no modules/*/*.c"
            body = ops_src[sym]
            t = re.search(r'\.type\s*=\s*"([^"]+)"', body)
            assert t, f"{sym} has no .type"
            al = re.search(r"\.aliases\s*=\s*(?:CK_ALIASES\(|\(const\s+char\s*\*\s*const\s*\[\s*\]\)\s*\{)"
                           r"([^)}]*)", body)
            types.append((t.group(1), re.findall(r'"([^"]+)"', al.group(1)) if al else []))
        kinds[m.group(1)] = types
    return kinds


def test_every_config_key_is_documented():
    tables = conf_key_tables()
    assert len(tables) > 20, "the key table parser found too few tables"
    page = roff_text("proxyd.yaml.5")
    missing = []
    for path, table, keys in tables:
        for k in keys:
            if k not in EXEMPT_KEYS and not has_word(page, k):
                missing.append(f"{k} ({path}: {table})")
    assert not missing, "keys missing from man/proxyd.yaml.5:\n  " + "\n  ".join(missing)


def test_every_registered_module_is_documented():
    kinds = registered_types()
    assert set(kinds) >= {"resolvers", "escapers", "user_groups", "servers"}
    src = roff_text("proxyd.yaml.5")
    headings = set(re.findall(r"^\.SS\s+(\S+)\s*$", src, flags=re.M))
    missing = []
    for kind, types in kinds.items():
        for t, aliases in types:
            if t not in headings:
                missing.append(f"{kind}: no '.SS {t}' subsection")
            for a in aliases:
                if not has_word(src, a):
                    missing.append(f"{kind}: alias {a} of {t}")
    assert not missing, "modules missing from man/proxyd.yaml.5:\n  " + "\n  ".join(missing)


def test_every_unsupported_type_is_listed():
    """g3proxy types that fail with "unsupported" (registry.c) are named in the page."""
    reg = c_source(os.path.join(TOP, "daemon", "registry.c"))
    body = reg[reg.index("unsupported[OBJ_NKINDS]"):]
    body = body[:body.index("};")]
    squeezed = set(w for lit in re.findall(r'"([^"]*)"', body) for w in lit.split())
    assert squeezed, "no unsupported type list found in daemon/registry.c"
    words = set(w.replace("_", "").lower()
                for w in re.findall(r"[A-Za-z0-9_]+", roff_text("proxyd.yaml.5")))
    missing = sorted(squeezed - words)
    assert not missing, f"unsupported types not named in man/proxyd.yaml.5: {missing}"


def help_text(binary):
    r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    return r.stdout


def test_every_proxyctl_command_and_option_is_documented():
    text = help_text(PROXYCTL)
    commands = re.search(r"^Commands:\n(.*?)^\S", text, flags=re.S | re.M).group(1)
    names = set(re.findall(r"^  ([a-z][a-z-]*)", commands, flags=re.M))
    assert {"version", "offline", "reload", "list", "server", "resolver", "stats"} <= names
    options = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text.split("Options:", 1)[1]))
    page = roff_text("proxyctl.8")
    missing = [n for n in sorted(names | options) if not has_word(page, n)]
    assert not missing, f"missing from man/proxyctl.8: {missing}"


def test_every_proxyd_flag_is_documented():
    text = help_text(PROXYD)
    flags = set(re.findall(r"^\s+(-\w), (--[\w-]+)", text, flags=re.M))
    assert len(flags) >= 10
    page = roff_text("proxyd.8")
    missing = [f for pair in sorted(flags) for f in pair if not has_word(page, f)]
    assert not missing, f"missing from man/proxyd.8: {missing}"


def test_pages_have_the_usual_sections():
    want = {
        "proxyd.8": ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "FILES",
                     "EXIT STATUS", "ENVIRONMENT", "EXAMPLES", "SEE ALSO"],
        "proxyctl.8": ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS",
                       "EXIT STATUS", "EXAMPLES", "SEE ALSO"],
        "proxyd.yaml.5": ["NAME", "SYNOPSIS", "DESCRIPTION", "VALUE TYPES", "TOP-LEVEL KEYS",
                          "RESOLVERS", "ESCAPERS", "SERVERS", "EXAMPLES", "SEE ALSO"],
    }
    for page, sections in want.items():
        heads = re.findall(r'^\.SH\s+"?([^"\n]+?)"?\s*$', roff_text(page), flags=re.M)
        assert [s for s in sections if s not in heads] == [], f"{page}: sections {heads}"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_warnings(page):
    if not shutil.which("man"):
        pytest.skip("man is not installed (tools/deps.sh test installs man-db)")
    env = dict(os.environ, LC_ALL="C", LANG="C", MANWIDTH="80", MANPAGER="cat", PAGER="cat")
    r = subprocess.run(["man", "--warnings", "-l", os.path.join(MAN, page)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", f"man warnings for {page}:\n{r.stderr}"
    assert len(r.stdout.splitlines()) > 50
    if shutil.which("groff"):
        r = subprocess.run(["groff", "-man", "-ww", "-z", os.path.join(MAN, page)],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0 and r.stderr == "", f"groff warnings for {page}:\n{r.stderr}"


def test_first_yaml_example_is_valid():
    src = roff_text("proxyd.yaml.5")
    examples = src.split("\n.SH EXAMPLES\n", 1)[1]
    block = re.search(r"^\.EX\n(.*?)^\.EE", examples, flags=re.S | re.M).group(1)
    with tempfile.TemporaryDirectory(prefix="proxyd-doc-") as d:
        path = os.path.join(d, "main.yaml")
        with open(path, "w") as f:
            f.write(block)
        r = subprocess.run([PROXYD, "-t", "-c", path], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, f"{r.stdout}{r.stderr}\n--- example:\n{block}"
