// Start the video at its shot: the #t= media fragment does this where the browser supports
// it; otherwise seek once the player knows the video's duration. Without JavaScript the
// fragment alone applies.
(function () {
  var player = document.getElementById("player");
  if (!player) return;
  var start = parseFloat(player.dataset.start || "0");
  function seek() {
    if (start > 0 && Math.abs(player.currentTime - start) > 0.5) player.currentTime = start;
  }
  if (player.readyState >= 1) seek();
  else player.addEventListener("loadedmetadata", seek, { once: true });
})();
