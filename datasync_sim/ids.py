"""Random-looking UUID v4 strings from integers, and back.

A keyed bijection on 122 bits (add, xorshift, multiply — each step invertible) turns an ordinal into
the 122 free bits of a UUID v4. Ids are therefore unique by construction, look random, and an id
can be mapped back to its ordinal in O(1), which is how `/events/{id}` and bulk find an event
without an index.
"""

from __future__ import annotations

import random

BITS = 122
MASK = (1 << BITS) - 1
_LO62 = (1 << 62) - 1
_HEX = frozenset("0123456789abcdef")


class UuidMixer:
    """A seeded bijection between integers in [0, 2**122) and lowercase UUID v4 strings."""

    def __init__(self, seed: int, domain: str) -> None:
        rng = random.Random(f"{seed}:{domain}")
        self._k = rng.getrandbits(BITS)
        self._a1 = rng.getrandbits(BITS) | 1
        self._a2 = rng.getrandbits(BITS) | 1
        self._i1 = pow(self._a1, -1, 1 << BITS)
        self._i2 = pow(self._a2, -1, 1 << BITS)

    def uuid(self, n: int) -> str:
        """The UUID v4 string of ordinal `n`."""
        x = (n + self._k) & MASK
        x ^= x >> 61
        x = (x * self._a1) & MASK
        x ^= x >> 62
        x = (x * self._a2) & MASK
        x ^= x >> 61
        hi = x >> 62
        h = f"{hi >> 12:012x}4{hi & 0xFFF:03x}{(x & _LO62) | (2 << 62):016x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def ordinal(self, text: str) -> int | None:
        """The ordinal whose UUID is `text`, or None if `text` is no UUID v4 of this mixer's form."""
        if len(text) != 36 or text[8] != "-" or text[13] != "-" or text[18] != "-" or text[23] != "-":
            return None
        h = text[:8] + text[9:13] + text[14:18] + text[19:23] + text[24:]
        if not _HEX.issuperset(h) or h[12] != "4" or h[16] not in "89ab":
            return None
        u = int(h, 16)
        x = (((u >> 80) << 12 | (u >> 64) & 0xFFF) << 62) | (u & _LO62)
        x ^= x >> 61
        x = (x * self._i2) & MASK
        x ^= x >> 62
        x = (x * self._i1) & MASK
        x ^= x >> 61
        return (x - self._k) & MASK


class UuidBatch:
    """`UuidMixer.uuid` for runs of consecutive ordinals, ~3x faster.

    The ordinals are packed into one big integer, one 256-bit lane each: a 122-bit by 122-bit
    product fits a lane, so every step of the bijection runs on all lanes at once.
    """

    LANE = 256

    def __init__(self, mixer: UuidMixer, lanes: int) -> None:
        self._m = mixer
        self._lanes = lanes
        rep = sum(1 << (self.LANE * i) for i in range(lanes))
        self._rep = rep
        self._mask = MASK * rep
        self._k = mixer._k * rep
        self._lo = _LO62 * rep
        self._fff = 0xFFF * rep
        self._v = ((0x4000 << 64) | (2 << 62)) * rep

    def uuids(self, first: int, count: int) -> list[str]:
        """UUIDs of ordinals first, first+1, …, first+count-1 (count <= lanes)."""
        h = self._mixed(first, count).hex()
        return [f"{h[a:a + 8]}-{h[a + 8:a + 12]}-{h[a + 12:a + 16]}-{h[a + 16:a + 20]}-{h[a + 20:a + 32]}"
                for a in range(32, 64 * count, 64)]

    def raw(self, first: int, count: int) -> list[bytes]:
        """The 16 raw bytes of each UUID of ordinals first … first+count-1 (big-endian)."""
        b = self._mixed(first, count)
        return [b[a:a + 16] for a in range(16, 32 * count, 32)]

    def _mixed(self, first: int, count: int) -> bytes:
        """All lanes mixed at once; ordinal first+i sits in lane (lanes-1-i), i.e. hex [64 i, 64 i + 64)."""
        m = self._m
        x = int.from_bytes(b"".join((first + i).to_bytes(32) for i in range(count))) << (
            self.LANE * (self._lanes - count))
        mask = self._mask
        x = (x + self._k) & mask
        x = (x ^ (x >> 61)) & mask
        x = (x * m._a1) & mask
        x = (x ^ (x >> 62)) & mask
        x = (x * m._a2) & mask
        x = (x ^ (x >> 61)) & mask
        u = (((x >> 74) & (0xFFFF_FFFF_FFFF * self._rep)) << 80) | (((x >> 62) & self._fff) << 64)
        u |= (x & self._lo) | self._v
        return u.to_bytes(self._lanes * self.LANE // 8)


def format_raw(raw: bytes) -> str:
    """16 raw bytes as a lowercase dashed UUID string."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
