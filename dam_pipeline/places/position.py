"""The position in a photo's EXIF GPS block, read defensively.

Degrees, minutes and seconds are rationals; a reference letter (N/S, E/W) gives the sign.
A zero denominator, NaN, an out-of-range value, a missing reference or a bare (0, 0) with
nothing else to support it means "no position"; nothing here ever raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

LATITUDE_REF, LATITUDE, LONGITUDE_REF, LONGITUDE, ALTITUDE_REF, ALTITUDE = 1, 2, 3, 4, 5, 6
GPS_DATE = 29


def _number(value: Any) -> float | None:
    """A rational (Pillow's IFDRational, a (num, den) pair) or a plain number."""
    try:
        if isinstance(value, tuple) and len(value) == 2:
            numerator, denominator = value
            if not denominator:
                return None
            value = float(numerator) / float(denominator)
        result = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def _degrees(value: Any) -> float | None:
    try:
        parts = list(value) if isinstance(value, list | tuple) and len(value) == 3 else [value]
    except TypeError:
        return None
    numbers = [_number(p) for p in parts]
    if any(n is None or n < 0 for n in numbers):
        return None
    if len(numbers) == 3:
        degrees, minutes, seconds = numbers
        if minutes >= 60 or seconds >= 60:
            return None
        return degrees + minutes / 60 + seconds / 3600
    return numbers[0]


def _reference(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore")
    return str(value or "").strip("\x00 ").upper()[:1]


def gps_position(gps: Mapping[int, Any]) -> dict[str, float] | None:
    """{"lat", "lon"[, "alt"]} from an EXIF GPS IFD, or None."""
    try:
        lat, lon = _degrees(gps.get(LATITUDE)), _degrees(gps.get(LONGITUDE))
        lat_ref, lon_ref = _reference(gps.get(LATITUDE_REF)), _reference(gps.get(LONGITUDE_REF))
    except Exception:
        return None
    if lat is None or lon is None or lat_ref not in "NS" or lon_ref not in "EW":
        return None
    if not lat_ref or not lon_ref:
        return None
    lat = -lat if lat_ref == "S" else lat
    lon = -lon if lon_ref == "W" else lon
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    if lat == 0 and lon == 0 and ALTITUDE not in gps and GPS_DATE not in gps:
        return None  # the null island a broken phone writes
    found = {"lat": round(lat, 6), "lon": round(lon, 6)}
    altitude = _number(gps.get(ALTITUDE))
    if altitude is not None and abs(altitude) < 20_000:
        below = _reference(gps.get(ALTITUDE_REF)) in ("1", "\x01") or gps.get(ALTITUDE_REF) in (
            1,
            b"\x01",
        )
        found["alt"] = round(-altitude if below else altitude, 1)
    return found


_SIGNED = r"([+-]\d+(?:\.\d+)?)"
ISO_6709 = re.compile(rf"^\s*{_SIGNED}{_SIGNED}{_SIGNED}?(?:CRS\w*)?/?\s*$")
LOCATION_KEYS = ("com.apple.quicktime.location.ISO6709", "location", "location-eng")
"""Where video containers keep the position (QuickTime/MP4 ``©xyz`` and Apple's key)."""


def _angle(text: str, degree_digits: int) -> float | None:
    """±DD.D, ±DDMM.M or ±DDDMMSS.S (ISO 6709, told apart by their integer digits)."""
    sign = -1.0 if text[0] == "-" else 1.0
    whole, _, fraction = text[1:].partition(".")
    fraction = f".{fraction}" if fraction else ""
    if len(whole) == degree_digits:
        value = float(whole + fraction)
    elif len(whole) == degree_digits + 2:
        value = int(whole[:degree_digits]) + float(whole[degree_digits:] + fraction) / 60
    elif len(whole) == degree_digits + 4:
        value = (
            int(whole[:degree_digits])
            + int(whole[degree_digits : degree_digits + 2]) / 60
            + float(whole[degree_digits + 2 :] + fraction) / 3600
        )
    else:
        return None
    return sign * value


def video_position(metadata: Mapping[str, str]) -> dict[str, float] | None:
    """{"lat", "lon"[, "alt"]} from a video container's metadata, or None."""
    for key in LOCATION_KEYS:
        match = ISO_6709.match(str(metadata.get(key) or ""))
        if not match:
            continue
        try:
            lat, lon = _angle(match.group(1), 2), _angle(match.group(2), 3)
        except ValueError:
            continue
        if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            continue
        if lat == 0 and lon == 0 and match.group(3) is None:
            continue
        found = {"lat": round(lat, 6), "lon": round(lon, 6)}
        if match.group(3) is not None:
            found["alt"] = round(float(match.group(3)), 1)
        return found
    return None
