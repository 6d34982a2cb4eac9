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

// The intake desk: as the agent types, what the classifier would choose,
// and place names from the city's gazetteer for the address.
(function () {
  "use strict";
  var form = document.getElementById("intake");
  if (!form) return;
  var text = document.getElementById("call-text");
  var address = document.getElementById("call-address");
  var preview = document.getElementById("preview");
  var places = document.getElementById("places");
  function later(f, ms) {
    var t = null;
    return function () { clearTimeout(t); t = setTimeout(f, ms); };
  }
  function get(url, into) {
    fetch(url, { credentials: "same-origin" })
      .then(function (r) {
        // Signed out meanwhile: the answer is the sign-in page, not a fragment.
        if (r.redirected) { location.href = "/signin"; return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) { if (html !== null) { into.innerHTML = html; into.dataset.updated = String(Date.now()); } })
      .catch(function () {});
  }
  var ask = later(function () {
    var q = "text=" + encodeURIComponent(text.value) + "&address=" + encodeURIComponent(address.value);
    get(form.dataset.preview + "?" + q, preview);
  }, 250);
  var suggest = later(function () {
    get(form.dataset.places + "?q=" + encodeURIComponent(address.value), places);
  }, 150);
  text.addEventListener("input", ask);
  address.addEventListener("input", function () { ask(); suggest(); });
  form.addEventListener("submit", function () {
    var b = form.querySelector("button[type=submit]");
    if (b) b.disabled = true;
  });
})();
