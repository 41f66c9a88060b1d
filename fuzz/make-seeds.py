#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (see README.md).

Seeds come from the repository: the REGISTERs of the tests (src/registrar/tests.rs' `Req`,
tests/support/sample_register.rs), the users files of src/auth/credentials.rs' tests and of docs/authentication.md,
the configuration files of src/config.rs' tests and of the README, and the RFC 4475 torture messages of
tests/data/rfc4475/ (copied byte for byte). Run it from anywhere; it replaces the seed files it writes and
leaves any other file alone.
"""

import hashlib
import os
import struct
import sys

FUZZ = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(FUZZ)
RFC4475 = os.path.join(REPO, "tests", "data", "rfc4475")
CORPUS = os.path.join(FUZZ, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------------------------
# REGISTERs as the tests build them


def req(user="alice", method="REGISTER", ruri="sip:example.com", to=None, call_id=None, cseq=1,
        headers=()):
    """src/registrar/tests.rs, `Req::bytes`."""
    to = to or f"<sip:{user}@example.com>"
    call_id = call_id or f"cid-{user}"
    s = (f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-{call_id}-{cseq};rport\r\n"
         f"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=ft1\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
         f"CSeq: {cseq} {method}\r\n")
    for h in headers:
        s += h + "\r\n"
    s += "Content-Length: 0\r\n\r\n"
    return s.encode()


def sample_register(user, cseq, device=0):
    """tests/support/sample_register.rs, `device_register`."""
    port = 5060 + device
    prefix = "" if device == 0 else f"d{device}-"
    return (f"REGISTER sip:example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK{cseq}x{user};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:u{user}@example.com>;tag=a73kszlfl\r\n"
            f"To: <sip:u{user}@example.com>\r\n"
            f"Call-ID: {prefix}1j9FpLxk3uxtm8tn@192.0.2.7-{user}\r\n"
            f"CSeq: {cseq} REGISTER\r\n"
            f"Contact: <sip:u{user}@192.0.2.7:{port};transport=udp>;expires=3600\r\n"
            f"User-Agent: corereg-bench/1.0\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


TEST_REGISTERS = {
    "register": req(headers=["Contact: <sip:a@192.0.2.10:5062>"]),
    "refresh": req(cseq=2, headers=["Contact: <sip:a@192.0.2.10:5062>", "Expires: 600"]),
    "uri-equality": req(cseq=3, headers=["Contact: <SIP:a@192.0.2.10:5062;TRANSPORT=udp>"]),
    "unregister-param": req(cseq=4, headers=["Contact: <sip:a@192.0.2.10:5062>;expires=0"]),
    "unregister-header": req(cseq=5, headers=["Contact: <sip:a@192.0.2.10:5062>", "Expires: 0"]),
    "star": req(cseq=6, headers=["Contact: *", "Expires: 0"]),
    "star-misuse": req(cseq=7, headers=["Contact: *, <sip:b@1>", "Expires: 0"]),
    "too-brief": req(cseq=8, headers=["Contact: <sip:a@1>;expires=30"]),
    "two-contacts": req(cseq=9, headers=["Contact: <sip:a@1>;q=0.5, \"Desk\" <sip:a@2>;expires=120;q=1",
                                          "m: <sip:a@3>"]),
    "path-supported": req(cseq=10, headers=["Contact: <sip:a@edge>", "Path: <sip:p1.example.com;lr>",
                                             "Path: <sip:p2.example.com;lr>", "Supported: path"]),
    "outbound": req(cseq=11, headers=[
        "Contact: <sip:a@192.0.2.10:5062;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1",
        "Supported: outbound, path"]),
    "reg-id-alone": req(cseq=12, headers=["Contact: <sip:a@1>;reg-id=1"]),
    "require-unknown": req(cseq=13, headers=["Require: foo, path", "Contact: <sip:a@1>"]),
    "foreign-domain": req(ruri="sip:example.net", to="<sip:alice@example.net>", headers=["Contact: <sip:a@1>"]),
    "escaped-aor": req(to="<sip:%61lice@EXAMPLE.com;transport=udp>", headers=["Contact: <sip:a@1>"]),
    "tel-contact": req(headers=["Contact: <tel:+15551234>;expires=60"]),
    "fetch": req(call_id="fetcher", cseq=1700000000),
    "options": req(method="OPTIONS"),
    "invite": req(method="INVITE"),
    "authorization": req(cseq=2, headers=[
        "Contact: <sip:a@1>",
        "Authorization: Digest username=\"alice\", realm=\"example.com\", "
        "nonce=\"AAAAAGVT8QDAX30VcWRxAygwMfohHJXb9NKOLawoW9J8\", uri=\"sip:example.com\", "
        "response=\"5f2f8a9c0c1d3b2e6f7a8b9c0d1e2f3a\", algorithm=MD5, cnonce=\"0a4f113b\", "
        "opaque=\"lp4Twm51t9LBysOC\", qop=auth, nc=00000001"]),
    "sample": sample_register(7, 1),
    "sample-second-device": sample_register(7, 1, device=1),
}


def rfc4475():
    files = sorted(f for f in os.listdir(RFC4475) if f.endswith(".dat"))
    if not files:
        sys.exit(f"no .dat files in {RFC4475}")
    for f in files:
        with open(os.path.join(RFC4475, f), "rb") as fh:
            yield f[:-4], fh.read()


# ---------------------------------------------------------------------------------------------
# The registrar target's step encoding (fuzz_targets/registrar.rs)


def setup(auth, max_contacts=3, policy=0, max_bindings=10, expiry=0, failures=3, small_replay=False):
    b1 = (max_contacts - 1) & 3 | (policy % 3) << 2
    b2 = (max_bindings - 2) % 15
    b4 = failures // 3 & 3 | (8 if small_replay else 0)
    return bytes([1 if auth else 0, b1, b2, expiry, b4])


ADV = {"none": 0, "ms": 1, "s": 2, "long": 3, "min": 4, "days": 5, "huge": 6, "back": 7}


def step_tail(advance="none", value=0, source=0, sweep=False):
    return bytes([source | (0x80 if sweep else 0), ADV[advance]]) + struct.pack("<H", value)


def raw(datagram, **kw):
    return bytes([10]) + struct.pack("<H", len(datagram)) + datagram + step_tail(**kw)


def op(code, body=b"", **kw):
    return bytes([code]) + body + step_tail(**kw)


def registrar_seeds():
    r = TEST_REGISTERS
    seqs = {
        # Register, retransmit, refresh, let it expire, sweep.
        "lifecycle": setup(False) + raw(r["register"]) + op(13, b"\x00") + raw(r["refresh"], advance="s", value=30)
        + op(11, advance="long", value=700) + raw(r["fetch"]),
        "contacts-and-limits": setup(False, max_contacts=2, policy=2) + raw(r["two-contacts"])
        + raw(r["outbound"]) + raw(r["path-supported"]) + raw(r["star"], advance="min", value=5),
        "refusals": setup(False, max_contacts=1) + raw(r["star-misuse"]) + raw(r["too-brief"])
        + raw(r["require-unknown"]) + raw(r["foreign-domain"]) + raw(r["options"]) + raw(r["invite"]),
        "lazy-expiry": setup(False, expiry=1) + raw(r["uri-equality"]) + raw(r["reg-id-alone"], advance="s", value=20)
        + raw(r["tel-contact"], advance="s", value=200) + raw(r["escaped-aor"], advance="huge", value=9000)
        + op(11, advance="back", value=100),
        "sample-devices": setup(False, max_bindings=3) + raw(r["sample"]) + raw(r["sample-second-device"])
        + op(14) + raw(r["unregister-param"], sweep=True),
        # Challenged, then answered by the harness (op 15), retransmitted, replayed.
        "auth": setup(True) + raw(r["register"]) + op(15, bytes(48)) + op(13, b"\x01") + op(15, bytes(range(48)))
        + op(11, advance="long", value=4000),
        "auth-small-window": setup(True, failures=0, small_replay=True) + raw(r["authorization"])
        + op(15, bytes([3] * 48)) + op(15, bytes([0x55] * 48), advance="s", value=61),
    }
    for name, data in seqs.items():
        write("registrar", f"seq-{name}", data)
    for name, datagram in TEST_REGISTERS.items():
        write("registrar", f"tests-{name}", setup(False) + raw(datagram))
    for name, datagram in rfc4475():
        if b"REGISTER" in datagram[:16]:
            write("registrar", f"rfc4475-{name}", setup(name.startswith("regaut")) + raw(datagram))


# ---------------------------------------------------------------------------------------------
# Users files and configuration files


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


USERS_FILES = {
    # docs/authentication.md, "Users file".
    "readme.toml": (0, """# Realm for entries that do not name one (optional).
default_realm = "example.com"

[[user]]
username = "alice"
realm = "example.com"     # optional when default_realm is set
password = "secret"       # HA1 for MD5 and SHA-256 is derived at load; the password is not kept

[[user]]
username = "bob"
ha1_md5 = "0d7e8a9a2f3ac4c5bc9b0f1ff4a8d0c3"
ha1_sha256 = "%s"
aors = ["sip:frontdesk@example.com", "sip:*@pbx.example.com"]
""" % sha("bob:example.com:pw")),
    "readme.csv": (1, """username,realm,password,ha1_md5,ha1_sha256,aors
alice,example.com,secret,,,
bob,example.com,,0d7e8a9a2f3ac4c5bc9b0f1ff4a8d0c3,%s,sip:frontdesk@example.com
""" % sha("bob:example.com:pw")),
    # src/auth/credentials.rs tests.
    "tests-entries.toml": (0, """default_realm = "example.com"
[[user]]
username = "alice"
password = "secret"
[[user]]
username = "bob"
realm = "other.org"
ha1_md5 = "%s"
aors = ["sip:desk@other.org", "sip:*@pbx.other.org"]
""" % md5("bob:other.org:pw").upper()),
    "tests-duplicate.toml": (2, "[[user]]\nusername = \"a\"\npassword = \"x\"\n\n[[user]]\nusername = \"a\"\npassword = \"y\"\n"),
    "tests-typo.toml": (2, "[[user]]\nusername = \"a\"\npasword = \"x\"\n"),
    "tests-both.toml": (2, "[[user]]\nusername = \"a\"\npassword = \"x\"\nha1_md5 = \"00\"\n"),
    "tests-realm-space.toml": (0, "[[user]]\nusername = \"a\"\nrealm = \"Example Corp\"\npassword = \"x\"\n"),
    "tests-quoting.csv": (3, "# users\n\nusername, realm ,password,ha1_md5,ha1_sha256,aors\r\n"
                             "alice,example.com,secret,,,\n"
                             "\"bob\",example.com,,%s,%s,sip:desk@example.com sip:*@pbx.example.com\n"
                             "carol,,\"pa,ss\"\"word\",,,\n" % (md5("bob:example.com:pw"), sha("bob:example.com:pw"))),
    "tests-bad-quote.csv": (3, "#c\nusername,password\na,\"b\n"),
    "tests-columns.csv": (1, "username,password\na,b,c\n"),
}


def readme_config():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    start = readme.index("```toml\n# corereg.toml") + len("```toml\n")
    return readme[start:readme.index("```", start)]


CONFIG_FILES = {
    "readme.toml": readme_config(),
    # src/config.rs tests.
    "tests-precedence.toml": 'listen = "127.0.0.1:5070"\ndomain = ["Example.COM"]\nmin-expires = 30\n'
                             'max-expires = 7200\nover-limit = "evict-oldest"\n',
    "tests-domains.toml": 'domain = ["a.example"]\n',
    "tests-cpu-list-text.toml": 'cpu-list = "1-2"\n',
    "tests-cpu-list-array.toml": "cpu-list = [1, 2]\n",
    "tests-cpu-list-dup.toml": "cpu-list = [1, 1]\n",
    "tests-recv-batch.toml": "recv-batch = 4\n",
    "tests-auth.toml": 'auth = "required"\ncredentials = "/etc/corereg/users.csv"\n'
                       'realm = ["example.com=Example Corp"]\nnonce-ttl = 120\nauth-max-failures = 5\n',
    "tests-bad-auth.toml": 'auth = "sometimes"\n',
    "tests-bad-realm.toml": 'realm = ["nope"]\n',
}


def main():
    for name, datagram in rfc4475():
        write("parse", f"rfc4475-{name}", datagram)
    for name, datagram in TEST_REGISTERS.items():
        write("parse", f"tests-{name}", datagram)
    registrar_seeds()
    for name, (selector, text) in USERS_FILES.items():
        write("users_file", name, bytes([selector]) + text.encode())
    for name, text in CONFIG_FILES.items():
        write("config", name, text)


if __name__ == "__main__":
    main()
