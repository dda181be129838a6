// The Places map: the photos as points over the world outline that ships with the package;
// a tile server only when DAM_MAP_TILES names one (the page works offline).
(function () {
  var box = document.getElementById("map");
  if (!box || typeof L === "undefined") return;
  var map = L.map(box, { worldCopyJump: true }).setView([20, 0], 2);
  map.createPane("land");  // under the photos, whichever arrives first
  map.getPane("land").style.zIndex = 350;
  var tiles = box.getAttribute("data-tiles");
  if (tiles) {
    L.tileLayer(tiles, { maxZoom: 18 }).addTo(map);
  } else {
    fetch("/static/world-110m.geojson").then(function (r) { return r.json(); }).then(function (world) {
      L.geoJSON(world, {
        pane: "land", interactive: false,
        style: { color: "#7a8a99", weight: 1, fillColor: "#e6ecf1", fillOpacity: 1 }
      }).addTo(map);
    });
  }
  fetch("/api/map").then(function (r) { return r.json(); }).then(function (data) {
    var bounds = [];
    data.points.forEach(function (p) {
      var marker = L.circleMarker([p.lat, p.lon], {
        radius: 6, color: "#0b5cad", fillOpacity: 0.8, className: "photo-point"
      }).addTo(map);
      var link = document.createElement("a");
      link.href = p.detail_url;
      link.textContent = p.key;
      if (p.thumbnail_url) {
        var img = document.createElement("img");
        img.src = p.thumbnail_url; img.alt = p.key; img.width = 120;
        link.prepend(img, document.createElement("br"));
      }
      marker.bindPopup(link);
      bounds.push([p.lat, p.lon]);
    });
    if (bounds.length) map.fitBounds(bounds, { maxZoom: 10, padding: [30, 30] });
    box.setAttribute("data-points", String(data.points.length));
  });
})();
