// The station screen: renders each document the station's SSE stream sends (no polling).
(function () {
  "use strict";
  var root = document.getElementById("screen");
  if (!root) return;
  var doc = null;
  var received = 0;
  function $(id) { return document.getElementById(id); }
  function label(name) {
    var key = "label" + name.replace(/(^|-)([a-z])/g, function (_m, _d, c) { return c.toUpperCase(); });
    return root.dataset[key] || name;
  }
  function clock(s) {
    if (s === null || s === undefined) return "";
    s = Math.max(0, Math.floor(s));
    var m = Math.floor(s / 60);
    var r = s % 60;
    return m + ":" + (r < 10 ? "0" : "") + r;
  }
  function setText(el, v) { el.textContent = v === null || v === undefined ? "" : String(v); }
  function fill(list, rows) {
    while (list.firstChild) list.removeChild(list.firstChild);
    rows.forEach(function (parts) {
      var li = document.createElement("li");
      parts.forEach(function (p) {
        var span = document.createElement("span");
        span.className = p[0];
        span.textContent = p[1];
        li.appendChild(span);
      });
      list.appendChild(li);
    });
  }
  function clipText(c) {
    if (!c) return "";
    return c.order_id + (c.ok ? "  ✓ " + c.sha256_prefix + "…" : "  ✗ " + (c.error || ""));
  }
  function render(d) {
    doc = d;
    received = performance.now();
    root.dataset.state = d.state;
    root.dataset.seq = String(d.seq);
    root.dataset.renderedAt = String(Date.now()); // bench/screen.py measures scan -> screen by it
    setText($("state"), label(d.state));
    var shown = d.order_id || (d.state === "sealed" && d.last_clip ? d.last_clip.order_id : "");
    setText($("order"), shown || "—");
    setText($("elapsed"), clock(d.elapsed_s));
    setText($("waybills"), (d.waybills || []).join("  "));
    setText($("packer"), d.packer || "—");
    Array.prototype.forEach.call(document.querySelectorAll("#signin .pick"), function (b) {
      b.setAttribute("aria-pressed", b.value === d.packer ? "true" : "false");
    });
    var kind = $("kind");
    setText(kind, d.kind === "return" ? kind.dataset["return"] : "");
    var n = $("notice");
    if (d.notice) {
      n.hidden = false;
      setText(n, label(d.notice.kind) + (d.notice.order_id ? ": " + d.notice.order_id : "") +
        (d.notice.why ? " (" + d.notice.why + ")" : ""));
    } else {
      n.hidden = true;
    }
    fill($("items"), (d.items || []).map(function (i) {
      return [["qty", i.qty ? i.qty + "×" : ""], ["name", i.name || ""], ["sku", i.sku || ""]];
    }));
    setText($("items-error"), d.items_error || "");
    var a = $("alarms");
    a.hidden = !(d.alarms && d.alarms.length);
    setText(a, (d.alarms || []).map(function (x) { return x.kind + ": " + x.message; }).join(" · "));
    setText($("last-clip"), clipText(d.last_clip));
    fill($("recent"), (d.recent || []).map(function (c) {
      return [["at", c.at ? c.at.slice(11, 19) : ""], ["order", c.order_id], [c.ok ? "ok" : "bad", c.ok ? "✓ " + c.sha256_prefix : "✗"]];
    }));
  }
  // The live picture. The page can come before the station's first frame (the kiosk starts
  // quicker than the camera: the stream is a 404 then), every stream slot can be taken (503),
  // or the stream can end (the site restarted): it is shown once it loads and asked for again
  // after a failure (retry.js: 0.5 s first, then every 5 s at most).
  var live = $("live");
  var noLive = document.querySelector(".no-live");
  var picture = live ? PackcamRetry.picture(live, function (ok) {
    live.hidden = !ok;
    if (noLive) noLive.hidden = ok;
  }) : null;
  // The events. The browser's EventSource tries again by itself after a network error (the
  // site restarting, the stream's hourly end: "retrying", said on screen only once it has
  // taken 3 s), but gives up for good on an HTTP error (every slot taken: 503; a proxy's
  // 502/504; a refused token: 403): the page then asks again itself, 1 s later first, doubled
  // each time up to 30 s, from 1 s again once it is back, and says why on the screen
  // meanwhile (a HEAD of the events' URL tells the status: retry.js). A refused token is said
  // as such and still tried, at the same pace, so the screen comes back by itself once the
  // site takes it again.
  var banner = $("conn-banner");
  var tries = 0;
  var retry = null;
  var slow = null;
  function conn(state) {
    root.dataset.conn = state;
    var text = banner.dataset[state] || ""; // lost, busy, denied
    setText(banner, text);
    banner.hidden = !text;
    setText($("conn"), state === "ok" || state === "connecting" ? "" : "…");
  }
  function reconnect() {
    retry = null;
    connect();
  }
  function closed() {
    if (retry === null) retry = setTimeout(reconnect, PackcamRetry.delay(tries++, 1000, 30000));
    var was = root.dataset.conn;
    if (was === "connecting" || was === "ok" || was === "retrying") conn("lost");
    var ask = { method: "HEAD", cache: "no-store", credentials: "same-origin", redirect: "manual" };
    fetch(root.dataset.events, ask)
      .then(function (r) { return PackcamRetry.why(r.status, r.type); },
            function () { return "lost"; })
      .then(function (why) { if (root.dataset.conn !== "ok") conn(why); });
  }
  function connect() {
    var es = new EventSource(root.dataset.events);
    es.addEventListener("screen", function (e) {
      try { render(JSON.parse(e.data)); } catch (err) { /* a torn document: the next one comes */ }
    });
    es.onopen = function () {
      // The events came back after a loss: the site restarted, or both streams reached their
      // end; the picture's stream, which says nothing when it ends, is asked for again too.
      var was = root.dataset.conn;
      if (picture && was !== "ok" && was !== "connecting") picture.again();
      tries = 0;
      if (slow !== null) clearTimeout(slow);
      slow = null;
      conn("ok");
    };
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        closed();
        return;
      }
      conn("retrying");
      if (slow === null) {
        slow = setTimeout(function () {
          slow = null;
          if (root.dataset.conn === "retrying") conn("lost");
        }, 3000);
      }
    };
  }
  connect();
  setInterval(function () {
    if (doc && doc.elapsed_s !== null && doc.elapsed_s !== undefined && doc.state === "recording") {
      setText($("elapsed"), clock(doc.elapsed_s + (performance.now() - received) / 1000));
    }
  }, 250);
})();
