// The admin's background-job page (templates/admin/scoring/adminjob/progress.html): polls the
// job's JSON status every second and shows it, until the job has finished. Without script the
// page reloads itself instead (a <noscript> meta refresh), so this is an enhancement only.
(function () {
  "use strict";
  var root = document.querySelector("[data-admin-job]");
  if (!root) return;
  var url = root.getAttribute("data-status-url");
  var bar = root.querySelector("[data-job-progress]");

  function show(status) {
    root.setAttribute("data-state", status.state);
    root.setAttribute("data-finished", status.finished ? "true" : "false");
    root.querySelectorAll("[data-job-field]").forEach(function (el) {
      var value = status[el.getAttribute("data-job-field")];
      el.textContent = value === null || value === undefined ? "" : String(value);
      if (el.hasAttribute("data-hide-empty")) el.hidden = !value;
    });
    if (bar) {
      if (status.total) {
        bar.max = status.total;
        bar.value = status.done;
      } else if (status.finished) {
        bar.max = 1;
        bar.value = 1;
      } else {
        bar.removeAttribute("value"); // indeterminate until the total is known
      }
      bar.textContent = status.percent + "%";
    }
  }

  function fail(message) {
    var text = root.querySelector('[data-job-field="text"]');
    if (text) text.textContent = message;
  }

  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status >= 400 && response.status < 500) {
          // Signed out, or the job is gone: polling again would not help.
          fail("Could not read the job's status (HTTP " + response.status + "): reload the page.");
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (status) {
        if (!status) return;
        show(status);
        if (!status.finished) window.setTimeout(poll, 1000);
      })
      .catch(function () {
        window.setTimeout(poll, 5000); // a restart or a network blip: keep trying, slower
      });
  }

  if (root.getAttribute("data-finished") !== "true") window.setTimeout(poll, 1000);
})();
