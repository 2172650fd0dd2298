#!/usr/bin/python3
"""The client side of scripts/e2e-standby: the flows that must live through a director failover.

Runs in the client namespace against the VIP, all at once, until the file DIR/stop appears:
  download    one GET of /slow.bin (rate-limited by nginx at the server, so the transfer is in flight
              for the whole run), byte-exact against --sha256; every gap between two receives kept
  idle        one keep-alive HTTP connection: a GET at start, then one more each time DIR/poke.N
              appears (N = 1, 2, ...), on the same connection, answered by the same real server
  persistent  a new connection to VIP:8080 (-p) every 0.5 s: every answer from the same real server
  udp         a datagram every 0.1 s from one fixed source port to VIP:5353: every reply from the same
              real server
  new         a new connection to VIP:80 every 0.1 s (each in its own thread, 3 s limit), logged with
              its start time and result

DIR/events (written by the test, "EPOCH NAME" per line: fail, takeover, restore, failback) places the
results in time. The last lines are the verdicts the test turns into ok/FAIL lines:
  RESULT <flow> ok|fail <detail>      and one   FIGURES gap=S kept=N lost=M new_failed=F/T
All times are wall-clock seconds (time.time(), the same clock the test's `date +%s.%N` reads).
"""
import argparse
import hashlib
import http.client
import json
import os
import socket
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--vip", required=True)
p.add_argument("--dir", required=True)
p.add_argument("--sha256", required=True)
p.add_argument("--udp-port", type=int, default=47053)
p.add_argument("--decoy-source", default=None,
               help="a second client address: its :8080 connection takes rr's first pick before ours")
p.add_argument("--max-seconds", type=float, default=90)
p.add_argument("--recovery-slack", type=float, default=0.5,
               help="new connections must succeed again this long after the takeover")
args = p.parse_args()

lock = threading.Lock()
stop = threading.Event()
started = time.time()


def log(*words):
    with lock:
        print("%.3f" % time.time(), *words, flush=True)


def server_of(body):
    for name in ("web1", "web2"):
        if name.encode() in body:
            return name
    return "?"


# ---------------------------------------------------------------- download
download = {"bytes": 0, "sha256": None, "error": None, "gaps": [], "done": None}


def run_download():
    s = socket.create_connection((args.vip, 80), timeout=5)
    # A long stall is a lost flow, not a slow one: TCP's retransmission backoff after a ~4 s outage
    # waits about 6 s; 25 s of silence means nobody forwards this connection any more.
    s.settimeout(25)
    log("download", "port", s.getsockname()[1])
    s.sendall(b"GET /slow.bin HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
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
                download["gaps"].append((last, now - last))
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
            h.update(chunk)
            download["bytes"] += len(chunk)
            if download["bytes"] >= length:
                break
    except (OSError, RuntimeError) as e:
        download["gaps"].append((last, time.time() - last))
        download["error"] = "%s after %d bytes" % (e, download["bytes"])
    finally:
        s.close()
    download["sha256"] = h.hexdigest()
    download["done"] = time.time()
    log("download", "end", download["bytes"], download["error"] or "complete")


# ---------------------------------------------------------------- idle keep-alive connection
idle = {"answers": [], "error": None}


def idle_get(conn, what):
    conn.request("GET", "/", headers={"Connection": "keep-alive"})
    r = conn.getresponse()
    body = r.read()
    idle["answers"].append((time.time(), what, r.status, server_of(body)))
    log("idle", what, r.status, server_of(body))


def run_idle():
    conn = http.client.HTTPConnection(args.vip, 80, timeout=10)
    n = 1
    try:
        idle_get(conn, "first")
        log("idle", "port", conn.sock.getsockname()[1])
        while not stop.is_set():
            if os.path.exists(os.path.join(args.dir, "poke.%d" % n)):
                idle_get(conn, "poke.%d" % n)
                n += 1
            time.sleep(0.05)
    except (OSError, http.client.HTTPException) as e:
        idle["error"] = "%s: %s" % (type(e).__name__, e)
        log("idle", "error", idle["error"])
    finally:
        conn.close()


# ---------------------------------------------------------------- persistent client, VIP:8080
persistent = []  # (start, result: server or error)


def one_get(port, timeout):
    conn = http.client.HTTPConnection(args.vip, port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        r = conn.getresponse()
        body = r.read()
        return server_of(body) if r.status == 200 else "status %d" % r.status
    except (OSError, http.client.HTTPException) as e:
        return "error %s" % (type(e).__name__)
    finally:
        conn.close()


def run_persistent():
    while not stop.is_set():
        t = time.time()
        persistent.append((t, one_get(8080, 2)))
        stop.wait(max(0, 0.5 - (time.time() - t)))


# ---------------------------------------------------------------- UDP flow from one source port
udp = {"sent": [], "replies": {}}


def run_udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", args.udp_port))
    s.settimeout(0.2)

    def receive():
        while not stop.is_set() or time.time() < udp_end[0]:
            try:
                data, _ = s.recvfrom(2048)
            except socket.timeout:
                continue
            name, _, seq = data.decode(errors="replace").partition(": u")
            if seq.isdigit():
                udp["replies"][int(seq)] = (time.time(), name)

    udp_end = [float("inf")]
    rx = threading.Thread(target=receive, daemon=True)
    rx.start()
    seq = 0
    while not stop.is_set():
        udp["sent"].append(time.time())
        try:
            s.sendto(b"u%d" % seq, (args.vip, 5353))
        except OSError:
            pass  # no route while the client's neighbour entry is being replaced: a lost datagram
        seq += 1
        stop.wait(0.1)
    udp_end[0] = time.time() + 1
    rx.join()


# ---------------------------------------------------------------- new connections, VIP:80
new = []  # (start, end, result)


def run_new():
    threads = []

    def attempt(t):
        r = one_get(80, 3)
        with lock:
            new.append((t, time.time(), r))

    while not stop.is_set():
        t = time.time()
        th = threading.Thread(target=attempt, args=(t,), daemon=True)
        th.start()
        threads.append(th)
        stop.wait(max(0, 0.1 - (time.time() - t)))
    for th in threads:
        th.join(5)


# ---------------------------------------------------------------- decoys
# A fresh director's rr gives the first new flow of a service its first real server. So that a
# director that lost the flows cannot keep them by that luck, a decoy flow takes that pick first:
# one datagram from another source port, one :8080 connection from another client address (the
# persistence template is per client address). Ours then land on the other real server.
decoys = []


def run_decoys():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(2)
    u.sendto(b"decoy", (args.vip, 5353))
    try:
        decoys.append("udp:" + server_of(u.recvfrom(2048)[0]))
    except socket.timeout:
        decoys.append("udp:timeout")
    u.close()
    if args.decoy_source:
        conn = http.client.HTTPConnection(args.vip, 8080, timeout=2, source_address=(args.decoy_source, 0))
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            decoys.append("8080:" + server_of(conn.getresponse().read()))
        except (OSError, http.client.HTTPException) as e:
            decoys.append("8080:%s" % type(e).__name__)
        finally:
            conn.close()
    log("decoys", *decoys)


run_decoys()

# ---------------------------------------------------------------- run
workers = {name: threading.Thread(target=fn, name=name, daemon=True) for name, fn in
           [("download", run_download), ("idle", run_idle), ("persistent", run_persistent),
            ("udp", run_udp), ("new", run_new)]}
for w in workers.values():
    w.start()
open(os.path.join(args.dir, "traffic.started"), "w").close()
while not os.path.exists(os.path.join(args.dir, "stop")) and time.time() - started < args.max_seconds:
    time.sleep(0.05)
stop.set()
for name in ("idle", "persistent", "udp", "new"):
    workers[name].join(10)
workers["download"].join(max(1, args.max_seconds - (time.time() - started)))

# ---------------------------------------------------------------- verdicts
events = {}
try:
    with open(os.path.join(args.dir, "events")) as f:
        for line in f:
            t, name = line.split()
            events[name] = float(t)
except OSError:
    pass


def rel(t):
    return "%+.2fs" % (t - events.get("fail", started))


def result(flow, good, detail):
    print("RESULT %s %s %s" % (flow, "ok" if good else "fail", detail), flush=True)
    return good


kept = lost = 0


def count(good):
    global kept, lost
    if good:
        kept += 1
    else:
        lost += 1


if workers["download"].is_alive():
    download["error"] = "still running after %d s (%d bytes)" % (args.max_seconds, download["bytes"])
gap, gap_at = max(download["gaps"], key=lambda g: g[1], default=(started, 0.0))[::-1]
# The download proves something only if it was in flight across every event (failure and failback).
spans = download["done"] is not None and download["done"] > max(events.values(), default=started)
good = download["error"] is None and download["sha256"] == args.sha256 and spans
count(result("download", good, "%d bytes, sha256 %s, longest gap %.2f s at %s, %d gaps over 0.3 s, ended %s%s%s" % (
    download["bytes"], "matches" if download["sha256"] == args.sha256 else "DIFFERS",
    gap, rel(gap_at), len(download["gaps"]), rel(download["done"] or time.time()),
    "" if spans else " (BEFORE the last event: a longer download is needed)",
    "" if download["error"] is None else ", " + download["error"])))

first = idle["answers"][0][3] if idle["answers"] else None
pokes = [a for a in idle["answers"] if a[1] != "first"]
wanted = sum(1 for n in range(1, 10) if os.path.exists(os.path.join(args.dir, "poke.%d" % n)))
good = (idle["error"] is None and first in ("web1", "web2") and len(pokes) == wanted and wanted > 0
        and all(a[2] == 200 and a[3] == first for a in pokes))
count(result("idle", good, "first answer from %s, then %s%s" % (
    first, ", ".join("%s at %s: %s" % (a[1], rel(a[0]), a[3]) for a in pokes) or "nothing",
    "" if idle["error"] is None else "; " + idle["error"])))

answers = [r for _, r in persistent if r in ("web1", "web2")]
servers = sorted(set(answers))
last_event = max(events.values(), default=started)
after = [r for t, r in persistent if t > last_event + 1 and r in ("web1", "web2")]
good = len(servers) == 1 and len(after) > 0
count(result("persistent", good, "%d connections to :8080, %d answered, by %s; %d failed; %d answered after the last event" % (
    len(persistent), len(answers), "+".join(servers) or "nobody", len(persistent) - len(answers), len(after))))

names = sorted(set(n for _, n in udp["replies"].values()))
late = [t for t, _ in udp["replies"].values() if t > last_event + 1]
good = len(names) == 1 and len(late) > 0
count(result("udp", good, "%d datagrams from port %d, %d replies, by %s; %d unanswered; %d replies after the last event" % (
    len(udp["sent"]), args.udp_port, len(udp["replies"]), "+".join(names) or "nobody",
    len(udp["sent"]) - len(udp["replies"]), len(late))))

# New connections. After the failure, those started before the takeover (plus a little for the GARPs
# to land) may fail: that is what a takeover costs; later ones must succeed. From the restore to the
# failback the other director is master all along: none may fail there, except about the VIPs' move
# itself ([failback - 1 s, failback + slack]: a connection begun on one director as they move).
new.sort()
failed = [(t, e, r) for t, e, r in new if r not in ("web1", "web2")]
windows = []
good = len(new) > 0
slack = args.recovery_slack


def started_in(lo, hi):
    return [f for f in failed if lo <= f[0] < hi]


if "fail" in events:
    t0, t1 = events["fail"], events.get("takeover")
    in_window = started_in(t0 - 3, events.get("restore", float("inf")))
    late_fail = [f for f in in_window if t1 is None or f[0] > t1 + slack]
    windows.append("fail: %d failed, the last started %s, the VIPs moved at %s; %d after the takeover + %.1f s" % (
        len(in_window), rel(in_window[-1][0]) if in_window else "-", rel(t1) if t1 else "never", len(late_fail), slack))
    good = good and t1 is not None and not late_fail
if "restore" in events:
    t0, t1 = events["restore"], events.get("failback")
    before = started_in(t0, t1 - 1 if t1 else float("inf"))
    at_move = started_in(t1 - 1, t1 + slack) if t1 else []
    late_fail = started_in(t1 + slack, float("inf")) if t1 else []
    windows.append("restore: %d failed before the failback - 1 s (the other director master all along)%s, "
                   "%d about the failback at %s, %d after it + %.1f s" % (
                       len(before), " from %s" % rel(before[0][0]) if before else "", len(at_move),
                       rel(t1) if t1 else "never", len(late_fail), slack))
    good = good and t1 is not None and not before and not late_fail
stray = [f for f in failed if f[0] < events.get("fail", float("inf")) - 3]
good = good and not stray
result("new", good, "%d new connections, %d failed (%s)%s" % (
    len(new), len(failed), "; ".join(windows) or "no events",
    "; failed before any event: %d" % len(stray) if stray else ""))
print("FIGURES gap=%.2f kept=%d lost=%d new_failed=%d/%d" % (gap, kept, lost, len(failed), len(new)), flush=True)
with open(os.path.join(args.dir, "traffic.json"), "w") as f:
    json.dump({"download": download, "idle": idle, "persistent": persistent,
               "udp": {"sent": len(udp["sent"]), "replies": udp["replies"]}, "new": new, "events": events}, f)
