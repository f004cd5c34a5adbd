// rowguard console: show every <time> in the viewer's own zone, naming the zone ("GMT+5:30"),
// with UTC kept in the title (on hover). Served by the binary from /console/static/ (the
// policy's script-src 'self'); the pages work without it and then show UTC text.
"use strict";
document.querySelectorAll("time[datetime]").forEach(function (el) {
  var d = new Date(el.getAttribute("datetime"));
  if (!isNaN(d)) {
    el.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "long" });
    el.classList.add("local");
  }
});
