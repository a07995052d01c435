"""TLS material made with the openssl command at test time: CAs, server certificates (SAN
localhost and 127.0.0.1) and client certificates, shared by the backend and client TLS tests."""
import os
import subprocess


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "openssl %s: %s" % (" ".join(args), r.stderr)
    return r.stdout


def make_ca(d, name):
    """name.crt and name.key: a self-signed CA."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=%s" % name,
            "-keyout", "%s.key" % name, "-out", "%s.crt" % name, cwd=d)


def make_cert(d, ca, name, cn, san=None):
    """name.crt and name.key for CN cn, signed by ca; san (e.g. "DNS:localhost, IP:127.0.0.1") if given."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % cn,
            "-keyout", "%s.key" % name, "-out", "%s.csr" % name, cwd=d)
    args = ["x509", "-req", "-in", "%s.csr" % name, "-CA", "%s.crt" % ca, "-CAkey", "%s.key" % ca,
            "-CAcreateserial", "-days", "2", "-out", "%s.crt" % name]
    if san:
        with open(os.path.join(d, "%s.ext" % name), "w") as f:
            f.write("subjectAltName = %s\n" % san)
        args += ["-extfile", "%s.ext" % name]
    openssl(*args, cwd=d)
    os.chmod(os.path.join(d, "%s.key" % name), 0o600)


def make_server_cert(d, ca, name="server"):
    make_cert(d, ca, name, "localhost", san="DNS:localhost, IP:127.0.0.1")
