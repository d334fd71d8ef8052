// Outpost's web UI: confirmation before dangerous actions, and live sections that refresh
// without reloading the page. No framework, no network access beyond this host.
"use strict";
document.addEventListener("submit", function (ev) {
  var message = ev.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    ev.preventDefault();
  }
});
(function () {
  var live = document.querySelector("[data-live]");
  if (!live) { return; }
  var url = live.getAttribute("data-live");
  var every = parseInt(live.getAttribute("data-every") || "2000", 10);
  window.outpostLiveUpdates = 0;
  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.status === 401 || r.redirected) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined) {
          live.innerHTML = html;
          window.outpostLiveUpdates += 1;
          live.setAttribute("data-updated", String(window.outpostLiveUpdates));
        }
      })
      .catch(function () { /* the host may be restarting; try again next tick */ })
      .finally(function () { window.setTimeout(refresh, every); });
  }
  window.setTimeout(refresh, every);
})();
