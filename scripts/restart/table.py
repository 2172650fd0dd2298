#!/usr/bin/python3
"""What masq's table says about the test's flows, for scripts/e2e-restart.

  table.py FLOWS-FILE [VIP] < `masq flows --json`
FLOWS-FILE is traffic.py's DIR/flows ("NAME CLIENT-PORT" per line; a name starting with "udp" is a
UDP flow, any other a TCP one to VIP:80). Prints, sorted:
  FLOW NAME REAL-SERVER STATE PACKETS-IN   each of the test's flows as the table holds it ("- - 0"
                                           when the table has no entry for it)
  COUNT PROTO VIP REAL-SERVER ACTIVE INACTIVE   per real server of every service, counted from the
                                           entries as IPVS counts them (ip_vs_conn.c): a TCP
                                           connection in ESTABLISHED is active, every other
                                           connection (other TCP states, UDP) inactive; templates
                                           count in neither
  TIMER CLIENT VIP STATE EXPIRES           every closed TCP connection (no packets move it on: a
                                           state other than ESTABLISHED), with its seconds left
"""
import collections
import json
import sys

flows_file = sys.argv[1]
vip = sys.argv[2] if len(sys.argv) > 2 else "198.18.0.1"
client = "198.18.0.12"
entries = [json.loads(line) for line in sys.stdin if line.strip()]

counts = collections.defaultdict(lambda: [0, 0])
timers = []
for e in entries:
    if e["template"]:
        continue
    active = e["proto"] == "tcp" and e["state"] == "ESTABLISHED"
    counts[(e["proto"].upper(), e["vip"], e["real_server"])][0 if active else 1] += 1
    if e["proto"] == "tcp" and not active:
        timers.append("TIMER %s %s %s %d" % (e["client"], e["vip"], e["state"], e["expires"]))

out = timers
with open(flows_file) as f:
    for line in f:
        name, port = line.split()
        proto, service = ("udp", vip + ":5353") if name.startswith("udp") else ("tcp", vip + ":80")
        found = [e for e in entries if not e["template"] and e["proto"] == proto
                 and e["client"] == "%s:%s" % (client, port) and e["vip"] == service]
        if found:
            e = found[0]
            out.append("FLOW %s %s %s %d" % (name, e["real_server"], e["state"], e["packets_in"]))
        else:
            out.append("FLOW %s - - 0" % name)
for (proto, service, server), (a, i) in counts.items():
    out.append("COUNT %s %s %s %d %d" % (proto, service, server, a, i))
print("\n".join(sorted(out)))
