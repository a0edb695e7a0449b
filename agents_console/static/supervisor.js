// Supervisor wallboard charts: calls, answered and abandoned per hour, and the service level,
// for each queue over the last hours. Data from the element's data-src (JSON); drawn with the
// vendored uPlot (static/vendor/uPlot.iife.min.js). Redrawn every minute. No inline script:
// the Content-Security-Policy allows only files from this site.
(function () {
  "use strict";

  var REFRESH_MS = 60000;

  function chartOptions(el, title, width, timezone) {
    return {
      title: title,
      width: width,
      height: 180,
      // hours on the axis in the hotline's time zone, whatever the browser's
      tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), timezone); },
      scales: { x: { time: true }, pct: { range: [0, 100] } },
      series: [
        { label: el.dataset.labelTime },
        { label: el.dataset.labelCalls, stroke: "#1f4f8f", width: 2, points: { show: true } },
        { label: el.dataset.labelAnswered, stroke: "#1a7f37", width: 2, points: { show: true } },
        { label: el.dataset.labelAbandoned, stroke: "#b42318", width: 2, points: { show: true } },
        { label: el.dataset.labelSl, stroke: "#a15c00", dash: [6, 4], scale: "pct", spanGaps: false },
      ],
      axes: [{}, { label: "" }, { side: 1, scale: "pct", grid: { show: false } }],
    };
  }

  function draw(el, data) {
    el.textContent = "";
    if (!data.queues.length) {
      el.textContent = el.dataset.labelEmpty || "";
      return;
    }
    data.queues.forEach(function (q) {
      var box = document.createElement("div");
      box.className = "chart";
      box.dataset.queue = q.queue;
      el.appendChild(box);
      var width = Math.max(280, box.clientWidth - 8);
      var series = [q.starts, q.calls, q.answered, q.abandoned, q.service_level];
      new window.uPlot(chartOptions(el, q.queue, width, data.timezone), series, box);
    });
    el.dataset.drawn = String(data.queues.length);
  }

  function load(el) {
    fetch(el.dataset.src, {
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-Console-Passive": "1" },
    })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload();
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (data) draw(el, data);
      })
      .catch(function () {
        /* the next refresh tries again */
      });
  }

  function start() {
    var el = document.getElementById("charts");
    if (!el || !window.uPlot) return;
    load(el);
    window.setInterval(function () { load(el); }, REFRESH_MS);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
