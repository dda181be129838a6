"""Make the page map's world outline (``dam_pipeline/web/static/world-110m.geojson``) from
world-atlas's ``land-110m.json`` (TopoJSON of Natural Earth's 1:110m land, public domain;
world-atlas is ISC-licensed): ``npm pack world-atlas@2.0.2``, unpack, then

    python tools/world_outline.py package/land-110m.json dam_pipeline/web/static/world-110m.geojson
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path


def decode_arcs(topology: dict) -> list[list[list[float]]]:
    """TopoJSON's quantized, delta-encoded arcs as lists of [lon, lat]."""
    scale = topology["transform"]["scale"]
    translate = topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append(
                [round(x * scale[0] + translate[0], 3), round(y * scale[1] + translate[1], 3)]
            )
        arcs.append(points)
    return arcs


def ring(indices: list[int], arcs: list) -> list[list[float]]:
    points: list[list[float]] = []
    for index in indices:
        arc = arcs[index] if index >= 0 else list(reversed(arcs[~index]))
        points.extend(arc if not points else arc[1:])
    return unwrapped(points)


def unwrapped(points: list[list[float]]) -> list[list[float]]:
    """A ring that crosses the antimeridian (Fiji, Chukotka) made continuous past ±180, so
    that the map does not draw a line across the world; one that goes all the way round
    (Antarctica) is left as it is."""
    shift, out = 0.0, [points[0]]
    for (lon_a, _), (lon_b, lat_b) in itertools.pairwise(points):
        if lon_b - lon_a > 180:
            shift -= 360
        elif lon_b - lon_a < -180:
            shift += 360
        out.append([round(lon_b + shift, 3), lat_b])
    if abs(out[-1][0] - out[0][0]) > 180:  # around the pole: it cannot be unwrapped
        return points
    # most of the ring back between -180 and 180 (Eurasia, not its tip past the meridian)
    middle = sorted(lon for lon, _ in out)[len(out) // 2]
    back = -360.0 * round(middle / 360)
    return [[round(lon + back, 3), lat] for lon, lat in out]


def main(source: Path, target: Path) -> None:
    topology = json.loads(source.read_text())
    arcs = decode_arcs(topology)
    polygons = []
    for obj in topology["objects"].values():
        geometries = obj.get("geometries", [obj])
        for geometry in geometries:
            if geometry["type"] == "Polygon":
                polygons.append([ring(r, arcs) for r in geometry["arcs"]])
            elif geometry["type"] == "MultiPolygon":
                polygons.extend([ring(r, arcs) for r in polygon] for polygon in geometry["arcs"])
    feature = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "MultiPolygon", "coordinates": polygons},
    }
    target.write_text(
        json.dumps({"type": "FeatureCollection", "features": [feature]}, separators=(",", ":"))
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
