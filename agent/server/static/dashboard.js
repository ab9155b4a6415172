// Keeps a dashboard page current without reloading it: polls the page's /ui/state endpoint and swaps the
// server-rendered sections whose content changed. The HTML comes from this server's own escaped templates.
(function () {
  "use strict";
  var body = document.body;
  var url = body.dataset.poll;
  var every = parseInt(body.dataset.interval, 10) || 5000;
  var live = document.getElementById("live");
  var polls = 0;

  function mark(state) {
    if (live) { live.dataset.state = state; live.textContent = state === "live" ? "live" : state; }
  }

  function apply(state) {
    if (state.version === body.dataset.version) { return; }
    Object.keys(state.sections).forEach(function (id) {
      var el = document.getElementById(id);
      if (el && el.innerHTML !== state.sections[id]) { el.innerHTML = state.sections[id]; }
    });
    body.dataset.version = state.version;
    body.dataset.updated = String(Date.now());
  }

  function tick() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) {
          window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
          return null;
        }
        if (!r.ok) { mark("error"); return null; }
        return r.json();
      })
      .then(function (state) {
        if (state) { apply(state); mark("live"); }
      })
      .catch(function () { mark("offline"); })
      .then(function () {
        polls += 1;
        body.dataset.polls = String(polls);
        window.setTimeout(tick, document.hidden ? every * 4 : every);
      });
  }

  body.dataset.ready = "yes";
  if (url) { window.setTimeout(tick, every); }
})();
