"""Seeds derived from a hash of their parts, the one recipe every stage, the world and the pair cap use: the
same parts give the same seed in any process, however a stage is sharded or resumed."""
from __future__ import annotations

import json
import zlib


def hash_seed(*parts) -> int:
    """CRC-32 of the parts as JSON: a seed in [0, 2**32)."""
    return zlib.crc32(json.dumps(parts).encode())
