// rowguard console: show every <time> in the viewer's own zone (UTC stays in the title, on
// hover). The pages work without this script; it only changes how times read.
"use strict";
document.querySelectorAll("time[datetime]").forEach(function (el) {
  var d = new Date(el.getAttribute("datetime"));
  if (!isNaN(d)) {
    el.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }
});
