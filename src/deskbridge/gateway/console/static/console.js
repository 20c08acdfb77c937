// deskbridge console: progressive enhancement only; every page works without it.
"use strict";
(function () {
  // A sign-in link carries the token in the fragment (never sent to the server or a
  // log): move it into the form, wipe it from the address bar, and submit.
  var field = document.getElementById("token");
  if (field && location.hash.length > 1) {
    field.value = decodeURIComponent(location.hash.slice(1));
    history.replaceState(null, "", location.pathname + location.search);
    var form = field.form;
    if (form && form.dataset.autosubmit === "1") { form.submit(); }
  }

  // Bulk replay or discard: the gateway runs it in batches of 100 (a task tracked in
  // Redis); the script polls its progress and moves the bar. Without the script the
  // form posts and the progress page reloads itself.
  var bulk = document.getElementById("bulk");
  if (!bulk) { return; }
  bulk.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var bar = document.getElementById("bulk-progress");
    var status = document.getElementById("bulk-status");
    var body = new URLSearchParams(new FormData(bulk));
    body.set("format", "json");
    bulk.querySelector("button").disabled = true;
    function json(r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); }
    function fail(e) { status.textContent = "Stopped: " + e.message; }
    function poll(url) {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(json)
        .then(function (job) {
          bar.max = Math.max(job.total, 1); bar.value = job.done; bar.hidden = false;
          if (job.state === "running") {
            status.textContent = job.done + " of " + job.total + " (" + job.changed + " " + job.verb + ")";
            setTimeout(function () { poll(url); }, 500);
          } else if (job.state === "done") {
            status.textContent = "Done: " + job.changed + " " + job.verb + ", " + job.skipped + " skipped.";
          } else {
            status.textContent = "Stopped after " + job.done + " of " + job.total + ": " +
              (job.error || "the gateway running it stopped") + ". Reload its page to resume: " + url.split("?")[0];
          }
        })
        .catch(fail);
    }
    fetch(bulk.action, { method: "POST", body: body, credentials: "same-origin",
                         headers: { "Accept": "application/json" } })
      .then(json)
      .then(function (started) { poll(started.progress); })
      .catch(fail);
  });
})();
