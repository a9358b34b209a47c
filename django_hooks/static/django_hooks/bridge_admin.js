/* pg-notify-bridge: the admin's "Bridge" page. No dependencies.
 *
 * Polls the page's metrics.json (the daemons' /metrics, read by Django) every
 * few seconds while the page is visible, keeps the last samples, and draws
 * two small line charts: events per second and mean delivery lag per
 * interval, both computed from counter differences (a daemon restart resets
 * its counters; a negative difference counts as no change).
 * All text goes in through textContent: nothing from the daemons is HTML.
 */
(function () {
  "use strict";

  var KEEP = 60;
  var root, history = [], timer = null, busy = false;

  function $(id) { return document.getElementById(id); }

  function text(id, value) { $(id).textContent = value; }

  function fmtMs(seconds) {
    if (seconds === null || seconds === undefined) { return "–"; }
    var ms = seconds * 1000;
    return (ms < 10 ? ms.toFixed(2) : ms.toFixed(0)) + " ms";
  }

  function fmtBytes(n) {
    var units = ["B", "KiB", "MiB", "GiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }

  function fmtAge(seconds) {
    if (!seconds) { return "empty"; }
    if (seconds >= 3600) { return (seconds / 3600).toFixed(1) + " h back"; }
    if (seconds >= 60) { return (seconds / 60).toFixed(0) + " min back"; }
    return seconds.toFixed(0) + " s back";
  }

  function row(cells, className) {
    var tr = document.createElement("tr");
    if (className) { tr.className = className; }
    cells.forEach(function (value) {
      var td = document.createElement("td");
      td.textContent = value;
      tr.appendChild(td);
    });
    return tr;
  }

  function fill(tableId, rows) {
    var body = $(tableId).tBodies[0];
    while (body.firstChild) { body.removeChild(body.firstChild); }
    rows.forEach(function (tr) { body.appendChild(tr); });
  }

  /* One sample per poll; rates come from the difference with the previous one. */
  function remember(data) {
    var t = data.totals, prev = history[history.length - 1];
    var sample = { time: data.time, events: t.events_read, lagSum: t.lag_sum,
                   lagCount: t.lag_count, rate: null, lag: null };
    if (prev && data.time > prev.time) {
      var dt = data.time - prev.time;
      sample.rate = Math.max(0, sample.events - prev.events) / dt;
      var dn = sample.lagCount - prev.lagCount, ds = sample.lagSum - prev.lagSum;
      sample.lag = dn > 0 && ds >= 0 ? (ds / dn) * 1000 : null;
    }
    history.push(sample);
    if (history.length > KEEP) { history.shift(); }
    return sample;
  }

  function draw(canvasId, key, unit) {
    var canvas = $(canvasId), ctx = canvas.getContext("2d");
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    if (canvas.width !== w * ratio) { canvas.width = w * ratio; canvas.height = h * ratio; }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var points = history.filter(function (s) { return s[key] !== null; });
    canvas.dataset.points = String(points.length);
    var style = getComputedStyle(canvas);
    ctx.fillStyle = ctx.strokeStyle = style.color || "#333";
    ctx.font = "11px sans-serif";
    if (!points.length) {
      ctx.fillText("waiting for data…", 10, h / 2);
      return;
    }
    var max = Math.max.apply(null, points.map(function (s) { return s[key]; }).concat([1e-9]));
    var top = max * 1.15, pad = 18;
    var x = function (i) { return pad + (w - 2 * pad) * (KEEP - points.length + i) / (KEEP - 1); };
    var y = function (v) { return h - pad - (h - 2 * pad) * (v / top); };
    ctx.globalAlpha = 0.35;
    ctx.beginPath(); ctx.moveTo(pad, h - pad); ctx.lineTo(w - pad, h - pad); ctx.stroke();
    ctx.globalAlpha = 1;
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#417690";
    ctx.beginPath();
    points.forEach(function (s, i) {
      if (i === 0) { ctx.moveTo(x(i), y(s[key])); } else { ctx.lineTo(x(i), y(s[key])); }
    });
    ctx.stroke();
    ctx.fillText("max " + max.toFixed(max < 10 ? 2 : 0) + " " + unit, pad, 12);
  }

  function render(data) {
    var t = data.totals, sample = remember(data);
    text("bridge-ready", t.ready + " / " + t.daemons);
    $("bridge-ready").className = t.ready < t.daemons ? "bridge-down" : "";
    text("bridge-clients", String(t.clients));
    text("bridge-subscriptions", String(t.subscriptions));
    text("bridge-rate", sample.rate === null ? "–" : sample.rate.toFixed(1));
    text("bridge-lag", sample.lag === null ? "–" : fmtMs(sample.lag / 1000));
    fill("bridge-daemons", data.daemons.map(function (d) {
      if (!d.ok) {
        return row(["?", d.url, "unreachable: " + d.error, "", "", "", "", "", "", "", ""],
                   "bridge-down");
      }
      return row([
        d.instance, d.url, d.listener_up ? "ready" : "NOT READY",
        d.total_clients + " (" + (d.clients.v1 || 0) + " / " + (d.clients.legacy || 0) + ")",
        String(d.total_subscriptions), String(d.events_read),
        fmtMs(d.lag_p50) + " / " + fmtMs(d.lag_p99), String(d.listener_reconnects),
        String(d.resyncs), String(d.slow_closes),
        fmtBytes(d.log_bytes) + ", " + fmtAge(d.log_oldest_age)
      ], d.listener_up ? "" : "bridge-down");
    }));
    fill("bridge-channels", Object.keys(t.channels).map(function (name) {
      return row([name, String(t.channels[name])]);
    }));
    draw("bridge-rate-chart", "rate", "events/s");
    draw("bridge-lag-chart", "lag", "ms");
    text("bridge-updated", new Date(data.time * 1000).toLocaleTimeString());
  }

  function poll() {
    timer = null;
    if (busy) { return; }
    busy = true;
    fetch(root.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(render)
      .catch(function (err) { text("bridge-updated", "failed (" + err.message + ")"); })
      .then(function () { busy = false; schedule(); });
  }

  function schedule() {
    if (timer === null && !document.hidden) {
      timer = setTimeout(poll, 1000 * Number(root.dataset.refresh || 3));
    }
  }

  function start() {
    root = $("bridge-admin");
    if (!root) { return; }
    var initial = $("bridge-initial");
    if (initial) { render(JSON.parse(initial.textContent)); }
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) {
        if (timer !== null) { clearTimeout(timer); timer = null; }
      } else {
        poll();
      }
    });
    schedule();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
