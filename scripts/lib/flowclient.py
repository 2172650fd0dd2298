"""The client side the e2e traffic harnesses share: scripts/standby/traffic.py (a director failover)
and scripts/restart/traffic.py (a restart of masq) each run, in the client namespace against the VIP,
flows that must live through what the test does, and print the verdicts the test turns into ok/FAIL
lines. This module holds the flows both run and the verdicts' common form; each harness keeps its own
flows, what each flow must have lived through, and its FIGURES line.

  download  a GET of a rate-limited file (nginx's limit_rate at the server), byte-exact against a
            SHA-256; every gap over 0.3 s between two receives kept, and every receive
  idle      one keep-alive HTTP connection: a GET at start, then one more each time DIR/poke.N appears
            (N = 1, 2, ...), on the same connection, answered by the same real server
  udp       a datagram every 0.1 s from one fixed source port to VIP:5353: every reply from the same
            real server

Verdict lines:  RESULT <flow> ok|fail <detail>
Times are wall-clock seconds (time.time()), the clock the tests write DIR/events with.
"""
import argparse
import hashlib
import http.client
import os
import socket
import threading
import time


def arguments():
    """The options every harness takes; it adds its own."""
    p = argparse.ArgumentParser()
    p.add_argument("--vip", required=True)
    p.add_argument("--dir", required=True, help="where the test and the harness leave files for each other")
    p.add_argument("--sha256", required=True, help="the download's SHA-256")
    p.add_argument("--udp-port", type=int, default=47053, help="the UDP flow's source port")
    return p


def server_of(body):
    """The real server that answered: the lab's (web1, web2: scripts/lab) name themselves in each answer."""
    for name in ("web1", "web2"):
        if name.encode() in body:
            return name
    return "?"


def new_download():
    return {"bytes": 0, "body": False, "sha256": None, "error": None, "gaps": [], "receives": [], "done": None}


class Run:
    """One run of a harness: the VIP, the directory shared with the test, the log its flows' threads
    share, the stop signal they all watch, and each flow's client port once known (for the test to find
    the flows in a director's table)."""

    def __init__(self, vip, directory):
        self.vip = vip
        self.dir = directory
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.started = time.time()
        self.ports = {}  # flow name -> client port

    def log(self, *words):
        with self.lock:
            print("%.3f" % time.time(), *words, flush=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def download(self, d, name, path, silence):
        """GETs `path` from VIP:80 into the state `d` (new_download()). `silence`: the seconds without a
        byte after which the flow counts as lost (longer than TCP's retransmission backoff after the
        outage the test makes)."""
        try:
            s = socket.create_connection((self.vip, 80), timeout=5)
        except OSError as e:
            d["error"] = "connect: %s" % e
            d["done"] = time.time()
            self.log(name, "end", 0, d["error"])
            return
        s.settimeout(silence)
        self.ports[name] = s.getsockname()[1]
        self.log(name, "port", self.ports[name])
        s.sendall(("GET %s HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n" % path).encode())
        h = hashlib.sha256()
        head = b""
        length = None
        last = time.time()
        try:
            while True:
                chunk = s.recv(65536)
                now = time.time()
                if not chunk:
                    break
                if now - last > 0.3:
                    d["gaps"].append((last, now - last))
                d["receives"].append(now)
                last = now
                if length is None:
                    head += chunk
                    if b"\r\n\r\n" not in head:
                        continue
                    head, chunk = head.split(b"\r\n\r\n", 1)
                    status = head.split(b"\r\n")[0]
                    if b" 200 " not in status + b" ":
                        raise RuntimeError("status %r" % status)
                    for line in head.split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            length = int(v)
                    if length is None:
                        raise RuntimeError("no Content-Length")
                    d["body"] = True
                h.update(chunk)
                d["bytes"] += len(chunk)
                if d["bytes"] >= length:
                    break
        except (OSError, RuntimeError) as e:
            d["gaps"].append((last, time.time() - last))
            d["error"] = "%s after %d bytes" % (e, d["bytes"])
        finally:
            s.close()
        if length is not None and d["bytes"] < length and d["error"] is None:
            d["error"] = "closed after %d of %d bytes" % (d["bytes"], length)
        d["sha256"] = h.hexdigest()
        d["done"] = time.time()
        self.log(name, "end", d["bytes"], d["error"] or "complete")

    def idle(self, idle):
        """The idle keep-alive connection, its answers and its error kept in `idle` ({"answers": [], "error": None})."""

        def get(what):
            conn.request("GET", "/", headers={"Connection": "keep-alive"})
            r = conn.getresponse()
            body = r.read()
            idle["answers"].append((time.time(), what, r.status, server_of(body)))
            self.log("idle", what, r.status, server_of(body))

        conn = http.client.HTTPConnection(self.vip, 80, timeout=10)
        n = 1
        try:
            conn.connect()
            self.ports["idle"] = conn.sock.getsockname()[1]
            self.log("idle", "port", self.ports["idle"])
            get("first")
            while not self.stop.is_set():
                if os.path.exists(self.path("poke.%d" % n)):
                    get("poke.%d" % n)
                    n += 1
                time.sleep(0.05)
        except (OSError, http.client.HTTPException) as e:
            idle["error"] = "%s: %s" % (type(e).__name__, e)
            self.log("idle", "error", idle["error"])
        finally:
            conn.close()

    def decoy_datagram(self):
        """One datagram to VIP:5353 from a new source port: who answered it, or "timeout"."""
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(2)
        u.sendto(b"decoy", (self.vip, 5353))
        try:
            return server_of(u.recvfrom(2048)[0])
        except socket.timeout:
            return "timeout"
        finally:
            u.close()

    def udp(self, udp, port):
        """The UDP flow from `port` until the stop (and replies for 1 s more): the send times and the
        replies by sequence number kept in `udp` ({"sent": [], "replies": {}})."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", port))
        s.settimeout(0.2)
        self.ports["udp"] = port
        udp_end = [float("inf")]

        def receive():
            while not self.stop.is_set() or time.time() < udp_end[0]:
                try:
                    data, _ = s.recvfrom(2048)
                except socket.timeout:
                    continue
                name, _, seq = data.decode(errors="replace").partition(": u")
                if seq.isdigit():
                    udp["replies"][int(seq)] = (time.time(), name)

        rx = threading.Thread(target=receive, daemon=True)
        rx.start()
        seq = 0
        while not self.stop.is_set():
            udp["sent"].append(time.time())
            try:
                s.sendto(b"u%d" % seq, (self.vip, 5353))
            except OSError:
                pass  # a lost datagram (no route while the client's neighbour entry is being replaced)
            seq += 1
            self.stop.wait(0.1)
        udp_end[0] = time.time() + 1
        rx.join()

    def wait_for_stop(self, max_seconds):
        """Until DIR/stop appears (or the stop is set, or `max_seconds` from the start); then stops the flows."""
        while not self.stop.is_set() and not os.path.exists(self.path("stop")) and time.time() - self.started < max_seconds:
            time.sleep(0.05)
        self.stop.set()

    def events(self):
        """DIR/events, written by the test ("EPOCH NAME" per line): the time of each event by name."""
        events = {}
        try:
            with open(self.path("events")) as f:
                for line in f:
                    t, name = line.split()
                    events[name] = float(t)
        except OSError:
            pass
        return events


class Verdicts:
    """The RESULT lines, times in them relative to `t0` (the event the harness measures from), and the
    flows kept and lost, for the FIGURES line."""

    def __init__(self, run, t0):
        self.run = run
        self.t0 = t0
        self.kept = self.lost = 0

    def rel(self, t):
        return "%+.2fs" % (t - self.t0)

    def result(self, flow, good, detail, counted=True):
        """Prints the flow's verdict; `counted`: a flow that is kept or lost (not a series of new ones)."""
        print("RESULT %s %s %s" % (flow, "ok" if good else "fail", detail), flush=True)
        if counted:
            if good:
                self.kept += 1
            else:
                self.lost += 1
        return good

    def download(self, flow, d, sha256, spans, note):
        """Whole, byte-exact and `spans` (in flight across what the test did; if not, `note` says why the
        flow proves nothing). Returns the download's longest gap."""
        gap, gap_at = max(d["gaps"], key=lambda g: g[1], default=(self.run.started, 0.0))[::-1]
        good = d["error"] is None and d["sha256"] == sha256 and spans
        self.result(flow, good, "%d bytes, sha256 %s, longest gap %.2f s at %s, %d gaps over 0.3 s, ended %s%s%s" % (
            d["bytes"], "matches" if d["sha256"] == sha256 else "DIFFERS", gap, self.rel(gap_at), len(d["gaps"]),
            self.rel(d["done"] or time.time()), note, "" if d["error"] is None else ", " + d["error"]))
        return gap

    def idle(self, idle):
        """Every poke the test made answered, each by the real server that answered the first GET."""
        first = idle["answers"][0][3] if idle["answers"] else None
        pokes = [a for a in idle["answers"] if a[1] != "first"]
        wanted = sum(1 for n in range(1, 10) if os.path.exists(self.run.path("poke.%d" % n)))
        good = (idle["error"] is None and first in ("web1", "web2") and len(pokes) == wanted and wanted > 0
                and all(a[2] == 200 and a[3] == first for a in pokes))
        self.result("idle", good, "first answer from %s, then %s%s" % (
            first, ", ".join("%s at %s: %s" % (a[1], self.rel(a[0]), a[3]) for a in pokes) or "nothing",
            "" if idle["error"] is None else "; " + idle["error"]))

    def udp(self, udp, port, last_event, servers_note, after):
        """Every reply from one real server, and some more than 1 s after `last_event` (`after` names it)."""
        names = sorted(set(n for _, n in udp["replies"].values()))
        late = [t for t, _ in udp["replies"].values() if t > last_event + 1]
        good = len(names) == 1 and len(late) > 0
        self.result("udp", good, "%d datagrams from port %d, %d replies, by %s%s; %d unanswered; %d replies after %s" % (
            len(udp["sent"]), port, len(udp["replies"]), "+".join(names) or "nobody", servers_note,
            len(udp["sent"]) - len(udp["replies"]), len(late), after))
