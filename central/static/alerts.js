/* DeskPulse alerts block: swaps in the open alerts the server streams (central/alertsweb.py).
   While someone types a comment into the block, a new version waits until they leave it. */
(function () {
  "use strict";
  var slot = document.querySelector("[data-alerts-stream]");
  if (!slot || !window.EventSource) { return; }
  var box = slot.querySelector(".alerts-box");
  var waiting = null;

  function typing() {
    var el = document.activeElement;
    return !!(el && box.contains(el) && el.tagName === "INPUT" && el.value);
  }

  function show(data) {
    box.innerHTML = data.html;
    slot.dataset.open = String(data.open);
    slot.classList.toggle("has-alerts", data.open > 0);
  }

  var source = new EventSource(slot.dataset.alertsStream);
  source.addEventListener("alerts", function (event) {
    var data = JSON.parse(event.data);
    if (typing()) { waiting = data; return; }
    show(data);
  });
  box.addEventListener("focusout", function () {
    window.setTimeout(function () {
      if (waiting && !typing()) { show(waiting); waiting = null; }
    }, 0);
  });
  window.addEventListener("pagehide", function () { source.close(); });
}());
