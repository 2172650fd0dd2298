#!/usr/bin/python3
"""Damages masq's state file the ways scripts/e2e-restart needs (masq must refuse each, say why and
start with an empty table):

  statefile.py header PATH        print the header's magic, layout version and size (a check that
                                  the file is masq's)
  statefile.py other-layout PATH  the file of a masq with another layout: the layout version + 1
  statefile.py truncate PATH      cut to its first 4096 bytes (the header page alone)
  statefile.py random PATH        the same size, every byte random

The header (Sources/MasqCore/TableMemory.swift): the magic "MASQTAB\\0" at offset 0 and the layout
version, a little-endian UInt32, at offset 8.
"""
import os
import struct
import sys

MAGIC = b"MASQTAB\0"
VERSION_OFFSET = 8


def fail(why):
    print("statefile.py: %s" % why, file=sys.stderr)
    sys.exit(1)


def header(path):
    with open(path, "rb") as f:
        head = f.read(VERSION_OFFSET + 4)
    if len(head) < VERSION_OFFSET + 4 or head[:8] != MAGIC:
        fail("%s: no %r magic at offset 0 (%r)" % (path, MAGIC, head[:8]))
    return struct.unpack_from("<I", head, VERSION_OFFSET)[0]


what, path = sys.argv[1], sys.argv[2]
try:
    size = os.stat(path).st_size
except OSError as e:
    fail("no state file to damage: %s" % e)
if what == "header":
    print("magic MASQTAB version %d size %d" % (header(path), size))
elif what == "other-layout":
    version = header(path)
    with open(path, "r+b") as f:
        f.seek(VERSION_OFFSET)
        f.write(struct.pack("<I", version + 1))
    print("layout version %d -> %d" % (version, version + 1))
elif what == "truncate":
    os.truncate(path, 4096)
    print("truncated: %d -> 4096 bytes" % size)
elif what == "random":
    with open(path, "r+b") as f:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
    print("%d random bytes" % size)
else:
    fail("unknown command %s" % what)
