// packcam: small progressive enhancements; every page works without this file.
"use strict";

function fmtDuration(s) {
  if (s === null || s === undefined) return "";
  s = Math.max(0, Number(s));
  // cut, not rounded, as the video player and the page (web/formatting.py) show it
  const whole = Math.floor(s), m = Math.floor(whole / 60), sec = whole % 60;
  return m + ":" + String(sec).padStart(2, "0");
}

document.addEventListener("DOMContentLoaded", () => {
  // Key frames: click a picture to jump the player to that moment.
  document.querySelectorAll("button.seek[data-video]").forEach((btn) => {
    btn.addEventListener("click", () => {
      const video = document.getElementById(btn.dataset.video);
      if (!video) return;
      video.currentTime = parseFloat(btn.dataset.seek) || 0;
      video.scrollIntoView({ block: "nearest" });
    });
  });

  // Copy a share link.
  document.querySelectorAll("button[data-copy]").forEach((btn) => {
    btn.addEventListener("click", () => {
      const input = btn.parentElement.querySelector("input.share-url");
      if (!input) return;
      input.select();
      if (navigator.clipboard) navigator.clipboard.writeText(input.value).catch(() => {});
    });
  });

  // Confirm destructive forms.
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  });

  // Live view: refresh the state lines; offer to resume a stream that reached its time limit.
  const live = document.getElementById("live");
  if (live) {
    const labels = live.dataset;
    const maxS = parseFloat(labels.maxS) || 600;
    const refresh = () => {
      fetch(live.dataset.api, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : null))
        .then((doc) => {
          if (!doc) return;
          doc.stations.forEach((st) => {
            const fig = live.querySelector(`figure[data-key="${CSS.escape(st.key)}"]`);
            if (!fig) return;
            const el = fig.querySelector(".state");
            let text = labels["label" + st.shown_state.charAt(0).toUpperCase() + st.shown_state.slice(1)] || st.shown_state;
            if (st.shown_state === "recording" && st.order_id) {
              text += " " + labels.labelOrder + " " + st.order_id + ", " + fmtDuration(st.elapsed_s);
            }
            el.textContent = text;
          });
        })
        .catch(() => {});
    };
    setInterval(refresh, 2000);
    live.querySelectorAll("img.live-img").forEach((img) => {
      const pause = () => {
        img.src = "";
        const btn = document.createElement("button");
        btn.type = "button";
        btn.textContent = labels.labelResume;
        btn.addEventListener("click", () => {
          btn.remove();
          img.src = img.dataset.src + "?t=" + Date.now();
          setTimeout(pause, maxS * 1000);
        });
        img.after(btn);
      };
      setTimeout(pause, maxS * 1000);
    });
  }
});
