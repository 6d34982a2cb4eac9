// Whistle console: keeps the queue live. The server says when what waits on
// the desk has changed (server-sent events); the page then reloads its rows.
// Everything else works without this script.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  var badge = document.getElementById("live-state");
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(live.dataset.src, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (r.redirected && /\/signin$/.test(new URL(r.url).pathname)) { location.href = "/signin"; return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          live.innerHTML = html;
          live.dataset.refreshed = String(Date.now());
        }
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  var events = new EventSource("/queue/events");
  events.addEventListener("open", function () {
    if (badge) badge.classList.add("on");
    refresh();
  });
  events.addEventListener("change", refresh);
  events.addEventListener("error", function () {
    if (badge) badge.classList.remove("on");
  });
})();
