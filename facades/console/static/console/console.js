// The console's only script (CSP script-src 'self': no inline code anywhere).
// htmx requests carry the CSRF token from the page's <meta name="csrf-token">.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) {
    event.detail.headers["X-CSRFToken"] = meta.getAttribute("content");
  }
});

// Times the server renders in UTC (<time class="local" datetime="ISO">) are shown in the
// browser's local time; the UTC ISO form stays in the element's title. Without script they
// read as UTC.
function localizeTimes(root) {
  root.querySelectorAll("time.local[datetime]").forEach(function (el) {
    var moment = new Date(el.getAttribute("datetime"));
    if (!isNaN(moment.getTime())) {
      el.textContent = moment.toLocaleString();
    }
  });
}
document.addEventListener("DOMContentLoaded", function () {
  localizeTimes(document);
});
document.addEventListener("htmx:load", function (event) {
  localizeTimes(event.detail.elt);
});
