#!/usr/bin/python3
"""The client side of scripts/e2e-restart: the flows that must live through a restart of masq.

Runs in the client namespace against the VIP until the file DIR/stop appears (adapted from
scripts/standby/traffic.py, which drives a director failover):
  download N  --downloads GETs of --path (/slow.bin: rate-limited by nginx's limit_rate at the server,
              so each transfer is in flight across the restart; a client-side limit would let the
              socket buffers take the whole file before it), each byte-exact against --sha256; every
              gap between two receives kept
  idle        one keep-alive HTTP connection: a GET at start, then one more each time DIR/poke.N
              appears (N = 1, 2, ...), on the same connection, answered by the same real server
  udp         after decoy datagrams from other ports until one is answered by web1 (rr's next pick,
              ours, is then web2: a masq that lost the table starts rr over at web1 and moves our
              flow), a datagram every 0.1 s from --udp-port to VIP:5353: every reply from the same
              real server

Once every flow is up (each download has its first body bytes, the idle connection its first answer,
the UDP flow its first reply) it writes DIR/traffic.started, and DIR/flows: one "NAME CLIENT-PORT"
line per flow, for the test to find them in masq's table. DIR/events (written by the test, "EPOCH
NAME" per line; `signal`: masq is stopped, `ready`: the next one serves) places the results in time. The last lines are the
verdicts the test turns into ok/FAIL lines:
  RESULT <flow> ok|fail <detail>
  FIGURES stall=S kept=N lost=M
stall: the restart as the client sees it, the longest time any download went without bytes across
the restart (between two receives, the first before the next masq served, the second after the
signal). Times are wall-clock seconds
(time.time(), the clock of the test's $EPOCHREALTIME).
"""
import argparse
import hashlib
import os
import socket
import threading
import time
import http.client

p = argparse.ArgumentParser()
p.add_argument("--vip", required=True)
p.add_argument("--dir", required=True)
p.add_argument("--sha256", required=True)
p.add_argument("--path", default="/slow.bin")
p.add_argument("--downloads", type=int, default=3)
p.add_argument("--udp-port", type=int, default=47053)
p.add_argument("--max-seconds", type=float, default=60)
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


def path_of(name):
    return os.path.join(args.dir, name)


ports = {}  # flow name -> client port, once known

# ---------------------------------------------------------------- downloads


def new_download():
    return {"bytes": 0, "body": False, "sha256": None, "error": None, "gaps": [], "receives": [], "done": None}


downloads = [new_download() for _ in range(args.downloads)]


def run_download(i):
    d = downloads[i]
    name = "download%d" % (i + 1)
    try:
        s = socket.create_connection((args.vip, 80), timeout=5)
    except OSError as e:
        d["error"] = "connect: %s" % e
        d["done"] = time.time()
        log(name, "end", 0, d["error"])
        return
    # A long stall is a lost flow, not a slow one: after a gap of a second or two TCP's retransmission
    # backoff waits a few seconds more; 20 s of silence means nobody forwards this connection any more.
    s.settimeout(20)
    ports[name] = s.getsockname()[1]
    log(name, "port", ports[name])
    s.sendall(("GET %s HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n" % args.path).encode())
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
    log(name, "end", d["bytes"], d["error"] or "complete")


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
        conn.connect()
        ports["idle"] = conn.sock.getsockname()[1]
        log("idle", "port", ports["idle"])
        idle_get(conn, "first")
        while not stop.is_set():
            if os.path.exists(path_of("poke.%d" % n)):
                idle_get(conn, "poke.%d" % n)
                n += 1
            time.sleep(0.05)
    except (OSError, http.client.HTTPException) as e:
        idle["error"] = "%s: %s" % (type(e).__name__, e)
        log("idle", "error", idle["error"])
    finally:
        conn.close()


# ---------------------------------------------------------------- UDP flow from one source port
udp = {"sent": [], "replies": {}, "decoy": None}


def run_udp():
    # Decoys from new source ports until one lands on web1, the first real server: rr's next pick,
    # ours, is then web2, and a masq that lost the table, its rr starting over at web1, moves it.
    for _ in range(4):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(2)
        u.sendto(b"decoy", (args.vip, 5353))
        try:
            udp["decoy"] = server_of(u.recvfrom(2048)[0])
        except socket.timeout:
            udp["decoy"] = "timeout"
        u.close()
        log("udp", "decoy", udp["decoy"])
        if udp["decoy"] == "web1":
            break

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", args.udp_port))
    s.settimeout(0.2)
    ports["udp"] = args.udp_port
    udp_end = [float("inf")]

    def receive():
        while not stop.is_set() or time.time() < udp_end[0]:
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
    while not stop.is_set():
        udp["sent"].append(time.time())
        try:
            s.sendto(b"u%d" % seq, (args.vip, 5353))
        except OSError:
            pass  # a lost datagram
        seq += 1
        stop.wait(0.1)
    udp_end[0] = time.time() + 1
    rx.join()


# ---------------------------------------------------------------- run
workers = [threading.Thread(target=run_download, args=(i,), name="download%d" % (i + 1), daemon=True)
           for i in range(args.downloads)]
workers += [threading.Thread(target=run_idle, name="idle", daemon=True),
            threading.Thread(target=run_udp, name="udp", daemon=True)]
for w in workers:
    w.start()


def all_up():
    return (all(d["body"] for d in downloads) and idle["answers"] and udp["replies"]
            and len(ports) == args.downloads + 2)


deadline = time.time() + 5
while not all_up() and time.time() < deadline and not any(d["error"] for d in downloads) and idle["error"] is None:
    time.sleep(0.05)
if all_up():
    with open(path_of("flows.tmp"), "w") as f:
        for name in sorted(ports):
            f.write("%s %d\n" % (name, ports[name]))
    os.rename(path_of("flows.tmp"), path_of("flows"))
    open(path_of("traffic.started"), "w").close()
    log("started", " ".join("%s=%d" % kv for kv in sorted(ports.items())))
else:
    log("not started: downloads with body %d of %d, idle %s, udp replies %d" % (
        sum(d["body"] for d in downloads), args.downloads, idle["error"] or len(idle["answers"]), len(udp["replies"])))
    stop.set()
while not stop.is_set() and not os.path.exists(path_of("stop")) and time.time() - started < args.max_seconds:
    time.sleep(0.05)
stop.set()
for w in workers:
    w.join(max(1, args.max_seconds - (time.time() - started)) if w.name.startswith("download") else 10)

# ---------------------------------------------------------------- verdicts
events = {}
try:
    with open(path_of("events")) as f:
        for line in f:
            t, name = line.split()
            events[name] = float(t)
except OSError:
    pass
t_signal = events.get("signal", started)
last_event = max(events.values(), default=started)


def rel(t):
    return "%+.2fs" % (t - t_signal)


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


stall = 0.0
t_ready = events.get("ready", t_signal)
for i, d in enumerate(downloads):
    if d["done"] is None:
        d["error"] = "still running after %d s (%d bytes)" % (args.max_seconds, d["bytes"])
    gap, gap_at = max(d["gaps"], key=lambda g: g[1], default=(started, 0.0))[::-1]
    # Up to the end of the download (or now) when no bytes came after the restart at all.
    receives = d["receives"] + [d["done"] or time.time()]
    stall = max([stall] + [b - a for a, b in zip(receives, receives[1:]) if a <= t_ready and b >= t_signal])
    # The download proves something only if it was in flight across the restart: bytes came after
    # masq was back (the last event), and it ended after that.
    spans = d["done"] is not None and any(t > last_event for t in d["receives"])
    good = d["error"] is None and d["sha256"] == args.sha256 and spans
    count(result("download%d" % (i + 1), good,
                 "%d bytes, sha256 %s, longest gap %.2f s at %s, %d gaps over 0.3 s, ended %s%s%s" % (
                     d["bytes"], "matches" if d["sha256"] == args.sha256 else "DIFFERS", gap, rel(gap_at),
                     len(d["gaps"]), rel(d["done"] or time.time()),
                     "" if spans or d["error"] else " (no bytes after the restart: a longer download is needed)",
                     "" if d["error"] is None else ", " + d["error"])))

first = idle["answers"][0][3] if idle["answers"] else None
pokes = [a for a in idle["answers"] if a[1] != "first"]
wanted = sum(1 for n in range(1, 10) if os.path.exists(path_of("poke.%d" % n)))
good = (idle["error"] is None and first in ("web1", "web2") and len(pokes) == wanted and wanted > 0
        and all(a[2] == 200 and a[3] == first for a in pokes))
count(result("idle", good, "first answer from %s, then %s%s" % (
    first, ", ".join("%s at %s: %s" % (a[1], rel(a[0]), a[3]) for a in pokes) or "nothing",
    "" if idle["error"] is None else "; " + idle["error"])))

names = sorted(set(n for _, n in udp["replies"].values()))
late = [t for t, _ in udp["replies"].values() if t > last_event + 1]
good = len(names) == 1 and len(late) > 0
count(result("udp", good, "%d datagrams from port %d, %d replies, by %s (the decoy's by %s); %d unanswered; %d replies after the restart + 1 s" % (
    len(udp["sent"]), args.udp_port, len(udp["replies"]), "+".join(names) or "nobody", udp["decoy"],
    len(udp["sent"]) - len(udp["replies"]), len(late))))

print("FIGURES stall=%.3f kept=%d lost=%d" % (stall, kept, lost), flush=True)
