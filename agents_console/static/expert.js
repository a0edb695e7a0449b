// Expert desk: a short sound-free title cue when new offers arrive, so an expert working in
// another tab notices. The panel itself is refreshed by htmx (live events and polling).
// No inline script: the Content-Security-Policy allows only files from this site.
(function () {
  "use strict";
  var baseTitle = document.title;

  function update() {
    var count = document.querySelector("[data-testid=offer-count]");
    var n = count ? parseInt(count.textContent, 10) || 0 : 0;
    document.title = n > 0 ? "(" + n + ") " + baseTitle : baseTitle;
  }

  document.addEventListener("htmx:afterSwap", update);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", update);
  } else {
    update();
  }
})();
