/* The agent's desk, live: listens to /events (Server-Sent Events) and reloads the panels an
   event concerns. Events carry ids and states only; everything shown comes from the server's
   pages (role-checked, audited). Reloads triggered here are marked X-Console-Passive so they
   do not count as the agent's activity (the idle timeout still applies). No inline script:
   the Content-Security-Policy forbids it. */
(function () {
  "use strict";
  var desk = document.getElementById("agent-desk");
  if (!desk || typeof EventSource === "undefined") { return; }
  var passive = { "X-Console-Passive": "1" };
  var status = document.getElementById("live-status");
  var baseTitle = document.title;

  function load(url, target) {
    if (!url || !window.htmx) { return Promise.resolve(); }
    return window.htmx.ajax("GET", url, { target: target, swap: "innerHTML", headers: passive });
  }

  function renderedCallKey() {
    var el = document.querySelector("#desk-call [data-call-key]");
    return el ? el.getAttribute("data-call-key") : "";
  }

  function refreshState() { return load(desk.dataset.stateUrl, "#desk-state"); }
  function refreshCall() { return load(desk.dataset.callUrl, "#desk-call"); }

  function onAgentState(data) {
    refreshState();
    var key = data.call && ["reserved", "on_call", "wrap_up"].indexOf(data.state) >= 0
      ? data.state + ":" + data.call : "";
    if (data.state === "wrap_up" && !data.call && data.call_ended) { key = "wrap_up:" + data.call_ended; }
    // Reload the call panel only when the call or its phase changed: never under the
    // agent's typing.
    if (key !== renderedCallKey()) { refreshCall(); }
    document.title = data.state === "reserved" ? desk.dataset.ringingTitle + " " + baseTitle : baseTitle;
  }

  function onEscalation() {
    var el = document.querySelector("#desk-call [data-escalations-url]");
    var url = el ? el.getAttribute("data-escalations-url") : "";
    if (url && document.getElementById("escalations")) { load(url, "#escalations"); }
  }

  function setLive(ok) {
    if (!status) { return; }
    status.textContent = ok ? status.dataset.ok : status.dataset.down;
    status.className = ok ? "badge badge-ok" : "badge badge-warn";
  }

  var source = new EventSource(desk.dataset.events);
  source.addEventListener("hello", function () { setLive(true); });
  source.addEventListener("open", function () { setLive(true); });
  source.addEventListener("error", function () {
    setLive(false);
    if (source.readyState === EventSource.CLOSED) {
      // The server refused the stream (signed out, or not a stream): the browser will not
      // retry by itself; reload, which leads to sign-in if the session is over.
      window.setTimeout(function () { window.location.reload(); }, 5000);
    }
  });
  source.addEventListener("agent_state", function (e) { onAgentState(JSON.parse(e.data)); });
  source.addEventListener("escalation", onEscalation);
  source.addEventListener("resync", function () { refreshState(); refreshCall(); });
  source.addEventListener("session_ended", function () {
    source.close();
    window.location.assign(desk.dataset.signinUrl);
  });
  window.addEventListener("pagehide", function () { source.close(); });

  // Timers: wrap-up countdown and elapsed times, from the server's timestamps.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function mmss(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    return pad(Math.floor(seconds / 60)) + ":" + pad(seconds % 60);
  }
  // The server's time when the element was rendered, moved on by the time since the browser
  // first saw it: a browser whose clock is off still shows the right minutes.
  function serverNow(el) {
    var rendered = Date.parse(el.getAttribute("data-server-now"));
    if (isNaN(rendered)) { return Date.now(); }
    if (!el.seenAt) { el.seenAt = Date.now(); }
    return rendered + (Date.now() - el.seenAt);
  }
  function tick() {
    document.querySelectorAll("[data-countdown-until]").forEach(function (el) {
      var until = Date.parse(el.getAttribute("data-countdown-until"));
      if (!isNaN(until)) { el.textContent = mmss((until - serverNow(el)) / 1000); }
    });
    document.querySelectorAll("[data-elapsed-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-elapsed-since"));
      if (!isNaN(since)) { el.textContent = mmss((serverNow(el) - since) / 1000); }
    });
  }
  tick();
  window.setInterval(tick, 1000);
  document.body.addEventListener("htmx:afterSwap", tick);

  // A form's result replaces its target; clear a note box after it was saved.
  document.body.addEventListener("htmx:afterRequest", function (e) {
    var form = e.detail.elt;
    if (e.detail.successful && form && form.tagName === "FORM" && form.querySelector("textarea[name=text]")) {
      form.reset();
    }
  });
})();
