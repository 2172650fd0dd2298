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
(time.time(), the clock of the test's $EPOCHREALTIME). The flows and the verdicts' form are
scripts/lib/flowclient.py's, shared with scripts/standby/traffic.py.
"""
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ left in the tree by a run as root
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import flowclient  # noqa: E402

p = flowclient.arguments()
p.add_argument("--path", default="/slow.bin")
p.add_argument("--downloads", type=int, default=3)
p.add_argument("--max-seconds", type=float, default=60)
args = p.parse_args()
run = flowclient.Run(args.vip, args.dir)
downloads = [flowclient.new_download() for _ in range(args.downloads)]
idle = {"answers": [], "error": None}
udp = {"sent": [], "replies": {}, "decoy": None}


def run_download(i):
    # A long stall is a lost flow, not a slow one: after a gap of a second or two TCP's retransmission
    # backoff waits a few seconds more; 20 s of silence means nobody forwards this connection any more.
    run.download(downloads[i], "download%d" % (i + 1), args.path, silence=20)


def run_udp():
    # Decoys from new source ports until one lands on web1, the first real server: rr's next pick,
    # ours, is then web2, and a masq that lost the table, its rr starting over at web1, moves it.
    for _ in range(4):
        udp["decoy"] = run.decoy_datagram()
        run.log("udp", "decoy", udp["decoy"])
        if udp["decoy"] == "web1":
            break
    run.udp(udp, args.udp_port)


# ---------------------------------------------------------------- run
workers = [threading.Thread(target=run_download, args=(i,), name="download%d" % (i + 1), daemon=True)
           for i in range(args.downloads)]
workers += [threading.Thread(target=run.idle, args=(idle,), name="idle", daemon=True),
            threading.Thread(target=run_udp, name="udp", daemon=True)]
for w in workers:
    w.start()


def all_up():
    return (all(d["body"] for d in downloads) and idle["answers"] and udp["replies"]
            and len(run.ports) == args.downloads + 2)


deadline = time.time() + 5
while not all_up() and time.time() < deadline and not any(d["error"] for d in downloads) and idle["error"] is None:
    time.sleep(0.05)
if all_up():
    with open(run.path("flows.tmp"), "w") as f:
        for name in sorted(run.ports):
            f.write("%s %d\n" % (name, run.ports[name]))
    os.rename(run.path("flows.tmp"), run.path("flows"))
    open(run.path("traffic.started"), "w").close()
    run.log("started", " ".join("%s=%d" % kv for kv in sorted(run.ports.items())))
else:
    run.log("not started: downloads with body %d of %d, idle %s, udp replies %d" % (
        sum(d["body"] for d in downloads), args.downloads, idle["error"] or len(idle["answers"]), len(udp["replies"])))
    run.stop.set()
run.wait_for_stop(args.max_seconds)
for w in workers:
    w.join(max(1, args.max_seconds - (time.time() - run.started)) if w.name.startswith("download") else 10)

# ---------------------------------------------------------------- verdicts
events = run.events()
t_signal = events.get("signal", run.started)
last_event = max(events.values(), default=run.started)
verdicts = flowclient.Verdicts(run, t_signal)

stall = 0.0
t_ready = events.get("ready", t_signal)
for i, d in enumerate(downloads):
    if d["done"] is None:
        d["error"] = "still running after %d s (%d bytes)" % (args.max_seconds, d["bytes"])
    # Up to the end of the download (or now) when no bytes came after the restart at all.
    receives = d["receives"] + [d["done"] or time.time()]
    stall = max([stall] + [b - a for a, b in zip(receives, receives[1:]) if a <= t_ready and b >= t_signal])
    # The download proves something only if it was in flight across the restart: bytes came after
    # masq was back (the last event), and it ended after that.
    spans = d["done"] is not None and any(t > last_event for t in d["receives"])
    verdicts.download("download%d" % (i + 1), d, args.sha256, spans,
                      "" if spans or d["error"] else " (no bytes after the restart: a longer download is needed)")

verdicts.idle(idle)
verdicts.udp(udp, args.udp_port, last_event, " (the decoy's by %s)" % udp["decoy"], "the restart + 1 s")

print("FIGURES stall=%.3f kept=%d lost=%d" % (stall, verdicts.kept, verdicts.lost), flush=True)
