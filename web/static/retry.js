// Bounded retry for the live pictures (station screen, live page) and the screen's events.
var PackcamRetry = (function () {
  "use strict";
  // The wait before retry n (0: the first): `first`, doubled at each retry, at most `max` (ms).
  function delay(n, first, max) {
    return Math.min(max, first * Math.pow(2, Math.max(0, n)));
  }
  // Why an event stream was refused, from a HEAD of its URL (an EventSource refused with an
  // HTTP status does not say which): "denied" (a wrong or withdrawn token, a proxy's login, or
  // sent to the login page), "busy" (every stream slot taken), else "lost" (the site down or
  // restarting, a proxy's 502/504, no screen file yet, or free again).
  function why(status, type) {
    if (type === "opaqueredirect" || status === 401 || status === 403) return "denied";
    if (status === 503) return "busy";
    return "lost";
  }
  // Keeps a live picture (an <img> of an MJPEG stream) coming: `show(ok)` is told whether it
  // shows; after a failure it is asked for again, 0.5 s later first, then every 5 s at most,
  // each time as a new URL (not the failed request again). again(): ask now, unless a retry
  // is already due; stop(): no picture, no retries; start(): ask again from the first wait.
  function picture(img, show) {
    var src = img.getAttribute("src");
    var tries = 0;
    var asked = 0;
    var timer = null;
    var on = true;
    function load() {
      timer = null;
      var u = new URL(src, location.href);
      u.searchParams.set("try", String(++asked));
      img.src = u.href;
    }
    function failed() {
      if (!on) return;
      show(false);
      if (timer === null) timer = setTimeout(load, delay(tries++, 500, 5000));
    }
    img.addEventListener("load", function () { if (on) { tries = 0; show(true); } });
    img.addEventListener("error", failed);
    if (img.complete) { // settled before this script ran
      if (img.naturalWidth > 0) show(true); else failed();
    }
    return {
      again: function () { if (on && timer === null) load(); },
      stop: function () {
        on = false;
        if (timer !== null) clearTimeout(timer);
        timer = null;
        img.removeAttribute("src");
      },
      start: function () { on = true; tries = 0; load(); },
    };
  }
  return { delay: delay, why: why, picture: picture };
})();
