"""What callers say for a door plate: the sample's hotline addresses, for tests and benches.

A caller rarely says the plate as the twin writes it: the city or district comes first, a
building is "3号楼" or "三号楼", a room or floor follows, digits come full-width from some
input methods. A few mention only the lane or the road, and about 3% say nothing placeable.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Sequence

_PLATE = re.compile(r"(?P<road>.+?(?:大道|公路|路|街|巷))(?P<lane>\d+弄)?(?P<number>\d+)号$")
_CN = "零一二三四五六七八九十"
_VAGUE = ("小区门口", "我家楼下", "菜场旁边", "居委会对面", "公交站附近", "地铁站出口")
_SUFFIX_P = 0.5  # share of plates followed by a room, floor or where-about


def _cn(n: int) -> str:
    """1..19 in Chinese numerals (三, 十二), as callers say small building numbers."""
    return _CN[n] if n <= 10 else "十" + _CN[n - 10]


def _wide(said: str) -> str:
    return said.translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"})


def caller_address(rng: random.Random, address: str, road_names: Sequence[str],
                   subdistrict: str) -> str:
    """A caller's words for the building at door plate ``address`` (e.g. 滨江大道52弄1号);
    ``road_names`` are roads a caller may name beside its own (those crossing it) and
    ``subdistrict`` the 街道 a caller may start with."""
    m = _PLATE.match(address)
    u = rng.random()
    if m is None or u < 0.03:
        return rng.choice(_VAGUE)
    road, lane, n = m["road"], m["lane"] or "", int(m["number"])
    prefix = rng.choice(("", "", "", "上海市", "浦东新区", "上海市浦东新区", subdistrict,
                         f"上海市浦东新区{subdistrict}", f"浦东{subdistrict}"))
    if u < 0.06 and lane:
        return prefix + road + lane + rng.choice(("", "里面", "门口"))
    others = [r for r in road_names if r != road]
    if u < 0.08:
        if not others:
            return prefix + road + "附近"
        other = rng.choice(others)
        return prefix + rng.choice((road + "附近", f"{road}与{other}交叉口", f"{road}{other}口"))
    w = rng.random()
    number = (f"{n}号" if w < 0.6 else f"{n}号楼" if w < 0.8 or n > 19
              else f"{_cn(n)}号楼" if w < 0.9 else f"{_cn(n)}号")
    said = road + (" " if rng.random() < 0.1 else "") + lane + number
    if rng.random() < _SUFFIX_P:
        said += rng.choice((f"{rng.randint(1, 18)}0{rng.randint(1, 4)}室",
                            f"{rng.randint(1, 6)}单元{rng.randint(1, 6)}0{rng.randint(1, 4)}室",
                            f"{rng.randint(1, 18)}楼", "楼下", "门口",
                            f"(近{rng.choice(others or [road])})"))
    said = prefix + said
    return _wide(said) if rng.random() < 0.1 else said


def kept_plate(said: str, address: str) -> bool:
    """Whether a caller's words still carry the whole door plate ``address`` (road, lane and
    number, in digits or small Chinese numerals): what placing on a building can be held to."""
    m = _PLATE.match(address)
    if m is None:
        return False
    said = "".join(unicodedata.normalize("NFKC", said).split())
    n = int(m["number"])
    numbers = [str(n)] + ([_cn(n)] if n <= 19 else [])
    head = m["road"] + (m["lane"] or "")
    return any(re.search(f"{re.escape(head)}{x}号", said) for x in numbers)
