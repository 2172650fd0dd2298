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
All times are wall-clock seconds (time.time(), the same clock the test's `date +%s.%N` reads). The
download, idle and udp flows and the verdicts' form are scripts/lib/flowclient.py's, shared with
scripts/restart/traffic.py.
"""
import http.client
import json
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ left in the tree by a run as root
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import flowclient  # noqa: E402
from flowclient import server_of  # noqa: E402

p = flowclient.arguments()
p.add_argument("--decoy-source", default=None,
               help="a second client address: its :8080 connection takes rr's first pick before ours")
p.add_argument("--max-seconds", type=float, default=90)
p.add_argument("--recovery-slack", type=float, default=0.5,
               help="new connections must succeed again this long after the takeover")
args = p.parse_args()
run = flowclient.Run(args.vip, args.dir)
download = flowclient.new_download()
idle = {"answers": [], "error": None}
udp = {"sent": [], "replies": {}}


def run_download():
    # A long stall is a lost flow, not a slow one: TCP's retransmission backoff after a ~4 s outage
    # waits about 6 s; 25 s of silence means nobody forwards this connection any more.
    run.download(download, "download", "/slow.bin", silence=25)


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
    while not run.stop.is_set():
        t = time.time()
        persistent.append((t, one_get(8080, 2)))
        run.stop.wait(max(0, 0.5 - (time.time() - t)))


# ---------------------------------------------------------------- new connections, VIP:80
new = []  # (start, end, result)


def run_new():
    threads = []

    def attempt(t):
        r = one_get(80, 3)
        with run.lock:
            new.append((t, time.time(), r))

    while not run.stop.is_set():
        t = time.time()
        th = threading.Thread(target=attempt, args=(t,), daemon=True)
        th.start()
        threads.append(th)
        run.stop.wait(max(0, 0.1 - (time.time() - t)))
    for th in threads:
        th.join(5)


# ---------------------------------------------------------------- decoys
# A fresh director's rr gives the first new flow of a service its first real server. So that a
# director that lost the flows cannot keep them by that luck, a decoy flow takes that pick first:
# one datagram from another source port, one :8080 connection from another client address (the
# persistence template is per client address). Ours then land on the other real server.
decoys = ["udp:" + run.decoy_datagram()]
if args.decoy_source:
    conn = http.client.HTTPConnection(args.vip, 8080, timeout=2, source_address=(args.decoy_source, 0))
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        decoys.append("8080:" + server_of(conn.getresponse().read()))
    except (OSError, http.client.HTTPException) as e:
        decoys.append("8080:%s" % type(e).__name__)
    finally:
        conn.close()
run.log("decoys", *decoys)

# ---------------------------------------------------------------- run
workers = {name: threading.Thread(target=fn, args=a, name=name, daemon=True) for name, fn, a in
           [("download", run_download, ()), ("idle", run.idle, (idle,)), ("persistent", run_persistent, ()),
            ("udp", run.udp, (udp, args.udp_port)), ("new", run_new, ())]}
for w in workers.values():
    w.start()
open(run.path("traffic.started"), "w").close()
run.wait_for_stop(args.max_seconds)
for name in ("idle", "persistent", "udp", "new"):
    workers[name].join(10)
workers["download"].join(max(1, args.max_seconds - (time.time() - run.started)))

# ---------------------------------------------------------------- verdicts
events = run.events()
last_event = max(events.values(), default=run.started)
verdicts = flowclient.Verdicts(run, events.get("fail", run.started))
rel = verdicts.rel

if workers["download"].is_alive():
    download["error"] = "still running after %d s (%d bytes)" % (args.max_seconds, download["bytes"])
# The download proves something only if it was in flight across every event (failure and failback).
spans = download["done"] is not None and download["done"] > last_event
gap = verdicts.download("download", download, args.sha256, spans,
                        "" if spans else " (BEFORE the last event: a longer download is needed)")

verdicts.idle(idle)

answers = [r for _, r in persistent if r in ("web1", "web2")]
servers = sorted(set(answers))
after = [r for t, r in persistent if t > last_event + 1 and r in ("web1", "web2")]
good = len(servers) == 1 and len(after) > 0
verdicts.result("persistent", good, "%d connections to :8080, %d answered, by %s; %d failed; %d answered after the last event" % (
    len(persistent), len(answers), "+".join(servers) or "nobody", len(persistent) - len(answers), len(after)))

verdicts.udp(udp, args.udp_port, last_event, "", "the last event")

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
verdicts.result("new", good, "%d new connections, %d failed (%s)%s" % (
    len(new), len(failed), "; ".join(windows) or "no events",
    "; failed before any event: %d" % len(stray) if stray else ""), counted=False)
print("FIGURES gap=%.2f kept=%d lost=%d new_failed=%d/%d" % (gap, verdicts.kept, verdicts.lost, len(failed), len(new)), flush=True)
with open(run.path("traffic.json"), "w") as f:
    json.dump({"download": download, "idle": idle, "persistent": persistent,
               "udp": {"sent": len(udp["sent"]), "replies": udp["replies"]}, "new": new, "events": events}, f)
