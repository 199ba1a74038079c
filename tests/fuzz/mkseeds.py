#!/usr/bin/env python3
"""Writes the seed inputs of fuzz_volume into tests/fuzz/seeds/.

Each seed is a mode byte and patch records (see fuzz_volume.c):
u32 sel = class << 28 | index << 12 | offset, u8 len (bit 7: raw), bytes.
The seeds touch every block class at least once, in every run order."""
import os
import struct

SB, HB, LOCK, JHDR, JLOG, RC, INODE, PTR, DIR, META, INOSLOT, RAW = range(12)


def rec(cls, idx, off, data, raw=False):
    return struct.pack('<IB', cls << 28 | idx << 12 | off, len(data) | (0x80 if raw else 0)) + data


def u32(v):
    return struct.pack('<I', v)


def u64(v):
    return struct.pack('<Q', v)


SEEDS = {
    '00-pristine': bytes([0]),
    # label changed (restamped): backup differs; backup with a bad checksum
    '01-superblock': bytes([0]) + rec(SB, 0, 264, b'fuzzed') + rec(SB, 1, 300, b'\x01', raw=True),
    # the crashed mount's slot LIVE again: fsck watches it, then frees it
    '02-heartbeat-live': bytes([0]) + rec(HB, 3, 64, u32(1)),
    # volume lock held by a gone host; a lock block with 40 holders
    '03-locks': bytes([1]) + rec(LOCK, 0, 64, u32(1) + u32(1) + u64(98304)) + rec(LOCK, 0, 96, struct.pack('<HHQ', 2, 0, 1)) + rec(LOCK, 5, 68, u32(40)),
    # journal header of slot 3 points elsewhere; a journal image damaged and re-hashed
    '04-journal': bytes([3]) + rec(JHDR, 3, 72, u64(8192)) + rec(JLOG, 2, 200, b'\xff' * 16) + rec(JLOG, 0, 72, u32(3)),
    # a cluster header's bitmap and free count disagree
    '05-cluster': bytes([0]) + rec(RC, 0, 96, b'\xff\x0f') + rec(RC, 4, 72, u32(0)),
    # an inode with a huge size, a bad direct pointer and no links
    '06-inode': bytes([1]) + rec(INODE, 3, 96, u64(1 << 50)) + rec(INODE, 3, 368, u64(0x4000000000000007)) + rec(INODE, 5, 88, u32(0)),
    # pointer block: wrong level, pointer out of range
    '07-pointer': bytes([2]) + rec(PTR, 0, 64, u32(2)) + rec(PTR, 1, 96, u64(0xffffffffff)),
    # directory block: a bad rec_len and a name with '/'
    '08-dirblock': bytes([1]) + rec(DIR, 0, 104, struct.pack('<H', 16)) + rec(DIR, 1, 108, b'a/b'),
    # a never-used inode slot forged from a raw header, and a raw meta block
    '09-raw': bytes([3]) + rec(INOSLOT, 40, 8, b'LNIN\x01\x00') + rec(RAW, 0x1000, 0, b'LNDB') + rec(META, 0, 0, b'\x00' * 8, raw=True),
    # the crashed mount's slot LIVE, mounted before any repair: the mount
    # takes its own slot back and clears the locks of its earlier mount
    '10-own-slot-live-mount-first': bytes([1]) + rec(HB, 3, 64, u32(1)) + rec(LOCK, 3, 100, u64(7)),
    # read-only mount first, of an inode whose xattr area is damaged
    '11-readonly-mount': bytes([2]) + rec(INODE, 2, 204, u32(1680)) + rec(INODE, 2, 2416, b'\x05\x00\xff\xff'),
}

d = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'seeds')
os.makedirs(d, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)
