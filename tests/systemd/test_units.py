"""The systemd units, sysusers/tmpfiles files, `make install` and `make uninstall`.

Every unit must pass `systemd-analyze verify` without a single message, the
service must score an exposure of at most 2.0 in `systemd-analyze security`,
and the installed files must agree with each other (socket path, user,
directories, stop timeout). Installs go to a temporary directory only
(DESTDIR, or PREFIX with POSTINSTALL=no): nothing on the machine changes.
"""
import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANALYZE = shutil.which("systemd-analyze")
MAX_EXPOSURE = 2.0
DEFAULT_SHUTDOWN_TIMEOUT = 30.0

needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="!!! systemd-analyze NOT FOUND: unit verification and the security "
           "score were NOT checked (apt-get install systemd) !!!")
if ANALYZE is None:
    print("\n!!! tests/systemd: systemd-analyze not found; verify/security tests "
          "are SKIPPED !!!\n", file=sys.stderr)


def make(*args):
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"make {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def install_tree(dest, *extra):
    make("install", f"DESTDIR={dest}", "PREFIX=/usr", *extra)
    return dest


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def unit(path):
    """A unit file as {section: {key: [values]}} (keys may repeat)."""
    sections, cur = {}, None
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            cur = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        cur.setdefault(key, []).append(value)
    return sections


def ini(path):
    p = configparser.ConfigParser(inline_comment_prefixes=(" ;",), comment_prefixes=(";", "#"),
                                  interpolation=None, strict=False)
    p.read(path)
    return p


def seconds(value):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min)?", value)
    assert m, f"unexpected time span {value!r}"
    return float(m.group(1)) * (60 if m.group(2) == "min" else 1)


INSTALLED = [
    "etc/pglease/pglease.ini",
    "usr/bin/pglease",
    "usr/lib/systemd/system/pglease.service",
    "usr/lib/systemd/system/pglease.socket",
    "usr/lib/sysusers.d/pglease.conf",
    "usr/lib/tmpfiles.d/pglease.conf",
    "usr/share/doc/pglease/README.md",
]


def test_install_tree(tmp_path):
    root = install_tree(tmp_path)
    assert files_under(root) == INSTALLED
    assert os.access(root / "usr/bin/pglease", os.X_OK)
    assert (root / "etc/pglease/pglease.ini").stat().st_mode & 0o7777 == 0o640
    assert (root / "etc/pglease").stat().st_mode & 0o7777 == 0o750
    svc = unit(root / "usr/lib/systemd/system/pglease.service")["Service"]
    assert svc["ExecStart"] == ["/usr/bin/pglease /etc/pglease/pglease.ini"]
    assert svc["ExecReload"] == ["/usr/bin/pglease --check /etc/pglease/pglease.ini",
                                 "/bin/kill -HUP $MAINPID"]
    for f in ("usr/lib/systemd/system/pglease.service", "usr/lib/systemd/system/pglease.socket",
              "usr/lib/tmpfiles.d/pglease.conf"):
        assert not re.search(r"@[A-Z]+@", (root / f).read_text()), f"unsubstituted placeholder in {f}"


def test_installed_config_is_valid_and_matches_the_socket(tmp_path):
    root = install_tree(tmp_path)
    conf = root / "etc/pglease/pglease.ini"
    r = subprocess.run([str(root / "usr/bin/pglease"), "--check", str(conf)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    g = ini(conf)["pglease"]
    sock = unit(root / "usr/lib/systemd/system/pglease.socket")["Socket"]
    # pglease recognizes a passed socket by its path: <dir>/.s.PGSQL.<port>.
    assert sock["ListenStream"] == [f"{g['unix_socket_dir']}/.s.PGSQL.{g['listen_port']}"]
    assert g["unix_socket_dir"] == "/run/pglease"
    assert sock["SocketMode"] == [g.get("unix_socket_mode", "0777")]
    # Every key keeps its documentation: only the socket directory differs.
    sample = (REPO / "conf/pglease.ini").read_text().splitlines()
    installed = conf.read_text().splitlines()
    assert [l for l in installed if l not in sample] == [
        "; Installed for pglease.service and pglease.socket (the default is /tmp).",
        "unix_socket_dir = /run/pglease"]


def test_units_agree_with_each_other(tmp_path):
    root = install_tree(tmp_path)
    svc = unit(root / "usr/lib/systemd/system/pglease.service")["Service"]
    sock = unit(root / "usr/lib/systemd/system/pglease.socket")["Socket"]
    sysusers = (root / "usr/lib/sysusers.d/pglease.conf").read_text()
    tmpfiles = (root / "usr/lib/tmpfiles.d/pglease.conf").read_text()

    assert svc["Type"] == ["notify"] and svc["NotifyAccess"] == ["main"]
    assert svc["User"] == ["pglease"] and svc["Group"] == ["pglease"]
    assert sock["SocketUser"] == ["pglease"] and sock["SocketGroup"] == ["pglease"]
    assert re.search(r"^u\s+pglease\s", sysusers, re.M)
    # The socket lives in the runtime directory, which must survive a stop of
    # the service while pglease.socket keeps listening there.
    assert svc["RuntimeDirectory"] == ["pglease"]
    assert svc["RuntimeDirectoryPreserve"] == ["yes"]
    assert os.path.dirname(sock["ListenStream"][0]) == "/run/pglease"
    assert svc["ReadWritePaths"] == ["/run/pglease"]
    assert re.search(r"^d\s+/run/pglease\s+0755\s+pglease\s+pglease\s", tmpfiles, re.M)
    assert re.search(r"^d\s+/etc/pglease\s+0750\s+root\s+pglease\s", tmpfiles, re.M)
    assert re.search(r"^z\s+/etc/pglease/pglease.ini\s+0640\s+root\s+pglease\s", tmpfiles, re.M)
    # systemd's SIGKILL must not cut a graceful shutdown short.
    conf = ini(root / "etc/pglease/pglease.ini")["pglease"]
    shutdown_timeout = float(conf.get("shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT))
    assert seconds(svc["TimeoutStopSec"][0]) > shutdown_timeout
    assert svc["KillSignal"] == ["SIGTERM"]
    assert int(svc["LimitNOFILE"][0]) > int(conf.get("max_client_conn", 100)) * 2


def test_sysusers_and_tmpfiles_apply(tmp_path):
    """The user and the directories as systemd creates them, in a scratch root."""
    for tool in ("systemd-sysusers", "systemd-tmpfiles"):
        if shutil.which(tool) is None:
            pytest.skip(f"!!! {tool} NOT FOUND: sysusers/tmpfiles files NOT checked !!!")
    root = install_tree(tmp_path / "dest")
    scratch = tmp_path / "root"
    (scratch / "etc/pglease").mkdir(parents=True)
    (scratch / "etc/pglease/pglease.ini").write_text("[pglease]\n")
    (scratch / "etc/pglease/pglease.ini").chmod(0o600)
    for cmd in (["systemd-sysusers", f"--root={scratch}", str(root / "usr/lib/sysusers.d/pglease.conf")],
                ["systemd-tmpfiles", f"--root={scratch}", "--create",
                 str(root / "usr/lib/tmpfiles.d/pglease.conf")]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Failed" not in r.stderr, r.stderr
    user = next(l for l in (scratch / "etc/passwd").read_text().splitlines() if l.startswith("pglease:"))
    uid, gid, shell = int(user.split(":")[2]), int(user.split(":")[3]), user.split(":")[6]
    assert uid < 1000 and shell.endswith("nologin"), user      # a system user, no login
    run = (scratch / "run/pglease").stat()
    assert (run.st_uid, run.st_gid, run.st_mode & 0o7777) == (uid, gid, 0o755)
    etc = (scratch / "etc/pglease").stat()
    assert (etc.st_uid, etc.st_gid, etc.st_mode & 0o7777) == (0, gid, 0o750)
    conf = (scratch / "etc/pglease/pglease.ini").stat()
    assert (conf.st_uid, conf.st_gid, conf.st_mode & 0o7777) == (0, gid, 0o640)


def test_install_keeps_an_existing_config(tmp_path):
    conf = tmp_path / "etc/pglease/pglease.ini"
    conf.parent.mkdir(parents=True)
    conf.write_text("[pglease]\nlisten_port = 7000\n")
    out = make("install", f"DESTDIR={tmp_path}", "PREFIX=/usr")
    assert conf.read_text() == "[pglease]\nlisten_port = 7000\n"
    assert "kept the existing" in out


def test_uninstall_removes_everything(tmp_path):
    install_tree(tmp_path)
    make("uninstall", f"DESTDIR={tmp_path}", "PREFIX=/usr")
    assert files_under(tmp_path) == []
    assert not (tmp_path / "etc/pglease").exists()
    assert not (tmp_path / "usr/share/doc/pglease").exists()


def test_uninstall_keeps_a_changed_config(tmp_path):
    install_tree(tmp_path)
    conf = tmp_path / "etc/pglease/pglease.ini"
    conf.write_text(conf.read_text() + "\nmine = host=/run/postgresql\n")
    out = make("uninstall", f"DESTDIR={tmp_path}", "PREFIX=/usr")
    assert files_under(tmp_path) == ["etc/pglease/pglease.ini"]
    assert "kept" in out


@needs_analyze
def test_units_verify(tmp_path):
    # verify wants ExecStart's binary at the path the unit names, so the
    # install goes to PREFIX=<tmp> itself, not under a DESTDIR.
    make("install", f"PREFIX={tmp_path}", f"SYSCONFDIR={tmp_path}/etc", "POSTINSTALL=no")
    units = sorted(str(p) for p in (tmp_path / "lib/systemd/system").iterdir())
    assert [os.path.basename(u) for u in units] == ["pglease.service", "pglease.socket"]
    r = subprocess.run([ANALYZE, "verify", *units], capture_output=True, text=True)
    # verify exits 0 on unknown keys and bad values too: any message fails.
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr


@needs_analyze
def test_security_exposure(tmp_path):
    root = install_tree(tmp_path)
    service = root / "usr/lib/systemd/system/pglease.service"
    r = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(service)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"Overall exposure level for pglease\.service: (\d+(?:\.\d+)?)", r.stdout)
    assert m, r.stdout + r.stderr
    exposure = float(m.group(1))
    print(f"\nsystemd-analyze security: pglease.service exposure {exposure}", file=sys.stderr)
    assert exposure <= MAX_EXPOSURE, r.stdout


def test_sandbox_keeps_what_pglease_needs(tmp_path):
    """The score must not come from switching off what pglease uses."""
    svc = unit(install_tree(tmp_path) / "usr/lib/systemd/system/pglease.service")["Service"]
    # Unix sockets (clients, /run/postgresql, sd_notify) and TCP to remote servers.
    assert set(" ".join(svc["RestrictAddressFamilies"]).split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "PrivateNetwork" not in svc and "IPAddressDeny" not in svc
    # Peer authentication reads other users' uids off the socket.
    assert "PrivateUsers" not in svc and "DynamicUser" not in svc
    # /run/postgresql stays reachable: not hidden, not made inaccessible.
    for key in ("InaccessiblePaths", "TemporaryFileSystem", "RootDirectory", "RootImage"):
        assert key not in svc, key
    assert svc["ProtectSystem"] == ["strict"]
