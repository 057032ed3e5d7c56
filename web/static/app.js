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

  // The share summary's print button (a PDF is one "Save as PDF" away in every browser).
  document.querySelectorAll("button[data-print]").forEach((btn) => {
    btn.addEventListener("click", () => window.print());
  });

  // Copy a share link, and say so where the button is.
  document.querySelectorAll("button[data-copy]").forEach((btn) => {
    const label = btn.textContent;
    btn.addEventListener("click", () => {
      const input = btn.parentElement.querySelector("input.share-url");
      if (!input) return;
      input.select();
      const done = () => {
        btn.textContent = "✓ " + btn.dataset.copied;
        btn.classList.add("done");
        const status = btn.parentElement.querySelector(".copied");
        if (status) status.textContent = btn.dataset.copied;
        setTimeout(() => { btn.textContent = label; btn.classList.remove("done"); }, 2500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(done, () => {
          document.execCommand("copy");
          done();
        });
      } else {
        document.execCommand("copy");  // plain-HTTP sites: the clipboard API is not offered
        done();
      }
    });
  });

  // The player's timeline (scan, waybill, seal and camera-gap marks), frame steps, speed.
  document.querySelectorAll(".player-tools[data-video]").forEach((tools) => {
    const video = document.getElementById(tools.dataset.video);
    if (!video) return;
    const fps = parseFloat(tools.dataset.fps) || 25;
    tools.querySelectorAll(".mark[data-pos]").forEach((mark) => {
      // placed at its moment, shifted left by as much of its width: the ends stay inside
      const pos = Math.min(100, Math.max(0, parseFloat(mark.dataset.pos) * 100)) || 0;
      mark.style.left = pos + "%";
      mark.style.transform = "translateX(-" + pos + "%)";
      if (mark.dataset.seek !== undefined) {
        mark.addEventListener("click", () => { video.currentTime = parseFloat(mark.dataset.seek) || 0; });
      }
    });
    const progress = tools.querySelector(".progress");
    video.addEventListener("timeupdate", () => {
      if (progress && video.duration) progress.style.width = (100 * video.currentTime / video.duration) + "%";
    });
    tools.querySelectorAll("button[data-step]").forEach((btn) => {
      btn.addEventListener("click", () => {
        video.pause();
        const t = video.currentTime + parseInt(btn.dataset.step, 10) / fps;
        video.currentTime = Math.max(0, video.duration ? Math.min(video.duration, t) : t);
      });
    });
    const speed = tools.querySelector("select.speed");
    if (speed) speed.addEventListener("change", () => { video.playbackRate = parseFloat(speed.value) || 1; });
  });

  // A clip that cannot be loaded says why under its player (a share link revoked or expired
  // while the page was open, a clip gone from the store), not only a grey, broken player.
  document.querySelectorAll("video.clip-video").forEach((video) => {
    video.addEventListener("error", () => {
      const player = video.closest(".player") || video;
      if (player.nextElementSibling && player.nextElementSibling.classList.contains("video-error")) return;
      fetch(video.currentSrc || video.src, { method: "HEAD", credentials: "same-origin", redirect: "manual" })
        .then((r) => (r.status === 404 && r.headers.get("X-Clip-Deleted") ? -404 : r.status), () => 0)
        .then((status) => {
          const d = video.dataset;
          const note = document.createElement("p");
          note.className = "flash error video-error";
          note.setAttribute("role", "alert");
          // -404: deleted by the station's retention (maybe after this page was made), not missing
          note.textContent = status === 410 ? d.errorGone : status === -404 ? d.errorDeleted
            : status === 404 ? d.errorMissing : d.errorOther;
          if (!(player.nextElementSibling && player.nextElementSibling.classList.contains("video-error"))) player.after(note);
        });
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
    const pictures = [];
    let lost = false; // the last poll failed (the site down or restarting)
    const refresh = () => {
      fetch(live.dataset.api, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))))
        .then((doc) => {
          // The site answers again after failing: a picture's stream that ended meanwhile
          // (the site restarted) fired no error event and left its last frame on screen, so
          // each picture is asked for again (as the station screen does when its events
          // come back).
          if (lost) pictures.forEach((p) => p.again());
          lost = false;
          return doc;
        }, () => { lost = true; return null; })
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
      // Shown once it loads, asked for again after a failure (every stream slot taken: 503;
      // the station's files gone: 404), as on the station screen (retry.js).
      const waiting = img.parentElement.querySelector(".no-frame");
      const picture = PackcamRetry.picture(img, (ok) => {
        img.hidden = !ok;
        if (waiting) waiting.hidden = ok;
      });
      pictures.push(picture);
      const pause = () => {
        picture.stop();
        const btn = document.createElement("button");
        btn.type = "button";
        btn.textContent = labels.labelResume;
        btn.addEventListener("click", () => {
          btn.remove();
          picture.start();
          setTimeout(pause, maxS * 1000);
        });
        img.after(btn);
      };
      setTimeout(pause, maxS * 1000);
    });
  }
});
