#!/usr/bin/env python3
"""Runs a systemd service unit the way systemd runs it, without systemd (scripts/e2e-service).

There is no systemd as PID 1 on the test machines, so `systemctl start masq` cannot be tested; this
runner does, for one service, what the service manager does with the settings masq.service uses
(systemd.service(5), systemd.exec(5), systemd.kill(5); systemd 252 behaviour):

  - reads the unit file and its drop-ins (`--drop-in DIR`: DIR/*.conf in file-name order over every
    DIR, the first DIR winning for a name, as /etc wins over /run over /usr/lib); list settings
    append and an empty assignment resets them; a scalar's last assignment wins;
  - builds the environment: the manager's own variables (PATH, HOME/USER/LOGNAME/SHELL of User=,
    INVOCATION_ID, NOTIFY_SOCKET, JOURNAL_STREAM, RUNTIME_DIRECTORY), then
    Environment= (quoted words, C escapes), then EnvironmentFile= (`-` prefix: may be missing), the
    later overriding the earlier;
  - splits ExecStart=/ExecReload=/ExecStopPost= into words (quotes, C escapes, the @-:+! prefixes)
    and expands variables as systemd does: a word that is exactly `$VAR` becomes the value split at
    whitespace (zero or more words), `${VAR}` anywhere in a word is replaced as-is (one word), `$$`
    is a `$`; `$VAR` inside a longer word stays as written;
  - creates RuntimeDirectory= under a root of the caller's choice (/run for real, a test's own
    directory otherwise), owned by User=/Group= with RuntimeDirectoryMode=, kept or removed at a
    stop as RuntimeDirectoryPreserve= says, and always kept across a restart;
  - runs the command under setpriv(1) with User=, Group= (and the user's groups), the
    CapabilityBoundingSet=, AmbientCapabilities= (also inheritable, as systemd raises them) and
    NoNewPrivileges=; in its own session, umask 0022, cwd /, stdin /dev/null, stdout and stderr a
    stream socket the runner reads as journald would, named by JOURNAL_STREAM (st_dev:st_ino);
  - listens on NOTIFY_SOCKET (a path, or @NAME in the abstract namespace) with SO_PASSCRED and
    records every datagram with its sender and a snapshot of facts taken as it arrives: the
    NFQUEUE queues bound (/proc/net/netfilter/nfnetlink_queue of the runner's network namespace,
    so run it in the service's) and the raw table's rules (`iptables -t raw -S`);
  - Type=notify: a start is done at READY=1 from the main process (NotifyAccess=main), failed when
    the process exits first, and after TimeoutStartSec= stopped again (SERVICE_RESULT=timeout);
  - ExecReload= with $MAINPID, then waits for the READY=1 that follows the service's RELOADING=1;
  - stop: KillSignal= (restart: RestartKillSignal=) to the main process (KillMode=mixed or
    process) or the whole process group (control-group), SIGKILL after TimeoutStopSec=, then
    ExecStopPost= with SERVICE_RESULT, EXIT_CODE and EXIT_STATUS;
  - Restart= (no, always, on-failure) after RestartSec= when the process exits on its own, within
    StartLimitBurst= starts per StartLimitIntervalSec=.
  - with --sandbox, the file-system settings in a mount namespace of the service's own:
    ProtectSystem= (strict: every mount read-only but /dev, /proc and /sys), ReadWritePaths= bound
    back read-write, PrivateTmp=, ProtectHome=, ProtectKernelTunables=, ProtectControlGroups=.
What it does not do: cgroups, seccomp (RestrictAddressFamilies=, LockPersonality=...), PrivateDevices=,
resource limits: systemd-analyze verify checks their syntax, systemd itself what they do.

  unitrun.py show  UNIT-OPTIONS            the command lines and environment, as JSON
  unitrun.py serve UNIT-OPTIONS --control SOCK --events FILE --log FILE [--notify-socket PATH|@NAME]
                   [--facts-iptables CMD] [--sandbox]   runs the service manager; SOCK takes the commands below
  unitrun.py ctl SOCK start|stop|restart|reload|status|quit [TIMEOUT]
  unitrun.py ctl SOCK kill SIGNAL          a signal to the main process (systemctl kill --kill-whom=main)
  unitrun.py ctl SOCK wait-exit TIMEOUT    until the main process has exited
  unitrun.py selftest                      the parser's own cases
UNIT-OPTIONS: --unit FILE [--drop-in DIR]... [--runtime-root DIR (default /run)]
`ctl` prints the reply (JSON) and exits 0 when it says ok. Every event (start, exec, notify, exit,
signal, reload, stop-post, restart, failed) is a JSON line in the events file, with its time.
"""

import argparse
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

# ---------------------------------------------------------------- unit files


def parse_unit_text(text, name):
    """[(section, key, value)] of a unit file (systemd.syntax(7)): # and ; comments, a trailing
    backslash continues the line, whitespace around = and at the ends dropped."""
    entries, section, pending = [], None, ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ValueError(f"{name}:{number}: bad section header {line!r}")
            section = line[1:-1]
            continue
        if "=" not in line:
            raise ValueError(f"{name}:{number}: not an assignment: {line!r}")
        if section is None:
            raise ValueError(f"{name}:{number}: assignment outside a section")
        key, value = line.split("=", 1)
        entries.append((section, key.strip(), value.strip()))
    return entries


class Unit:
    """A unit file and its drop-ins, in the order systemd applies them."""

    def __init__(self, path, drop_in_dirs=()):
        self.path = path
        self.name = os.path.basename(path)
        self.files = [path]
        with open(path) as f:
            self.entries = parse_unit_text(f.read(), path)
        chosen = {}
        for directory in drop_in_dirs:
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for n in names:
                if n.endswith(".conf") and n not in chosen:
                    chosen[n] = os.path.join(directory, n)
        for n in sorted(chosen):
            with open(chosen[n]) as f:
                self.entries += parse_unit_text(f.read(), chosen[n])
            self.files.append(chosen[n])

    def values(self, key, section="Service"):
        """A list setting: every assignment in order, an empty one dropping those before it."""
        out = []
        for s, k, v in self.entries:
            if s == section and k == key:
                out = [] if v == "" else out + [v]
        return out

    def value(self, key, default=None, section="Service"):
        """A scalar setting: the last assignment; an empty one means the default."""
        v = self.values(key, section)
        return v[-1] if v else default


_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                   "\\": "\\", '"': '"', "'": "'", "s": " "}


def split_words(text, what):
    """systemd's extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE) over a whole value: words
    split at unquoted whitespace; "..." and '...' anywhere in a word; C escapes (\\n, \\xNN, \\NNN
    octal, \\uXXXX) in and out of quotes."""
    words, i, n = [], 0, len(text)
    while True:
        while i < n and text[i] in " \t\n\r":
            i += 1
        if i >= n:
            return words
        word, quote = [], None
        while i < n:
            c = text[i]
            if c == "\\":
                if i + 1 >= n:
                    raise ValueError(f"{what}: a trailing backslash")
                e = text[i + 1]
                if e in _SIMPLE_ESCAPES:
                    word.append(_SIMPLE_ESCAPES[e])
                    i += 2
                elif e == "x" and re.match(r"[0-9a-fA-F]{2}", text[i + 2:i + 4]):
                    word.append(chr(int(text[i + 2:i + 4], 16)))
                    i += 4
                elif e in "01234567" and re.match(r"[0-7]{3}", text[i + 1:i + 4]):
                    word.append(chr(int(text[i + 1:i + 4], 8)))
                    i += 4
                elif e == "u" and re.match(r"[0-9a-fA-F]{4}", text[i + 2:i + 6]):
                    word.append(chr(int(text[i + 2:i + 6], 16)))
                    i += 6
                else:
                    raise ValueError(f"{what}: an unknown escape \\{e}")
                continue
            if quote:
                if c == quote:
                    quote = None
                else:
                    word.append(c)
            elif c in "\"'":
                quote = c
            elif c in " \t\n\r":
                break
            else:
                word.append(c)
            i += 1
        if quote:
            raise ValueError(f"{what}: an unterminated {quote}")
        words.append("".join(word))


def resolve_specifiers(text, spec, what):
    """systemd.unit(5) specifiers, the few a service of this kind uses; any other is an error."""
    def one(m):
        c = m.group(1)
        if c not in spec:
            raise ValueError(f"{what}: specifier %{c} is not one this runner knows")
        return spec[c]
    return re.sub(r"%(.)", one, text)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def parse_environment(values, spec, what="Environment="):
    """Environment= assignments, in order, into a dict (later wins); invalid ones are dropped,
    as systemd drops them with a warning."""
    env = {}
    for v in values:
        for word in split_words(resolve_specifiers(v, spec, what), what):
            name, eq, value = word.partition("=")
            if eq and _ENV_NAME.match(name):
                env[name] = value
            else:
                print(f"unitrun: {what}: ignoring the invalid assignment {word!r}", file=sys.stderr)
    return env


def parse_environment_file(text, what):
    """An EnvironmentFile= (systemd's load_env_file): KEY=VALUE lines, # and ; comments, values
    in "..." (backslash escapes \\" \\\\ \\$ \\` and a backslash-newline) or '...' (literal),
    else unquoted with whitespace trimmed and a trailing backslash joining the next line."""
    env, i, n = {}, 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            break
        if text[i] in "#;":
            while i < n and text[i] != "\n":
                i += 1
            continue
        m = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=[ \t]*").match(text, i)
        if not m:
            end = text.find("\n", i)
            end = n if end < 0 else end
            print(f"unitrun: {what}: ignoring {text[i:end]!r}", file=sys.stderr)
            i = end
            continue
        name, i, value = m.group(1), m.end(), []
        while i < n and text[i] not in "\n":
            c = text[i]
            if c == '"':
                i += 1
                while i < n and text[i] != '"':
                    if text[i] == "\\" and i + 1 < n:
                        if text[i + 1] == "\n":
                            i += 2
                            continue
                        if text[i + 1] in '"\\`$':
                            value.append(text[i + 1])
                            i += 2
                            continue
                    value.append(text[i])
                    i += 1
                i += 1
            elif c == "'":
                end = text.find("'", i + 1)
                end = n if end < 0 else end
                value.append(text[i + 1:end])
                i = end + 1
            elif c == "\\" and i + 1 < n:
                if text[i + 1] == "\n":
                    i += 2
                    continue
                value.append(text[i + 1])
                i += 2
            else:
                value.append(c)
                i += 1
        env[name] = "".join(value).rstrip(" \t\r")
    return env


def parse_exec(value, spec, what):
    """An Exec*= line: its prefixes (@ - : + !) and its words, before variable expansion."""
    value = resolve_specifiers(value, spec, what)
    prefixes = ""
    while value and value[0] in "@-:+!":
        prefixes += value[0]
        value = value[1:]
    words = split_words(value, what)
    if not words:
        raise ValueError(f"{what}: no command")
    if ";" in words:
        raise ValueError(f"{what}: several commands on one line (';') are not supported here")
    return {"prefixes": prefixes, "words": words}


def expand_argv(words, env):
    """systemd's replace_env_argv: a word that is exactly $NAME becomes the value split at
    whitespace (quotes honoured), so an empty or unset variable is no word at all; ${NAME}
    anywhere is the value as-is; $$ is $; $NAME inside a longer word is left as written."""
    out = []
    for w in words:
        if w.startswith("$") and len(w) > 1 and w[1] not in "{$" and _ENV_NAME.match(w[1:]):
            out += split_words(env.get(w[1:], ""), f"${w[1:]}")
            continue
        out.append(re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                          lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), ""), w))
    return out


_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
_UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
_MOUNT = shutil.which("mount") or "/usr/bin/mount"


def timespan(text, default):
    """A systemd time span in seconds: 100ms, 1.5s, 2min, 1h 30s, infinity; a bare number is seconds."""
    if text is None:
        return default
    if text == "infinity":
        return None
    units = {"us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1, "sec": 1, "": 1,
             "m": 60, "min": 60, "h": 3600, "hr": 3600}
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)\s*([a-z]*)", text):
        if unit not in units:
            raise ValueError(f"time span {text!r}: unit {unit!r}")
        total += float(number) * units[unit]
    return total


def capability_names(values):
    """CapabilityBoundingSet=/AmbientCapabilities= as setpriv's names (net_admin); a ~ list inverts."""
    caps = []
    for v in values:
        for c in v.split():
            if c.startswith("~"):
                raise ValueError("an inverted (~) capability list is not supported here")
            caps.append(c.lower().removeprefix("cap_"))
    return caps


def yes(text):
    return (text or "").lower() in ("1", "yes", "true", "on")


class ServiceConfig:
    """What the unit asks for, resolved: credentials, commands, environment, timeouts."""

    def __init__(self, unit, runtime_root="/run"):
        self.unit = unit
        self.runtime_root = runtime_root
        self.type = unit.value("Type", "simple")
        self.user = unit.value("User")
        self.group = unit.value("Group")
        spec = {"%": "%", "n": unit.name, "N": unit.name.rsplit(".", 1)[0],
                "p": unit.name.rsplit(".", 1)[0].split("@")[0], "i": "", "I": "", "t": runtime_root}
        if self.user:
            pw = pwd.getpwnam(self.user)
            self.uid, self.home, self.shell = pw.pw_uid, pw.pw_dir, pw.pw_shell
            self.gid = grp.getgrnam(self.group).gr_gid if self.group else pw.pw_gid
            spec.update(u=self.user, U=str(self.uid), h=self.home)
        else:
            self.uid, self.home, self.shell = 0, "/root", "/bin/sh"
            self.gid = grp.getgrnam(self.group).gr_gid if self.group else 0
            spec.update(u="root", U="0", h="/root")
        self.spec = spec
        self.exec_start = [parse_exec(v, spec, "ExecStart=") for v in unit.values("ExecStart")]
        if len(self.exec_start) != 1:
            raise ValueError(f"{unit.name}: wanted one ExecStart=, found {len(self.exec_start)}")
        self.exec_reload = [parse_exec(v, spec, "ExecReload=") for v in unit.values("ExecReload")]
        self.exec_stop_post = [parse_exec(v, spec, "ExecStopPost=") for v in unit.values("ExecStopPost")]
        self.environment = parse_environment(unit.values("Environment"), spec)
        self.environment_files = [resolve_specifiers(v, spec, "EnvironmentFile=")
                                  for v in unit.values("EnvironmentFile")]
        self.runtime_directories = [os.path.join(runtime_root, d) for v in unit.values("RuntimeDirectory")
                                    for d in resolve_specifiers(v, spec, "RuntimeDirectory=").split()]
        self.runtime_mode = int(unit.value("RuntimeDirectoryMode", "0755"), 8)
        self.runtime_preserve = unit.value("RuntimeDirectoryPreserve", "no").lower()
        self.ambient = capability_names(unit.values("AmbientCapabilities"))
        self.bounding = capability_names(unit.values("CapabilityBoundingSet")) \
            if unit.values("CapabilityBoundingSet") else None
        self.no_new_privileges = yes(unit.value("NoNewPrivileges"))
        self.sandbox = {
            "protect_system": unit.value("ProtectSystem", "no").lower(),
            "read_write_paths": [p for v in unit.values("ReadWritePaths")
                                 for p in split_words(resolve_specifiers(v, spec, "ReadWritePaths="), "ReadWritePaths=")],
            "protect_home": unit.value("ProtectHome", "no").lower(),
            "private_tmp": yes(unit.value("PrivateTmp")),
            "protect_kernel_tunables": yes(unit.value("ProtectKernelTunables")),
            "protect_control_groups": yes(unit.value("ProtectControlGroups")),
        }
        self.kill_signal = signal_number(unit.value("KillSignal", "SIGTERM"))
        self.restart_kill_signal = signal_number(unit.value("RestartKillSignal", unit.value("KillSignal", "SIGTERM")))
        self.kill_mode = unit.value("KillMode", "control-group")
        self.restart = unit.value("Restart", "no")
        self.restart_sec = timespan(unit.value("RestartSec"), 0.1)
        self.timeout_start = timespan(unit.value("TimeoutStartSec", unit.value("TimeoutSec")), 90.0)
        self.timeout_stop = timespan(unit.value("TimeoutStopSec", unit.value("TimeoutSec")), 90.0)
        self.start_limit_burst = int(unit.value("StartLimitBurst", "5", section="Unit"))
        self.start_limit_interval = timespan(unit.value("StartLimitIntervalSec", section="Unit"), 10.0)

    def files_environment(self):
        env = {}
        for f in self.environment_files:
            optional = f.startswith("-")
            path = f[1:] if optional else f
            try:
                with open(path) as fh:
                    env.update(parse_environment_file(fh.read(), path))
            except FileNotFoundError:
                if not optional:
                    raise ValueError(f"EnvironmentFile={path}: no such file (and no '-' prefix)")
        return env

    def environment_for(self, extra):
        """The process environment: the manager's variables, then Environment=, then the files."""
        env = {"PATH": _DEFAULT_PATH}
        if self.user:
            env.update(HOME=self.home, USER=self.user, LOGNAME=self.user, SHELL=self.shell)
        if self.runtime_directories:
            env["RUNTIME_DIRECTORY"] = ":".join(self.runtime_directories)
        env.update(extra)
        env.update(self.environment)
        env.update(self.files_environment())
        return env

    def argv(self, command, env):
        """The argv to exec (the executable looked up in PATH when not absolute), and argv[0]."""
        words = expand_argv(command["words"], env)
        path = words[0]
        if "@" in command["prefixes"]:
            words = words[1:]
        if not path.startswith("/"):
            for d in _DEFAULT_PATH.split(":"):
                if os.access(os.path.join(d, path), os.X_OK):
                    path = os.path.join(d, path)
                    break
        return path, words

    def credentials_prefix(self, command):
        """setpriv's options for User=/Group=/capabilities/NoNewPrivileges=; '+' runs as root
        with full privileges, as systemd does; '!' keeps the uid change but not the capability
        limits (systemd's ambient-capability fallback): not used by masq."""
        if "+" in command["prefixes"]:
            return []
        out = [_SETPRIV]
        if self.user:
            # systemd sets the user's supplementary groups too (initgroups), Group= or not.
            out += [f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups"]
        if self.bounding is not None:
            out.append("--bounding-set=-all" + "".join(f",+{c}" for c in self.bounding))
        if self.ambient:
            caps = "-all" + "".join(f",+{c}" for c in self.ambient)
            out += [f"--inh-caps={caps}", f"--ambient-caps={caps}"]
        if self.no_new_privileges:
            out.append("--no-new-privs")
        return out + ["--"] if len(out) > 1 else []

    def show(self):
        env = self.environment_for({"NOTIFY_SOCKET": "(the runner's)", "JOURNAL_STREAM": "(the runner's)",
                                    "INVOCATION_ID": "(per start)"})
        start = self.argv(self.exec_start[0], env)
        return {"files": self.unit.files, "type": self.type, "user": self.user, "group": self.group,
                "uid": self.uid, "gid": self.gid, "environment": env,
                "exec_start": start[1], "exec_path": start[0],
                "exec_start_command": self.credentials_prefix(self.exec_start[0]) + [start[0]] + start[1][1:],
                "exec_reload": [self.argv(c, dict(env, MAINPID="<MAINPID>"))[1] for c in self.exec_reload],
                "exec_stop_post": [self.argv(c, env)[1] for c in self.exec_stop_post],
                "runtime_directories": self.runtime_directories, "runtime_mode": oct(self.runtime_mode),
                "runtime_preserve": self.runtime_preserve, "ambient": self.ambient, "bounding": self.bounding,
                "no_new_privileges": self.no_new_privileges,
                "kill_signal": signal.Signals(self.kill_signal).name,
                "restart_kill_signal": signal.Signals(self.restart_kill_signal).name,
                "kill_mode": self.kill_mode, "restart": self.restart, "restart_sec": self.restart_sec,
                "timeout_start": self.timeout_start, "timeout_stop": self.timeout_stop}


def signal_number(name):
    name = name.upper()
    if name.isdigit():
        return int(name)
    return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])


# ---------------------------------------------------------------- facts


def queues_bound():
    """The NFQUEUE queues with a listener, from this network namespace's
    /proc/net/netfilter/nfnetlink_queue (net/netfilter/nfnetlink_queue.c, seq_show: the queue
    number, then the listener's netlink port id)."""
    try:
        with open("/proc/net/netfilter/nfnetlink_queue") as f:
            return sorted(int(line.split()[0]) for line in f if line.strip())
    except FileNotFoundError:
        return []


def raw_rules(iptables):
    try:
        p = subprocess.run([iptables, "-t", "raw", "-S"], capture_output=True, text=True, timeout=10)
        return p.stdout.splitlines() if p.returncode == 0 else [f"(exit {p.returncode}: {p.stderr.strip()})"]
    except (OSError, subprocess.TimeoutExpired) as e:
        return [f"({e})"]


def process_facts(pid):
    """Who the process runs as: /proc/PID/status's Uid, Gid, Groups, Cap* and NoNewPrivs, and its
    argv."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"):
                    out[k] = v.split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            out["cmdline"] = [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
        with open(f"/proc/{pid}/mountinfo") as f:
            # mount point -> ro or rw (field 6, the per-mount options), the last mount on a path winning
            out["mounts"] = {line.split()[4]: line.split()[5].split(",")[0] for line in f}
    except OSError as e:
        out["error"] = str(e)
    return out


# ---------------------------------------------------------------- the sandbox


def mount_points():
    """This mount namespace's mount points, from /proc/self/mountinfo (field 5, octal escapes)."""
    with open("/proc/self/mountinfo") as f:
        return [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in f]


def under(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def sandbox_exec(sandbox, exe, argv):
    """In the mount namespace `unshare --mount --propagation private` made: the unit's file-system
    sandbox as systemd.exec(5) describes it, then exec. ProtectSystem=strict makes every mount
    read-only but the API file systems /dev, /proc and /sys; yes covers /usr and /boot, full also
    /etc; ReadWritePaths= are bound back read-write (a leading - : may be missing); PrivateTmp=
    mounts fresh /tmp and /var/tmp; ProtectHome=yes makes /home, /root and /run/user inaccessible
    (read-only: read-only, tmpfs: empty); ProtectKernelTunables= makes /proc/sys and /sys
    read-only, ProtectControlGroups= /sys/fs/cgroup."""
    def mount(*args):
        p = subprocess.run([_MOUNT, *args], capture_output=True, text=True)
        if p.returncode != 0:
            print(f"unitrun sandbox: mount {' '.join(args)}: {p.stderr.strip()}", file=sys.stderr)
        return p.returncode == 0

    def read_only(roots, but=()):
        for mp in mount_points():
            if under(mp, roots) and not under(mp, but):
                mount("-o", "remount,bind,ro", mp)

    level = sandbox["protect_system"]
    if level == "strict":
        read_only(["/"], but=["/dev", "/proc", "/sys"])
    elif level in ("yes", "true", "full"):
        read_only(["/usr", "/boot", "/efi"] + (["/etc"] if level == "full" else []))
    if sandbox["protect_kernel_tunables"]:
        for p in ("/proc/sys", "/proc/sysrq-trigger", "/sys"):
            if os.path.exists(p) and p not in mount_points():
                mount("--bind", p, p)
        read_only(["/proc/sys", "/proc/sysrq-trigger", "/sys"])
    if sandbox["protect_control_groups"]:
        read_only(["/sys/fs/cgroup"])
    home = sandbox["protect_home"]
    for p in ("/home", "/root", "/run/user"):
        if not os.path.isdir(p):
            continue
        if home == "read-only":
            mount("--bind", p, p) and mount("-o", "remount,bind,ro", p)
        elif home in ("yes", "true", "tmpfs"):  # inaccessible, or an empty read-only tmpfs
            mode = "0755" if home == "tmpfs" else "000"
            mount("-t", "tmpfs", "-o", f"ro,mode={mode},nosuid,nodev,noexec", "tmpfs", p)
    if sandbox["private_tmp"]:
        for p in ("/tmp", "/var/tmp"):
            mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", p)
    for p in sandbox["read_write_paths"]:
        optional = p.startswith("-")
        p = p.lstrip("-+")
        if not os.path.exists(p):
            if optional:
                continue
            print(f"unitrun sandbox: ReadWritePaths={p}: no such path", file=sys.stderr)
            return 226  # systemd's EXIT_NAMESPACE
        if not (mount("--bind", p, p) and mount("-o", "remount,bind,rw", p)):
            return 226
    os.execv(exe, argv)


# ---------------------------------------------------------------- the service manager


def exit_fields(status):
    """(EXIT_CODE, EXIT_STATUS, SERVICE_RESULT-if-failed) of a wait status, as systemd.exec(5) names them."""
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return "exited", str(code), None if code == 0 else "exit-code"
    sig = os.WTERMSIG(status)
    name = signal.Signals(sig).name.removeprefix("SIG")
    if os.WCOREDUMP(status):
        return "dumped", name, "core-dump"
    # A death by these signals is a clean exit to systemd (SuccessExitStatus= aside).
    return "killed", name, None if sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE) else "signal"


class Manager:
    def __init__(self, config, events_path, log_path, notify_address, facts_iptables, sandboxed):
        self.config = config
        self.sandboxed = sandboxed
        self.events = open(events_path, "a", buffering=1)
        self.log_path = log_path
        self.facts_iptables = facts_iptables
        self.cv = threading.Condition()
        self.job = threading.RLock()  # one job (start, stop, reload, an automatic restart) at a time
        self.records = []
        self.main = None           # the running main process: {"pid", "popen", "ready", "exit", ...}
        self.state = "inactive"    # inactive, activating, active, reloading, deactivating, failed
        self.stopping = False      # a stop the runner asked for is under way
        self.starts = []
        self.t0 = time.monotonic()
        self.notify_address = notify_address
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        bind_to = "\0" + notify_address[1:] if notify_address.startswith("@") else notify_address
        if not notify_address.startswith("@"):
            try:
                os.unlink(notify_address)
            except FileNotFoundError:
                pass
        self.notify.bind(bind_to)
        if not notify_address.startswith("@"):
            os.chmod(notify_address, 0o777)  # as /run/systemd/notify: any service user may send
        self.notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        threading.Thread(target=self.notify_loop, daemon=True).start()

    # ---- events

    def record(self, kind, **fields):
        now = time.time()
        event = {"event": kind, "time": now, "t": round(time.monotonic() - self.t0, 6), **fields}
        with self.cv:
            event["seq"] = len(self.records)
            self.records.append(event)
            self.events.write(json.dumps(event, sort_keys=True) + "\n")
            self.cv.notify_all()
        return event

    def facts(self):
        started = time.monotonic()
        out = {"queues": queues_bound(), "raw": raw_rules(self.facts_iptables)}
        out["ms"] = round((time.monotonic() - started) * 1000, 1)
        return out

    def wait_for(self, predicate, timeout):
        """Waits (the condition's lock held by the caller) until predicate() is true or the time is up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not predicate():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self.cv.wait(left if left is None else min(left, 1.0))
        return True

    # ---- notify

    def notify_loop(self):
        space = socket.CMSG_SPACE(struct.calcsize("3i"))
        while True:
            data, ancillary, _, _ = self.notify.recvmsg(65536, space)
            received = time.monotonic()
            pid = uid = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid, uid, _ = struct.unpack("3i", payload[:struct.calcsize("3i")])
            text = data.decode(errors="replace")
            fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
            with self.cv:
                main = self.main
                main_pid = main["pid"] if main else None
            facts = self.facts()
            if fields.get("READY") == "1" and pid:
                facts["process"] = process_facts(pid)
            ev = self.record("notify", raw=text, fields=fields, pid=pid, uid=uid, main_pid=main_pid,
                             from_main=pid is not None and pid == main_pid,
                             received_t=round(received - self.t0, 6), monotonic_us=int(received * 1e6),
                             facts=facts)
            # NotifyAccess=main: only the main process's messages change the state.
            if ev["from_main"]:
                with self.cv:
                    if fields.get("READY") == "1":
                        main["ready"] = ev["seq"]
                        if self.state in ("activating", "reloading"):
                            self.state = "active"
                    if fields.get("RELOADING") == "1":
                        self.state = "reloading"
                        main["reloading"] = ev["seq"]
                    if fields.get("STOPPING") == "1":
                        self.state = "deactivating"
                        main["stopping"] = ev["seq"]
                    if "MAINPID" in fields:
                        self.record("ignored", why="MAINPID= changes are not followed by this runner")
                    self.cv.notify_all()

    # ---- processes

    def spawn(self, command, env, stdout_fd):
        """Runs one command with the unit's credentials; returns the Popen."""
        path, argv = self.config.argv(command, env)
        prefix = self.config.credentials_prefix(command)
        if prefix:
            exe, full = _SETPRIV, prefix + [path] + argv[1:]
            # setpriv execs argv[0] of what follows "--"; argv[0] as the unit gave it when @ was used
            if argv and argv[0] != path and "@" in command["prefixes"]:
                self.record("warning", why="@ (argv[0] other than the path) is not passed through setpriv")
        else:
            exe, full = path, argv
        if self.sandboxed:
            # A mount namespace of its own, set up as the unit's sandbox settings say, then the command.
            full = [_UNSHARE, "--mount", "--propagation", "private", "--", sys.executable,
                    os.path.abspath(__file__), "sandbox-exec", json.dumps(self.config.sandbox), exe, "--"] + full
            exe = _UNSHARE
        p = subprocess.Popen(full, executable=exe, env=env, cwd="/",
                             stdin=subprocess.DEVNULL, stdout=stdout_fd, stderr=stdout_fd,
                             start_new_session=True, umask=0o022, close_fds=True)
        return p, [path] + argv[1:]

    def run_helper(self, kind, command, env, timeout):
        """ExecReload=/ExecStopPost=: runs to its end (its output into the log), SIGKILL at the timeout."""
        with open(self.log_path, "ab", buffering=0) as log:
            p, argv = self.spawn(command, env, log.fileno())
            try:
                status = p.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                status, timed_out = p.wait(), True
        ok = status == 0 or "-" in command["prefixes"]
        return self.record(kind, argv=argv, status=status, timed_out=timed_out, ok=ok and not timed_out)

    def journal_reader(self, sock):
        """Reads what the service writes to stdout/stderr, as journald's stream does, into the log."""
        with open(self.log_path, "ab", buffering=0) as log:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                log.write(data)
        sock.close()

    def start_locked(self, why):
        """Spawns ExecStart= (the job lock held). Returns the new main process's record."""
        now = time.monotonic()
        self.starts = [t for t in self.starts if now - t < self.config.start_limit_interval] + [now]
        if len(self.starts) > self.config.start_limit_burst:
            with self.cv:
                self.state = "failed"
            self.record("failed", why=f"start-limit-hit: more than {self.config.start_limit_burst} starts "
                                      f"in {self.config.start_limit_interval} s")
            return None
        cfg = self.config
        for d in cfg.runtime_directories:
            os.makedirs(d, exist_ok=True)
            os.chown(d, cfg.uid, cfg.gid)
            os.chmod(d, cfg.runtime_mode)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        st = os.fstat(theirs.fileno())
        extra = {"NOTIFY_SOCKET": self.notify_address, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
                 "INVOCATION_ID": uuid.uuid4().hex}
        env = cfg.environment_for(extra)
        log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with self.cv:
            self.state = "activating"
        try:
            p, argv = self.spawn(cfg.exec_start[0], env, theirs.fileno())
        except OSError as e:
            theirs.close()
            ours.close()
            with self.cv:
                self.state = "failed"
            self.record("failed", why=f"exec: {e}")
            return None
        theirs.close()
        threading.Thread(target=self.journal_reader, args=(ours,), daemon=True).start()
        main = {"pid": p.pid, "popen": p, "ready": None, "reloading": None, "stopping": None,
                "exit": None, "env": env}
        with self.cv:
            self.main = main
        self.record("start", why=why, pid=p.pid, argv=argv, environment=env, log_offset=log_offset,
                    journal_stream=extra["JOURNAL_STREAM"])
        threading.Thread(target=self.waiter, args=(main,), daemon=True).start()
        return main

    def waiter(self, main):
        # The raw wait status (Popen.wait's return code would lose a core dump).
        _, status = os.waitpid(main["pid"], 0)
        main["popen"].returncode = os.waitstatus_to_exitcode(status)
        code, exit_status, failure = exit_fields(status)
        facts = self.facts()
        with self.cv:
            main["exit"] = (code, exit_status, failure)
            expected = self.stopping
        self.record("exit", pid=main["pid"], exit_code=code, exit_status=exit_status, expected=expected,
                    facts=facts)
        with self.cv:
            self.cv.notify_all()
        if not expected:
            threading.Thread(target=self.unexpected_exit, args=(main,), daemon=True).start()

    def unexpected_exit(self, main):
        """The main process ended on its own: ExecStopPost=, then Restart= decides."""
        with self.job:
            with self.cv:
                if self.main is not main:
                    return
            code, exit_status, failure = main["exit"]
            result = failure or "success"
            if main["ready"] is None and self.config.type == "notify" and failure is None:
                result = "protocol"  # exited before READY=1
            self.finish_stop(main, result)
            policy = self.config.restart
            again = policy == "always" or (policy == "on-failure" and result != "success")
            if not again:
                with self.cv:
                    self.state = "failed" if result != "success" else "inactive"
                self.remove_runtime_directories(restarting=False)
                return
            self.record("auto-restart", after=self.config.restart_sec, result=result)
            time.sleep(self.config.restart_sec)
            self.start_locked("Restart=" + policy)

    def finish_stop(self, main, result):
        """After the main process's exit: the rest of its process group, ExecStopPost=."""
        try:
            os.killpg(main["pid"], 0)
            leftover = True
        except ProcessLookupError:
            leftover = False
        if leftover:
            self.record("leftover", pgid=main["pid"], action="SIGKILL")
            try:
                os.killpg(main["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        code, exit_status, _ = main["exit"]
        env = dict(main["env"], SERVICE_RESULT=result, EXIT_CODE=code, EXIT_STATUS=exit_status)
        env.pop("NOTIFY_SOCKET", None)
        for command in self.config.exec_stop_post:
            self.run_helper("stop-post", command, env, self.config.timeout_stop)
        with self.cv:
            if self.main is main:
                self.main = None
        self.record("stopped", result=result, facts=self.facts())

    def remove_runtime_directories(self, restarting):
        preserve = self.config.runtime_preserve
        if preserve == "yes" or (preserve == "restart" and restarting) or restarting:
            return
        present = [d for d in self.config.runtime_directories if os.path.lexists(d)]
        for d in present:
            subprocess.run(["rm", "-rf", "--one-file-system", d], check=False)
        if present:
            self.record("runtime-directory-removed", paths=present)

    # ---- jobs (the control socket's commands)

    def start(self, timeout):
        with self.job:
            with self.cv:
                if self.main is not None:
                    return {"ok": False, "error": f"already running (pid {self.main['pid']})"}
                self.stopping = False
            main = self.start_locked("start")
            if main is None:
                return {"ok": False, "error": "did not start", "state": self.state}
            if self.config.type != "notify":
                return {"ok": True, "pid": main["pid"], "state": "active"}
            limit = self.config.timeout_start if timeout is None else timeout
            with self.cv:
                self.wait_for(lambda: main["ready"] is not None or main["exit"] is not None, limit)
                ready, exited = main["ready"], main["exit"]
            if ready is not None:
                return {"ok": True, "pid": main["pid"], "state": "active", "ready": self.records[ready]}
            if exited is None:
                self.record("start-timeout", after=limit)
                self.stop_locked(self.config.kill_signal, "timeout")
                return {"ok": False, "error": f"no READY=1 within {limit} s: stopped", "state": "failed"}
        # It exited first: unexpected_exit handles ExecStopPost= and Restart=.
        return {"ok": False, "error": f"exited before READY=1: {exited}", "state": self.state}

    def stop_locked(self, sig, result=None):
        with self.cv:
            main = self.main
            if main is None:
                return {"ok": True, "state": self.state, "note": "not running"}
            self.stopping = True
            self.state = "deactivating"
        target = "main process" if self.config.kill_mode in ("mixed", "process") else "process group"
        self.record("signal", pid=main["pid"], signal=signal.Signals(sig).name, to=target, why="stop")
        try:
            if target == "main process":
                os.kill(main["pid"], sig)
            else:
                os.killpg(main["pid"], sig)
        except ProcessLookupError:
            pass
        with self.cv:
            exited = self.wait_for(lambda: main["exit"] is not None, self.config.timeout_stop)
        if not exited:
            self.record("signal", pid=main["pid"], signal="SIGKILL", to="process group",
                        why=f"TimeoutStopSec={self.config.timeout_stop} ran out")
            os.killpg(main["pid"], signal.SIGKILL)
            result = "timeout"
            with self.cv:
                self.wait_for(lambda: main["exit"] is not None, None)
        code, exit_status, failure = main["exit"]
        result = result or failure or "success"
        self.finish_stop(main, result)
        with self.cv:
            self.state = "inactive" if result == "success" else "failed"
        return {"ok": True, "pid": main["pid"], "exit_code": code, "exit_status": exit_status,
                "result": result, "state": self.state}

    def stop(self):
        with self.job:
            reply = self.stop_locked(self.config.kill_signal)
            self.remove_runtime_directories(restarting=False)
            with self.cv:
                self.stopping = False
            return reply

    def restart(self, timeout):
        with self.job:
            stopped = self.stop_locked(self.config.restart_kill_signal)
            with self.cv:
                self.stopping = False
            started = self.start(timeout)
            return dict(started, stop=stopped)

    def reload(self, timeout):
        with self.job:
            with self.cv:
                main = self.main
                if main is None or self.state not in ("active",):
                    return {"ok": False, "error": f"not active ({self.state})"}
                first = len(self.records)
            env = dict(main["env"], MAINPID=str(main["pid"]))
            env.pop("NOTIFY_SOCKET", None)
            begun = self.record("reload", pid=main["pid"])
            for command in self.config.exec_reload:
                ran = self.run_helper("exec-reload", command, env, self.config.timeout_start)
                if not ran["ok"]:
                    return {"ok": False, "error": "ExecReload= failed", "exec": ran}
            limit = self.config.timeout_start if timeout is None else timeout

            def answered():
                seen_reloading = False
                for r in self.records[first:]:
                    if r["event"] == "notify" and r["from_main"]:
                        if r["fields"].get("RELOADING") == "1":
                            seen_reloading = True
                        elif seen_reloading and r["fields"].get("READY") == "1":
                            return True
                return main["exit"] is not None

            with self.cv:
                done = self.wait_for(answered, limit)
                notes = [r for r in self.records[first:] if r["event"] == "notify"]
            ok = done and main["exit"] is None
            return {"ok": ok, "begun": begun["seq"], "notify": notes, "state": self.state,
                    **({} if done else {"error": f"no RELOADING=1 then READY=1 within {limit} s"})}

    def kill(self, sig):
        with self.cv:
            main = self.main
        if main is None:
            return {"ok": False, "error": "not running"}
        self.record("signal", pid=main["pid"], signal=signal.Signals(sig).name, to="main process", why="kill")
        os.kill(main["pid"], sig)
        return {"ok": True, "pid": main["pid"]}

    def wait_exit(self, timeout):
        with self.cv:
            main = self.main
            if main is None:
                return {"ok": True, "note": "not running"}
            done = self.wait_for(lambda: main["exit"] is not None, timeout)
        return {"ok": done, "pid": main["pid"], "exit": main["exit"]}

    def status(self):
        with self.cv:
            main = self.main
            return {"ok": True, "state": self.state, "pid": main["pid"] if main else None,
                    "ready": main["ready"] if main else None, "events": len(self.records)}


def serve(args):
    config = ServiceConfig(Unit(args.unit, args.drop_in), args.runtime_root)
    manager = Manager(config, args.events, args.log, args.notify_socket, args.facts_iptables, args.sandbox)
    manager.record("runner", unit=config.unit.files, notify_socket=args.notify_socket, pid=os.getpid())
    try:
        os.unlink(args.control)
    except FileNotFoundError:
        pass
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.bind(args.control)
    os.chmod(args.control, 0o600)
    control.listen(4)
    stop_requested = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop_requested.set() or control.close())
    while not stop_requested.is_set():
        try:
            conn, _ = control.accept()
        except OSError:
            break
        with conn:
            request = b""
            while not request.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            try:
                words = json.loads(request)
                command, rest = words[0], words[1:]
                timeout = float(rest[0]) if rest and command != "kill" else None
                if command == "start":
                    reply = manager.start(timeout)
                elif command == "stop":
                    reply = manager.stop()
                elif command == "restart":
                    reply = manager.restart(timeout)
                elif command == "reload":
                    reply = manager.reload(timeout)
                elif command == "kill":
                    reply = manager.kill(signal_number(rest[0]))
                elif command == "wait-exit":
                    reply = manager.wait_exit(timeout)
                elif command == "status":
                    reply = manager.status()
                elif command == "quit":
                    reply = manager.stop()
                    stop_requested.set()
                else:
                    reply = {"ok": False, "error": f"unknown command {command!r}"}
            except Exception as e:  # the reply says what went wrong; the runner serves on
                reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            try:
                conn.sendall(json.dumps(reply, sort_keys=True).encode() + b"\n")
            except OSError:
                pass
    manager.stop()
    manager.record("runner-exit")
    try:
        os.unlink(args.control)
    except FileNotFoundError:
        pass


def ctl(args):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(args.socket)
    s.sendall(json.dumps([args.command] + args.args).encode() + b"\n")
    reply = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    print(reply.decode().strip())
    return 0 if json.loads(reply).get("ok") else 1


# ---------------------------------------------------------------- self test


def selftest():
    failures = 0

    def check(name, want, got):
        nonlocal failures
        if want != got:
            failures += 1
            print(f"FAIL {name}: wanted {want!r}, got {got!r}")

    spec = {"%": "%", "n": "masq.service"}
    check("Environment= quoted words",
          {"MASQ_CONFIG": "--rules /etc/masq/rules", "A": "b", "EMPTY": "", "Q": 'say "hi"'},
          parse_environment(['"MASQ_CONFIG=--rules /etc/masq/rules" A=b', "EMPTY=", r"Q='say \"hi\"'"], spec))
    check("Environment= escapes and specifiers", {"X": "a\tb", "N": "masq.service 100%"},
          parse_environment([r'X=a\tb "N=%n 100%%"'], spec))
    check("EnvironmentFile= forms",
          {"A": "one two", "B": "x y", "C": "lit $HOME", "D": "not # a comment", "E": "", "F": 'q"q', "G": "ab"},
          parse_environment_file('# c\n; c\nA="one two"\nB = x y  \nC=\'lit $HOME\'\nD=not # a comment\n'
                                 'E=\nF="q\\"q"\nG=a\\\nb\n', "test"))
    env = {"MASQ_CONFIG": "--keepalived /etc/k.conf", "MASQ_OPTIONS": '--install-iptables --x "a b"',
           "EMPTY": "", "P": "/run/masq"}
    check("$VAR splits, ${VAR} does not, empty and unset are no word",
          ["/bin/masq", "run", "--keepalived", "/etc/k.conf", "--install-iptables", "--x", "a b",
           "--dir=/run/masq", "${", "$$", "cost$P", "${P}x"],
          expand_argv(["/bin/masq", "run", "$MASQ_CONFIG", "$MASQ_OPTIONS", "$EMPTY", "$UNSET",
                       "--dir=${P}", "${", "$$$$", "cost$P", "$${P}x"], env))
    check("ExecStart= prefixes and quotes", {"prefixes": "-", "words": ["/bin/kill", "-HUP", "$MAINPID", "a b"]},
          parse_exec('-/bin/kill -HUP $MAINPID "a b"', spec, "ExecStart="))
    check("time spans", [0.1, 10.0, 90.5, None], [timespan("100ms", 0), timespan("10", 0), timespan("1min 30.5s", 0),
                                                   timespan("infinity", 0)])
    check("unit file continuation and comments",
          [("Service", "ExecStart", "/bin/a  b c"), ("Service", "Environment", "X=1")],  # the backslash becomes a space
          parse_unit_text("[Service]\n# x\nExecStart=/bin/a \\\n  b c\n; y\nEnvironment = X=1\n", "t"))
    print(f"unitrun selftest: {'ok' if failures == 0 else str(failures) + ' failed'}")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb in ("show", "serve"):
        p = sub.add_parser(verb)
        p.add_argument("--unit", required=True)
        p.add_argument("--drop-in", action="append", default=[], metavar="DIR")
        p.add_argument("--runtime-root", default="/run", metavar="DIR")
        if verb == "serve":
            p.add_argument("--control", required=True, metavar="SOCK")
            p.add_argument("--events", required=True, metavar="FILE")
            p.add_argument("--log", required=True, metavar="FILE")
            p.add_argument("--notify-socket", required=True, metavar="PATH|@NAME")
            p.add_argument("--facts-iptables", default="iptables", metavar="CMD")
            p.add_argument("--sandbox", action="store_true",
                           help="ProtectSystem=, ReadWritePaths=, ProtectHome=, PrivateTmp=, ProtectKernelTunables=, "
                                "ProtectControlGroups= in a mount namespace of the service's own")
    p = sub.add_parser("ctl")
    p.add_argument("socket")
    p.add_argument("command")
    p.add_argument("args", nargs="*")
    sub.add_parser("selftest")
    if len(sys.argv) > 1 and sys.argv[1] == "sandbox-exec":
        return sandbox_exec(json.loads(sys.argv[2]), sys.argv[3], sys.argv[5:])
    args = parser.parse_args()
    if args.verb == "show":
        print(json.dumps(ServiceConfig(Unit(args.unit, args.drop_in), args.runtime_root).show(), indent=1))
        return 0
    if args.verb == "serve":
        serve(args)
        return 0
    if args.verb == "ctl":
        return ctl(args)
    return selftest()


if __name__ == "__main__":
    sys.exit(main())
