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

  // Bulk replay or discard in batches of 100 with a progress bar.
  var bulk = document.getElementById("bulk");
  if (!bulk) { return; }
  bulk.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var ids = JSON.parse(document.getElementById("bulk-ids").textContent);
    var csrf = bulk.querySelector("input[name=csrf]").value;
    var reason = bulk.querySelector("[name=reason]");
    var bar = document.getElementById("bulk-progress");
    var status = document.getElementById("bulk-status");
    var done = 0, changed = 0, skipped = 0;
    bar.max = ids.length; bar.hidden = false;
    bulk.querySelector("button").disabled = true;
    function next() {
      if (done >= ids.length) {
        status.textContent = "Done: " + changed + " " + bulk.dataset.verb + ", " + skipped + " skipped.";
        return;
      }
      var body = new URLSearchParams();
      body.set("csrf", csrf); body.set("confirmed", "1"); body.set("format", "json");
      ids.slice(done, done + 100).forEach(function (id) { body.append("id", id); });
      if (reason) { body.set("reason", reason.value); }
      fetch(bulk.action, { method: "POST", body: body, credentials: "same-origin",
                           headers: { "Accept": "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(function (res) {
          done = Math.min(done + 100, ids.length);
          changed += res.changed; skipped += res.skipped;
          bar.value = done;
          status.textContent = done + " of " + ids.length + " (" + changed + " " + bulk.dataset.verb + ")";
          next();
        })
        .catch(function (e) { status.textContent = "Stopped after " + done + ": " + e.message; });
    }
    next();
  });
})();
